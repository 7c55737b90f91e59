"""Runs source passes: the job boundary where errors are caught, counted and logged once."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from collector.config import Config
from collector.errors import CycletimeError
from collector.http import REDACT, ApiTelemetry, Budget, RequestGate, RetryPolicy
from collector.progress import Plan
from collector.sharding import Shards, lock_key
from collector.sources import SOURCES
from collector.sources.base import NotPolled, Source, SourceContext, SyncReport
from collector.store import STORE_ERRORS, ApiBudget, Store

log = logging.getLogger(__name__)

#: upper bounds (seconds) of the poll-duration histogram (``cycletime_source_poll_duration_seconds``,
#: docs/metrics.md): a poll takes seconds to minutes. The store keeps a count per index into
#: these bounds, so changing them means regrouping the stored counts (a store migration).
POLL_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


@dataclass
class PassResult:
    source: str
    ok: bool
    duration: float
    items: int
    error: str | None = None
    report: SyncReport | None = None


@dataclass
class Runner:
    """Builds the configured sources once and runs passes, one at a time per source."""

    config: Config
    store: Store
    progress: Callable[[str, int], None] = lambda name, n: None
    #: how far each pass is through the work it knows of, with its budget (done/total and the ETA)
    plan: Callable[[str, Plan], None] = lambda name, plan: None
    stop: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep
    #: which scopes this process polls (docs/sharding.md); the default polls everything
    shards: Shards = field(default_factory=Shards)
    sources: dict[str, Source] = field(init=False)
    telemetry: dict[str, ApiTelemetry] = field(init=False)
    #: per source: scopes skipped because another replica held or had just polled them
    #: (``cycletime_shard_scopes_skipped_total``)
    skipped_scopes: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.sources, self.telemetry = {}, {}
        self.skipped_scopes = Counter()
        #: per source (sharded): a scope polled to the end after this time (the store's clock) is
        #: not polled again in the running pass: half a poll interval before the pass started
        self._fresh_after: dict[str, float] = {}
        self._skip_logged: set[tuple[str, str]] = set()
        request_gates: dict[str, RequestGate] = {}
        #: one budget per API server and credential (a token, or a GitHub App's installation): sources
        #: sharing one spend one budget, so each sees what the others left (and the reserve holds for
        #: all of them)
        budgets: dict[tuple[str, str], dict[str, Budget]] = {}
        for cfg in self.config.sources:
            telemetry = ApiTelemetry()
            server = getattr(cfg, "base_url", None) or getattr(cfg, "organization_url", None)
            credential = cfg.credential()
            if isinstance(server, str) and credential:
                telemetry.budgets = budgets.setdefault((server.rstrip("/").lower(), credential), {})
            ctx = SourceContext(
                history=self.config.history,
                telemetry=telemetry,
                progress=functools.partial(self._progress_of, cfg.name),
                plan=functools.partial(self._plan_of, cfg.name, getattr(cfg, "rate_limit_reserve", 0.0)),
                sleep=self._interruptible_sleep,
                should_stop=self.stop.is_set,
                http_policy=RetryPolicy(
                    deadline=self.config.http.request_deadline.total_seconds(),
                    max_body_bytes=self.config.http.max_response_bytes,
                    max_rate_limit_wait=self.config.http.max_rate_limit_wait.total_seconds(),
                ),
                request_gates=request_gates,
                owns=functools.partial(self.shards.owns, cfg.name),
                claim=functools.partial(self.claim, cfg.name),
            )
            self.sources[cfg.name] = SOURCES[cfg.kind](cfg, ctx)
            self.telemetry[cfg.name] = telemetry
        self._locks = {name: threading.Lock() for name in self.sources}

    @contextmanager
    def claim(self, name: str, scope: str) -> Iterator[bool]:
        """True while this process may poll the source's scope: owned by this shard, and its
        advisory lock held (until the block ends). Unsharded: always, with no lock."""
        if not self.shards.sharded:
            yield True
            return
        if not self.shards.owns(name, scope):
            yield False
            return
        with self.store.claim_scope(lock_key(name, scope), since=self._fresh_after.get(name)) as mine:
            if not mine:
                self.skipped_scopes[name] += 1
                if (name, scope) not in self._skip_logged:  # once per scope: a twin replica would flood the log
                    self._skip_logged.add((name, scope))
                    log.warning(
                        "source=%s scope %r held or just polled by another replica (%s twice, or a "
                        "rollout); skipped until the next pass window",
                        name,
                        scope,
                        self.shards,
                    )
            yield mine

    def owns(self, name: str) -> bool:
        """Whether this shard polls the source at all (a one-scope source: whether it owns the scope)."""
        source = self.sources[name]
        return source.many_scopes or self.shards.owns(name, source.scope_of(source.config, ""))

    def _progress_of(self, name: str, n: int) -> None:
        self.progress(name, n)

    def _plan_of(self, name: str, reserve: float, done: int, total: int) -> None:
        telemetry = self.telemetry[name]
        budget = telemetry.budget("rest")
        self.plan(
            name,
            Plan(
                done,
                total,
                spent=sum(telemetry.requests.values()),  # since the last pass's take
                remaining=budget.remaining if budget else None,
                limit=budget.limit if budget else None,
                reset_at=budget.reset_at if budget else None,
                reserve=reserve,
            ),
        )

    def _interruptible_sleep(self, seconds: float) -> None:
        """Rate-limit waits end early on shutdown, so SIGTERM never waits an hour for a reset."""
        if self.sleep is time.sleep:
            self.stop.wait(seconds)
        else:
            self.sleep(seconds)

    def run(self, name: str) -> PassResult:
        """One pass of one source; never raises (a failing source must not stop the others)."""
        lock = self._locks[name]
        if not lock.acquire(blocking=False):
            log.info("source=%s previous pass still running; skipped", name)
            return PassResult(name, True, 0.0, 0, "skipped: still running")
        try:
            return self._run(name)
        finally:
            lock.release()

    def _run(self, name: str) -> PassResult:
        source, telemetry = self.sources[name], self.telemetry[name]
        started = time.time()
        error: str | None = None
        report: SyncReport | None = None
        try:
            self.store.ensure_writer()
            if self.shards.sharded:
                # twins started apart (or two passes of one shard across a rollout) share the
                # scopes: what either polled in the last half interval waits for the next pass
                half = self.config.interval_of(source.config).total_seconds() / 2
                self._fresh_after[name] = self.store.now() - half
            if source.many_scopes:
                report = source.sync(self.store)
            else:
                report = self._sync_claimed(name, source)
                if report is None:
                    log.info("source=%s skipped: its scope is another shard's or another replica's now", name)
                    return PassResult(name, True, 0.0, 0, "skipped: scope held elsewhere")
            if report.problems:
                error = REDACT("; ".join(report.problems))
        except CycletimeError as exc:
            error = REDACT(exc)
        except STORE_ERRORS as exc:
            error = self.store.note_failure(exc)
        except Exception as exc:  # a bug in one source must not take the process down
            log.exception("source=%s pass crashed", name)
            error = REDACT(f"{type(exc).__name__}: {exc}")
        duration = time.time() - started
        ok = error is None
        shown = error
        if ok and report is not None and report.details.get("unavailable"):
            # parts the server does not have (e.g. classic releases on Azure DevOps Server): the
            # source is up; the note shows on the landing page
            shown = "unavailable: " + "; ".join(report.details["unavailable"])
        if ok and report is not None and report.details.get("deferred"):
            # the budget reached its reserve: the pass ended early on purpose, the next one resumes
            shown = "deferred: " + report.details["deferred"]
        items = report.items if report else 0
        try:
            self.store.add_api_requests(name, telemetry.take())
            self.store.record_budgets(
                name,
                [ApiBudget(api, b.remaining, b.limit, b.reset_at) for api, b in sorted(telemetry.budgets.items())],
                report.backlog if report else None,
                expired=["rest"] if telemetry.rate_limit_expired else [],
                shard=self.shards.shard,
                total_shards=self.shards.total,
            )
            self.store.record_poll(
                name,
                ok=ok,
                started_at=started,
                duration=duration,
                bounds=POLL_BUCKETS,
                items=items,
                error=shown,
                rate_limit_remaining=telemetry.rate_limit_remaining,
                rate_limit_expired=telemetry.rate_limit_expired,
                shard=self.shards.shard,
                total_shards=self.shards.total,
            )
            if error is None or not error.startswith("store unavailable"):
                self.store.note_success()
        except STORE_ERRORS as exc:
            error = self.store.note_failure(exc)
            ok = False
        if ok:
            log.info("source=%s pass ok: %d records in %.1fs", name, items, duration)
        else:
            log.error("source=%s pass failed after %.1fs: %s", name, duration, error)
        return PassResult(name, ok, duration, items, error, report)

    def _sync_claimed(self, name: str, source: Source) -> SyncReport | None:
        """A one-scope source's pass under its scope's claim; None when the claim is not this
        process's now. A pass with problems leaves the scope unmarked as polled, so a twin
        replica, or this shard started again, polls it again rather than skip it."""
        report: SyncReport | None = None
        try:
            with self.claim(name, source.scope_of(source.config, "")) as mine:
                if mine:
                    report = source.sync(self.store)
                    if report.problems:
                        raise NotPolled(name)
        except NotPolled:
            pass
        return report

    def run_all(
        self,
        started: Callable[[str], None] = lambda name: None,
        finished: Callable[[PassResult], None] = lambda result: None,
    ) -> list[PassResult]:
        """One pass of every source in turn (``cycletime sync``), until asked to stop."""
        results = []
        for name in self.sources:
            if self.stop.is_set():
                break
            if not self.owns(name):
                continue  # another shard's
            started(name)
            results.append(self.run(name))
            finished(results[-1])
        return results
