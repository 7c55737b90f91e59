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

import json
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from collector.model import Change, Deployment, Link, commit_ref

#: the delivery of something never delivered: after every deployment
NEVER = np.iinfo(np.int64).max

#: a change as the store holds it: source, ref, service, kind, first commit, merged, commits (shas,
#: or their JSON list), ready, first review (times in Unix seconds, None where unknown)
ChangeRow = tuple[str, str, str, str, float, float | None, Sequence[str] | str, float | None, float | None]


@dataclass
class ChangeTable:
    """Changes, deployments and links as columns; every ref an integer below ``n_refs``.

    Changes are rows in (source, native_id) order. Deployments are rows in delivery order, by
    (finish, source, native_id): the earliest of several deployments is the one with the lowest
    row, whichever order the store returned them in.
    """

    n_refs: int
    c_labels: list[tuple[str, str]]  # (source, service)
    c_label: np.ndarray  # int32
    c_pr: np.ndarray  # bool: a pull request (else a direct commit)
    c_ref: np.ndarray  # int32: the change's own ref
    c_first: np.ndarray  # float64, and the next three NaN where unknown
    c_ready: np.ndarray
    c_review: np.ndarray
    c_merged: np.ndarray
    #: (change, ref) pairs: everything whose delivery delivers the change (its ref and commits)
    m_change: np.ndarray  # int32
    m_ref: np.ndarray  # int32
    d_labels: list[tuple[str, str, str, str, str]]  # (source, service, environment, production, status)
    d_label: np.ndarray  # int32
    d_finish: np.ndarray  # float64, ascending
    d_delivers: np.ndarray  # bool: a successful production deployment
    #: (deployment, ref) pairs: what it contains, and its own commit
    k_deployment: np.ndarray  # int32
    k_ref: np.ndarray  # int32
    items: list[str]  # the work item refs that have links
    #: (work item, target ref) pairs, each once
    l_item: np.ndarray  # int32 into items
    l_target: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.c_label)

    @classmethod
    def from_records(
        cls, changes: Iterable[Change], deployments: Iterable[Deployment], links: Iterable[Link]
    ) -> ChangeTable:
        builder = ChangeTableBuilder()
        for c in sorted(changes, key=lambda c: (c.source, c.native_id)):
            builder.change(
                c.source,
                c.ref,
                c.service,
                c.kind,
                c.first_commit_at.timestamp(),
                _seconds(c.merged_at),
                c.commits,
                _seconds(c.ready_at),
                _seconds(c.first_review_at),
            )
        for d in deployments:
            builder.deployment(
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
        for link in links:
            builder.link(link.work_item, link.target)
        return builder.build()


def _seconds(at: object) -> float:
    return float("nan") if at is None else at.timestamp()  # type: ignore[attr-defined]


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


class ChangeTableBuilder:
    """Accumulates rows (from the store's cursors, or records) into a :class:`ChangeTable`.

    Changes must arrive in (source, native_id) order; deployments and links in any order. The ref
    dictionary lives only while building: the table keeps integers.
    """

    def __init__(self) -> None:
        self._refs: dict[str, int] = {}
        self._c_labels: dict[tuple[str, str], int] = {}
        self.c_label, self.c_ref = array("i"), array("i")
        self.c_pr = bytearray()
        self.c_first, self.c_ready, self.c_review, self.c_merged = array("d"), array("d"), array("d"), array("d")
        self.m_change, self.m_ref = array("i"), array("i")
        self._d_labels: dict[tuple[str, str, str, str, str], int] = {}
        self._deployments: list[tuple[float, str, str, int]] = []  # (finish, source, native_id, label)
        self.k_deployment, self.k_ref = array("i"), array("i")
        self._items: dict[str, int] = {}
        self.l_item, self.l_target = array("i"), array("i")

    def _ref(self, ref: str) -> int:
        code = self._refs.get(ref)
        if code is None:
            code = self._refs[ref] = len(self._refs)
        return code

    def change(
        self,
        source: str,
        ref: str,
        service: str,
        kind: str,
        first: float,
        merged: float | None,
        commits: Sequence[str] | str,
        ready: float | None,
        review: float | None,
    ) -> None:
        """``commits``: the shas, or the store's JSON list of them."""
        self.changes([(source, ref, service, kind, first, merged, commits, ready, review)])

    def changes(self, rows: Iterable[ChangeRow]) -> None:
        """The store's hot loop (a row per pull request): locals and dict lookups only."""
        refs, labels = self._refs, self._c_labels
        nan = float("nan")
        add_label, add_ref, add_pr = self.c_label.append, self.c_ref.append, self.c_pr.append
        add_first, add_merged = self.c_first.append, self.c_merged.append
        add_ready, add_review = self.c_ready.append, self.c_review.append
        add_change, add_member = self.m_change.append, self.m_ref.append
        loads = _strings
        row = len(self.c_label)
        for source, ref, service, kind, first, merged, commits, ready, review in rows:
            label = labels.get((source, service))
            if label is None:
                label = labels[(source, service)] = len(labels)
            own = refs.get(ref)
            if own is None:
                own = refs[ref] = len(refs)
            add_label(label)
            add_ref(own)
            add_pr(kind == "pull_request")
            add_first(first)
            add_merged(nan if merged is None else merged)
            add_ready(nan if ready is None else ready)
            add_review(nan if review is None else review)
            add_change(row)
            add_member(own)
            for sha in loads(commits) if isinstance(commits, str) else commits:
                commit = "commit:" + sha.lower()  # collector.model.commit_ref
                code = refs.get(commit)
                if code is None:
                    code = refs[commit] = len(refs)
                add_change(row)
                add_member(code)
            row += 1

    def deployment(
        self,
        source: str,
        native_id: str,
        service: str,
        environment: str,
        production: bool,
        status: str,
        finished: float,
        sha: str | None,
        contains: Sequence[str] | str,
    ) -> None:
        """``contains``: the refs, or the store's JSON list of them."""
        key = (source, service, environment, "true" if production else "false", status)
        label = self._d_labels.setdefault(key, len(self._d_labels))
        row = len(self._deployments)
        self._deployments.append((finished, source, native_id, label))
        refs = _strings(contains) if isinstance(contains, str) else contains
        for ref in (*refs, commit_ref(sha)) if sha else refs:
            self.k_deployment.append(row)
            self.k_ref.append(self._ref(ref))

    def link(self, work_item: str, target: str) -> None:
        item = self._items.get(work_item)
        if item is None:
            item = self._items[work_item] = len(self._items)
        self.l_item.append(item)
        self.l_target.append(self._ref(target))

    def build(self) -> ChangeTable:
        order = sorted(range(len(self._deployments)), key=lambda i: self._deployments[i][:3])
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        ordered = [self._deployments[i] for i in order]
        d_labels = list(self._d_labels)
        d_label = np.fromiter((label for *_, label in ordered), dtype=np.int32, count=len(ordered))
        delivers = np.array([labels[3] == "true" and labels[4] == "success" for labels in d_labels], dtype=bool)
        # each (item, target) once, in that order: one link from two sources counts once
        pairs = np.frombuffer(self.l_item, dtype=np.int32).astype(np.int64) << 32
        pairs |= np.frombuffer(self.l_target, dtype=np.int32)
        pairs = np.unique(pairs)
        return ChangeTable(
            n_refs=len(self._refs),
            c_labels=list(self._c_labels),
            c_label=np.frombuffer(self.c_label, dtype=np.int32),
            c_pr=np.frombuffer(self.c_pr, dtype=bool),
            c_ref=np.frombuffer(self.c_ref, dtype=np.int32),
            c_first=np.frombuffer(self.c_first, dtype=float),
            c_ready=np.frombuffer(self.c_ready, dtype=float),
            c_review=np.frombuffer(self.c_review, dtype=float),
            c_merged=np.frombuffer(self.c_merged, dtype=float),
            m_change=np.frombuffer(self.m_change, dtype=np.int32),
            m_ref=np.frombuffer(self.m_ref, dtype=np.int32),
            d_labels=d_labels,
            d_label=d_label,
            d_finish=np.fromiter((d[0] for d in ordered), dtype=float, count=len(ordered)),
            d_delivers=delivers[d_label] if len(d_labels) else np.zeros(0, dtype=bool),
            k_deployment=rank[np.frombuffer(self.k_deployment, dtype=np.int32)],
            k_ref=np.frombuffer(self.k_ref, dtype=np.int32),
            items=list(self._items),
            l_item=(pairs >> 32).astype(np.int32),
            l_target=(pairs & 0xFFFFFFFF).astype(np.int32),
        )


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
