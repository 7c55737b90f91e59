"""Every figure of CONTRACT §4, as pure functions from the domain model to numbers.

No I/O and no clock: ``now`` is passed in. Observations keep the time of their *end event*
(completion, release, deployment finish, recovery) so the rolling-window quantiles can select
``(now - window, now]`` exactly, and histograms/counters cover all history so they only grow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from collector.linking import change_deliveries, first_deliveries, work_item_deliveries
from collector.model import STARTED_CATEGORIES, WIP_CATEGORIES, Category, Change, Deployment, Link, WorkItem

DAY = 86400.0
HOUR = 3600.0
#: CONTRACT §5: an hour to a year
BUCKETS: tuple[float, ...] = tuple(
    [HOUR, 4 * HOUR, 8 * HOUR]
    + [d * DAY for d in (1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365)]
    + [float("inf")]
)

WORK_ITEM_LABELS = ("source", "project", "team", "type")
RELEASE_LABELS = (*WORK_ITEM_LABELS, "environment")
DEPLOY_LABELS = ("source", "service", "environment")


@dataclass(frozen=True, slots=True)
class Stay:
    """An uninterrupted period in one state; ``end`` is None while the item is still in it."""

    state: str
    category: Category
    start: float
    end: float | None


@dataclass(frozen=True, slots=True)
class ItemTimes:
    """What compute derives from one work item's history."""

    created_at: float
    completed_at: float | None
    first_started_at: float | None
    current: Category | None
    stays: tuple[Stay, ...]

    @property
    def lead_time(self) -> float | None:
        return None if self.completed_at is None else self.completed_at - self.created_at

    @property
    def cycle_time(self) -> float | None:
        if self.completed_at is None or self.first_started_at is None:
            return None
        return self.completed_at - self.first_started_at

    def time_in_states(self) -> dict[tuple[str, Category], float]:
        """Seconds per (state, category) up to completion (the final Completed stay excluded)."""
        out: dict[tuple[str, Category], float] = {}
        for stay in self.stays:
            if stay.end is None:
                continue
            key = (stay.state, stay.category)
            out[key] = out.get(key, 0.0) + (stay.end - stay.start)
        return out

    def flow_efficiency(self) -> float | None:
        """Time in the InProgress category / lead time (Resolved and waiting states are not work)."""
        lead = self.lead_time
        if not lead:
            return None
        active = sum(s for (_, cat), s in self.time_in_states().items() if cat is Category.IN_PROGRESS)
        return active / lead


class Rejected(ValueError):
    """A record whose figures would be nonsense (e.g. clock skew); counted, never exported."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def item_times(item: WorkItem) -> ItemTimes:
    """Derive stays, completion and start from the revision history.

    - consecutive observations in the same state are one stay;
    - completed_at is the *last* entry into Completed, and only if the item is Completed now
      (reopened items count once, at their final completion);
    - the cycle-time clock starts at the *first* entry into InProgress or Resolved (reactivated
      items keep their first start, as Azure DevOps Analytics does).
    """
    created = item.created_at.timestamp()
    history = sorted(item.history, key=lambda s: s.seq)
    stays: list[Stay] = []
    previous_at = created
    for obs in history:
        at = obs.at.timestamp()
        if at < previous_at:
            raise Rejected("end_before_start", f"work item {item.native_id}: revision {obs.seq} "
                                               f"is dated before the one it follows")
        previous_at = at
        if stays and stays[-1].state == obs.state:
            continue
        if stays:
            last = stays[-1]
            stays[-1] = Stay(last.state, last.category, last.start, at)
        stays.append(Stay(obs.state, obs.category, at, None))
    current = stays[-1].category if stays else None
    completed_at = None
    if current is Category.COMPLETED:
        completed_at = stays[-1].start
    first_started = next((s.start for s in stays if s.category in STARTED_CATEGORIES), None)
    if first_started is not None and completed_at is not None and first_started > completed_at:
        first_started = None  # cannot happen with ordered history; kept as a guard
    return ItemTimes(created, completed_at, first_started, current, tuple(stays))


@dataclass
class Observations:
    """One histogram family's raw data: per label set, (end event time, value) pairs."""

    label_names: tuple[str, ...]
    by_labels: dict[tuple[str, ...], list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, labels: tuple[str, ...], end: float, value: float) -> None:
        self.by_labels.setdefault(labels, []).append((end, value))

    def count(self) -> int:
        return sum(len(v) for v in self.by_labels.values())


@dataclass
class Figures:
    """Everything the exporter publishes about the data (self-metrics come from the store)."""

    lead_time: Observations = field(default_factory=lambda: Observations(WORK_ITEM_LABELS))
    cycle_time: Observations = field(default_factory=lambda: Observations(WORK_ITEM_LABELS))
    request_to_release: Observations = field(default_factory=lambda: Observations(RELEASE_LABELS))
    change_lead_time: Observations = field(default_factory=lambda: Observations(DEPLOY_LABELS))
    recovery: Observations = field(default_factory=lambda: Observations(DEPLOY_LABELS))
    #: (source, project, team, type, state, category) → seconds, completed items only
    state_seconds: dict[tuple[str, ...], float] = field(default_factory=dict)
    #: (source, service, environment, status) → count, every environment
    deployments: Counter[tuple[str, ...]] = field(default_factory=Counter)
    #: (source, project, team, type, category) → items now in that non-terminal category
    wip: Counter[tuple[str, ...]] = field(default_factory=Counter)
    #: (source, reason) → records compute refused (clock skew); added to the store's rejections
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)


def compute(work_items: Iterable[WorkItem], changes: Sequence[Change], deployments: Sequence[Deployment],
            links: Iterable[Link]) -> Figures:
    """All figures over all history; windowing happens in :func:`window_quantiles`."""
    figures = Figures()
    delivered = first_deliveries(deployments)
    releases = work_item_deliveries(links, changes, delivered)

    for item in work_items:
        try:
            times = item_times(item)
        except Rejected as exc:
            figures.rejected[(item.source, exc.reason)] += 1
            continue
        if times.current is Category.REMOVED:
            continue  # removed items are excluded from every figure
        labels = (item.source, item.project, item.team, item.type)
        if times.current in WIP_CATEGORIES:
            figures.wip[(*labels, times.current.value)] += 1
        if times.completed_at is not None:
            lead = times.lead_time
            if lead is not None and lead < 0:
                figures.rejected[(item.source, "end_before_start")] += 1
                continue
            figures.lead_time.add(labels, times.completed_at, lead or 0.0)
            cycle = times.cycle_time
            if cycle is not None:
                figures.cycle_time.add(labels, times.completed_at, cycle)
            for (state, category), seconds in times.time_in_states().items():
                key = (*labels, state, category.value)
                figures.state_seconds[key] = figures.state_seconds.get(key, 0.0) + seconds
        release = releases.get(item.ref)
        if release is not None:
            released_at = release.finished_at.timestamp()
            if released_at < times.created_at:
                figures.rejected[(item.source, "end_before_start")] += 1
            else:
                figures.request_to_release.add((*labels, release.environment), released_at,
                                               released_at - times.created_at)

    _add_change_lead_times(changes, delivered, figures)

    for deployment in deployments:
        figures.deployments[(deployment.source, deployment.service, deployment.environment, deployment.status)] += 1
    for labels, end, value in recoveries(deployments):
        figures.recovery.add(labels, end, value)
    return figures


def _add_change_lead_times(changes: Sequence[Change], delivered: dict[str, Deployment], figures: Figures) -> None:
    """Change lead time = first successful production deployment's finish - first commit."""
    shipped = change_deliveries(changes, delivered)
    for change in changes:
        deployment = shipped.get((change.source, change.native_id))
        if deployment is None:
            continue
        finish = deployment.finished_at.timestamp()
        value = finish - change.first_commit_at.timestamp()
        if value < 0:
            figures.rejected[(change.source, "end_before_start")] += 1
            continue
        figures.change_lead_time.add((deployment.source, deployment.service, deployment.environment), finish, value)


def recoveries(deployments: Iterable[Deployment]) -> list[tuple[tuple[str, str, str], float, float]]:
    """Failed deployment recovery times: (labels, recovered at, seconds).

    A run of consecutive failures is one incident, measured from its *first* failure to the next
    success of the same service and environment (what the service was actually down for); an
    unrecovered failure yields nothing yet.
    """
    streams: dict[tuple[str, str, str], list[Deployment]] = {}
    for d in deployments:
        streams.setdefault((d.source, d.service, d.environment), []).append(d)
    out = []
    for labels, stream in streams.items():
        stream.sort(key=lambda d: (d.finished_at, d.native_id))
        failed_since: float | None = None
        for d in stream:
            at = d.finished_at.timestamp()
            if d.status == "failure":
                if failed_since is None:
                    failed_since = at
            elif d.status == "success" and failed_since is not None:
                out.append((labels, at, at - failed_since))
                failed_since = None
    return out


@dataclass(frozen=True)
class HistogramData:
    buckets: tuple[int, ...]  # cumulative counts, one per BUCKETS bound
    total: float
    count: int


def histogram(values: Sequence[float] | np.ndarray, bounds: Sequence[float] = BUCKETS) -> HistogramData:
    """Cumulative bucket counts (``le`` semantics: value <= bound) as Prometheus expects."""
    arr = np.asarray(values, dtype=float)
    finite = np.asarray([b for b in bounds if b != float("inf")])
    cumulative = np.searchsorted(np.sort(arr), finite, side="right")
    counts = [*cumulative.tolist(), int(arr.size)]
    return HistogramData(tuple(int(c) for c in counts), float(arr.sum()), int(arr.size))


@dataclass(frozen=True)
class WindowSummary:
    count: int
    quantiles: dict[float, float]  # empty when count == 0: no sample rather than NaN


def window_quantiles(observations: list[tuple[float, float]], now: float, window: float,
                     quantiles: Sequence[float]) -> WindowSummary:
    """Exact quantiles of the values whose end event lies in ``(now - window, now]``.

    NumPy's default ``linear`` method: linear interpolation between closest ranks.
    """
    if not observations:
        return WindowSummary(0, {})
    data = np.asarray(observations, dtype=float)
    ends, values = data[:, 0], data[:, 1]
    selected = values[(ends > now - window) & (ends <= now)]
    if selected.size == 0:
        return WindowSummary(0, {})
    qs = np.quantile(selected, list(quantiles), method="linear")
    return WindowSummary(int(selected.size), {q: float(v) for q, v in zip(quantiles, qs, strict=True)})
