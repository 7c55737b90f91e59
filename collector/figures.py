"""The figures the exporters publish: load the store, compute, keep the result until it is stale.

This is the one place that decides *when* to compute (docs/definitions.md has *what*): after new
data reaches the store (its ``data_version`` moved), or when the rolling windows need to slide on.
What was loaded is kept (work items, changes, deployments and links as columns), so after a change
only the work items written since the last load are read and merged in, and changes, deployments
and links are read again only when one of them was written; the whole store is read the first time,
and again only when an update cannot give what a full load would (another store at the same place,
a ref two items share).
Exporters read a :class:`Snapshot` and translate it; they never compute a figure or open the store.
When the store fails, the last snapshot stays published: a scrape never fails because the database
does (the exporter shows ``cycletime_store_up 0`` beside it).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from collector.compute import (
    REQUEST_STAGES,
    ChangeFigures,
    Figures,
    Observations,
    change_figures,
    compute_tables,
    window_quantiles,
)
from collector.config import Config, format_duration
from collector.linking import ChangeTable
from collector.sharding import Partition, Shards
from collector.store import STORE_ERRORS, ApiBudget, SourceStatus, Store
from collector.table import WorkItemTable

log = logging.getLogger(__name__)

DAY = 86400.0
#: the landing page's and the demo's headline: p85 over the last 30 days, as the window gauges
#: ``…_window_seconds{window="30d",quantile="0.85"}`` define it
HEADLINE_WINDOW = 30 * DAY
HEADLINE_QUANTILE = 0.85
TREND_MONTHS = 12


@dataclass(frozen=True)
class Settings:
    windows: tuple[tuple[str, float], ...]  # (label, seconds)
    quantiles: tuple[float, ...]
    sources: tuple[str, ...]  # configured source names, so a never-polled source shows as down
    max_label_values: int = 200
    #: which series this process exports (a shard: those of its scopes; docs/sharding.md)
    partition: Partition = field(default_factory=Partition)

    @classmethod
    def from_config(cls, config: Config, shards: Shards | None = None) -> Settings:
        from collector.sources.registry import load_kinds

        kinds = load_kinds()
        scope_of = {
            s.name: functools.partial(kinds[s.kind].source_class.scope_of, s) for s in config.sources if s.kind in kinds
        }
        return cls(
            tuple((format_duration(w), w.total_seconds()) for w in config.windows),
            tuple(config.quantiles),
            tuple(s.name for s in config.sources),
            config.max_label_values,
            Partition(shards or Shards(), scope_of),
        )


@dataclass(frozen=True)
class StoreHealth:
    """The collector's own counters as the store held them at one refresh (self-metrics)."""

    source_statuses: Mapping[str, SourceStatus] = field(default_factory=dict)
    poll_counts: Mapping[str, tuple[Mapping[int, int], float]] = field(default_factory=dict)
    request_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    rejections: Mapping[tuple[str, str], int] = field(default_factory=Counter)
    api_budgets: Mapping[tuple[str, str], ApiBudget] = field(default_factory=dict)
    sync_backlogs: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def read(
        cls, store: Store, statuses: Mapping[str, SourceStatus] | None = None, total_shards: int = 1
    ) -> StoreHealth:
        """``total_shards``: how many shards this process is one of; their passes make the health
        (docs/sharding.md)."""
        return cls(
            store.statuses(total_shards) if statuses is None else statuses,
            store.poll_histograms(),
            store.api_request_counts(),
            store.rejection_counts(),
            store.budgets(),
            store.backlogs(total_shards),
        )

    # the Store's own method names, so self-metrics read either
    def statuses(self) -> Mapping[str, SourceStatus]:
        return self.source_statuses

    def poll_histograms(self) -> Mapping[str, tuple[Mapping[int, int], float]]:
        return self.poll_counts

    def api_request_counts(self) -> Mapping[tuple[str, str], int]:
        return self.request_counts

    def rejection_counts(self) -> Mapping[tuple[str, str], int]:
        return self.rejections

    def budgets(self) -> Mapping[tuple[str, str], ApiBudget]:
        return self.api_budgets

    def backlogs(self) -> Mapping[str, int]:
        return self.sync_backlogs


@dataclass(frozen=True)
class MonthPoint:
    """One month of the trend: the 30-day window ending at the month's end (or now, this month)."""

    month: str  # 2026-11
    end: float
    request_to_release: float | None  # p85 seconds; None when no item ended in the window
    request_to_release_count: int
    cycle_time: float | None
    cycle_time_count: int


@dataclass(frozen=True)
class ProjectFigure:
    project: str
    p85: float | None
    count: int
    #: where the time went: the request stage holding the largest share of the project's
    #: request-to-release over the same 30 days (items of every team and type pooled), and that share
    largest_stage: str | None = None
    largest_stage_share: float = 0.0


@dataclass(frozen=True)
class Headline:
    """Per project p85 request-to-release over the last 30 days (its teams and types pooled), and
    production deployment frequency and change failure rate over the last 30 days."""

    projects: tuple[ProjectFigure, ...]  # slowest first
    deployments_succeeded: int
    deployments_failed: int

    @property
    def per_day(self) -> float:
        return self.deployments_succeeded / (HEADLINE_WINDOW / DAY)

    @property
    def change_failure_rate(self) -> float | None:
        total = self.deployments_succeeded + self.deployments_failed
        return self.deployments_failed / total if total else None


@dataclass(frozen=True)
class Snapshot:
    figures: Figures
    #: the end of the rolling windows the figures are summarised at
    now: float
    #: the store's data version the figures were computed from (-1: never computed)
    version: int
    #: the figures include a successful pass of every configured source
    complete: bool
    health: StoreHealth
    trend: tuple[MonthPoint, ...]
    headline: Headline

    @property
    def computed(self) -> bool:
        return self.version >= 0


def pooled(observations: Observations, key: Callable[[tuple[str, ...]], str] = lambda _: "") -> dict[str, np.ndarray]:
    """The (end, value) pairs of every label set with the same key, together."""
    groups: dict[str, list[np.ndarray]] = {}
    for labels, block in observations.by_labels.items():
        groups.setdefault(key(labels), []).append(block)
    return {k: np.vstack(blocks) for k, blocks in groups.items()}


def _p85(data: np.ndarray | None, end: float) -> tuple[float | None, int]:
    if data is None:
        return None, 0
    summary = window_quantiles(data, end, HEADLINE_WINDOW, [HEADLINE_QUANTILE])
    return summary.quantiles.get(HEADLINE_QUANTILE), summary.count


def month_ends(now: float, months: int = TREND_MONTHS) -> list[tuple[str, float]]:
    """(month, end) for the last ``months`` months, oldest first: past months end at the start of the
    next month (UTC), the current one at ``now``."""
    today = datetime.fromtimestamp(now, UTC)
    out = [(f"{today.year:04d}-{today.month:02d}", now)]
    year, month = today.year, today.month
    for _ in range(months - 1):
        end = datetime(year, month, 1, tzinfo=UTC).timestamp()
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        out.append((f"{year:04d}-{month:02d}", end))
    return out[::-1]


def trend(figures: Figures, now: float, months: int = TREND_MONTHS) -> tuple[MonthPoint, ...]:
    """p85 request-to-release and cycle time per month, every source, project, team and type pooled.

    Each point is the 30-day window ending at the month's end, selected from the observations'
    (end, value) pairs: the same definition as the window gauges, so this month's point is what
    ``…_window_seconds{window="30d",quantile="0.85"}`` shows when one series holds every item.
    """
    r2r, cycle = pooled(figures.request_to_release).get(""), pooled(figures.cycle_time).get("")
    points = []
    for month, end in month_ends(now, months):
        r2r_p85, r2r_n = _p85(r2r, end)
        cycle_p85, cycle_n = _p85(cycle, end)
        points.append(MonthPoint(month, end, r2r_p85, r2r_n, cycle_p85, cycle_n))
    return tuple(points)


def largest_stages(figures: Figures, now: float, window: float = HEADLINE_WINDOW) -> dict[str, tuple[str, float]]:
    """project → (stage, share): the request stage with the most seconds, summed over the items
    released in ``(now - window, now]``, and its share of their whole request-to-release."""
    names = figures.request_stages.label_names
    project, stage = names.index("project"), names.index("stage")
    seconds: dict[str, dict[str, float]] = {}
    for labels, block in figures.request_stages.by_labels.items():
        inside = (block[:, 0] > now - window) & (block[:, 0] <= now)
        per_stage = seconds.setdefault(labels[project], {})
        per_stage[labels[stage]] = per_stage.get(labels[stage], 0.0) + float(block[inside, 1].sum())
    out = {}
    for name, per_stage in seconds.items():
        total = sum(per_stage.values())
        if total > 0:
            # ties go to the earlier stage in the flow
            largest = max(REQUEST_STAGES, key=lambda st: (per_stage.get(st, 0.0), -REQUEST_STAGES.index(st)))
            out[name] = (largest, per_stage[largest] / total)
    return out


def headline(figures: Figures, now: float) -> Headline:
    stages = largest_stages(figures, now)
    projects = [
        ProjectFigure(project, *_p85(data, now), *stages.get(project, (None, 0.0)))
        for project, data in pooled(figures.request_to_release, lambda labels: labels[1]).items()
    ]
    projects.sort(key=lambda p: (-(p.p85 if p.p85 is not None else -1.0), p.project))
    names = figures.deployment_events.label_names
    production, status = names.index("production"), names.index("status")
    succeeded = failed = 0
    for labels, block in figures.deployment_events.by_labels.items():
        if labels[production] != "true":
            continue
        n = int(((block[:, 0] > now - HEADLINE_WINDOW) & (block[:, 0] <= now)).sum())
        succeeded += n if labels[status] == "success" else 0
        failed += n if labels[status] == "failure" else 0
    return Headline(tuple(projects), succeeded, failed)


def not_yet_synced(sources: Iterable[str], statuses: Mapping[str, SourceStatus]) -> list[str]:
    """The configured sources without a successful pass yet."""
    return [name for name in sources if name not in statuses or statuses[name].last_success is None]


@dataclass
class Loaded:
    """What compute reads, as of one data version of the store; kept between refreshes."""

    store: str  # the store's identity when read
    version: int
    table: WorkItemTable
    changes: ChangeTable
    linked: set[str]  # the work item refs that have links
    #: what changes, deployments and links alone give, and the ``as_of`` it was derived at
    derived: tuple[float | None, ChangeFigures] | None = None

    @classmethod
    def read(cls, store: Store, version: int) -> Loaded:
        identity = store.identity
        changes = store.change_table()
        linked = set(changes.items)
        return cls(identity, version, store.work_item_table(linked=linked), changes, linked)

    def update(self, store: Store, version: int) -> bool:
        """Read the rows written since this was loaded and take them in (``version``: the store's
        data version, read before). False when only a full load gives the same result; then this
        may hold some of the new rows but not all, and must be dropped.

        Changed work items are merged into the kept table, and changes, deployments and links
        written since into the kept change table; what those give is derived again only when one
        of them was written."""
        if store.identity != self.store:
            return False  # another store, or another schema: its sequences are not ours
        since = self.version
        changes = store.change_table(since, extends=self.changes)
        newly_linked = set(changes.items[len(self.changes.items) :]) - self.linked
        delta, refs = store.changed_work_items(since, self.table)
        numbers = store.item_numbers(newly_linked) if newly_linked else {}
        if any(len(found) > 1 for found in numbers.values()):
            return False  # two items share a ref: which one a link releases is the full load's call
        self.linked |= newly_linked
        if not self.table.merge(delta, refs, self.linked, {ref: found[0] for ref, found in numbers.items()}):
            return False
        if changes is not self.changes:
            self.changes, self.derived = changes, None
        self.version = version
        return True

    def compute(self, as_of: float | None) -> Figures:
        if self.derived is None or self.derived[0] != as_of:
            self.derived = (as_of, change_figures(self.changes, as_of))
        return compute_tables(self.table, self.derived[1], as_of)


#: glibc's mallopt parameter and the size from which allocations get their own mapping
_M_MMAP_THRESHOLD, _MMAP_FROM = -3, 128 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (mallopt and malloc_trim are glibc's)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


@functools.cache
def return_freed_arrays_to_the_system() -> bool:
    """Keep glibc from recycling freed large arrays on its heap, where they stay resident.

    A refresh allocates and frees arrays of tens of MB. glibc maps such blocks on their own and
    unmaps them when freed, but each free of a mapped block raises its threshold (up to 32 MB), so
    later arrays of that size come from the heap and, freed, keep the process's RSS up (~70 MB at a
    million items, on top of the peak). Fixing the threshold keeps each large array its own mapping,
    returned when freed. Once per process; False where the C library is not glibc.
    """
    libc = _glibc()
    try:
        return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM))
    except AttributeError:
        return False


def return_freed_heap_to_the_system() -> None:
    """Give the pages of freed memory inside glibc's heap back (``malloc_trim``), after a refresh.

    A refresh that reads rows makes and drops hundreds of thousands of small objects (strings,
    tuples) and SQLite's buffers; glibc keeps the freed pages between live blocks, so without this
    the process's RSS grows by ~10 MB a refresh at a million items (30-50 MB given back each time,
    measured), and each refresh's peak sits on top of it. About a millisecond; nothing where the C
    library is not glibc.
    """
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


def _empty(now: float) -> Snapshot:
    figures = Figures()
    return Snapshot(figures, now, -1, False, StoreHealth(), trend(figures, now), headline(figures, now))


class FigureCache:
    """Recomputes the figures when the store's data changed or the windows need to slide on."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        max_age: float = 60.0,
        as_of: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        #: a pinned clock (``cycletime metrics --at``): every figure as of that time
        self.as_of = as_of
        self.clock = clock if as_of is None else (lambda: as_of)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._loaded: Loaded | None = None
        return_freed_arrays_to_the_system()

    @property
    def snapshot(self) -> Snapshot:
        """The last snapshot (computing the first one if there is none yet)."""
        return self._snapshot or self.refresh()

    def refresh(self, force: bool = False) -> Snapshot:
        """Reload the store only when its data changed; otherwise just slide the windows.

        When the store fails, the last snapshot stays (the store's own health says it failed).
        """
        with self._lock:
            try:
                self._snapshot = self._refresh(force)
            except STORE_ERRORS as exc:
                log.error("figures refresh: %s", self.store.note_failure(exc))
                if self._snapshot is None:
                    self._snapshot = _empty(self.clock())
            return self._snapshot

    def _refresh(self, force: bool) -> Snapshot:
        now = self.clock()
        # statuses before the data version: a pass commits its data before its status, so a source
        # seen synced here has its data in whatever version is read next
        total_shards = self.settings.partition.shards.total
        statuses = self.store.statuses(total_shards)
        synced = not not_yet_synced(self.settings.sources, statuses)
        version = self.store.data_version
        last = self._snapshot
        if force or last is None or not last.computed or version != last.version:
            figures = self._load(version, full=force).compute(self.as_of)
            return_freed_heap_to_the_system()
            complete = synced
        else:
            figures = last.figures
            # the same data as when computed: a source that synced since brought nothing new
            complete = last.complete or synced
            if now - last.now < self.max_age:
                now = last.now
        health = StoreHealth.read(self.store, statuses, total_shards)
        if last is not None and last.figures is figures and last.now == now:
            return Snapshot(figures, now, version, complete, health, last.trend, last.headline)
        return Snapshot(figures, now, version, complete, health, trend(figures, now), headline(figures, now))

    def _load(self, version: int, full: bool) -> Loaded:
        """What the store holds at ``version``: the kept load updated, or a full load when there is
        nothing to update, ``full`` is asked, or it is another store (replaced, restored, upgraded).
        Rows are never deleted (a rewritten history comes with its item), so changed rows are all
        an update needs."""
        loaded, self._loaded = self._loaded, None  # dropped if taking in the rows fails half way
        if loaded is not None and not full and loaded.version <= version:
            try:
                updated = loaded.version == version or loaded.update(self.store, version)
            except STORE_ERRORS:
                self._loaded = loaded  # the store failed while read: nothing was taken in yet
                raise
            if updated:
                self._loaded = loaded
                return loaded
            log.info("figures: a change needs a full load of the store")
        del loaded  # never two full tables at once
        self._loaded = Loaded.read(self.store, version)
        return self._loaded

    def ready(self, statuses: Mapping[str, SourceStatus]) -> tuple[bool, str]:
        """Ready once the figures were computed after every configured source's first full pass
        (``statuses``: the store's, read now)."""
        waiting = not_yet_synced(self.settings.sources, statuses)
        if waiting:
            return False, "not synced yet: " + ", ".join(waiting)
        snapshot = self._snapshot
        if snapshot is None or not snapshot.complete:
            return False, "synced; figures not computed since"
        return True, "ready"
