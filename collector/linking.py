"""Which successful production deployment first delivered each change and each work item.

Links are refs (see ``collector.model``): a work item links to commits, pull requests or builds;
a deployment *contains* commit and build refs. A pull request ref is expanded to its commits
through the change that carries it, so ``Fixes #12`` on a PR releases issue 12 with the first
production deployment containing any of the PR's commits.

Changes, deployments and links are kept as columns (:class:`ChangeTable`), every ref as an integer:
a hundred thousand pull requests as objects cost ~100 MB and a second of Python per refresh; as
columns ~10 MB and a few vectorised passes. Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from collector.model import Change, Deployment, Link, commit_ref

#: the delivery of something never delivered: after every deployment
NEVER = np.iinfo(np.int64).max

#: a change as the store holds it: source, native id, ref, service, kind, first commit, merged,
#: commits (shas, or their JSON list), ready, first review (Unix seconds, None where unknown)
ChangeRow = tuple[str, str, str, str, str, float, float | None, Sequence[str] | str, float | None, float | None]
#: a deployment as the store holds it: source, native id, service, environment, production, status,
#: finish, sha, contains (refs, or their JSON list)
DeploymentRow = tuple[str, str, str, str, bool, str, float, str | None, Sequence[str] | str]


def _keys(strings: Sequence[str]) -> np.ndarray:
    """128 bits per string, as an (n, 2) int64 array: Python's hash of the string and of its
    reverse (SipHash, keyed at random per process; the tables live in one process). Two refs
    mistaken for each other would take a collision of both at once: ~10^-26 at a million refs. An
    index of strings would keep a Python object per ref (~30 MB at 100k pull requests); this keeps
    24 bytes."""
    out = np.empty((len(strings), 2), dtype=np.int64)
    out[:, 0] = np.fromiter(map(hash, strings), dtype=np.int64, count=len(strings))
    out[:, 1] = np.fromiter((hash(s[::-1]) for s in strings), dtype=np.int64, count=len(strings))
    return out


@dataclass(frozen=True)
class _Index:
    """string → number, by :func:`_keys`: sorted by the first half; the second tells apart the
    (rare) strings whose first halves are equal."""

    first: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # ascending
    second: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The number of each key, -1 where there is none."""
        n = len(self.first)
        if not n:
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.searchsorted(self.first, keys[:, 0])
        near = np.minimum(at, n - 1)
        out = np.where((self.first[near] == keys[:, 0]) & (self.second[near] == keys[:, 1]), self.values[near], -1)
        # the first half found but not the second: look along the run of equal first halves
        for i in np.flatnonzero((out < 0) & (self.first[near] == keys[:, 0])).tolist():
            j = int(at[i])
            while j < n and self.first[j] == keys[i, 0]:
                if self.second[j] == keys[i, 1]:
                    out[i] = self.values[j]
                    break
                j += 1
        return out

    def adding(self, keys: np.ndarray, values: np.ndarray) -> _Index:
        """With keys that are not in it yet."""
        order = np.argsort(keys[:, 0], kind="stable")
        keys, values = keys[order], values[order]
        at = np.searchsorted(self.first, keys[:, 0])
        return _Index(
            np.insert(self.first, at, keys[:, 0]),
            np.insert(self.second, at, keys[:, 1]),
            np.insert(self.values, at, values),
        )


def _strings(text: str) -> list[str]:
    """A JSON list of strings as the store writes it (``json.dumps``): split where nothing in it is
    escaped (shas and refs, always), ``json.loads`` otherwise. A third of a reload's time otherwise."""
    if text[:2] == '["' and text[-2:] == '"]' and "\\" not in text:
        parts = text[2:-2].split('", "')
        if not any('"' in part for part in parts):
            return parts
    found = json.loads(text)
    if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
        raise ValueError(f"not a list of strings: {text[:80]!r}")
    return found


def _i32(values: Iterable[int] = ()) -> np.ndarray:
    return np.fromiter(values, dtype=np.int32)


def _f64(values: Iterable[float | None] = ()) -> np.ndarray:
    return np.fromiter((np.nan if v is None else v for v in values), dtype=float)


@dataclass(frozen=True)
class ChangeTable:
    """Changes, deployments and links as columns; every ref an integer below ``n_refs``.

    Changes are rows in the order they arrived; a change written again replaces its row.
    Deployments are rows in delivery order, by (finish, source, native_id): the earliest of several
    deployments is the one with the lowest row, whichever order the store returned them in.
    :meth:`updated` takes in the rows written since (a full load is an update of the empty table).
    """

    n_refs: int = 0
    refs: _Index = field(default_factory=_Index)
    c_index: _Index = field(default_factory=_Index)  # "source\0native_id" → row
    c_labels: tuple[tuple[str, str], ...] = ()  # (source, service)
    c_label: np.ndarray = field(default_factory=_i32)
    c_pr: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # a pull request, else a commit
    c_ref: np.ndarray = field(default_factory=_i32)  # the change's own ref
    c_first: np.ndarray = field(default_factory=_f64)  # and the next three NaN where unknown
    c_ready: np.ndarray = field(default_factory=_f64)
    c_review: np.ndarray = field(default_factory=_f64)
    c_merged: np.ndarray = field(default_factory=_f64)
    #: (change, ref) pairs: everything whose delivery delivers the change (its ref and commits)
    m_change: np.ndarray = field(default_factory=_i32)
    m_ref: np.ndarray = field(default_factory=_i32)
    #: (finish, source, native_id) per deployment row: its place in delivery order
    d_keys: tuple[tuple[float, str, str], ...] = ()
    d_labels: tuple[tuple[str, str, str, str, str], ...] = ()  # (source, service, environment, production, status)
    d_label: np.ndarray = field(default_factory=_i32)
    d_finish: np.ndarray = field(default_factory=_f64)  # ascending
    #: (deployment, ref) pairs: what it contains, and its own commit
    k_deployment: np.ndarray = field(default_factory=_i32)
    k_ref: np.ndarray = field(default_factory=_i32)
    items: tuple[str, ...] = ()  # the work item refs that have links
    i_index: _Index = field(default_factory=_Index)
    #: (work item, target ref) pairs, each once
    l_item: np.ndarray = field(default_factory=_i32)  # into items
    l_target: np.ndarray = field(default_factory=_i32)

    def __len__(self) -> int:
        return len(self.c_label)

    @property
    def d_delivers(self) -> np.ndarray:
        """Per deployment: a successful production one."""
        delivers = np.array([labels[3] == "true" and labels[4] == "success" for labels in self.d_labels], dtype=bool)
        return delivers[self.d_label] if len(self.d_labels) else np.zeros(0, dtype=bool)

    @classmethod
    def from_records(
        cls, changes: Iterable[Change], deployments: Iterable[Deployment], links: Iterable[Link]
    ) -> ChangeTable:
        return cls().updated(
            [
                (
                    c.source,
                    c.native_id,
                    c.ref,
                    c.service,
                    c.kind,
                    c.first_commit_at.timestamp(),
                    _seconds(c.merged_at),
                    c.commits,
                    _seconds(c.ready_at),
                    _seconds(c.first_review_at),
                )
                for c in changes
            ],
            [
                (
                    d.source,
                    d.native_id,
                    d.service,
                    d.environment,
                    d.production,
                    d.status,
                    d.finished_at.timestamp(),
                    d.sha,
                    d.contains,
                )
                for d in deployments
            ],
            [(link.work_item, link.target) for link in links],
        )

    def updated(
        self,
        changes: Sequence[ChangeRow] = (),
        deployments: Sequence[DeploymentRow] = (),
        links: Sequence[tuple[str, str]] = (),
    ) -> ChangeTable:
        """This table with rows taken in: a change or deployment already here (same source and
        native id) is replaced, anything else added; each (work item, target) link is kept once."""
        if not changes and not deployments and not links:
            return self
        # every ref the rows name, each once, numbered locally first
        local: dict[str, int] = {}
        code = local.setdefault  # setdefault(ref, len(local)): len is taken before ref goes in
        change_refs = [code(row[2], len(local)) for row in changes]
        members: list[tuple[int, int]] = []
        for i, row in enumerate(changes):
            members.append((i, change_refs[i]))
            shas = _strings(row[7]) if isinstance(row[7], str) else row[7]
            members.extend((i, code("commit:" + sha.lower(), len(local))) for sha in shas)  # model.commit_ref
        contained: list[tuple[int, int]] = []
        for i, d in enumerate(deployments):
            refs = _strings(d[8]) if isinstance(d[8], str) else d[8]
            contained.extend((i, code(ref, len(local))) for ref in refs)
            if d[7]:
                contained.append((i, code(commit_ref(d[7]), len(local))))
        targets = [code(target, len(local)) for _, target in links]
        names = list(local)
        del local
        keys = _keys(names)
        ids = self.refs.find(keys)
        new = np.flatnonzero(ids < 0)
        ids[new] = self.n_refs + np.arange(len(new))
        table = dataclasses.replace(self, n_refs=self.n_refs + len(new), refs=self.refs.adding(keys[new], ids[new]))
        table = table._with_changes(changes, ids[change_refs] if changes else _i32(), members, ids)
        table = table._with_deployments(deployments, contained, ids)
        return table._with_links(links, ids[targets] if links else _i32())

    def _with_changes(
        self, rows: Sequence[ChangeRow], own: np.ndarray, members: list[tuple[int, int]], ids: np.ndarray
    ) -> ChangeTable:
        if not rows:
            return self
        # a change twice among the rows: its last row wins
        last = {f"{row[0]}\0{row[1]}": i for i, row in enumerate(rows)}
        chosen_rows = sorted(last.items(), key=lambda kv: kv[1])
        take = np.array([i for _, i in chosen_rows], dtype=np.int64)
        keys = _keys([name for name, _ in chosen_rows])
        at = self.c_index.find(keys)  # the row of each taken change, -1: a new one
        fresh = at < 0
        at[fresh] = len(self) + np.arange(int(fresh.sum()))
        row_at = np.full(len(rows), -1, dtype=np.int64)
        row_at[take] = at
        labels = dict(zip(self.c_labels, range(len(self.c_labels)), strict=True))
        label = _i32(labels.setdefault((rows[i][0], rows[i][3]), len(labels)) for i in take.tolist())

        def put(column: np.ndarray, values: np.ndarray) -> np.ndarray:
            out = np.concatenate([column, np.zeros(int(fresh.sum()), dtype=column.dtype)])
            out[at] = values
            return out

        chosen = [rows[i] for i in take.tolist()]
        pairs = np.array(members, dtype=np.int64).reshape(-1, 2)
        pairs = pairs[row_at[pairs[:, 0]] >= 0]
        replaced = np.isin(self.m_change, at[~fresh])
        return dataclasses.replace(
            self,
            c_index=self.c_index.adding(keys[fresh], at[fresh]),
            c_labels=tuple(labels),
            c_label=put(self.c_label, label),
            c_pr=put(self.c_pr, np.array([row[4] == "pull_request" for row in chosen], dtype=bool)),
            c_ref=put(self.c_ref, own[take].astype(np.int32)),
            c_first=put(self.c_first, _f64(row[5] for row in chosen)),
            c_merged=put(self.c_merged, _f64(row[6] for row in chosen)),
            c_ready=put(self.c_ready, _f64(row[8] for row in chosen)),
            c_review=put(self.c_review, _f64(row[9] for row in chosen)),
            m_change=np.concatenate([self.m_change[~replaced], row_at[pairs[:, 0]].astype(np.int32)]),
            m_ref=np.concatenate([self.m_ref[~replaced], ids[pairs[:, 1]].astype(np.int32)]),
        )

    def _with_deployments(
        self, rows: Sequence[DeploymentRow], contained: list[tuple[int, int]], ids: np.ndarray
    ) -> ChangeTable:
        if not rows:
            return self
        row_of = {(source, native): i for i, (_, source, native) in enumerate(self.d_keys)}
        labels = dict(zip(self.d_labels, range(len(self.d_labels)), strict=True))
        keys, label, finish = list(self.d_keys), self.d_label.tolist(), self.d_finish.tolist()
        at = []
        for source, native, service, environment, production, status, finished, _, _ in rows:
            code = labels.setdefault(
                (source, service, environment, "true" if production else "false", status), len(labels)
            )
            i = row_of.get((source, native))
            if i is None:
                i = row_of[(source, native)] = len(keys)
                keys.append((finished, source, native))
                label.append(code)
                finish.append(finished)
            else:
                keys[i], label[i], finish[i] = (finished, source, native), code, finished
            at.append(i)
        pairs = np.array(contained, dtype=np.int64).reshape(-1, 2)
        rows_at = np.array(at, dtype=np.int64)
        # a deployment twice among the rows: its last row's contents
        last = {i: k for k, i in enumerate(at)}
        pairs = pairs[np.fromiter((last[at[k]] == k for k in pairs[:, 0].tolist()), dtype=bool, count=len(pairs))]
        kept = ~np.isin(self.k_deployment, rows_at)
        k_deployment = np.concatenate([self.k_deployment[kept], rows_at[pairs[:, 0]]])
        k_ref = np.concatenate([self.k_ref[kept], ids[pairs[:, 1]]])
        # delivery order again: new deployments finish anywhere among the old ones
        order = sorted(range(len(keys)), key=keys.__getitem__)
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return dataclasses.replace(
            self,
            d_keys=tuple(keys[i] for i in order),
            d_labels=tuple(labels),
            d_label=np.array(label, dtype=np.int32)[order],
            d_finish=np.array(finish, dtype=float)[order],
            k_deployment=rank[k_deployment],
            k_ref=k_ref.astype(np.int32),
        )

    def _with_links(self, rows: Sequence[tuple[str, str]], targets: np.ndarray) -> ChangeTable:
        if not rows:
            return self
        local: dict[str, int] = {}
        code = local.setdefault
        items = [code(work_item, len(local)) for work_item, _ in rows]
        names = list(local)
        keys = _keys(names)
        found = self.i_index.find(keys)
        new = np.flatnonzero(found < 0)
        found[new] = len(self.items) + np.arange(len(new))
        # each new ref interned: a reload's copy is dropped for the one the table's ref index keeps
        added = tuple(sys.intern(names[i]) for i in new.tolist())
        pairs = np.concatenate(
            [
                self.l_item.astype(np.int64) << 32 | self.l_target.astype(np.int64),
                found[items] << 32 | targets.astype(np.int64),
            ]
        )
        pairs = np.unique(pairs)  # each (item, target) once: one link from two sources counts once
        return dataclasses.replace(
            self,
            items=self.items + added,
            i_index=self.i_index.adding(keys[new], found[new]),
            l_item=(pairs >> 32).astype(np.int32),
            l_target=(pairs & 0xFFFFFFFF).astype(np.int32),
        )


def _seconds(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


@dataclass(frozen=True)
class Deliveries:
    """What the deployments finished by some time delivered (``NEVER``: nothing yet)."""

    #: per ref: the first deployment (a row of the table) that delivered it
    ref: np.ndarray
    #: per change: the first deployment that delivered any of its refs
    change: np.ndarray
    #: per linked work item (``ChangeTable.items``): the first deployment that delivered anything
    #: linked to it, a pull request through any of its commits
    item: np.ndarray


def deliveries(t: ChangeTable, as_of: float | None = None) -> Deliveries:
    """The first successful production deployment of each ref, change and linked work item, among
    those finished by ``as_of`` (all when None). First = lowest row: the earliest finish, ties
    broken by (source, native_id), so the answer does not depend on the order rows arrived in."""
    delivers = t.d_delivers if as_of is None else t.d_delivers & (t.d_finish <= as_of)
    by_ref = np.full(t.n_refs, NEVER, dtype=np.int64)
    counted = delivers[t.k_deployment]
    np.minimum.at(by_ref, t.k_ref[counted], t.k_deployment[counted])
    by_change = np.full(len(t), NEVER, dtype=np.int64)
    np.minimum.at(by_change, t.m_change, by_ref[t.m_ref])
    # a link to a change's ref: delivered with the first delivery of any change carrying that ref;
    # a link to anything else (a commit, a build): when it is itself
    through_changes = np.full(t.n_refs, NEVER, dtype=np.int64)
    np.minimum.at(through_changes, t.c_ref, by_change)
    by_item = np.full(len(t.items), NEVER, dtype=np.int64)
    np.minimum.at(by_item, t.l_item, np.minimum(through_changes[t.l_target], by_ref[t.l_target]))
    return Deliveries(by_ref, by_change, by_item)


def linked_change_times(t: ChangeTable) -> np.ndarray:
    """Per linked work item (``ChangeTable.items``): (first linked pull request ready for review,
    last linked change merged), NaN where there is none: the request stages' middle boundaries
    (docs/definitions.md).

    A link names a change by the change's own ref (a PR, a pushed commit) or by one of its commits
    (``AB#12`` in a commit message of a PR); a build link names no change. A PR whose source cannot
    tell readiness counts as ready at its first commit.
    """
    out = np.full((len(t.items), 2), np.nan)
    if not len(t.l_item) or not len(t.m_ref):
        return out
    # every (link, change) pair where the link's target is one of the change's refs
    order = np.argsort(t.m_ref, kind="stable")
    sorted_refs = t.m_ref[order]
    lo = np.searchsorted(sorted_refs, t.l_target, side="left")
    hits = np.searchsorted(sorted_refs, t.l_target, side="right") - lo
    link = np.repeat(np.arange(len(t.l_item)), hits)
    offset = np.arange(len(link)) - np.repeat(np.cumsum(hits) - hits, hits)
    change = t.m_change[order[np.repeat(lo, hits) + offset]]
    item = t.l_item[link]
    ready = np.where(np.isnan(t.c_ready), t.c_first, t.c_ready)
    ready = np.where(t.c_pr, ready, np.nan)
    np.fmin.at(out[:, 0], item, ready[change])
    np.fmax.at(out[:, 1], item, t.c_merged[change])
    return out
