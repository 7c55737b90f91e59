"""Prometheus exposition: a custom collector translating figures into metric families.

The exporter only translates (STYLE.md): figures come from :mod:`collector.figures` (which owns
when to compute), self-metrics from the store's counters as the snapshot read them, so a restart
re-exports identical counters and buckets. A scrape serves bytes rendered once per snapshot for
each negotiated format; the HTTP server is :mod:`exporters.web`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics

from collector.cardinality import cap_labels
from collector.compute import BUCKETS, Figures, Observations, histogram, window_quantiles
from collector.figures import FigureCache, Settings, Snapshot
from collector.runner import POLL_BUCKETS
from collector.sharding import Shards
from collector.store import ApiBudget, SourceStatus, Store

__all__ = [
    "MetricsCache",
    "Settings",
    "figure_families",
    "render",
    "self_families",
    "shard_families",
    "store_families",
    "with_runtime",
]

log = logging.getLogger(__name__)

HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "lead_time",
        "cycletime_work_item_lead_time",
        "Lead time of completed work items: completed_at - created_at (Azure DevOps Analytics' Lead Time).",
    ),
    (
        "cycle_time",
        "cycletime_work_item_cycle_time",
        "Cycle time of completed work items: completed_at - first entry into InProgress or Resolved.",
    ),
    (
        "request_to_release",
        "cycletime_request_to_release",
        "Request-to-release: first successful production deployment containing a linked change - created_at.",
    ),
    (
        "change_lead_time",
        "cycletime_change_lead_time",
        "DORA lead time for changes: first successful production deployment containing the change - first commit.",
    ),
    (
        "recovery",
        "cycletime_failed_deployment_recovery",
        "Failed deployment recovery time: next successful deployment - first failed deployment, same environment.",
    ),
    (
        "change_stages",
        "cycletime_change_stage",
        "A deployed pull request's time per stage: coding (first commit to ready for review), pickup (to the first "
        "review by someone else, or the merge), review (to the merge), deploy (to the first successful production "
        "deployment containing it). A direct commit has only deploy.",
    ),
    (
        "request_stages",
        "cycletime_request_stage",
        "A released work item's request-to-release per stage: backlog (created to first started), development "
        "(to the first linked PR ready for review), review (to the last linked change merged), release (to the "
        "release). The stages of an item sum to its request-to-release.",
    ),
)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def figure_families(figures: Figures, settings: Settings, now: float) -> list[Metric]:
    """Histograms, window gauges, counters and WIP gauges (docs/metrics.md) from compute's figures,
    with at most ``max_label_values`` values per label per source."""
    figures, capped = cap_labels(figures, settings.max_label_values)
    # a shard: the series of its scopes, capped and computed over the whole store (docs/sharding.md)
    figures = settings.partition.figures(figures)
    capped = Counter({key: n for key, n in capped.items() if settings.partition.owns_source(key[0])})
    families: list[Metric] = []
    for attr, base, doc in HISTOGRAMS:
        obs: Observations = getattr(figures, attr)
        names = list(obs.label_names)
        hist = HistogramMetricFamily(f"{base}_seconds", doc, labels=names)
        quant = GaugeMetricFamily(
            f"{base}_window_seconds",
            f"Exact quantile over the items whose end event is in the window. {doc}",
            labels=[*names, "window", "quantile"],
        )
        count = GaugeMetricFamily(
            f"{base}_window_count", "How many items the window quantiles are over.", labels=[*names, "window"]
        )
        for labels in sorted(obs.by_labels):
            pairs = obs.by_labels[labels]
            data = histogram(pairs[:, 1])
            hist.add_metric(list(labels), [(_le(b), c) for b, c in zip(BUCKETS, data.buckets, strict=True)], data.total)
            for window_label, seconds in settings.windows:
                summary = window_quantiles(pairs, now, seconds, settings.quantiles)
                count.add_metric([*labels, window_label], summary.count)
                for q, value in summary.quantiles.items():
                    quant.add_metric([*labels, window_label, repr(q)], value)
        families += [hist, quant, count]

    state = CounterMetricFamily(
        "cycletime_work_item_state_seconds",
        "Time completed work items spent in each state (flow efficiency, waiting).",
        labels=["source", "project", "team", "type", "state", "category"],
    )
    for labels, seconds in sorted(figures.state_seconds.items()):
        state.add_metric(list(labels), seconds)
    deployments = CounterMetricFamily(
        "cycletime_deployments",
        "Deployments by outcome, every environment.",
        labels=["source", "service", "environment", "production", "status"],
    )
    for labels, n in sorted(figures.deployments.items()):
        deployments.add_metric(list(labels), n)
    windows = _window_families(figures, settings, now)
    wip = GaugeMetricFamily(
        "cycletime_work_items_in_progress",
        "Work items now in each non-terminal state category (WIP).",
        labels=["source", "project", "team", "type", "category"],
    )
    for labels, n in sorted(figures.wip.items()):
        wip.add_metric(list(labels), n)
    folded = CounterMetricFamily(
        "cycletime_label_values_capped",
        "Label values folded into 'other' by the per-source cap (max_label_values).",
        labels=["source", "label"],
    )
    for (source, label), n in sorted(capped.items()):
        folded.add_metric([source, label], n)
    return [*families, state, deployments, *windows, wip, folded]


def _window_families(figures: Figures, settings: Settings, now: float) -> list[Metric]:
    """Per-window figures that panels would otherwise need days of scrapes for (``increase()``)."""
    counts = GaugeMetricFamily(
        "cycletime_deployments_window_count",
        "Deployments finished in the window: deployment frequency and change failure rate from the first scrape.",
        labels=[*figures.deployment_events.label_names, "window"],
    )
    for labels in sorted(figures.deployment_events.by_labels):
        ends = figures.deployment_events.by_labels[labels][:, 0]
        for window_label, seconds in settings.windows:
            counts.add_metric([*labels, window_label], float(((ends > now - seconds) & (ends <= now)).sum()))
    flow = GaugeMetricFamily(
        "cycletime_work_item_flow_efficiency_window_ratio",
        "Time in the InProgress category / lead time, over the items completed in the window.",
        labels=[*figures.active_time.label_names, "window"],
    )
    for labels in sorted(figures.active_time.by_labels):
        active, lead = figures.active_time.by_labels[labels], figures.lead_time.by_labels.get(labels)
        if lead is None:
            continue
        for window_label, seconds in settings.windows:
            in_window = (active[:, 0] > now - seconds) & (active[:, 0] <= now)
            lead_in_window = (lead[:, 0] > now - seconds) & (lead[:, 0] <= now)
            total = float(lead[lead_in_window, 1].sum())
            if total > 0:
                flow.add_metric([*labels, window_label], float(active[in_window, 1].sum()) / total)
    return [counts, flow]


class HealthCounters(Protocol):
    """What the self-metrics read: a :class:`~collector.figures.StoreHealth` snapshot, or the store."""

    def statuses(self) -> Mapping[str, SourceStatus]: ...
    def poll_histograms(self) -> Mapping[str, tuple[Mapping[int, int], float]]: ...
    def api_request_counts(self) -> Mapping[tuple[str, str], int]: ...
    def rejection_counts(self) -> Mapping[tuple[str, str], int]: ...
    def budgets(self) -> Mapping[tuple[str, str], ApiBudget]: ...
    def backlogs(self) -> Mapping[str, int]: ...


def self_families(
    store: HealthCounters, settings: Settings, compute_rejections: Iterable[tuple[tuple[str, str], int]]
) -> list[Metric]:
    """The collector's own health, as the store holds it, so restarts do not reset counters.
    A shard exports the sources whose own scope it owns, once for all shards: the counters sum
    every shard's passes, the health combines them (down when any shard's last pass failed;
    docs/sharding.md), so each series is on one shard and a failing shard is never hidden."""
    owns = settings.partition.owns_source
    statuses = store.statuses()
    up = GaugeMetricFamily("cycletime_source_up", "1 if the last poll of the source succeeded.", labels=["source"])
    last = GaugeMetricFamily(
        "cycletime_source_last_success_timestamp_seconds",
        "End of the last successful poll (Unix time).",
        labels=["source"],
    )
    budget = GaugeMetricFamily(
        "cycletime_api_rate_limit_remaining", "Last rate-limit budget the API reported.", labels=["source"]
    )
    for name in sorted(n for n in set(settings.sources) | set(statuses) if owns(n)):
        status = statuses.get(name)
        up.add_metric([name], 1.0 if status and status.ok else 0.0)
        if status and status.last_success:
            last.add_metric([name], status.last_success.timestamp())
        if status and status.rate_limit_remaining is not None:
            budget.add_metric([name], status.rate_limit_remaining)
    polls = HistogramMetricFamily("cycletime_source_poll_duration_seconds", "Duration of polls.", labels=["source"])
    for name, (counts, total) in sorted(store.poll_histograms().items()):
        if not owns(name):
            continue
        cumulative, running = [], 0
        for index, bound in enumerate(POLL_BUCKETS):
            running += counts.get(index, 0)
            cumulative.append((_le(bound), running))
        polls.add_metric([name], cumulative, total)
    requests_total = CounterMetricFamily(
        "cycletime_api_requests", "HTTP requests sent to the source API.", labels=["source", "code"]
    )
    for (name, code), n in sorted(store.api_request_counts().items()):
        if not owns(name):
            continue
        requests_total.add_metric([name, code], n)
    rejected = CounterMetricFamily(
        "cycletime_records_rejected", "Input records skipped as invalid.", labels=["source", "reason"]
    )
    merged: dict[tuple[str, str], int] = dict(store.rejection_counts())
    for key, n in compute_rejections:
        merged[key] = merged.get(key, 0) + n
    for (name, reason), n in sorted(merged.items()):
        if not owns(name):
            continue
        rejected.add_metric([name, reason], n)
    return [up, last, budget, *_budget_families(store, owns), polls, requests_total, rejected]


def _budget_families(store: HealthCounters, owns: Callable[[str], bool]) -> list[Metric]:
    """Each API's budget and the work left behind, as the sources' last passes saw them."""
    remaining = GaugeMetricFamily(
        "cycletime_api_budget_remaining",
        "Rate-limit budget left in the current window, per API (rest, graphql), as the last pass saw it.",
        labels=["source", "api"],
    )
    for (name, api), b in sorted(store.budgets().items()):
        if not owns(name):
            continue
        remaining.add_metric([name, api], b.remaining)
    backlog = GaugeMetricFamily(
        "cycletime_sync_backlog",
        "Work the last pass knew to remain (GitHub: repository streams not brought up to date).",
        labels=["source"],
    )
    for name, n in sorted(store.backlogs().items()):
        if not owns(name):
            continue
        backlog.add_metric([name], n)
    return [remaining, backlog]


def store_families(store: Store) -> list[Metric]:
    """The store's health as this process last saw it: readable even when the store is not."""
    up = GaugeMetricFamily("cycletime_store_up", "1 if the last use of the store succeeded.")
    up.add_metric([], 1.0 if store.healthy else 0.0)
    failures = CounterMetricFamily(
        "cycletime_store_failures", "Store operations that failed in this process (disk full, database unreachable)."
    )
    failures.add_metric([], store.failures)
    return [up, failures]


def shard_families(shards: Shards, skipped: Mapping[str, int] | None = None) -> list[Metric]:
    """Who this replica is among the shards, and the scopes it found another replica polling
    (docs/sharding.md): this process's own, like the process metrics; none when not sharded."""
    if not shards.sharded:
        return []
    info = GaugeMetricFamily(
        "cycletime_shard_info", "This replica's shard and the number of shards (always 1).", labels=["shard", "total"]
    )
    info.add_metric([str(shards.shard), str(shards.total)], 1.0)
    families: list[Metric] = [info]
    if skipped is not None:
        held = CounterMetricFamily(
            "cycletime_shard_scopes_skipped",
            "Scopes this replica owns but skipped in a pass because another replica held their lock "
            "(two replicas with one shard number), since this process started.",
            labels=["source"],
        )
        for name, n in sorted(skipped.items()):
            held.add_metric([name], n)
        families.append(held)
    return families


class _Families:
    """A registry-compatible collector over a fixed list of families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _registry(families: Sequence[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


def render(families: Sequence[Metric], openmetrics_format: bool = False) -> bytes:
    registry = _registry(families)
    if openmetrics_format:
        text: bytes = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return text
    return generate_latest(registry)


class MetricsCache:
    """The exposition of a :class:`FigureCache`'s snapshot, rendered once per snapshot and format.

    A refresh builds the new renderings aside and swaps them in whole, so a scrape never waits for
    a computation: it serves the previous snapshot's bytes meanwhile.
    """

    def __init__(self, figures: FigureCache, extra: Callable[[], Sequence[Metric]] | None = None) -> None:
        self.figures = figures
        self.settings = figures.settings
        #: this process's own families rendered with each snapshot (a shard's ``cycletime_shard_info``)
        self.extra = extra or (lambda: shard_families(figures.settings.partition.shards))
        self._lock = threading.Lock()  # one refresh at a time
        self._seen: tuple[Figures, float] | None = None  # the figures and window end translated last
        self._figure_families: list[Metric] = []
        #: the families of the current snapshot and their renderings by content type
        self._current: tuple[list[Metric], dict[str, bytes]] | None = None

    def refresh(self, force: bool = False) -> None:
        """Refresh the figures (see :meth:`FigureCache.refresh`) and render what changed."""
        with self._lock:
            families = self._translate(self.figures.refresh(force))
            rendered: dict[str, bytes] = {}
            for accept in ("", "application/openmetrics-text"):  # what scrapers ask for: ready before they do
                encoder, content_type = choose_encoder(accept)
                rendered[content_type] = encoder(_registry(families))
            self._current = (families, rendered)

    def _translate(self, snapshot: Snapshot) -> list[Metric]:
        if not snapshot.computed:  # the store failed before anything was computed
            return [*store_families(self.figures.store), *self.extra()]
        seen = self._seen
        if seen is None or seen[0] is not snapshot.figures or seen[1] != snapshot.now:
            self._figure_families = figure_families(snapshot.figures, self.settings, snapshot.now)
            self._seen = (snapshot.figures, snapshot.now)
        return [
            *self._figure_families,
            *self_families(snapshot.health, self.settings, snapshot.figures.rejected.items()),
            *store_families(self.figures.store),
            *self.extra(),
        ]

    def encoded(self, encoder: Callable[[CollectorRegistry], bytes], content_type: str) -> bytes:
        """The cached figures in the format ``choose_encoder`` negotiated (without process metrics)."""
        if self._current is None:
            self.refresh()
        assert self._current is not None
        families, rendered = self._current
        body = rendered.get(content_type)
        if body is None:  # a rarer format (another OpenMetrics version, escaping): rendered once on demand
            body = rendered[content_type] = encoder(_registry(families))
        return body

    def exposition(self, openmetrics_format: bool = False) -> bytes:
        """The cached figures of the store (the HTTP handler appends the live process metrics)."""
        return self.encoded(*choose_encoder("application/openmetrics-text" if openmetrics_format else ""))


def _runtime_registry() -> CollectorRegistry:
    """process_*, python_* and cycletime_build_info: what operators expect of any exporter."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Info("cycletime_build", "Version of the collector.", registry=registry)
    try:
        info.info({"version": metadata.version("cycletime-collector")})
    except metadata.PackageNotFoundError:
        info.info({"version": "unknown"})
    return registry


RUNTIME = _runtime_registry()


def with_runtime(cached: bytes, openmetrics_format: bool) -> bytes:
    """Cached figures + live process metrics, rendered per scrape (a few dozen samples)."""
    encoder, _ = choose_encoder("application/openmetrics-text" if openmetrics_format else "")
    return with_runtime_encoded(cached, encoder)


def with_runtime_encoded(cached: bytes, encoder: Callable[[CollectorRegistry], bytes]) -> bytes:
    """``cached`` (rendered by ``encoder``) followed by the live process metrics in the same format."""
    return without_eof(cached) + encoder(RUNTIME)


def without_eof(cached: bytes) -> bytes:
    """The cached figures without OpenMetrics' closing ``# EOF``: the live process metrics follow,
    and their rendering ends with it."""
    return cached.removesuffix(b"# EOF\n")
