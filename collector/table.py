"""Work items as columns: what the store loads and compute reads, shared by both.

A million items with five revisions each are ~100 MB as typed arrays and gigabytes as objects,
so the store streams rows straight into a :class:`TableBuilder` and compute works on NumPy views.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from collector.model import Category, WorkItem

CATEGORIES: tuple[Category, ...] = tuple(Category)
CAT_CODE = {c: i for i, c in enumerate(CATEGORIES)}
#: a category or its name → its code (the store hands over names, sources hand over categories)
_CAT_CODE_ANY: dict[Category | str, int] = {}
for _category, _code in CAT_CODE.items():
    _CAT_CODE_ANY[_category] = _CAT_CODE_ANY[_category.value] = _code


@dataclass
class WorkItemTable:
    """Work items as columns, so compute is vectorised and 1M items fit in memory.

    Items are rows 0..n-1; their histories are rows of the ``h_*`` arrays sorted by (item, seq).
    ``labels[label_idx[i]]`` is item i's (source, project, team, type).
    """

    labels: list[tuple[str, str, str, str]]
    label_idx: np.ndarray  # int32[n]
    #: ref → row, for the items that may be released (all of them, unless the builder was told
    #: which refs have links: a million ref strings would cost ~100 MB for nothing)
    ref_index: dict[str, int]
    created: np.ndarray  # float64[n]
    states: list[str]
    h_item: np.ndarray  # int32[m]
    h_at: np.ndarray  # float64[m]
    h_state: np.ndarray  # int32[m]
    h_cat: np.ndarray  # int8[m]

    def __len__(self) -> int:
        return len(self.created)

    def as_of(self, at: float) -> WorkItemTable:
        """The table as it stood at ``at``: later items and later observations dropped."""
        alive = self.created <= at
        keep_obs = (self.h_at <= at) & alive[self.h_item]
        if alive.all() and keep_obs.all():
            return self
        rows = np.flatnonzero(alive)
        new_row = np.full(len(self.created), -1, dtype=np.int32)
        new_row[rows] = np.arange(len(rows), dtype=np.int32)
        ref_index = {ref: int(new_row[i]) for ref, i in self.ref_index.items() if alive[i]}
        return WorkItemTable(
            self.labels,
            self.label_idx[rows],
            ref_index,
            self.created[rows],
            self.states,
            new_row[self.h_item[keep_obs]],
            self.h_at[keep_obs],
            self.h_state[keep_obs],
            self.h_cat[keep_obs],
        )

    @classmethod
    def from_items(cls, items: Iterable[WorkItem]) -> WorkItemTable:
        builder = TableBuilder()
        for item in items:
            i = builder.item(item.source, item.project, item.team, item.type, item.ref, item.created_at.timestamp())
            for obs in sorted(item.history, key=lambda s: s.seq):
                builder.observe(i, obs.at.timestamp(), obs.state, obs.category)
        return builder.build()


class TableBuilder:
    """Accumulates items and (item-ordered) observations into a WorkItemTable.

    Typed ``array`` buffers, not lists: a million items with five revisions each stay ~100 MB.
    """

    def __init__(self, linked: set[str] | None = None) -> None:
        self._labels: dict[tuple[str, str, str, str], int] = {}
        self._states: dict[str, int] = {}
        self._linked = linked
        self.label_idx = array("i")
        self.ref_index: dict[str, int] = {}
        self.created = array("d")
        self.h_item = array("i")
        self.h_at = array("d")
        self.h_state = array("i")
        self.h_cat = array("b")

    def item(self, source: str, project: str, team: str, type_: str, ref: str, created: float) -> int:
        key = (source, project, team, type_)
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = len(self._labels)
        self.label_idx.append(label)
        self.created.append(created)
        row = len(self.created) - 1
        if self._linked is None or ref in self._linked:
            self.ref_index[ref] = row
        return row

    def observe(self, item: int, at: float, state: str, category: Category | str) -> None:
        self.observe_many([(item, at, state, category)])

    def observe_many(self, rows: Iterable[tuple[int, float, str, Category | str]]) -> None:
        """The store's hot loop (millions of rows): locals and dict lookups only."""
        states, cats = self._states, _CAT_CODE_ANY
        add_item, add_at, add_state, add_cat = (
            self.h_item.append,
            self.h_at.append,
            self.h_state.append,
            self.h_cat.append,
        )
        for item, at, state, category in rows:
            code = states.get(state)
            if code is None:
                code = states[state] = len(states)
            add_item(item)
            add_at(at)
            add_state(code)
            add_cat(cats[category])

    def build(self) -> WorkItemTable:
        # views over the typed buffers, not copies: the builder is dropped right after
        return WorkItemTable(
            list(self._labels),
            np.frombuffer(self.label_idx, dtype=np.int32),
            self.ref_index,
            np.frombuffer(self.created, dtype=float),
            list(self._states),
            np.frombuffer(self.h_item, dtype=np.int32),
            np.frombuffer(self.h_at, dtype=float),
            np.frombuffer(self.h_state, dtype=np.int32),
            np.frombuffer(self.h_cat, dtype=np.int8),
        )
