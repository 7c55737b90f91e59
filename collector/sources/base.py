"""The one small protocol every source implements (STYLE.md: adding a source = a file + a line).

A source reads what changed since the store's watermark for each of its streams, normalises it
into the domain model and hands each batch to the store together with the watermark the batch
reaches, in one transaction (``store.commit``). A crash between batches therefore loses nothing
and repeats nothing that matters: re-reading a page is an idempotent upsert.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from collector.errors import SourceError
from collector.http import ApiTelemetry, RequestGate, RetryPolicy, TooDeep
from collector.model import Batch, Change, Deployment, Rejection

log = logging.getLogger(__name__)

T = TypeVar("T")


#: what parsing one record may raise when the record is not what the API documents (a string where
#: an object belongs, a time past year 9999, JSON nested a thousand deep): the record is rejected,
#: the rest of its page kept (docs/definitions.md "Records that cannot be trusted")
RECORD_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError, RecursionError)
#: the largest id or number a source orders by or keeps as a watermark: beyond 2**53 a JSON number is
#: not exact in every consumer, and one absurd id would become the high-water mark and hide the rest
MAX_ID = 2**53
#: most pages one walk over a paginated list reads in a pass; far above any real list
MAX_PAGES = 10_000
#: consecutive pages without a record not already seen in the walk after which it stops
MAX_IDLE_PAGES = 50


def rejection_reason(exc: BaseException) -> str:
    """The ``records_rejected_total`` reason for what a record's parsing raised."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason  # a Rejected names its own
    if isinstance(exc, RecursionError):
        return "too_deep"
    if isinstance(exc, OverflowError):
        return "out_of_range"
    return "wrong_type"


def record_label(value: Any) -> str:
    """A record id for logs and rejections, never the repr of a hostile structure."""
    if isinstance(value, TooDeep):
        return value.label
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)[:64]
    return "?"


class RecordGuard:
    """Turns one record's parse failure into its Rejection; an error that is no typed rejection
    (perhaps a bug of ours, perhaps a shape no documentation shows) is logged with its traceback
    once per kind and place, so it stays visible without flooding the log every poll."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._logged: set[tuple[str, str]] = set()

    def reject(self, batch: Batch, record_id: str, exc: BaseException, record: Any = None) -> str:
        """Count ``record`` (whose parse raised ``exc``) as rejected; the reason, which is returned,
        is ``too_deep`` for an entry that was nested too deeply to decode, whatever its parse said."""
        if isinstance(record, TooDeep):
            batch.rejections.append(Rejection(self.source, record.label, "too_deep"))
            return "too_deep"
        reason = rejection_reason(exc)
        batch.rejections.append(Rejection(self.source, record_id, reason))
        if getattr(exc, "reason", None) is None:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
            if (type(exc).__name__, where) not in self._logged:
                self._logged.add((type(exc).__name__, where))
                log.warning(
                    "source=%s record %s rejected (%s): %s: %s",
                    self.source,
                    record_id,
                    reason,
                    type(exc).__name__,
                    str(exc)[:200],
                    exc_info=exc,
                )
        return reason


class PaginationError(SourceError):
    """A paginated list that cycles or never ends."""


class Pagination:
    """Guards one walk over a paginated list against hostile or broken servers.

    A continuation token (or next-page URL) seen before in the walk is a cycle; more than
    ``max_pages`` pages, or ``max_idle`` consecutive pages without a record the walk has not
    already seen, is a list that never ends. Each raises SourceError: the pass fails visibly, and
    what was committed before stays (the watermark never passes what was read).
    """

    def __init__(self, what: str, max_pages: int | None = None, max_idle: int | None = None) -> None:
        self.what = what
        self.max_pages = MAX_PAGES if max_pages is None else max_pages
        self.max_idle = MAX_IDLE_PAGES if max_idle is None else max_idle
        self.pages = 0
        self._idle = 0
        self._tokens: set[str] = set()
        self._records: set[Any] = set()

    def follow(self, token: str) -> None:
        """About to request the page ``token`` names; raises SourceError on a cycle or past the cap."""
        if token in self._tokens:
            raise PaginationError(
                f"{self.what}: pagination cycle: the server sent a continuation it had sent "
                f"before, after {self.pages} pages"
            )
        self._tokens.add(token)
        if self.pages >= self.max_pages:
            raise PaginationError(f"{self.what}: more than {self.max_pages} pages in one pass; stopped")

    def page(self, keys: list[Any]) -> None:
        """A page was read; ``keys`` identify its records (None for a record without an identity)."""
        self.pages += 1
        # a record without an identity cannot be told apart from one seen before: it counts as new
        new = any(key is None or key not in self._records for key in keys)
        self._records.update(key for key in keys if key is not None)
        self._idle = 0 if new else self._idle + 1
        if self._idle >= self.max_idle:
            raise PaginationError(
                f"{self.what}: {self._idle} pages in a row brought nothing new; the list does not "
                f"end, stopped after {self.pages} pages"
            )


def entry_label(entry: Any, key: str = "id") -> str:
    """A list entry's id for logs and rejections: its ``key``, or the digest of an entry too deep to read."""
    if isinstance(entry, TooDeep):
        return entry.label
    return record_label(entry.get(key) if isinstance(entry, dict) else entry)


def shape_problem(record: Any, problem: str | None = None) -> str:
    """The rejection reason for a list entry that is not a usable record: ``too_deep`` when it
    was nested too deeply to decode, else ``problem`` (or ``wrong_type``)."""
    return "too_deep" if isinstance(record, TooDeep) else problem or "wrong_type"


def record_key(record: Any) -> Any:
    """What identifies a list entry within one walk: its ``id`` (or ``number``, ``sha``) when scalar."""
    if isinstance(record, TooDeep):
        return ("too_deep", record.label)
    if isinstance(record, dict):
        for name in ("id", "number", "sha", "node_id"):
            value = record.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return (name, value)
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def matches_environment(name: str, patterns: list[str]) -> bool:
    """``production_environments``: exact names (case-insensitive, as Azure DevOps and GitHub treat
    environment names) or ``/regex/`` searched as written (config validation compiles them)."""
    for pattern in patterns:
        if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
            if re.search(pattern[1:-1], name):
                return True
        elif pattern.casefold() == name.casefold():
            return True
    return False


class SourceStore(Protocol):
    """All a source may do with the store: read and move its own watermarks, commit a batch with the
    watermark it reaches (and the work it defers past it, queued in the same transaction), and read
    back what new records are compared with (a deployment's predecessors, the commits merged pull
    requests brought). :class:`collector.store.Store` is one; mypy checks it where the runner hands
    the store to :meth:`Source.sync`."""

    def watermark(self, source: str, stream: str) -> str | None: ...

    def set_watermark(self, source: str, stream: str, value: str) -> None: ...

    def commit(
        self,
        source: str,
        batch: Batch,
        *,
        stream: str | None = None,
        watermark: str | None = None,
        queue: str | None = None,
        enqueue: Iterable[str] = (),
        dequeue: Iterable[str] = (),
    ) -> None: ...

    def queued(self, source: str, queue: str) -> list[str]: ...

    def deployments(self, source: str, *, service: str | None = None) -> Iterable[Deployment]: ...

    def changes(self, source: str, *, service: str | None = None) -> Iterable[Change]: ...


@dataclass
class SourceContext:
    """What a source needs from the process around it; injectable for tests."""

    history: timedelta = timedelta(days=365)
    telemetry: ApiTelemetry = field(default_factory=ApiTelemetry)
    #: called with the number of records fetched, for the progress display
    progress: Callable[[int], None] = lambda n: None
    #: called with the units of work done and known in all (GitHub: repository streams), where
    #: the total is knowable, for the progress display's done/total and ETA
    plan: Callable[[int, int], None] = lambda done, total: None
    now: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    #: raised inside a sync when the process is shutting down, between batches
    should_stop: Callable[[], bool] = lambda: False
    #: timeouts, retries, the per-request deadline and size cap (config ``http``) of its API client
    http_policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: per organisation (API host): what bounds and pauses the requests of every source reading it;
    #: the runner hands all its sources one dict
    request_gates: dict[str, RequestGate] = field(default_factory=dict)
    #: sharded (docs/sharding.md): whether this shard owns a scope of the source (by its hash)
    owns: Callable[[str], bool] = lambda scope: True
    #: entered while a scope is polled: True when this process may poll it now (owned, and its
    #: advisory lock taken, held until the exit); False: another shard's, or another replica's now
    claim: Callable[[str], AbstractContextManager[bool]] = lambda scope: nullcontext(True)

    def history_start(self) -> datetime:
        return self.now() - self.history


@dataclass
class SyncReport:
    """What one pass did, for the landing page and the logs."""

    items: int = 0
    batches: int = 0
    #: per-part problems that did not stop the pass (e.g. one repository 404s)
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: work known to remain after the pass (``cycletime_sync_backlog``, docs/metrics.md): for
    #: GitHub, the repository streams not brought up to date; None where a source cannot tell
    backlog: int | None = None


class NotPolled(Exception):
    """Raised inside a scope's claim to leave it without marking the scope polled: its poll met a
    problem (sharded: a twin replica or the next start must not skip it)."""


class Source(ABC):
    kind: ClassVar[str]
    #: sharding (docs/sharding.md): False, the source is one scope, which the runner claims around
    #: the whole pass; True, it has many (GitHub: its repositories) and claims each during the pass,
    #: polling only those :meth:`claimed` yields
    many_scopes: ClassVar[bool] = False

    def __init__(self, config: Any, ctx: SourceContext) -> None:
        self.config = config
        self.name: str = config.name
        self.ctx = ctx

    @classmethod
    def scope_of(cls, config: Any, value: str) -> str:
        """The scope that records and series labelled ``value`` (their ``project`` or ``service``)
        belong to. A one-scope source's scope is its project, whatever the value."""
        return str(getattr(config, "project", ""))

    def claimed(
        self,
        scoped: Iterable[tuple[str, T]],
        skipped: Callable[[T], None] = lambda item: None,
        problems: Sequence[str] = (),
    ) -> Generator[T, None, None]:
        """The items whose scope (the first of each pair) this process may poll now, each yielded
        while its scope's claim is held (until the next item is asked for, or the generator closes:
        close it in a ``finally``). The others go to ``skipped``, without a request.

        An item whose poll added to ``problems`` (the pass's) does not count as polled: a twin
        replica, or this shard started again, polls it again in the same pass window instead of
        skipping it, so its pass fails too and the source's health says so (docs/sharding.md)."""
        for scope, item in scoped:
            if not self.ctx.owns(scope):
                continue  # another shard's: not polled, not counted
            try:
                with self.ctx.claim(scope) as mine:
                    if not mine:
                        skipped(item)
                        continue
                    before = len(problems)
                    yield item
                    if len(problems) > before:
                        raise NotPolled(scope)  # leaves the claim without marking the scope polled
            except NotPolled:
                pass

    @abstractmethod
    def sync(self, store: SourceStore) -> SyncReport:
        """One incremental pass over every stream; raises SourceError if the source is unusable.

        Partial problems (one repository of several unreadable) go into ``SyncReport.problems``;
        the scheduler reports the source as down when there are any, but keeps what was read.
        """
