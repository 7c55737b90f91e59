"""Azure Pipelines: deployments (YAML environments and classic releases), their commits and work items.

Two kinds of streams (definitions: docs/definitions.md):

- ``environment:<id>`` per YAML environment: its deployment records, read down to the stored
  watermark (the highest record id below which every record is finished). Records are per job:
  the jobs of one (run, stage, stage attempt) are one deployment, failed if any job failed, from
  the earliest job start to the latest job finish. No order is documented, so paging stops at the
  watermark only while ids keep decreasing;
- ``releases``: classic release deployments in ascending start order from the watermark minus the
  ``overlap`` window, so runs that finish late are read again. A finished deployment without
  ``completedOn`` finished at ``lastModifiedOn``; ``notDeployed`` because a phase failed is a
  failure. A server without Release Management (404) makes the stream unavailable, not the source;
  it is asked again daily.

For each new successful production deployment (the only ones a figure opens) the pipeline run
(build) it deployed gives what it contains: the commits between the build of the previous
successful deployment of the same service to the same environment and this build
(``build/changes?fromBuildId=&toBuildId=``, split at the builds between them while a page comes
back full: it has no continuation token; the build's own changes for the first deployment) and the
work items linked to them (``build/workitems``). Both are cached per (previous build, build).
A record rejected as incomplete holds its stream's watermark, so it is read again.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import quote

from pydantic import Field

from collector.config_types import Duration, EnvironmentPatterns
from collector.errors import Rejected
from collector.model import Batch, Change, Deployment, Link, Rejection, ado_ref, build_ref, commit_ref
from collector.sources.azure_common import (
    AzureDevOps,
    AzureSourceConfig,
    Interrupted,
    NotFound,
    ReadPool,
    azure_time,
    count_problem,
    format_time,
    is_count,
    list_value,
    release_url,
    safe_time,
)
from collector.sources.base import (
    RECORD_ERRORS,
    RecordGuard,
    Source,
    SourceContext,
    SourceStore,
    SyncReport,
    entry_label,
    shape_problem,
)
from collector.sources.base import matches_environment as is_production
from collector.sources.registry import register

log = logging.getLogger(__name__)

RELEASE_STREAM = "releases"
#: when the release deployments stream last answered 404 (empty: it answers)
RELEASES_UNAVAILABLE = "releases:unavailable_since"
#: how often an unavailable stream is asked again
REPROBE_EVERY = timedelta(days=1)
#: records per environmentdeploymentrecords page (``top``, no ``$``): the spec gives no bound, the
#: service pages on with a continuation token whatever it caps a page at
RECORDS_TOP = 1000
#: release deployments per page
RELEASES_TOP = 100
#: commits / work items per build request
BUILD_TOP = 1000
#: build ids per ``builds?buildIds=`` request (keeps the URL short)
BUILD_IDS = 100
#: environments per page
ENVIRONMENTS_TOP = 1000
#: records committed per transaction while catching up an environment
COMMIT_EVERY = 100
#: reads of what a deployment contains (a few requests each) per transaction once a request of the
#: pass was retried: at a high fault rate a pass that fails still commits what it read, so every
#: pass moves forward (see ``_reads_due``)
READS_PER_COMMIT = 5
#: contents reads started ahead of the deployment being stored, per request in flight
READ_AHEAD = 4

SUCCESS = {
    "succeeded": "success",
    "succeededwithissues": "success",
    "partiallysucceeded": "success",
    "failed": "failure",
}
#: final results that are not deployments (docs/definitions.md): skipped, counted nowhere
NOT_DEPLOYED = {"canceled", "cancelled", "skipped", "abandoned", "notdeployed", "rejected"}
#: rejections that may be completed by a later read: the watermark never moves past them
INCOMPLETE = {"missing_field"}
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AzurePipelinesConfig(AzureSourceConfig):
    kind: Literal["azure_pipelines"]
    production_environments: EnvironmentPatterns = Field(
        default=["production"], min_length=1, description="Environment names, or /regex/."
    )
    deployments_from: list[Literal["environments", "releases"]] = Field(
        default=["environments", "releases"],
        min_length=1,
        description="YAML pipeline environments, classic release deployments, or both.",
    )
    #: late-finishing runs: re-read this far behind the watermark
    overlap: Duration = Field(default=timedelta(hours=6), description="Re-read window behind the watermark.")


@dataclass(frozen=True, slots=True)
class Run:
    """A deployment record in domain terms, before its contents are read."""

    native_id: str
    order: int  # record id / deployment id: processing order within a stream
    service: str
    environment: str
    status: str | None  # success | failure | None (not a deployment) ; in-progress runs never get here
    started_at: datetime | None
    finished_at: datetime
    build_id: int | None
    build_project: str | None = None
    sha: str | None = None


@dataclass
class Contents:
    commits: list[tuple[str, datetime]] = field(default_factory=list)  # (sha, commit time)
    work_items: list[int] = field(default_factory=list)
    #: what could not be read completely (a full page without a continuation token)
    truncated: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Job:
    """One job's environment deployment record; the jobs of a stage attempt make one deployment."""

    record_id: int
    deployment_id: str
    service: str
    status: str | None  # success | failure | None (canceled, skipped, abandoned)
    started_at: datetime | None
    finished_at: datetime | None
    build_id: int


class _InProgress(Exception):
    """The record is not finished yet: read it again next time."""


#: (project path, previous build, build): the contents between two builds
ContentsKey = tuple[str, int | None, int]
#: the raw answers of one contents read: build changes, work item refs, what was truncated
RawContents = tuple[list[Any], list[Any], list[str]]
T = TypeVar("T")
S = TypeVar("S")


@dataclass
class _Step:
    """A deployment begun in order (which success before it bounds its contents is settled) whose
    contents may still be on their way."""

    run: Run
    sha: str | None
    production: bool
    #: the contents it shows (None: it contains only its build)
    key: ContentsKey | None = None


@dataclass
class _Planned:
    """One classic release deployment record, read ahead of its turn; what happened is applied at
    its turn, in order, as a serial pass would."""

    raw: Any
    #: ``release`` reads it made (they count towards READS_PER_COMMIT at its turn)
    release_reads: int = 0
    run: Run | None = None
    step: _Step | None = None
    in_progress: bool = False
    #: why the record is rejected
    error: BaseException | None = None
    #: a read failed: raised at its turn (and nothing after it is planned)
    failure: BaseException | None = None


@register
class AzurePipelinesSource(Source):
    kind: ClassVar[str] = "azure_pipelines"
    config_model = AzurePipelinesConfig
    config: AzurePipelinesConfig

    def __init__(self, config: AzurePipelinesConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        concurrency = config.max_concurrency
        self.api = AzureDevOps(
            self.name, config.organization_url, config.project, config.token, ctx, max_concurrency=concurrency
        )
        self.rm = AzureDevOps(
            self.name,
            config.organization_url,
            config.project,
            config.token,
            ctx,
            base_url=release_url(config.organization_url),
            max_concurrency=concurrency,
        )
        #: independent reads (contents, releases) run here during a pass; between passes, inline
        self._pool = ReadPool(1, self.name)
        #: reads started and not yet taken, by what they read
        self._reading: dict[ContentsKey, Future[RawContents]] = {}
        self._release_reading: dict[int, Future[Any]] = {}
        self._plan_failed = False
        self._contents: dict[tuple[str, int | None, int], Contents] = {}
        self._release_builds: dict[int, tuple[int | None, str | None, str | None]] = {}
        #: build id → the commit it built (``sourceVersion``), read in bulk with ``buildIds``
        self._build_shas: dict[int, str | None] = {}
        #: (project, previous build, build) → the pipeline's builds between them
        self._inner_builds: dict[tuple[str, int, int], list[int]] = {}
        self._logged: set[tuple[str, str]] = set()
        self.guard = RecordGuard(self.name)
        #: contents and release artifacts read from the API (not the caches): when to commit
        self._reads = 0
        #: the source's retried requests when the pass began (``_reads_due``)
        self._retries_before = 0

    # -- the pass ----------------------------------------------------------------------------------
    def sync(self, store: SourceStore) -> SyncReport:
        report = SyncReport()
        known = {d.native_id: d for d in store.deployments(self.name)}
        self._successes: dict[tuple[str, str], list[tuple[float, str, int]]] = {}
        for d in known.values():
            build = _build_of(d.contains)
            if d.status == "success" and build is not None:
                self._remember(d.service, d.environment, d.finished_at, d.native_id, build)
        self._known = known
        self._retries_before = self.ctx.telemetry.retries
        self._pool = ReadPool(self.config.max_concurrency, self.name, self.ctx.should_stop)
        try:
            if "environments" in self.config.deployments_from:
                self._sync_environments(store, report)
            if "releases" in self.config.deployments_from and not self.ctx.should_stop():
                self._sync_releases(store, report)
        except Interrupted:
            if not self.ctx.should_stop():
                raise
            log.info("source=%s stopped mid-batch; the next pass reads it again", self.name)
        finally:
            self._pool.close()  # reads started ahead and not needed any more: cancelled or awaited
            self._pool = ReadPool(1, self.name)
            self._reading.clear()
            self._release_reading.clear()
        return report

    # -- YAML environments -----------------------------------------------------------------------------
    def _sync_environments(self, store: SourceStore, report: SyncReport) -> None:
        path = self.api.project_path("distributedtask/environments")
        try:
            environments = [
                e for page in self.api.pages(path, "environments", {"$top": ENVIRONMENTS_TOP}) for e in page
            ]
        except NotFound as exc:
            raise self.api.not_found(exc) from None
        bad = Batch()
        for env in environments:
            if not isinstance(env, dict) or not is_count(env.get("id")) or not isinstance(env.get("name"), str):
                self._reject(bad, f"environment:{_short(env)}", shape_problem(env, count_problem(_get(env, "id"))))
        if bad.rejections:
            self._commit(store, bad, None, None, report)
        valid = [
            env
            for env in environments
            if isinstance(env, dict) and is_count(env.get("id")) and isinstance(env.get("name"), str)
        ]
        records = {}
        for i, env in enumerate(valid):
            if self.ctx.should_stop():
                return
            for j in (i, i + 1):  # the next environment's records arrive while this one's contents are read
                if j < len(valid) and j not in records:
                    records[j] = self._pool.submit(self._read_records, valid[j]["id"], *self._position(store, valid[j]))
            self._sync_environment(store, report, env["id"], env["name"], records.pop(i))

    def _position(self, store: SourceStore, env: dict[str, Any]) -> tuple[int, bool]:
        """An environment's watermark, and whether it is read for the first time."""
        mark = store.watermark(self.name, f"environment:{env['id']}")
        return (int(mark) if mark and mark.isdigit() else 0), not mark

    def _sync_environment(
        self,
        store: SourceStore,
        report: SyncReport,
        env_id: int,
        env_name: str,
        records: Future[tuple[dict[int, Any], list[Any], int]],
    ) -> None:
        stream = f"environment:{env_id}"
        mark = store.watermark(self.name, stream)
        watermark = int(mark) if mark and mark.isdigit() else 0
        fresh, bad, seen = records.result()
        self.ctx.progress(seen)
        jobs: dict[int, Job] = {}
        batch = Batch()
        for record in bad:
            self._reject(
                batch, f"env:{env_id}:{_short(record)}", shape_problem(record, count_problem(_get(record, "id")))
            )
        held: set[int] = set()  # record ids the watermark must stay below
        for rid in sorted(fresh):
            try:
                jobs[rid] = self._environment_job(env_id, env_name, fresh[rid])
            except _InProgress:
                held.add(rid)
            except RECORD_ERRORS as exc:
                reason = self.guard.reject(batch, f"env:{env_id}:{rid}", exc)
                if reason in INCOMPLETE:
                    held.add(rid)  # may be completed later: read it again, never skip past it
        # one deployment per (run, stage, stage attempt): its jobs are read together, and a stage
        # attempt with a job still running waits until every job of it has finished
        groups: dict[str, list[int]] = {}
        for rid, job in jobs.items():
            groups.setdefault(job.deployment_id, []).append(rid)
        waiting = {key for rid in held if (key := _deployment_key(env_id, fresh[rid])) is not None}
        runs = [
            self._environment_run(env_name, [jobs[rid] for rid in sorted(rids)])
            for key, rids in sorted(groups.items(), key=lambda kv: min(kv[1]))
            if key not in waiting
        ]
        for key, rids in groups.items():
            if key in waiting:
                held.update(rids)
        # the highest id below which every record is read: below the first one held back
        safe = max([rid for rid in fresh if not held or rid < min(held)], default=watermark)
        self._read_build_shas(
            sorted(
                {
                    run.build_id
                    for run in runs
                    if run.status is not None and run.build_id is not None and run.native_id not in self._known
                }
            )
        )
        pending, committed_reads = 0, self._reads
        steps = self._read_ahead(runs, lambda run: self._begin(run) if run.status is not None else None)
        for i, (run, step) in enumerate(steps):
            if run.status is not None:
                self._finish(step, batch)
                pending += 1
            if (pending >= COMMIT_EVERY or self._reads_due(committed_reads)) and i + 1 < len(runs):
                committed_reads = self._reads
                # every record below the next stage attempt's first job is in this batch
                reached = max(watermark, min(safe, runs[i + 1].order - 1))
                self._commit(store, batch, stream, str(reached), report)
                batch, pending = Batch(), 0
        if batch.deployments or batch.rejections or safe != watermark:
            self._commit(store, batch, stream, str(safe), report)

    def _read_records(self, env_id: int, watermark: int, first_sync: bool) -> tuple[dict[int, Any], list[Any], int]:
        """The environment's records above the watermark, those without an id, and how many were read.

        Pages usually come newest first, but nothing documents that order: reading stops at the
        watermark (or, on the first sync, at the history horizon) only while every id so far was
        lower than the one before; once the order is broken, every page is read.
        """
        horizon = self.ctx.history_start()
        path = self.api.project_path(f"distributedtask/environments/{env_id}/environmentdeploymentrecords")
        fresh: dict[int, Any] = {}
        bad: list[Any] = []
        previous: int | None = None
        ordered = True
        seen = 0
        for page in self.api.pages(path, "environmentdeploymentrecords", {"top": RECORDS_TOP}):
            seen += len(page)
            reached = False
            for record in page:
                rid = record.get("id") if isinstance(record, dict) else None
                if not is_count(rid):
                    bad.append(record)
                    continue
                if previous is not None and rid >= previous:
                    ordered = False
                previous = rid
                if rid <= watermark:
                    reached = True
                    continue
                when = safe_time(record.get("finishTime")) or safe_time(record.get("queueTime"))
                if first_sync and when is not None and when < horizon:
                    reached = True  # older than the history we keep (first sync only)
                    continue
                fresh[rid] = record
            if reached and ordered:
                break
        return fresh, bad, seen

    def _environment_job(self, env_id: int, env_name: str, record: dict[str, Any]) -> Job:
        """One job's record; raises _InProgress while it runs, Rejected when it cannot be read."""
        result = record.get("result")
        if result is None or result == "":
            raise _InProgress()
        if not isinstance(result, str):
            raise Rejected("wrong_type", "result")
        outcome = result.lower()
        if outcome not in SUCCESS and outcome not in NOT_DEPLOYED:
            raise Rejected("unknown_state", f"result {result!r}")
        definition, owner = record.get("definition"), record.get("owner")
        if not isinstance(definition, dict) or not isinstance(owner, dict):
            raise Rejected("missing_field", "definition or owner")
        service = definition.get("name")
        build_id = owner.get("id")
        if not isinstance(service, str) or not service or not is_count(build_id):
            raise Rejected("wrong_type", "definition.name or owner.id")
        if len(service) > 255:
            raise Rejected("too_large", "definition.name")
        if outcome in NOT_DEPLOYED:
            started, finished = None, None
        else:
            started, finished = _times(record, "startTime", "finishTime")
        key = _deployment_key(env_id, record) or f"env:{env_id}:{record['id']}"
        return Job(record["id"], key, service, SUCCESS.get(outcome), started, finished, build_id)

    def _environment_run(self, env_name: str, jobs: list[Job]) -> Run:
        """The jobs of one stage attempt as one deployment: failed if any job failed, from the
        earliest start to the latest finish. Jobs read by an earlier pass are in the stored one."""
        first = jobs[0]
        done = [j for j in jobs if j.status is not None]
        statuses = {j.status for j in done}
        starts = [j.started_at for j in done if j.started_at is not None]
        finishes = [j.finished_at for j in done if j.finished_at is not None]
        known = self._known.get(first.deployment_id)
        if known is not None:
            statuses.add(known.status)
            starts += [known.started_at] if known.started_at is not None else []
            finishes.append(known.finished_at)
        status = "failure" if "failure" in statuses else "success" if "success" in statuses else None
        if status is None or not finishes:
            return Run(
                first.deployment_id,
                first.record_id,
                first.service,
                env_name,
                None,
                None,
                first.finished_at or _EPOCH,
                first.build_id,
            )
        return Run(
            first.deployment_id,
            first.record_id,
            first.service,
            env_name,
            status,
            min(starts) if starts else None,
            max(finishes),
            first.build_id,
        )

    # -- classic releases --------------------------------------------------------------------------------
    def _sync_releases(self, store: SourceStore, report: SyncReport) -> None:
        mark = store.watermark(self.name, RELEASE_STREAM)
        watermark = safe_time(mark) if mark else None
        since = watermark - self.config.overlap if watermark else self.ctx.history_start()
        path = self.rm.project_path("release/deployments")
        params = {"minStartedTime": format_time(since), "queryOrder": "ascending", "$top": RELEASES_TOP}
        safe, blocked = watermark, False
        down = safe_time(store.watermark(self.name, RELEASES_UNAVAILABLE))
        now = self.ctx.now()
        if down is not None and now - down < REPROBE_EVERY:
            report.details.setdefault("unavailable", []).append(f"{RELEASE_STREAM}: not on this server (404)")
            return
        pages = self.rm.pages(path, "release_deployments", params)
        try:
            first = next(pages)
        except NotFound as exc:
            # classic release management is not on every server (Azure DevOps Server without
            # Release Management answers 404): the stream is unavailable, not the source; asked
            # again once a day
            if down is None:
                log.warning("source=%s classic release deployments unavailable, asked again daily: %s", self.name, exc)
            store.set_watermark(self.name, RELEASES_UNAVAILABLE, format_time(now))
            report.details.setdefault("unavailable", []).append(f"{RELEASE_STREAM}: not on this server (404)")
            return
        if down is not None:
            log.info("source=%s classic release deployments available again", self.name)
            store.set_watermark(self.name, RELEASES_UNAVAILABLE, "")
        committed_reads = self._reads
        for page in itertools.chain([first], pages):
            self.ctx.progress(len(page))
            batch = Batch()
            self._prefetch_releases(page)
            self._plan_failed = False
            for raw, planned in self._read_ahead(page, self._plan_release):
                if self._reads_due(committed_reads) and safe is not None:
                    # what this page brought so far, up to the start time reached
                    self._commit(store, batch, RELEASE_STREAM, format_time(safe), report)
                    batch, mark, committed_reads = Batch(), format_time(safe), self._reads
                record_id = f"release:{_short(raw)}"
                self._reads += planned.release_reads
                if planned.failure is not None:
                    raise planned.failure
                if planned.in_progress:
                    blocked = True  # the watermark stays below it; the overlap re-reads it too
                    continue
                if planned.error is not None:
                    reason = self.guard.reject(batch, record_id, planned.error, record=raw)
                    if reason in INCOMPLETE:
                        blocked = True  # it may be completed later: read it again
                self._finish(planned.step, batch)
                started = safe_time(raw.get("startedOn")) if isinstance(raw, dict) else None
                if not blocked and started is not None and (safe is None or started > safe):
                    safe = started
            mark_value = format_time(safe) if safe is not None else None
            if batch.deployments or batch.rejections or (mark_value and mark_value != mark):
                self._commit(store, batch, RELEASE_STREAM, mark_value, report)
                mark = mark_value
            if self.ctx.should_stop():
                return

    def _plan_release(self, raw: Any) -> _Planned:
        """Parse a record and begin its deployment ahead of its turn, keeping what happened."""
        planned = _Planned(raw)
        if self._plan_failed:
            return planned  # never reached: the failure before it ends the page
        try:
            planned.run = self._release_run(raw, planned)
        except _InProgress:
            planned.in_progress = True
        except RECORD_ERRORS as exc:
            planned.error = exc
        except Exception as exc:  # a read that failed: raised at this record's turn
            planned.failure = exc
            self._plan_failed = True
        else:
            if planned.run is not None:
                planned.step = self._begin(planned.run)
        return planned

    def _prefetch_releases(self, page: list[Any]) -> None:
        """Start reading the releases the page's records will need (each once)."""
        for raw in page:
            try:
                _, release_id = self._release_record(raw)
            except Exception:  # the record's turn reports it
                continue
            if (
                release_id is not None
                and release_id not in self._release_builds
                and release_id not in self._release_reading
            ):
                self._release_reading[release_id] = self._pool.submit(self._get_release, release_id)

    def _get_release(self, release_id: int) -> Any:
        body, _ = self.rm.get(self.rm.project_path(f"release/releases/{release_id}"), "release")
        return body

    def _release_run(self, raw: Any, planned: _Planned) -> Run | None:
        run, release_id = self._release_record(raw)
        if run is None or release_id is None:
            return run
        build_id, project, sha = self._release_build(release_id, planned)
        return dataclasses.replace(run, build_id=build_id, build_project=project, sha=sha)

    def _release_record(self, raw: Any) -> tuple[Run | None, int | None]:
        """The record as a Run without its build, and the release whose build it needs (None: the
        record is one already stored unchanged)."""
        if not isinstance(raw, dict) or not is_count(raw.get("id")):
            raise Rejected(count_problem(_get(raw, "id")) or "wrong_type", "deployment")
        status_text = raw.get("deploymentStatus")
        if not isinstance(status_text, str) or not status_text:
            raise Rejected("missing_field", "deploymentStatus")
        status = release_status(status_text, raw.get("operationStatus"))
        if status is None:
            if status_text.lower() in ("inprogress", "undefined", "queued", "pending"):
                raise _InProgress()
            if status_text.lower() in NOT_DEPLOYED:
                return None, None
            raise Rejected("unknown_state", f"deploymentStatus {status_text!r}")
        definition, environment, release = (
            raw.get("releaseDefinition"),
            raw.get("releaseEnvironment"),
            raw.get("release"),
        )
        if not (isinstance(definition, dict) and isinstance(environment, dict) and isinstance(release, dict)):
            raise Rejected("missing_field", "releaseDefinition, releaseEnvironment or release")
        service, env_name, release_id = definition.get("name"), environment.get("name"), release.get("id")
        if not isinstance(service, str) or not isinstance(env_name, str) or not is_count(release_id):
            raise Rejected("wrong_type", "names or release id")
        if len(service) > 255 or len(env_name) > 255:
            raise Rejected("too_large", "name")
        # a finished deployment may carry no completedOn (the official list example has none):
        # it finished when it was last modified
        finish_key = "completedOn" if safe_time(raw.get("completedOn")) is not None else "lastModifiedOn"
        started, finished = _times(raw, "startedOn", finish_key)
        native_id = f"release:{raw['id']}"
        known = self._known.get(native_id)
        run = Run(native_id, raw["id"], service, env_name, status, started, finished, None)
        if known is not None and (known.status, known.started_at, known.finished_at) == (status, started, finished):
            return run, None  # not re-read
        return run, release_id

    def _release_build(self, release_id: int, planned: _Planned) -> tuple[int | None, str | None, str | None]:
        """The build a release deploys: its primary Build artifact (``release.artifacts`` is empty in lists)."""
        if release_id not in self._release_builds:
            planned.release_reads += 1
            future = self._release_reading.pop(release_id, None) or self._pool.submit(self._get_release, release_id)
            body = future.result()
            artifacts = (
                [
                    a
                    for a in (body.get("artifacts") or [])
                    if isinstance(a, dict) and str(a.get("type", "")).lower() == "build"
                ]
                if isinstance(body, dict)
                else []
            )
            artifacts.sort(key=lambda a: not a.get("isPrimary"))
            found: tuple[int | None, str | None, str | None] = (None, None, None)
            for artifact in artifacts:
                ref = artifact.get("definitionReference") or {}
                version = (ref.get("version") or {}).get("id")
                if (isinstance(version, str) and version.isdigit()) or is_count(version):
                    project = (ref.get("project") or {}).get("id") or (ref.get("project") or {}).get("name")
                    sha = (ref.get("sourceVersion") or {}).get("id")
                    found = (
                        int(version),
                        project if isinstance(project, str) else None,
                        sha.lower() if isinstance(sha, str) and _SHA.fullmatch(sha) else None,
                    )
                    break
            self._release_builds[release_id] = found
        return self._release_builds[release_id]

    def _read_build_shas(self, build_ids: list[int]) -> None:
        """The commit each new run built: one ``builds?buildIds=`` request per 100 runs, not one per run."""
        wanted = [b for b in build_ids if b not in self._build_shas]
        path = self.api.project_path("build/builds")
        for i in range(0, len(wanted), BUILD_IDS):
            chunk = wanted[i : i + BUILD_IDS]
            try:
                body, _ = self.api.get(path, "builds", {"buildIds": ",".join(map(str, chunk))})
            except NotFound:
                body = None
            self._build_shas.update(dict.fromkeys(chunk))
            for build in list_value(body, "builds") if body is not None else []:
                if isinstance(build, dict) and is_count(build.get("id")) and build["id"] in self._build_shas:
                    version = build.get("sourceVersion")
                    if isinstance(version, str) and _SHA.fullmatch(version):
                        self._build_shas[build["id"]] = version.lower()

    # -- what a deployment contains --------------------------------------------------------------------------
    def _read_ahead(self, items: Iterable[T], begin: Callable[[T], S]) -> Iterator[tuple[T, S]]:
        """Each item with what ``begin`` made of it, begun in order and up to ``READ_AHEAD`` contents
        reads per request in flight ahead of the item the caller is storing."""
        window = READ_AHEAD * self.config.max_concurrency
        begun: deque[tuple[T, S]] = deque()
        for item in items:
            begun.append((item, begin(item)))
            while begun and len(self._reading) >= window:
                yield begun.popleft()
        while begun:
            yield begun.popleft()

    def _deploy(self, run: Run, batch: Batch) -> None:
        """Add the run as a Deployment with its commits, and the commits and work item links it brought."""
        self._finish(self._begin(run), batch)

    def _begin(self, run: Run) -> _Step | None:
        """What must happen in deployment order: is it new, and which success before it bounds
        its contents (whose read starts now); None when there is nothing to store."""
        known = self._known.get(run.native_id)
        if known is not None and (known.status, known.started_at, known.finished_at) == (
            run.status,
            run.started_at,
            run.finished_at,
        ):
            return None  # re-read (overlap, held-back watermark): nothing new, and no requests spent on it
        if run.status is None:
            return None
        if known is not None and known.status == "success":
            self._forget(known)  # a later job of its stage attempt moved its finish
        sha = run.sha
        if sha is None and run.build_id is not None:
            sha = self._build_shas.get(run.build_id)
        step = _Step(run, sha, is_production(run.environment, self.config.production_environments))
        if run.build_id is not None and run.status == "success":
            # contents are read only where a figure uses them (successful production deployments);
            # the others are counted, not opened
            if step.production:
                step.key = self._start_contents(self._previous_build(run), run.build_id, run.build_project)
            self._remember(run.service, run.environment, run.finished_at, run.native_id, run.build_id)
        self._known[run.native_id] = self._deployment(step, ())  # its contents follow in _finish
        return step

    def _finish(self, step: _Step | None, batch: Batch) -> None:
        """Add a begun deployment, its commits and the work item links it brought, once read."""
        if step is None:
            return
        run = step.run
        contains: list[str] = []
        if step.key is not None:
            contents = self._contents_of(step.key)
            for commit, when in contents.commits:
                # a commit delivered by a pipeline is its own merge: merged_at = first_commit_at
                batch.changes.append(
                    Change(self.name, commit, commit_ref(commit), run.service, "commit", when, when, (commit,))
                )
            for part in contents.truncated:
                self._reject(batch, f"build:{run.build_id}: {part}", "truncated")
            contains = [commit_ref(commit) for commit, _ in contents.commits]
            batch.links.extend(Link(self.name, ado_ref(w), build_ref(step.key[2])) for w in contents.work_items)
        if run.build_id is not None:
            contains.append(build_ref(run.build_id))
        deployment = self._deployment(step, tuple(contains))
        batch.deployments.append(deployment)
        self._known[run.native_id] = deployment

    def _deployment(self, step: _Step, contains: tuple[str, ...]) -> Deployment:
        run = step.run
        return Deployment(
            self.name,
            run.native_id,
            run.service,
            run.environment,
            step.production,
            run.status or "",
            run.started_at,
            run.finished_at,
            step.sha,
            contains,
        )

    def _remember(self, service: str, env: str, finished_at: datetime, native_id: str, build: int) -> None:
        entries = self._successes.setdefault((service, env.casefold()), [])
        entry = (finished_at.timestamp(), native_id, build)
        # the list is sorted: a binary search finds the entry (a linear ``in`` made a first sync
        # of thousands of deployments quadratic)
        i = bisect.bisect_left(entries, entry)
        if i == len(entries) or entries[i] != entry:
            entries.insert(i, entry)

    def _forget(self, deployment: Deployment) -> None:
        entries = self._successes.get((deployment.service, deployment.environment.casefold()), [])
        for entry in [e for e in entries if e[1] == deployment.native_id]:
            entries.remove(entry)

    def _previous_build(self, run: Run) -> int | None:
        """Build of the latest successful deployment of the same service to the same environment before this one."""
        entries = self._successes.get((run.service, run.environment.casefold()), [])
        i = bisect.bisect_left(entries, (run.finished_at.timestamp(), run.native_id, -1))
        return entries[i - 1][2] if i > 0 else None

    def _start_contents(self, previous: int | None, build: int, project: str | None) -> ContentsKey:
        """Start reading what a deployment of ``build`` brought since ``previous`` (once per pair)."""
        project_path = quote(project, safe="") if project else quote(self.config.project, safe="")
        key = (project_path, previous, build)
        # a redeployment of the same run brings nothing new
        if previous != build and key not in self._contents and key not in self._reading:
            self._reading[key] = self._pool.submit(self._read_contents, project_path, previous, build)
        return key

    def _contents_of(self, key: ContentsKey) -> Contents:
        """The contents ``_start_contents`` began reading, normalised here in the calling thread."""
        if key in self._contents:
            return self._contents[key]
        _, previous, build = key
        contents = Contents()
        future = self._reading.pop(key, None)
        if future is not None:
            self._reads += 1
            try:
                changes, items, contents.truncated = future.result()
            except NotFound:
                # retention deleted the build (or the previous one): the deployment keeps its build ref only
                self._log_once(
                    f"build:{build}", f"changes since build {previous} are gone (404); contains only the build"
                )
            else:
                commits = dict(self._commits(changes))  # a sha read twice (both halves of a split) counts once
                contents.commits = list(commits.items())
                contents.work_items = sorted(
                    {int(w["id"]) for w in items if isinstance(w, dict) and str(w.get("id", "")).isdigit()}
                )
        # cached only once read: a read that failed (outage) must be retried by the next pass,
        # not remembered as "nothing shipped"
        self._contents[key] = contents
        return contents

    def _read_contents(self, project_path: str, previous: int | None, build: int) -> RawContents:
        """The answers about a build's contents (on a pool thread: requests only, no state)."""
        truncated: list[str] = []
        if previous is None:
            changes = [
                c
                for page in self.api.pages(
                    f"{project_path}/_apis/build/builds/{build}/changes", "build_changes", {"$top": BUILD_TOP}
                )
                for c in page
            ]
            body, _ = self.api.get(
                f"{project_path}/_apis/build/builds/{build}/workitems", "build_workitems", {"$top": BUILD_TOP}
            )
            items = list_value(body, "build_workitems")
            if len(items) >= BUILD_TOP:  # no continuation token on this one: a full page may hide more
                truncated.append(f"workitems of build {build}")
        else:
            changes = self._read_between(project_path, "changes", previous, build, None, truncated)
            items = self._read_between(project_path, "workitems", previous, build, None, truncated)
        return changes, items, truncated

    def _read_between(
        self, project_path: str, resource: str, previous: int, build: int, inner: list[int] | None, truncated: list[str]
    ) -> list[Any]:
        """``build/changes`` or ``build/workitems`` between two builds, complete.

        These take ``$top`` and return no continuation token: a full page may hide the rest. Then
        the range is split at the middle one of the pipeline's builds between the two, until every
        part fits in a page; a part between two consecutive builds that still fills a page is
        read as far as it goes and reported as truncated.
        """
        endpoint = f"build_{resource}"
        body, _ = self.api.get(
            f"{project_path}/_apis/build/{resource}",
            endpoint,
            {"fromBuildId": previous, "toBuildId": build, "$top": BUILD_TOP},
        )
        value = list_value(body, endpoint)
        if len(value) < BUILD_TOP:
            return value
        if inner is None:
            inner = self._builds_between(project_path, previous, build)
        if not inner:
            truncated.append(f"{resource} after build {previous} up to build {build}")
            return value
        middle = len(inner) // 2
        split = inner[middle]
        return self._read_between(
            project_path, resource, previous, split, inner[:middle], truncated
        ) + self._read_between(project_path, resource, split, build, inner[middle + 1 :], truncated)

    def _builds_between(self, project_path: str, previous: int, build: int) -> list[int]:
        """Ids of the builds of the same pipeline queued between two builds (both excluded)."""
        key = (project_path, previous, build)
        if key in self._inner_builds:
            return self._inner_builds[key]
        path = f"{project_path}/_apis/build/builds"
        found: list[int] = []
        try:
            body, _ = self.api.get(path, "builds", {"buildIds": f"{previous},{build}"})
            ends = {b["id"]: b for b in list_value(body, "builds") if isinstance(b, dict) and is_count(b.get("id"))}
            definition = ((ends.get(build) or {}).get("definition") or {}).get("id")
            low, high = (
                safe_time((ends.get(previous) or {}).get("queueTime")),
                safe_time((ends.get(build) or {}).get("queueTime")),
            )
            if is_count(definition) and low is not None and high is not None:
                params = {
                    "definitions": definition,
                    "queryOrder": "queueTimeAscending",
                    "minTime": format_time(low),
                    "maxTime": format_time(high),
                    "$top": BUILD_TOP,
                }
                found = sorted(
                    {
                        b["id"]
                        for page in self.api.pages(path, "builds", params)
                        for b in page
                        if isinstance(b, dict) and is_count(b.get("id")) and previous < b["id"] < build
                    }
                )
        except NotFound:
            found = []
        self._inner_builds[key] = found
        return found

    def _commits(self, changes: list[Any]) -> Iterator[tuple[str, datetime]]:
        """Build changes → commit Changes; TFVC changesets and malformed entries are skipped."""
        for change in changes:
            if not isinstance(change, dict):
                continue
            sha = change.get("id")
            if not isinstance(sha, str) or not _SHA.fullmatch(sha):
                continue
            when = safe_time(change.get("timestamp"))
            if when is None:
                self._log_once(sha, "commit without a valid timestamp; its lead time is unknown")
                continue
            yield sha.lower(), when

    # -- helpers ---------------------------------------------------------------------------------------------
    def _reads_due(self, committed_reads: int) -> bool:
        """Whether to commit what was read so far: after ``READS_PER_COMMIT`` contents reads, once a
        request of this pass has been retried. While every request succeeds at its first attempt
        the batches run to ``COMMIT_EVERY`` deployments (or a page of releases): a transaction
        every 5 reads was a fifth of a first sync's CPU (0.4 of 1.8 s at 10,000 work items)."""
        return self._reads - committed_reads >= READS_PER_COMMIT and self.ctx.telemetry.retries > self._retries_before

    def _commit(
        self, store: SourceStore, batch: Batch, stream: str | None, watermark: str | None, report: SyncReport
    ) -> None:
        store.commit(self.name, batch, stream=stream, watermark=watermark)
        report.batches += 1
        report.items += len(batch)

    def _reject(self, batch: Batch, record_id: str, reason: str) -> None:
        batch.rejections.append(Rejection(self.name, record_id, reason))
        self._log_once(record_id, f"rejected: {reason}")

    def _log_once(self, record_id: str, message: str) -> None:
        if (record_id, message) not in self._logged:
            self._logged.add((record_id, message))
            log.warning("source=%s record %s %s", self.name, record_id, message)


def _times(record: dict[str, Any], start_key: str, finish_key: str) -> tuple[datetime | None, datetime]:
    try:
        started = azure_time(record.get(start_key))
        finished = azure_time(record.get(finish_key))
    except ValueError:
        raise Rejected("bad_timestamp", f"{start_key}/{finish_key}") from None
    if finished is None:
        raise Rejected("missing_field", finish_key)
    if started is not None and finished < started:
        raise Rejected("end_before_start", f"{finish_key} before {start_key}")
    return started, finished


def _build_of(contains: tuple[str, ...]) -> int | None:
    for ref in contains:
        if ref.startswith("build:") and ref[6:].isdigit():
            return int(ref[6:])
    return None


def _short(value: Any) -> str:
    """A record's id for logs and rejections (never the repr of a hostile structure)."""
    return entry_label(value)


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def release_status(deployment_status: str, operation_status: Any) -> str | None:
    """A classic release deployment's outcome: ``succeeded``/``partiallySucceeded`` = success;
    ``failed``, or ``notDeployed`` whose phase failed (``operationStatus: phaseFailed``) = failure;
    anything else is not a deployment (None)."""
    status = deployment_status.lower()
    if status == "notdeployed":
        return "failure" if str(operation_status or "").lower() == "phasefailed" else None
    return SUCCESS.get(status)


def _deployment_key(env_id: int, record: dict[str, Any]) -> str | None:
    """The deployment a job's record belongs to: its run, stage and stage attempt (None when the
    record does not say, as on older servers: then each record is its own deployment)."""
    owner, stage, attempt = record.get("owner"), record.get("stageName"), record.get("stageAttempt")
    if isinstance(owner, dict) and is_count(owner.get("id")) and isinstance(stage, str) and stage and is_count(attempt):
        return f"env:{env_id}:{owner['id']}:{stage[:100]}:{attempt}"
    return None
