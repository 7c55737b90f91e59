"""The columnar deliveries (collector.linking) against a per-object definition written here.

The definition below follows docs/definitions.md one record at a time, with sets and dicts, and
shares no code with collector.linking. Random data draws refs from small pools, so commits are
shared between changes, deployments contain each other's commits, finishes tie and links name
pull requests, commits and builds alike.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.linking import NEVER, ChangeTable, _Index, _strings, deliveries, linked_change_times
from collector.model import Change, Deployment, Link

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHAS = [f"{i:x}" * 40 for i in range(1, 7)]
PRS = [f"ghpr:o/r#{i}" for i in range(5)]
BUILDS = [f"build:{i}" for i in range(3)]
ITEMS = [f"ado:{i}" for i in range(6)]


def at(hours: int | None) -> datetime | None:
    return None if hours is None else T0 + timedelta(hours=hours)


@st.composite
def changes(draw: st.DrawFn) -> list[Change]:
    out = []
    for n in range(draw(st.integers(0, 8))):
        pr = draw(st.booleans())
        first = draw(st.integers(0, 50))
        out.append(
            Change(
                draw(st.sampled_from(["github", "repos"])),
                str(n),
                draw(st.sampled_from(PRS)) if pr else f"commit:{draw(st.sampled_from(SHAS))}",
                draw(st.sampled_from(["o/r", "o/s"])),
                "pull_request" if pr else "commit",
                T0 + timedelta(hours=first),
                at(draw(st.one_of(st.none(), st.integers(first, 80)))),
                tuple(draw(st.lists(st.sampled_from(SHAS), max_size=3))),
                at(draw(st.one_of(st.none(), st.integers(0, 80)))),
                at(draw(st.one_of(st.none(), st.integers(0, 80)))),
            )
        )
    return out


@st.composite
def deployments(draw: st.DrawFn) -> list[Deployment]:
    out = []
    for n in range(draw(st.integers(0, 8))):
        contains = draw(st.lists(st.sampled_from([f"commit:{s}" for s in SHAS] + BUILDS), max_size=4))
        out.append(
            Deployment(
                draw(st.sampled_from(["pipelines", "github"])),
                f"d{draw(st.integers(0, 3))}-{n}",
                "web",
                draw(st.sampled_from(["production", "staging"])),
                draw(st.booleans()),
                draw(st.sampled_from(["success", "failure"])),
                None,
                T0 + timedelta(hours=draw(st.integers(0, 6)) * 10),  # ties
                draw(st.one_of(st.none(), st.sampled_from(SHAS))),
                tuple(contains),
            )
        )
    return out


links = st.lists(
    st.builds(
        Link,
        st.sampled_from(["github", "boards"]),
        st.sampled_from(ITEMS),
        st.sampled_from(PRS + BUILDS + [f"commit:{s}" for s in SHAS]),
    ),
    max_size=10,
)


def first_delivery(refs: set[str], deployments: list[Deployment]) -> Deployment | None:
    """The earliest successful production deployment containing any of ``refs``; ties by
    (source, native_id)."""
    found = [
        d
        for d in deployments
        if d.production and d.status == "success" and refs & {*d.contains, *([f"commit:{d.sha}"] if d.sha else [])}
    ]
    return min(found, key=lambda d: (d.finished_at, d.source, d.native_id), default=None)


def own_refs(change: Change) -> set[str]:
    return {change.ref, *(f"commit:{sha}" for sha in change.commits)}


@settings(max_examples=300, deadline=None)
@given(changes(), deployments(), links)
def test_columns_deliver_what_the_definition_does(cs: list[Change], ds: list[Deployment], ls: list[Link]) -> None:
    table = ChangeTable.from_records(cs, ds, ls)
    in_order = sorted(ds, key=lambda d: (d.finished_at, d.source, d.native_id))
    found = deliveries(table)

    def deployment(row: int) -> Deployment | None:
        return None if row == NEVER else in_order[row]

    # each change (rows in the order they came): the first deployment of any of its refs
    assert [deployment(r) for r in found.change.tolist()] == [first_delivery(own_refs(c), ds) for c in cs]

    # each work item: a link to a change's ref through any change carrying it, else the ref itself
    expected: dict[str, Deployment] = {}
    for link in ls:
        refs = {link.target}
        for change in cs:
            if change.ref == link.target:
                refs |= own_refs(change)
        first = first_delivery(refs, ds)
        best = expected.get(link.work_item)
        if first is not None and (
            best is None
            or (first.finished_at, first.source, first.native_id)
            < (
                best.finished_at,
                best.source,
                best.native_id,
            )
        ):
            expected[link.work_item] = first
    got = {ref: deployment(r) for ref, r in zip(table.items, found.item.tolist(), strict=True) if r != NEVER}
    assert got == expected

    # the request stages' middle boundaries: first linked PR ready, last linked change merged
    times = linked_change_times(table)
    for ref, (ready, merged) in zip(table.items, times.tolist(), strict=True):
        targets = {link.target for link in ls if link.work_item == ref}
        linked = [c for c in cs if targets & own_refs(c)]
        readies = [(c.ready_at or c.first_commit_at).timestamp() for c in linked if c.kind == "pull_request"]
        merges = [c.merged_at.timestamp() for c in linked if c.merged_at is not None]
        assert (ready, merged) == (min(readies, default=math.nan), max(merges, default=math.nan)) or (
            _same(ready, min(readies, default=math.nan)) and _same(merged, max(merges, default=math.nan))
        )


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@given(changes(), deployments(), links, st.integers(0, 60))
@settings(max_examples=100, deadline=None)
def test_as_of_is_the_deliveries_of_the_deployments_finished_by_then(
    cs: list[Change], ds: list[Deployment], ls: list[Link], hours: int
) -> None:
    cut = (T0 + timedelta(hours=hours)).timestamp()
    then = deliveries(ChangeTable.from_records(cs, ds, ls), as_of=cut)
    only_then = deliveries(ChangeTable.from_records(cs, [d for d in ds if d.finished_at.timestamp() <= cut], ls))
    table = ChangeTable.from_records(cs, ds, ls)
    kept = ChangeTable.from_records(cs, [d for d in ds if d.finished_at.timestamp() <= cut], ls)

    def finishes(t: ChangeTable, rows: list[int]) -> list[float | None]:
        return [None if r == NEVER else float(t.d_finish[r]) for r in rows]

    assert finishes(table, then.item.tolist()) == finishes(kept, only_then.item.tolist())
    assert finishes(table, then.change.tolist()) == finishes(kept, only_then.change.tolist())


def test_the_index_tells_apart_keys_whose_first_halves_are_equal() -> None:
    """A ref is found by 128 bits; two refs sharing the first 64 (a collision of one hash) stay apart."""
    index = _Index().adding(np.array([[5, 1], [3, 9]]), np.array([10, 30]))
    index = index.adding(np.array([[5, 2], [5, 7]]), np.array([20, 40]))
    found = index.find(np.array([[5, 2], [5, 1], [5, 7], [5, 3], [3, 9], [4, 9], [9, 9]]))
    assert found.tolist() == [20, 10, 40, -1, 30, -1, -1]


def test_stored_lists_read_back_whatever_their_strings_hold() -> None:
    for strings in ([], ["a" * 40], ["a", "b"], ['say "hi"', "x"], ["é", "ü"], ["back\\slash"], ['a", "b'], [""]):
        assert _strings(json.dumps(strings)) == strings
