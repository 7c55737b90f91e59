"""Every figure of docs/definitions.md, as pure functions from the domain model to numbers.

No I/O and no clock: ``now`` is passed in. Observations keep the time of their *end event*
(completion, release, deployment finish, recovery) so the rolling-window quantiles can select
``(now - window, now]`` exactly, and histograms/counters cover all history so they only grow.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from collector.errors import Rejected
from collector.linking import NEVER, ChangeTable, deliveries, linked_change_times
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
        block = np.column_stack([ends, values]).astype(float, copy=False)
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
#: items whose stays are derived at once: ~16 MB of temporaries at four revisions each
_ITEMS_PER_CHUNK = 1 << 18


def compute(
    work_items: Iterable[WorkItem] | WorkItemTable,
    changes: Iterable[Change],
    deployments: Iterable[Deployment],
    links: Iterable[Link],
    as_of: float | None = None,
) -> Figures:
    """All figures over all history; windowing happens in :func:`window_quantiles`.

    ``as_of`` (Unix time) computes the figures as they stood then from what the store holds:
    items created later, observations after it and deployments finishing after it are ignored,
    so counters hold the events finished by then (``cycletime metrics --at``, backfill).
    """
    table = work_items if isinstance(work_items, WorkItemTable) else WorkItemTable.from_items(work_items)
    return compute_tables(table, change_figures(ChangeTable.from_records(changes, deployments, links), as_of), as_of)


def compute_tables(table: WorkItemTable, derived: ChangeFigures, as_of: float | None = None) -> Figures:
    """:func:`compute` over columns, with what changes, deployments and links give derived already
    (:func:`change_figures` at the same ``as_of``): a refresh after work items alone changed keeps it.

    The vectorised twin of :func:`item_times` (a property test keeps them equal).
    """
    if as_of is not None:
        table = table.as_of(as_of)
    figures = Figures()
    _add_work_item_figures(table, derived.releases, figures)
    derived.add_to(figures)
    return figures


@dataclass(frozen=True)
class Releases:
    """The released work items, in delivery order: each one's ref, its release (the first
    successful production deployment of anything linked to it), and the (first ready, last merged)
    of its linked changes (NaN where there is none)."""

    refs: list[str]
    at: np.ndarray  # float64: the deployment's finish
    environment: np.ndarray  # int64 into environments
    environments: list[str]
    changes: np.ndarray  # (n, 2)

    def until(self, at: float) -> Releases:
        """Those released by ``at``."""
        n = int(np.searchsorted(self.at, at, side="right"))
        return Releases(self.refs[:n], self.at[:n], self.environment[:n], self.environments, self.changes[:n])


Blocks = dict[tuple[str, ...], np.ndarray]


@dataclass(frozen=True)
class ChangeFigures:
    """Every figure of changes, deployments and links alone, and the releases work items need.

    Work items change far more often than the rest: a refresh after they alone changed keeps this.
    Each block is (end, value) rows in ascending end, read-only (figures share them).
    """

    releases: Releases
    change_lead_time: Blocks
    change_stages: Blocks
    recovery: Blocks
    deployment_events: Blocks
    deployments: Counter[tuple[str, ...]]
    rejected: Counter[tuple[str, str]]

    def add_to(self, figures: Figures) -> None:
        figures.change_lead_time.by_labels.update(self.change_lead_time)
        figures.change_stages.by_labels.update(self.change_stages)
        figures.recovery.by_labels.update(self.recovery)
        figures.deployment_events.by_labels.update(self.deployment_events)
        figures.deployments.update(self.deployments)
        figures.rejected.update(self.rejected)


def _blocks(keys: np.ndarray, names: Sequence[tuple[str, ...]], ends: np.ndarray, values: np.ndarray) -> Blocks:
    """names[key] → (end, value) rows of that key, ascending end (stable), read-only."""
    return {
        tuple(names[key]): _sealed(np.column_stack([ends[members], values[members]]).astype(float))
        for key, members in _group(keys)
    }


def change_figures(t: ChangeTable, as_of: float | None = None) -> ChangeFigures:
    """Releases, change lead times and stages, deployments and recoveries, as of ``as_of``
    (deployments finished later did not happen yet)."""
    delivered = deliveries(t, as_of)
    live = np.flatnonzero(t.d_finish <= as_of) if as_of is not None else np.arange(len(t.d_finish))

    # releases, in delivery order
    released = np.flatnonzero(delivered.item != NEVER)
    by = delivered.item[released]
    order = np.argsort(by, kind="stable")
    released, by = released[order], by[order]
    environments = list(dict.fromkeys(labels[2] for labels in t.d_labels))
    env_of_label = np.array([environments.index(labels[2]) for labels in t.d_labels], dtype=np.int64)
    releases = Releases(
        [t.items[i] for i in released.tolist()],
        t.d_finish[by],
        env_of_label[t.d_label[by]] if len(by) else np.zeros(0, dtype=np.int64),
        environments,
        linked_change_times(t)[released],
    )

    # change lead time: the first production deployment's finish - the first commit
    rejected: Counter[tuple[str, str]] = Counter()
    deployed = np.flatnonzero(delivered.change != NEVER)
    by = delivered.change[deployed]
    finish = t.d_finish[by]
    lead = finish - t.c_first[deployed]
    negative = lead < 0  # never a negative observation: counted instead
    for label, count in Counter(t.c_label[deployed[negative]].tolist()).items():
        rejected[(t.c_labels[label][0], "end_before_start")] += count
    keep = ~negative
    deployed, by, finish, lead = deployed[keep], by[keep], finish[keep], lead[keep]
    lead_labels = list(dict.fromkeys(labels[:3] for labels in t.d_labels))
    lead_of_label = np.array([lead_labels.index(labels[:3]) for labels in t.d_labels], dtype=np.int64)
    lead_key = lead_of_label[t.d_label[by]] if len(by) else np.zeros(0, dtype=np.int64)

    # deployments, every environment and outcome
    d_label = t.d_label[live]
    counts = np.bincount(d_label, minlength=len(t.d_labels))
    return ChangeFigures(
        releases,
        _blocks(lead_key, lead_labels, finish, lead),
        change_stages(t, deployed, finish, lead),
        recoveries(t, live),
        _blocks(d_label, t.d_labels, t.d_finish[live], np.ones(len(live))),
        Counter({t.d_labels[label]: int(counts[label]) for label in np.flatnonzero(counts).tolist()}),
        rejected,
    )


def _add_work_item_figures(t: WorkItemTable, releases: Releases, figures: Figures) -> None:
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
    del firsts, same_as_prev
    # ...or released before it was created (a migrated item created after it shipped): such an
    # item cannot be ordered, so it is left out of every figure, not only request-to-release
    index = t.ref_index
    rows = np.fromiter((index.get(ref, -1) for ref in releases.refs), dtype=np.int64, count=len(releases.refs))
    released = np.flatnonzero(rows >= 0)  # releases of items in the table, in item order
    released = released[np.argsort(rows[released], kind="stable")]
    rel_item, rel_at = rows[released], releases.at[released]
    skewed[rel_item[rel_at < t.created[rel_item]]] = True

    # Stays, by chunks of items (their histories are contiguous): consecutive observations in the
    # same state collapse into one, and the stays' columns are copies, ~64 MB at once at a million
    # items with four revisions each.
    current = np.full(n, -1, dtype=np.int16)
    last_start = np.full(n, np.nan)
    first_started = np.full(n, np.inf)
    n_states, n_cats = max(len(t.states), 1), len(CATEGORIES)
    # time in state of completed items (every stay but the final, Completed, one) per label x state
    # x category: a small dense key space, so bincount sums without sorting
    sums = np.zeros(len(t.labels) * n_states * n_cats)
    counts = np.zeros(len(sums), dtype=np.int64)
    active = np.zeros(n)
    bounds = np.searchsorted(t.h_item, np.arange(0, n + _ITEMS_PER_CHUNK, _ITEMS_PER_CHUNK)).tolist()
    for lo, hi in itertools.pairwise(bounds):
        if lo == hi:
            continue
        s_item, s_start, s_state, s_cat = t.h_item[lo:hi], t.h_at[lo:hi], t.h_state[lo:hi], t.h_cat[lo:hi]
        new_stay = np.ones(len(s_item), dtype=bool)
        new_stay[1:] = (s_item[1:] != s_item[:-1]) | (s_state[1:] != s_state[:-1])
        if not new_stay.all():  # a boolean mask, not an index array: no 8-byte index per observation
            s_item, s_start, s_state, s_cat = s_item[new_stay], s_start[new_stay], s_state[new_stay], s_cat[new_stay]
        del new_stay
        s_last = np.ones(len(s_item), dtype=bool)
        s_last[:-1] = s_item[1:] != s_item[:-1]
        current[s_item[s_last]] = s_cat[s_last]
        last_start[s_item[s_last]] = s_start[s_last]
        started = (s_cat == _STARTED[0]) | (s_cat == _STARTED[1])
        np.minimum.at(first_started, s_item[started], s_start[started])
        del started
        closed = (current[s_item] == _COMPLETED) & ~skewed[s_item] & ~s_last
        closed = np.flatnonzero(closed)
        # a closed stay is never its item's last: it ends where the next stay starts
        durations = s_start[closed + 1] - s_start[closed]
        item = s_item[closed]
        keys = t.label_idx[item].astype(np.int64)
        keys *= n_states
        keys += s_state[closed]
        keys *= n_cats
        keys += s_cat[closed]
        sums += np.bincount(keys, weights=durations, minlength=len(sums))
        counts += np.bincount(keys, minlength=len(sums))
        working = s_cat[closed] == CAT_CODE[Category.IN_PROGRESS]
        active += np.bincount(item[working], weights=durations[working], minlength=n)
        del s_item, s_start, s_state, s_cat, s_last, closed, durations, item, keys, working

    valid = ~skewed & (current != _REMOVED)
    for label, count in Counter(t.label_idx[skewed].tolist()).items():
        figures.rejected[(t.labels[label][0], "end_before_start")] += count

    for cat in _WIP:
        wip = valid & (current == cat)
        for label, count in zip(*np.unique(t.label_idx[wip], return_counts=True), strict=True):
            figures.wip[(*t.labels[label], CATEGORIES[cat].value)] += int(count)

    completed = valid & (current == _COMPLETED)
    for key in np.flatnonzero(counts).tolist():
        seconds = float(sums[key])
        rest, cat = divmod(key, n_cats)
        label, state = divmod(rest, n_states)
        figures.state_seconds[(*t.labels[label], t.states[state], CATEGORIES[cat].value)] = seconds

    # per label set, from the per-item columns: no million-long temporaries beside the new figures
    done = np.flatnonzero(completed)
    del completed
    for label, members in _group(t.label_idx[done]):
        items = done[members]
        completed_at = last_start[items]
        figures.lead_time.add_many(t.labels[label], completed_at, completed_at - t.created[items])
        figures.active_time.add_many(t.labels[label], completed_at, active[items])
        started_at = first_started[items]
        has_cycle = np.isfinite(started_at)
        if has_cycle.any():
            figures.cycle_time.add_many(
                t.labels[label], completed_at[has_cycle], completed_at[has_cycle] - started_at[has_cycle]
            )
    del done, last_start, active

    # request-to-release and the request stages of the valid released items, in item order, per label set
    kept = valid[rel_item]
    if not kept.any():
        return
    item, released_at, released = rel_item[kept], rel_at[kept], released[kept]
    environments = releases.environments
    label_env = t.label_idx[item].astype(np.int64) * len(environments) + releases.environment[released]
    waited = released_at - t.created[item]
    for key, members in _group(label_env):
        label, env = divmod(key, len(environments))
        figures.request_to_release.add_many(
            (*t.labels[label], environments[env]), released_at[members], waited[members]
        )
    # created | first started | first linked PR ready | last linked change merged | released
    b = np.empty((len(item), 5))
    b[:, 0], b[:, 1], b[:, 4] = t.created[item], first_started[item], released_at
    b[:, 2:4] = releases.changes[released]
    b[~np.isfinite(b)] = np.nan  # never started: first_started is +inf
    lengths = stage_lengths(b)
    for label, members in _group(t.label_idx[item]):
        for k, stage in enumerate(REQUEST_STAGES):
            figures.request_stages.add_many((*t.labels[label], stage), b[members, -1], lengths[members, k])


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


def _sealed(block: np.ndarray) -> np.ndarray:
    """The rows in ascending (end, value), read-only: the same block whichever order the rows
    arrived in (a full load and an update give equal figures); figures of refreshes share it."""
    block = block[np.lexsort((block[:, 1], block[:, 0]))]
    block.flags.writeable = False
    return block


def change_stage_bounds(
    first: np.ndarray, ready: np.ndarray, review: np.ndarray, merged: np.ndarray, deployed: np.ndarray
) -> np.ndarray:
    """First commit | ready for review | first review by someone else | merged | deployed, per pull
    request (docs/definitions.md; NaN: unknown). Readiness unknown: the first commit. A review
    after the merge picked nothing up: pickup runs to the merge, as when nobody reviewed."""
    b = np.column_stack([first, ready, review, merged, deployed]).astype(float)
    b[:, 1] = np.where(np.isnan(b[:, 1]), b[:, 0], b[:, 1])
    was_merged = ~np.isnan(b[:, 3])
    b[was_merged, 1] = np.minimum(b[was_merged, 1], b[was_merged, 3])
    b[:, 2] = np.where(np.isnan(b[:, 2]), b[:, 3], b[:, 2])
    b[was_merged, 2] = np.minimum(b[was_merged, 2], b[was_merged, 3])
    return b


def change_stages(t: ChangeTable, deployed: np.ndarray, finish: np.ndarray, lead: np.ndarray) -> Blocks:
    """(source, service, stage) → (deployment finish, seconds) of the ``deployed`` changes (rows of
    ``t``, with their first production deployment's finish and their lead time). The stages are the
    pull request's: its own source and repository label them, the deploy stage too. A direct
    commit has only ``deploy``, its lead time."""
    label = t.c_label[deployed]
    prs = np.flatnonzero(t.c_pr[deployed])
    rows = deployed[prs]
    bounds = change_stage_bounds(t.c_first[rows], t.c_ready[rows], t.c_review[rows], t.c_merged[rows], finish[prs])
    lengths = stage_lengths(bounds)
    out: Blocks = {}
    for key, members in _group(label[prs]):
        for k, stage in enumerate(CHANGE_STAGES):
            out[(*t.c_labels[key], stage)] = np.column_stack([finish[prs[members]], lengths[members, k]])
    commits = np.flatnonzero(~t.c_pr[deployed])
    for key, members in _group(label[commits]):
        pushed = np.column_stack([finish[commits[members]], lead[commits[members]]])
        name = (*t.c_labels[key], "deploy")
        out[name] = pushed if name not in out else np.vstack([out[name], pushed])  # a repository's PRs and pushes
    return {name: _sealed(block) for name, block in out.items()}


def recoveries(t: ChangeTable, rows: np.ndarray) -> Blocks:
    """(source, service, environment, production) → (recovered at, seconds) of failed deployments
    among ``rows`` (rows of ``t``, in delivery order).

    A run of consecutive failures is one incident, measured from its *first* failure to the next
    success of the same service and environment (what the service was actually down for); an
    unrecovered failure yields nothing yet.
    """
    failed_since: dict[tuple[str, ...], float] = {}
    out: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for label, at in zip(t.d_label[rows].tolist(), t.d_finish[rows].tolist(), strict=True):
        labels = t.d_labels[label]
        stream, status = labels[:4], labels[4]
        if status == "failure":
            failed_since.setdefault(stream, at)
        elif status == "success" and stream in failed_since:
            out.setdefault(stream, []).append((at, at - failed_since.pop(stream)))
    return {stream: _sealed(np.array(pairs, dtype=float)) for stream, pairs in out.items()}


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
