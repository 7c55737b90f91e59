"""Work items as columns: what the store loads and compute reads, shared by both.

A million items with five revisions each are ~100 MB as typed arrays and gigabytes as objects,
so the store streams rows straight into a :class:`TableBuilder` and compute works on NumPy views.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    h_state: np.ndarray  # int16[m] while there are fewer than 32,768 states, int32 beyond
    h_cat: np.ndarray  # int8[m]
    #: each item's ``work_items.item_no`` in the store (0 when not from a store): rows are in this
    #: order, and an item written later numbers after every earlier one, so new items append
    item_no: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # int64[n]

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
            self.item_no[rows] if len(self.item_no) else self.item_no,
        )

    def in_item_no_order(self) -> WorkItemTable:
        """The same table with its rows in ``item_no`` order (histories regrouped to follow).

        The store streams items in key order (so histories merge onto them in one pass); the
        figures keep them in item number order, the one order new items can be appended to.
        """
        n, m = len(self), len(self.h_item)
        if n < 2 or bool((self.item_no[1:] > self.item_no[:-1]).all()):
            return self
        order = np.argsort(self.item_no, kind="stable")
        new_row = np.empty(n, dtype=np.int32)
        new_row[order] = np.arange(n, dtype=np.int32)
        lengths = np.bincount(self.h_item, minlength=n)
        old_start = np.cumsum(lengths) - lengths
        lengths, old_start = lengths[order], old_start[order]
        # history row j of the new table is old row start(item) + (j - new start(item))
        gather = np.repeat(old_start - (np.cumsum(lengths) - lengths), lengths)
        gather += np.arange(m)
        del old_start
        table = WorkItemTable(
            self.labels,
            self.label_idx[order],
            {ref: int(new_row[row]) for ref, row in self.ref_index.items()},
            self.created[order],
            self.states,
            np.repeat(np.arange(n, dtype=np.int32), lengths),
            self.h_at[gather],
            self.h_state[gather],
            self.h_cat[gather],
            self.item_no[order],
        )
        return table

    def merge(
        self, delta: WorkItemTable, delta_refs: Sequence[str], linked: Container[str], newly_linked: Mapping[str, int]
    ) -> bool:
        """Take in changed and new items, in place: what a full load would give, far cheaper.

        ``delta``: the items written since this table was loaded, whole (built ``extends=self``,
        in item number order); an item already here is replaced (row and history), a new one
        appended. ``delta_refs``: the delta's refs, row by row. ``linked``: every ref that has a
        link now; ``newly_linked``: ref → item number of refs whose first link arrived with the
        delta, for items that did not change. False, changing nothing, when only a full load
        answers the same: a new item numbered before existing ones, a ref that changed or that
        two items share (the full load decides which one a link releases), item numbers that are
        not unique.
        """
        n = len(self)
        if n > 1 and not bool((self.item_no[1:] > self.item_no[:-1]).all()):
            return False  # rows written around the store (no item numbers): nothing to find them by
        pos = np.searchsorted(self.item_no, delta.item_no)
        exists = pos < n
        exists[exists] = self.item_no[pos[exists]] == delta.item_no[exists]
        fresh = ~exists
        if fresh.any() and n and delta.item_no[fresh][0] <= self.item_no[-1]:
            return False
        rows = np.where(exists, pos, n + np.cumsum(fresh) - 1).astype(np.int32)
        changed_rows = set(pos[exists].tolist())
        old_refs = {row: ref for ref, row in self.ref_index.items() if row in changed_rows} if changed_rows else {}
        updates: dict[str, int] = {}
        for row, ref in zip(rows.tolist(), delta_refs, strict=True):
            old = old_refs.get(row)
            if old is not None and old != ref:
                return False
            if ref in linked:
                current = updates.get(ref, self.ref_index.get(ref))
                if current is not None and current != row:
                    return False
                updates[ref] = row
        for ref, number in newly_linked.items():
            at = int(np.searchsorted(self.item_no, number))
            if at == n or self.item_no[at] != number or at in changed_rows:
                continue  # an item of the delta (handled above) or written after it (the next delta)
            current = updates.get(ref, self.ref_index.get(ref))
            if current is not None and current != at:
                return False
            updates[ref] = at

        self.ref_index.update(updates)
        if not len(delta):
            return True  # links or other records only: the columns stay as they are
        replaced = pos[exists]
        self.labels, self.states = delta.labels, delta.states
        self.label_idx = np.concatenate([self.label_idx, delta.label_idx[fresh]])
        self.label_idx[replaced] = delta.label_idx[exists]
        self.created = np.concatenate([self.created, delta.created[fresh]])
        self.created[replaced] = delta.created[exists]
        self.item_no = np.concatenate([self.item_no, delta.item_no[fresh]])
        # histories: drop the replaced items' rows, then insert the delta's where their items sort
        changed = np.zeros(n, dtype=bool)
        changed[replaced] = True
        drop = np.flatnonzero(changed[self.h_item])
        del changed
        kept_item = np.delete(self.h_item, drop)
        delta_item = rows[delta.h_item]
        at = np.searchsorted(kept_item, delta_item)
        self.h_item = np.insert(kept_item, at, delta_item)
        del kept_item
        self.h_at = np.insert(np.delete(self.h_at, drop), at, delta.h_at)
        kept_state = np.delete(self.h_state, drop)
        if delta.h_state.dtype.itemsize > kept_state.dtype.itemsize:  # the delta's states outgrew int16
            kept_state = kept_state.astype(delta.h_state.dtype)
        self.h_state = np.insert(kept_state, at, delta.h_state)
        del kept_state
        self.h_cat = np.insert(np.delete(self.h_cat, drop), at, delta.h_cat)
        return True

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

    def __init__(self, linked: set[str] | None = None, extends: WorkItemTable | None = None) -> None:
        """``extends``: a table whose label and state codes the built one keeps (``merge`` needs them)."""
        self._labels: dict[tuple[str, str, str, str], int] = {}
        self._states: dict[str, int] = {}
        if extends is not None:
            self._labels = {label: i for i, label in enumerate(extends.labels)}
            self._states = {state: i for i, state in enumerate(extends.states)}
        self._linked = linked
        self.label_idx = array("i")
        self.ref_index: dict[str, int] = {}
        self.created = array("d")
        self.h_item = array("i")
        self.h_at = array("d")
        self.h_state = array("i")
        self.h_cat = array("b")
        self.item_no = array("q")

    def item(self, source: str, project: str, team: str, type_: str, ref: str, created: float, item_no: int = 0) -> int:
        key = (source, project, team, type_)
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = len(self._labels)
        self.label_idx.append(label)
        self.created.append(created)
        self.item_no.append(item_no)
        row = len(self.created) - 1
        if self._linked is None or ref in self._linked:
            self.ref_index[sys.intern(ref)] = row  # one string per ref, kept: the links' is the same
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
            _state_codes(np.frombuffer(self.h_state, dtype=np.int32), len(self._states)),
            np.frombuffer(self.h_cat, dtype=np.int8),
            np.frombuffer(self.item_no, dtype=np.int64),
        )


def _state_codes(codes: np.ndarray, states: int) -> np.ndarray:
    """int16 codes while they fit (a process has tens of states): 2 bytes per revision less, 8 MB
    at a million items with four revisions each."""
    return codes.astype(np.int16) if states <= np.iinfo(np.int16).max + 1 else codes
