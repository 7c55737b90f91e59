"""A cap on distinct label values per source, so one organisation's 10,000 area paths or
environments cannot turn /metrics into hundreds of thousands of series.

Per source and label (``project``, ``team``, ``type``, ``environment``, ``service``, ``state``),
the values with the most observations are kept (ties by name, so the choice is stable); the rest
fold into ``other``, their observations and counts merged. How many values each (source, label)
folded is reported as ``cycletime_label_values_capped_total``. Pure: figures in, figures out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from collector.compute import Figures, Observations

OTHER = "other"
#: the labels that carry values from the source's data (``source`` is the config's own name)
CAPPED = ("project", "team", "type", "environment", "service", "state")

OBSERVATIONS = (
    "lead_time",
    "cycle_time",
    "request_to_release",
    "change_lead_time",
    "recovery",
    "deployment_events",
    "active_time",
)
#: folded like the others but not weighed: they split observations already counted above
STAGES = ("change_stages", "request_stages")
_COUNTERS = {
    "state_seconds": ("source", "project", "team", "type", "state", "category"),
    "deployments": ("source", "service", "environment", "production", "status"),
    "wip": ("source", "project", "team", "type", "category"),
}


def _label_sets(figures: Figures) -> Iterable[tuple[tuple[str, ...], tuple[str, ...], int]]:
    """(label names, label values, weight) of every series compute produced."""
    for attr in OBSERVATIONS:
        obs: Observations = getattr(figures, attr)
        for labels, pairs in obs.by_labels.items():
            yield obs.label_names, labels, len(pairs)
    for attr, names in _COUNTERS.items():
        for labels, value in getattr(figures, attr).items():
            yield names, labels, 1 if attr == "state_seconds" else int(value)


def cap_labels(figures: Figures, max_values: int) -> tuple[Figures, Counter[tuple[str, str]]]:
    """The figures with at most ``max_values`` distinct values per (source, label), and what was folded."""
    weights: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for names, labels, weight in _label_sets(figures):
        source = labels[0]
        for name, value in zip(names, labels, strict=True):
            if name in CAPPED:
                weights[(source, name)][value] += weight
    keep: dict[tuple[str, str], set[str]] = {}
    capped: Counter[tuple[str, str]] = Counter()
    for key, counts in weights.items():
        if len(counts) > max_values:
            ranked = sorted(counts, key=lambda v: (-counts[v], v))
            keep[key] = set(ranked[: max_values - 1])  # one place is left for "other"
            capped[key] = len(counts) - len(keep[key])
    if not keep:
        return figures, capped

    def fold(names: tuple[str, ...], labels: tuple[str, ...]) -> tuple[str, ...]:
        source = labels[0]
        return tuple(
            OTHER if (source, n) in keep and v not in keep[(source, n)] else v
            for n, v in zip(names, labels, strict=True)
        )

    out = Figures(rejected=figures.rejected)
    for attr in (*OBSERVATIONS, *STAGES):
        obs: Observations = getattr(figures, attr)
        merged: dict[tuple[str, ...], list[np.ndarray]] = defaultdict(list)
        for labels, pairs in obs.by_labels.items():
            merged[fold(obs.label_names, labels)].append(pairs)
        target: Observations = getattr(out, attr)
        target.by_labels = {labels: np.vstack(blocks) for labels, blocks in merged.items()}
    for attr, names in _COUNTERS.items():
        folded = getattr(out, attr)
        for counted, value in getattr(figures, attr).items():
            into = fold(names, counted)
            folded[into] = folded.get(into, 0) + value
    return out, capped
