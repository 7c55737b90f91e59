"""Every figure of docs/definitions.md, as pure functions from the domain model to numbers.

No I/O and no clock: ``now`` is passed in. Observations keep the time of their *end event*
(completion, release, deployment finish, recovery) so the rolling-window quantiles can select
``(now - window, now]`` exactly, and histograms/counters cover all history so they only grow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from collector.errors import Rejected
from collector.linking import (
    change_deliveries,
    change_refs,
    first_deliveries,
    linked_change_times,
    work_item_deliveries,
)
from collector.model import STARTED_CATEGORIES, WIP_CATEGORIES, Category, Change, Deployment, Link, WorkItem
from collector.table import CAT_CODE, CATEGORIES, WorkItemTable

DAY = 86400.0
HOUR = 3600.0
#: an hour to a year (docs/metrics.md)
BUCKETS: tuple[float, ...] = tuple(
    [HOUR, 4 * HOUR, 8 * HOUR]
    + [d * DAY for d in (1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365)]
    + [float("inf")]
)

WORK_ITEM_LABELS = ("source", "project", "team", "type")
RELEASE_LABELS = (*WORK_ITEM_LABELS, "environment")
DEPLOY_LABELS = ("source", "service", "environment")
#: deployments and recoveries carry ``production``: the one place "production" is decided
RECOVERY_LABELS = ("source", "service", "environment", "production")
DEPLOYMENT_LABELS = ("source", "service", "environment", "production", "status")
CHANGE_STAGE_LABELS = ("source", "service", "stage")
REQUEST_STAGE_LABELS = (*WORK_ITEM_LABELS, "stage")
#: the stages of a deployed pull request, in order (docs/definitions.md, "Where the time goes")
CHANGE_STAGES = ("coding", "pickup", "review", "deploy")
#: the stages of a released work item's request-to-release, in order
REQUEST_STAGES = ("backlog", "development", "review", "release")


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
            raise Rejected(
                "end_before_start", f"work item {item.native_id}: revision {obs.seq} is dated before the one it follows"
            )
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
    """One histogram family's raw data: per label set, an (n, 2) array of (end event time, value)."""

    label_names: tuple[str, ...]
    by_labels: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    def add_many(self, labels: tuple[str, ...], ends: np.ndarray, values: np.ndarray) -> None:
        block = np.column_stack([ends, values]).astype(float)
        old = self.by_labels.get(labels)
        self.by_labels[labels] = block if old is None else np.vstack([old, block])

    def add(self, labels: tuple[str, ...], end: float, value: float) -> None:
        self.add_many(labels, np.asarray([end]), np.asarray([value]))

    def pairs(self, labels: tuple[str, ...]) -> list[tuple[float, float]]:
        return [(float(e), float(v)) for e, v in self.by_labels.get(labels, np.empty((0, 2)))]

    def count(self) -> int:
        return sum(len(v) for v in self.by_labels.values())


@dataclass
class Figures:
    """Everything the exporter publishes about the data (self-metrics come from the store)."""

    lead_time: Observations = field(default_factory=lambda: Observations(WORK_ITEM_LABELS))
    cycle_time: Observations = field(default_factory=lambda: Observations(WORK_ITEM_LABELS))
    request_to_release: Observations = field(default_factory=lambda: Observations(RELEASE_LABELS))
    change_lead_time: Observations = field(default_factory=lambda: Observations(DEPLOY_LABELS))
    recovery: Observations = field(default_factory=lambda: Observations(RECOVERY_LABELS))
    #: every counted deployment as (finish, 1.0), for the per-window deployment counts
    deployment_events: Observations = field(default_factory=lambda: Observations(DEPLOYMENT_LABELS))
    #: per completed item (completion, seconds in the InProgress category): flow efficiency per window
    active_time: Observations = field(default_factory=lambda: Observations(WORK_ITEM_LABELS))
    #: (source, project, team, type, state, category) → seconds, completed items only
    state_seconds: dict[tuple[str, ...], float] = field(default_factory=dict)
    #: (source, service, environment, production, status) → count, every environment
    deployments: Counter[tuple[str, ...]] = field(default_factory=Counter)
    #: (source, project, team, type, category) → items now in that non-terminal category
    wip: Counter[tuple[str, ...]] = field(default_factory=Counter)
    #: (source, reason) → records compute refused (clock skew); added to the store's rejections
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: a deployed change's seconds per stage, at its deployment's finish
    change_stages: Observations = field(default_factory=lambda: Observations(CHANGE_STAGE_LABELS))
    #: a released item's request-to-release per stage, at its release
    request_stages: Observations = field(default_factory=lambda: Observations(REQUEST_STAGE_LABELS))


_COMPLETED, _REMOVED = CAT_CODE[Category.COMPLETED], CAT_CODE[Category.REMOVED]
_STARTED = [CAT_CODE[c] for c in STARTED_CATEGORIES]
_WIP = [CAT_CODE[c] for c in WIP_CATEGORIES]


def compute(
    work_items: Iterable[WorkItem] | WorkItemTable,
    changes: Sequence[Change],
    deployments: Sequence[Deployment],
    links: Iterable[Link],
    as_of: float | None = None,
) -> Figures:
    """All figures over all history; windowing happens in :func:`window_quantiles`.

    ``as_of`` (Unix time) computes the figures as they stood then from what the store holds:
    items created later, observations after it and deployments finishing after it are ignored,
    so counters hold the events finished by then (``cycletime metrics --at``, backfill).

    The vectorised twin of :func:`item_times` (a property test keeps them equal).
    """
    table = work_items if isinstance(work_items, WorkItemTable) else WorkItemTable.from_items(work_items)
    if as_of is not None:
        table = table.as_of(as_of)
        deployments = [d for d in deployments if d.finished_at.timestamp() <= as_of]
    figures = Figures()
    delivered = first_deliveries(deployments)
    links = list(links)
    refs = [change_refs(change) for change in changes]  # read once, by both passes below
    shipped = change_deliveries(changes, delivered, refs)
    releases = work_item_deliveries(links, changes, delivered, shipped)
    _add_work_item_figures(table, releases, figures, linked_change_times(links, changes, refs))
    _add_change_lead_times(changes, shipped, figures)
    events: dict[tuple[str, ...], list[float]] = {}
    for deployment in deployments:
        labels: tuple[str, ...] = (
            deployment.source,
            deployment.service,
            deployment.environment,
            "true" if deployment.production else "false",
            deployment.status,
        )
        figures.deployments[labels] += 1
        events.setdefault(labels, []).append(deployment.finished_at.timestamp())
    for labels, ends in events.items():
        figures.deployment_events.add_many(labels, np.asarray(ends), np.ones(len(ends)))
    for recovered, end, value in recoveries(deployments):
        figures.recovery.add(recovered, end, value)
    return figures


def _add_work_item_figures(
    t: WorkItemTable, releases: dict[str, Deployment], figures: Figures, linked: dict[str, tuple[float, float]]
) -> None:
    # Temporaries are deleted as soon as they are used: at a million items each is 8-32 MB.
    n, m = len(t), len(t.h_item)
    same_as_prev = np.zeros(m, dtype=bool)
    if m > 1:
        same_as_prev[1:] = t.h_item[1:] == t.h_item[:-1]
    # clock skew: an observation dated before the one it follows (or, first, before creation)
    skewed = np.zeros(n, dtype=bool)
    if m > 1:
        backwards = np.flatnonzero(same_as_prev[1:] & (t.h_at[1:] < t.h_at[:-1])) + 1
        skewed[t.h_item[backwards]] = True
    firsts = np.flatnonzero(~same_as_prev)
    skewed[t.h_item[firsts][t.h_at[firsts] < t.created[t.h_item[firsts]]]] = True
    del firsts
    # ...or released before it was created (a migrated item created after it shipped): such an
    # item cannot be ordered, so it is left out of every figure, not only request-to-release
    released = sorted((t.ref_index[ref], ref) for ref in releases if ref in t.ref_index)
    finishes: dict[int, float] = {}  # per deployment: one releases many items
    rel_item = np.fromiter((i for i, _ in released), dtype=np.int64, count=len(released))
    rel_at = np.fromiter((_finish(releases[ref], finishes) for _, ref in released), dtype=float, count=len(released))
    skewed[rel_item[rel_at < t.created[rel_item]]] = True

    # stays: consecutive observations in the same state collapse into one
    new_stay = ~same_as_prev
    del same_as_prev
    if m > 1:
        new_stay[1:] |= t.h_state[1:] != t.h_state[:-1]
    if new_stay.all():  # every observation starts a stay: the table's own columns, not copies
        s_item, s_start, s_state, s_cat = t.h_item, t.h_at, t.h_state, t.h_cat
    else:  # a boolean mask, not an index array: no 8-byte index per observation
        s_item, s_start, s_state, s_cat = t.h_item[new_stay], t.h_at[new_stay], t.h_state[new_stay], t.h_cat[new_stay]
    del new_stay
    k = len(s_item)
    s_last = np.ones(k, dtype=bool)
    if k > 1:
        s_last[:-1] = s_item[1:] != s_item[:-1]

    current = np.full(n, -1, dtype=np.int16)
    current[s_item[s_last]] = s_cat[s_last]
    last_start = np.full(n, np.nan)
    last_start[s_item[s_last]] = s_start[s_last]
    first_started = np.full(n, np.inf)
    started = (s_cat == _STARTED[0]) | (s_cat == _STARTED[1])
    np.minimum.at(first_started, s_item[started], s_start[started])
    del started

    valid = ~skewed & (current != _REMOVED)
    for label, count in Counter(t.label_idx[skewed].tolist()).items():
        figures.rejected[(t.labels[label][0], "end_before_start")] += count

    for cat in _WIP:
        wip = valid & (current == cat)
        for label, count in zip(*np.unique(t.label_idx[wip], return_counts=True), strict=True):
            figures.wip[(*t.labels[label], CATEGORIES[cat].value)] += int(count)

    completed = valid & (current == _COMPLETED)
    # time in state of completed items: every stay but the final (Completed) one
    closed_stays = completed[s_item]
    closed_stays &= ~s_last
    n_states, n_cats = max(len(t.states), 1), len(CATEGORIES)
    # a dense key space (label x state x category) is small: bincount sums without sorting.
    # In-place arithmetic: at a million items every temporary here is ~25 MB.
    closed_item = s_item[closed_stays]
    keys = t.label_idx[closed_item].astype(np.int64)
    keys *= n_states
    keys += s_state[closed_stays]
    keys *= n_cats
    keys += s_cat[closed_stays]
    working = s_cat[closed_stays] == CAT_CODE[Category.IN_PROGRESS]
    del s_item, s_state, s_cat, s_last
    # a closed stay is never its item's last: it ends where the next stay starts
    durations = s_start[1:][closed_stays[:-1]]
    durations -= s_start[:-1][closed_stays[:-1]]
    del closed_stays, s_start
    active = np.bincount(closed_item[working], weights=durations[working], minlength=n)
    del closed_item, working
    sums = np.bincount(keys, weights=durations, minlength=len(t.labels) * n_states * n_cats)
    counts = np.bincount(keys, minlength=len(sums))
    del keys, durations
    for key in np.flatnonzero(counts).tolist():
        seconds = float(sums[key])
        rest, cat = divmod(key, n_cats)
        label, state = divmod(rest, n_states)
        figures.state_seconds[(*t.labels[label], t.states[state], CATEGORIES[cat].value)] = seconds

    done = np.flatnonzero(completed)
    completed_at = last_start[done]
    lead = completed_at - t.created[done]
    has_cycle = np.isfinite(first_started[done])
    cycle = completed_at - first_started[done]
    for label, members in _group(t.label_idx[done]):
        figures.lead_time.add_many(t.labels[label], completed_at[members], lead[members])
        figures.active_time.add_many(t.labels[label], completed_at[members], active[done[members]])
        with_cycle = members[has_cycle[members]]
        if len(with_cycle):
            figures.cycle_time.add_many(t.labels[label], completed_at[with_cycle], cycle[with_cycle])

    # request-to-release and the request stages of the valid released items, in item order, per label set
    kept = valid[rel_item]
    if not kept.any():
        return
    item, released_at = rel_item[kept], rel_at[kept]
    refs = [ref for (_, ref), keep in zip(released, kept.tolist(), strict=True) if keep]
    env_code: dict[str, int] = {}
    envs = np.fromiter(
        (env_code.setdefault(releases[ref].environment, len(env_code)) for ref in refs), dtype=np.int64, count=len(refs)
    )
    environments = list(env_code)
    label_env = t.label_idx[item].astype(np.int64) * len(environments) + envs
    waited = released_at - t.created[item]
    for key, members in _group(label_env):
        label, env = divmod(key, len(environments))
        figures.request_to_release.add_many(
            (*t.labels[label], environments[env]), released_at[members], waited[members]
        )
    # created | first started | first linked PR ready | last linked change merged | released
    no_changes = (np.nan, np.nan)
    b = np.empty((len(item), 5))
    b[:, 0], b[:, 1], b[:, 4] = t.created[item], first_started[item], released_at
    b[:, 2:4] = np.array([linked.get(ref, no_changes) for ref in refs], dtype=float).reshape(len(item), 2)
    b[~np.isfinite(b)] = np.nan  # never started: first_started is +inf
    lengths = stage_lengths(b)
    for label, members in _group(t.label_idx[item]):
        for k, stage in enumerate(REQUEST_STAGES):
            figures.request_stages.add_many((*t.labels[label], stage), b[members, -1], lengths[members, k])


def _finish(deployment: Deployment, finishes: dict[int, float]) -> float:
    """A deployment's finish in Unix seconds, converted once per compute however many items it released."""
    at = finishes.get(id(deployment))
    if at is None:
        at = finishes[id(deployment)] = deployment.finished_at.timestamp()
    return at


def _group(label_idx: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    """(label, positions) for each label value, positions in their original order."""
    order = np.argsort(label_idx, kind="stable")
    sorted_labels = label_idx[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    for chunk in np.split(order, bounds):
        if len(chunk):
            yield int(label_idx[chunk[0]]), chunk


def stage_lengths(bounds: np.ndarray) -> np.ndarray:
    """Stage lengths from boundaries, one row per item, NaN where a boundary is unknown.

    The first and last boundaries are known and in order. A missing boundary takes the next known
    one (its stage lasts nothing and the stage before it runs on); every boundary is moved up to
    the latest before it and down to the last. So a row's stages sum to last - first, exactly.
    """
    b = np.array(bounds, dtype=float, copy=True)
    if b.size == 0:
        return np.empty((0, max(b.shape[-1] - 1, 0) if b.ndim == 2 else 0))
    for j in range(b.shape[1] - 2, 0, -1):
        missing = np.isnan(b[:, j])
        b[missing, j] = b[missing, j + 1]
    last = b[:, -1].copy()
    np.maximum.accumulate(b, axis=1, out=b)
    np.minimum(b, last[:, None], out=b)
    return np.diff(b, axis=1)


def _seconds(at: datetime | None) -> float:
    return np.nan if at is None else at.timestamp()


def change_stage_bounds(changes: Sequence[Change], deployed: Sequence[float]) -> np.ndarray:
    """First commit | ready for review | first review by someone else | merged | deployed, per pull
    request (docs/definitions.md). Readiness unknown: the first commit. A review after the merge
    picked nothing up: pickup runs to the merge, as when nobody reviewed."""
    b = np.array(
        [
            (c.first_commit_at.timestamp(), _seconds(c.ready_at), _seconds(c.first_review_at), _seconds(c.merged_at), d)
            for c, d in zip(changes, deployed, strict=True)
        ],
        dtype=float,
    ).reshape(len(changes), 5)
    b[:, 1] = np.where(np.isnan(b[:, 1]), b[:, 0], b[:, 1])
    merged = ~np.isnan(b[:, 3])
    b[merged, 1] = np.minimum(b[merged, 1], b[merged, 3])
    b[:, 2] = np.where(np.isnan(b[:, 2]), b[:, 3], b[:, 2])
    b[merged, 2] = np.minimum(b[merged, 2], b[merged, 3])
    return b


def change_stages(deployed: Sequence[tuple[Change, float, float]]) -> dict[tuple[str, ...], np.ndarray]:
    """(source, service, stage) → (n, 2) array of (deployment finish, seconds) for deployed changes
    given as (change, finish, lead time). The stages are the pull request's: its own source and
    repository label them, the deploy stage too. A direct commit has only ``deploy``, its lead time."""
    label_of: dict[tuple[str, str], int] = {}
    index = np.fromiter(
        (label_of.setdefault((c.source, c.service), len(label_of)) for c, _, _ in deployed), dtype=np.int64
    )
    finish = np.fromiter((f for _, f, _ in deployed), dtype=float, count=len(deployed))
    lead = np.fromiter((v for _, _, v in deployed), dtype=float, count=len(deployed))
    is_pr = np.fromiter((c.kind == "pull_request" for c, _, _ in deployed), dtype=bool, count=len(deployed))
    pr_rows = np.flatnonzero(is_pr)
    prs = [deployed[int(i)][0] for i in pr_rows]
    lengths = stage_lengths(change_stage_bounds(prs, finish[pr_rows].tolist()))
    labels = list(label_of)
    out: dict[tuple[str, ...], np.ndarray] = {}
    for label, members in _group(index[pr_rows]):
        rows = pr_rows[members]
        for k, stage in enumerate(CHANGE_STAGES):
            out[(*labels[label], stage)] = np.column_stack([finish[rows], lengths[members, k]])
    commits = np.flatnonzero(~is_pr)
    for label, members in _group(index[commits]):
        rows = commits[members]
        pushed = np.column_stack([finish[rows], lead[rows]])
        key = (*labels[label], "deploy")
        out[key] = pushed if key not in out else np.vstack([out[key], pushed])  # a repository's PRs and pushes
    return out


def change_lead_times(
    changes: Sequence[Change], shipped: dict[tuple[str, str], Deployment]
) -> list[tuple[Change, Deployment, float, float]]:
    """(change, the first production deployment that shipped it, its finish, lead time) per deployed
    change (``shipped``: :func:`collector.linking.change_deliveries`). Lead time = that finish - the
    change's first commit; negative under clock skew."""
    out = []
    finishes: dict[int, float] = {}  # per deployment, which ships many changes
    for change in changes:
        deployment = shipped.get((change.source, change.native_id))
        if deployment is not None:
            finish = _finish(deployment, finishes)
            out.append((change, deployment, finish, finish - change.first_commit_at.timestamp()))
    return out


def _add_change_lead_times(
    changes: Sequence[Change], shipped: dict[tuple[str, str], Deployment], figures: Figures
) -> None:
    # (finishes, lead times) per label set, and per deployment the label set's lists (its labels are
    # read once, not once per change it shipped)
    by_labels: dict[tuple[str, ...], tuple[list[float], list[float]]] = {}
    of_deployment: dict[int, tuple[list[float], list[float]]] = {}
    deployed: list[tuple[Change, float, float]] = []
    for change, deployment, finish, value in change_lead_times(changes, shipped):
        if value < 0:  # never a negative observation: counted instead
            figures.rejected[(change.source, "end_before_start")] += 1
            continue
        into = of_deployment.get(id(deployment))
        if into is None:
            key: tuple[str, ...] = (deployment.source, deployment.service, deployment.environment)
            into = of_deployment[id(deployment)] = by_labels.setdefault(key, ([], []))
        into[0].append(finish)
        into[1].append(value)
        deployed.append((change, finish, value))
    for key, (ends, values) in by_labels.items():
        figures.change_lead_time.add_many(key, np.asarray(ends), np.asarray(values))
    figures.change_stages.by_labels.update(change_stages(deployed))


def recoveries(deployments: Iterable[Deployment]) -> list[tuple[tuple[str, str, str, str], float, float]]:
    """Failed deployment recovery times: (labels, recovered at, seconds).

    A run of consecutive failures is one incident, measured from its *first* failure to the next
    success of the same service and environment (what the service was actually down for); an
    unrecovered failure yields nothing yet.
    """
    streams: dict[tuple[str, str, str, str], list[Deployment]] = {}
    for d in deployments:
        streams.setdefault((d.source, d.service, d.environment, "true" if d.production else "false"), []).append(d)
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


def window_quantiles(
    observations: np.ndarray | Sequence[tuple[float, float]], now: float, window: float, quantiles: Sequence[float]
) -> WindowSummary:
    """Exact quantiles of the values whose end event lies in ``(now - window, now]``.

    NumPy's default ``linear`` method: linear interpolation between closest ranks.
    """
    data = np.asarray(observations, dtype=float)
    if data.size == 0:
        return WindowSummary(0, {})
    ends, values = data[:, 0], data[:, 1]
    selected = values[(ends > now - window) & (ends <= now)]
    if selected.size == 0:
        return WindowSummary(0, {})
    qs = np.quantile(selected, list(quantiles), method="linear")
    return WindowSummary(int(selected.size), {q: float(v) for q, v in zip(quantiles, qs, strict=True)})
