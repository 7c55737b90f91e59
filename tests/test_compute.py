"""Every definition of CONTRACT §4 on hand-worked examples, plus properties over random data."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from collector.compute import (
    BUCKETS,
    DAY,
    HOUR,
    Rejected,
    compute,
    histogram,
    item_times,
    window_quantiles,
)
from collector.model import (
    Category,
    Change,
    Deployment,
    Link,
    StateChange,
    WorkItem,
    ado_ref,
    build_ref,
    commit_ref,
    gh_pr_ref,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
P, IP, R, C, X = (Category.PROPOSED, Category.IN_PROGRESS, Category.RESOLVED, Category.COMPLETED, Category.REMOVED)


def only(observations) -> list[tuple[float, float]]:
    """The (end, value) pairs of a family that has exactly one label set."""
    (labels,) = observations.by_labels
    return observations.pairs(labels)


def only_ends(observations, labels: tuple[str, ...]) -> list[float]:
    return [end for end, _ in observations.pairs(labels)]


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def wi(
    n: int, *states: tuple[float, str, Category], created: float = 0, type_: str = "Bug", source: str = "boards"
) -> WorkItem:
    wid = str(n)
    return WorkItem(
        source,
        wid,
        ado_ref(n),
        "Fabrikam",
        "Web",
        type_,
        day(created),
        tuple(StateChange(wid, i, day(d), s, c) for i, (d, s, c) in enumerate(states, start=1)),
    )


def deploy(
    n: int,
    finished: float,
    *contains: str,
    status: str = "success",
    env: str = "production",
    production: bool = True,
    service: str = "web-ci",
) -> Deployment:
    return Deployment(
        "pipelines",
        f"env:1:{n}",
        service,
        env,
        production,
        status,
        day(finished - 0.01),
        day(finished),
        None,
        tuple(contains),
    )


# -- work item times --------------------------------------------------------------------------------------


def test_lead_and_cycle_time_of_a_plain_item() -> None:
    t = item_times(wi(1, (0, "New", P), (2, "Active", IP), (5, "Resolved", R), (6, "Closed", C)))
    assert t.lead_time == 6 * DAY
    assert t.cycle_time == 4 * DAY
    assert t.time_in_states() == {("New", P): 2 * DAY, ("Active", IP): 3 * DAY, ("Resolved", R): DAY}
    assert t.flow_efficiency() == pytest.approx(3 / 6)


def test_reopened_item_counts_once_at_final_completion_and_keeps_first_start() -> None:
    t = item_times(wi(1, (0, "New", P), (1, "Active", IP), (3, "Closed", C), (10, "Active", IP), (12, "Closed", C)))
    assert t.completed_at == day(12).timestamp()
    assert t.cycle_time == 11 * DAY  # from the FIRST entry into InProgress
    assert t.lead_time == 12 * DAY
    assert t.time_in_states()[("Closed", C)] == 7 * DAY  # the time it sat closed before reopening
    assert t.time_in_states()[("Active", IP)] == 4 * DAY


def test_item_that_skips_in_progress_has_lead_but_no_cycle_time() -> None:
    t = item_times(wi(1, (0, "New", P), (4, "Closed", C)))
    assert t.lead_time == 4 * DAY and t.cycle_time is None


def test_resolved_starts_the_cycle_clock_when_in_progress_was_skipped() -> None:
    t = item_times(wi(1, (0, "New", P), (3, "Resolved", R), (4, "Closed", C)))
    assert t.cycle_time == DAY


def test_non_state_revisions_do_not_split_stays() -> None:
    t = item_times(wi(1, (0, "New", P), (1, "New", P), (2, "Active", IP), (2.5, "Active", IP), (3, "Closed", C)))
    assert t.time_in_states() == {("New", P): 2 * DAY, ("Active", IP): DAY}


def test_clock_skew_is_rejected_not_negative() -> None:
    with pytest.raises(Rejected) as exc:
        item_times(wi(1, (0, "New", P), (5, "Active", IP), (3, "Closed", C)))
    assert exc.value.reason == "end_before_start"
    figures = compute(
        [wi(1, (0, "New", P), (5, "Active", IP), (3, "Closed", C)), wi(2, (-2, "Closed", C), created=0)], [], [], []
    )
    assert figures.rejected[("boards", "end_before_start")] == 2
    assert figures.lead_time.count() == 0


def test_removed_items_are_excluded_from_every_figure() -> None:
    figures = compute(
        [wi(1, (0, "New", P), (1, "Active", IP), (2, "Removed", X))],
        [],
        [deploy(1, 3, build_ref(7))],
        [Link("pipelines", ado_ref(1), build_ref(7))],
    )
    assert figures.lead_time.count() == 0 and figures.request_to_release.count() == 0
    assert not figures.wip and not figures.state_seconds


def test_wip_counts_current_non_terminal_categories() -> None:
    figures = compute(
        [
            wi(1, (0, "New", P)),
            wi(2, (0, "New", P), (1, "Active", IP)),
            wi(3, (0, "New", P), (1, "Resolved", R)),
            wi(4, (0, "New", P), (1, "Closed", C)),
        ],
        [],
        [],
        [],
    )
    assert figures.wip == {
        ("boards", "Fabrikam", "Web", "Bug", "Proposed"): 1,
        ("boards", "Fabrikam", "Web", "Bug", "InProgress"): 1,
        ("boards", "Fabrikam", "Web", "Bug", "Resolved"): 1,
    }


# -- linking, request to release, change lead time ----------------------------------------------------


def test_request_to_release_through_a_pr_and_first_production_deployment_wins() -> None:
    sha1, sha2 = "a" * 40, "b" * 40
    pr = Change(
        "github",
        "contoso/web#5",
        gh_pr_ref("contoso/web", 5),
        "contoso/web",
        "pull_request",
        day(1),
        day(2),
        (sha1, sha2),
    )
    deployments = [
        deploy(1, 3, commit_ref(sha2), env="staging", production=False),  # not production
        deploy(2, 4, commit_ref(sha1), status="failure"),  # failed
        deploy(3, 6, commit_ref(sha1), commit_ref(sha2)),  # the first successful production one
        deploy(4, 9, commit_ref(sha2)),  # later: must not move the release
    ]
    item = wi(1, (0, "New", P), (1, "Active", IP), (7, "Closed", C), created=-10)
    figures = compute([item], [pr], deployments, [Link("github", ado_ref(1), pr.ref)])
    assert only(figures.request_to_release) == [(day(6).timestamp(), 16 * DAY)]
    assert list(figures.request_to_release.by_labels) == [("boards", "Fabrikam", "Web", "Bug", "production")]
    assert list(figures.change_lead_time.by_labels) == [("pipelines", "web-ci", "production")]
    assert only(figures.change_lead_time) == [(day(6).timestamp(), 5 * DAY)]


def test_item_without_links_has_no_request_to_release_but_keeps_lead_time() -> None:
    figures = compute([wi(1, (0, "New", P), (2, "Closed", C))], [], [deploy(1, 3, build_ref(1))], [])
    assert figures.request_to_release.count() == 0 and figures.lead_time.count() == 1


def test_build_link_releases_azure_only_items() -> None:
    figures = compute(
        [wi(9, (0, "New", P), created=0)],
        [],
        [deploy(1, 2.5, build_ref(41), commit_ref("c" * 40))],
        [Link("pipelines", ado_ref(9), build_ref(41))],
    )
    # released even while the item is still open
    assert only(figures.request_to_release) == [(day(2.5).timestamp(), 2.5 * DAY)]


def test_release_before_creation_is_rejected() -> None:
    figures = compute(
        [wi(1, (5, "New", P), created=5)],
        [],
        [deploy(1, 2, build_ref(1))],
        [Link("pipelines", ado_ref(1), build_ref(1))],
    )
    assert figures.request_to_release.count() == 0
    assert figures.rejected[("boards", "end_before_start")] == 1


def test_migrated_item_created_after_it_shipped_is_left_out_of_every_figure() -> None:
    # created (migrated) on day 5, completed on day 6, but its build shipped on day 2
    figures = compute(
        [wi(1, (5, "New", P), (5.5, "Active", IP), (6, "Closed", C), created=5), wi(2, (5, "New", P), created=5)],
        [],
        [deploy(1, 2, build_ref(1))],
        [Link("pipelines", ado_ref(1), build_ref(1))],
    )
    assert figures.lead_time.count() == figures.cycle_time.count() == figures.request_to_release.count() == 0
    assert figures.state_seconds == {}
    assert figures.rejected[("boards", "end_before_start")] == 1
    assert sum(figures.wip.values()) == 1  # item 2 only


def test_as_of_sees_only_what_had_happened_by_then() -> None:
    items = [wi(1, (0, "New", P), (1, "Active", IP), (3, "Closed", C), created=0), wi(2, (4, "New", P), created=4)]
    deployments = [deploy(1, 2.5, build_ref(1)), deploy(2, 5, build_ref(2), status="failure")]
    links = [Link("pipelines", ado_ref(1), build_ref(1))]
    then = compute(items, [], deployments, links, as_of=day(2).timestamp())
    assert then.lead_time.count() == 0  # not completed yet on day 2
    assert then.request_to_release.count() == 0  # not released yet either
    assert dict(then.wip) == {("boards", "Fabrikam", "Web", "Bug", "InProgress"): 1}
    assert sum(then.deployments.values()) == 0
    later = compute(items, [], deployments, links, as_of=day(4.5).timestamp())
    assert only(later.lead_time) == [(day(3).timestamp(), 3 * DAY)]
    assert only(later.request_to_release) == [(day(2.5).timestamp(), 2.5 * DAY)]
    assert dict(later.wip) == {("boards", "Fabrikam", "Web", "Bug", "Proposed"): 1}
    assert dict(later.deployments) == {("pipelines", "web-ci", "production", "true", "success"): 1}
    # as of the end of time, the same as no pin at all
    assert (
        compute(items, [], deployments, links, as_of=day(99).timestamp()).deployments
        == compute(items, [], deployments, links).deployments
    )


def test_deployment_counters_cover_every_environment() -> None:
    figures = compute(
        [], [], [deploy(1, 1), deploy(2, 2, status="failure"), deploy(3, 3, env="staging", production=False)], []
    )
    assert figures.deployments == {
        ("pipelines", "web-ci", "production", "true", "success"): 1,
        ("pipelines", "web-ci", "production", "true", "failure"): 1,
        ("pipelines", "web-ci", "staging", "false", "success"): 1,
    }
    assert only_ends(figures.deployment_events, ("pipelines", "web-ci", "production", "true", "failure")) == [
        day(2).timestamp()
    ]


def test_recovery_from_first_failure_of_a_streak_to_next_success() -> None:
    ds = [
        deploy(1, 1),
        deploy(2, 2, status="failure"),
        deploy(3, 2.5, status="failure"),
        deploy(4, 4),
        deploy(5, 5, status="failure"),
        deploy(6, 5, env="staging", production=False),
        deploy(7, 6, status="failure", env="staging", production=False),
    ]
    figures = compute([], [], ds, [])
    # the day-5 failure is still open
    assert {labels: figures.recovery.pairs(labels) for labels in figures.recovery.by_labels} == {
        ("pipelines", "web-ci", "production", "true"): [(day(4).timestamp(), 2 * DAY)]
    }


def test_first_delivery_ignores_failures_and_other_environments() -> None:
    item = wi(1, (0, "New", P), created=0)
    figures = compute(
        [item],
        [],
        [
            deploy(1, 1, "commit:x", status="failure"),
            deploy(2, 2, "commit:x", env="dev", production=False),
            deploy(3, 3, "commit:x"),
        ],
        [Link("github", item.ref, "commit:x")],
    )
    assert only(figures.request_to_release) == [(day(3).timestamp(), 3 * DAY)]


# -- histograms and window quantiles -----------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_le() -> None:
    data = histogram([HOUR, HOUR + 1, 2 * DAY, 400 * DAY])
    assert data.buckets[0] == 1  # le=1h includes exactly 1h
    assert data.buckets[1] == 2  # le=4h
    assert data.buckets[BUCKETS.index(2 * DAY)] == 3
    assert data.buckets[-2] == 3 and data.buckets[-1] == 4  # 400d only in +Inf
    assert data.count == 4 and data.total == pytest.approx(HOUR * 2 + 1 + 402 * DAY)


def test_window_selects_half_open_interval_and_interpolates_linearly() -> None:
    now = 100 * DAY
    obs = [
        (now - 7 * DAY, 1.0),  # exactly at the window start: excluded
        (now - 6 * DAY, 10.0),
        (now - 1 * DAY, 20.0),
        (now, 30.0),
        (now + 1, 999.0),
    ]  # future excluded
    summary = window_quantiles(obs, now, 7 * DAY, [0.5, 0.85])
    assert summary.count == 3
    assert summary.quantiles == {0.5: 20.0, 0.85: pytest.approx(27.0)}


def test_empty_window_gives_no_sample_rather_than_nan() -> None:
    summary = window_quantiles([(0.0, 5.0)], 100 * DAY, 7 * DAY, [0.5])
    assert summary.count == 0 and summary.quantiles == {}


# -- properties ----------------------------------------------------------------------------------------------

values = st.lists(st.floats(min_value=0, max_value=2 * 365 * DAY, allow_nan=False), min_size=1, max_size=200)


@given(values, st.lists(st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=4))
def test_window_quantiles_equal_numpy_quantile(vals: list[float], qs: list[float]) -> None:
    now = 1e9
    summary = window_quantiles([(now, v) for v in vals], now, DAY, qs)
    expected = np.quantile(np.asarray(vals), qs, method="linear")
    assert summary.count == len(vals)
    assert [summary.quantiles[q] for q in qs] == pytest.approx(list(expected))


state_names = st.sampled_from([("New", P), ("Active", IP), ("Resolved", R), ("Closed", C), ("Removed", X)])


@st.composite
def items(draw: st.DrawFn) -> WorkItem:
    n = draw(st.integers(1, 10**6))
    steps = draw(st.lists(st.tuples(st.floats(0, 30), state_names), min_size=1, max_size=12))
    t, states = 0.0, []
    for gap, (name, cat) in steps:
        t += gap
        states.append((t, name, cat))
    return wi(n, *states)


@settings(max_examples=150)
@given(st.lists(items(), max_size=30, unique_by=lambda w: w.native_id))
def test_histogram_count_equals_completed_items_and_durations_never_negative(work: list[WorkItem]) -> None:
    figures = compute(work, [], [], [])
    completed = [w for w in work if w.history and w.history[-1].category is C]
    assert figures.lead_time.count() == len(completed)
    all_lead = [v for obs in figures.lead_time.by_labels.values() for v in obs[:, 1]]
    all_cycle = [v for obs in figures.cycle_time.by_labels.values() for v in obs[:, 1]]
    assert all(v >= 0 for v in all_lead + all_cycle)
    assert all(s >= 0 for s in figures.state_seconds.values())
    assert histogram(all_lead).count == len(completed)


@settings(max_examples=100)
@given(items(), st.floats(0.1, 50), state_names)
def test_a_later_revision_never_changes_an_earlier_released_items_request_to_release(
    item: WorkItem, gap: float, new_state: tuple[str, Category]
) -> None:
    # removing an item excludes it from every figure (and restoring it brings it back), by definition
    assume(item.history[-1].category is not X and new_state[1] is not X)
    deployments = [deploy(1, 3, build_ref(1))]
    links = [Link("pipelines", item.ref, build_ref(1))]
    before = compute([item], [], deployments, links).request_to_release
    last = item.history[-1].at
    later = WorkItem(
        item.source,
        item.native_id,
        item.ref,
        item.project,
        item.team,
        item.type,
        item.created_at,
        (*item.history, StateChange(item.native_id, len(item.history) + 1, last + timedelta(days=gap), *new_state)),
    )
    after = compute([later], [], deployments, links).request_to_release
    assert {k: after.pairs(k) for k in after.by_labels} == {k: before.pairs(k) for k in before.by_labels}
    # and the figure is the definition's, not vacuously empty: released on day 3 unless it cannot be ordered
    times = [item.created_at, *(s.at for s in sorted(item.history, key=lambda s: s.seq))]
    ordered = all(a <= b for a, b in itertools.pairwise(times)) and item.created_at <= day(3)
    expected = [(day(3).timestamp(), (day(3) - item.created_at).total_seconds())] if ordered else []
    assert [pair for labels in before.by_labels for pair in before.pairs(labels)] == expected


SHAS = [f"{n:02x}" * 20 for n in range(6)]
PRS = [gh_pr_ref("contoso/web", n) for n in range(1, 4)]
DELIVERABLES = [*(commit_ref(s) for s in SHAS), *PRS, build_ref(1), build_ref(2)]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Change], list[Deployment]]:
    """Pull requests over a few commits, and deployments of them: any status, two production environment
    names and a staging one, finish on whole days (so ties happen), some before the items were created."""
    changes = [
        Change("github", ref, ref, "contoso/web", "pull_request", day(0), day(1), tuple(commits))
        for ref in PRS
        if (commits := draw(st.lists(st.sampled_from(SHAS), max_size=3, unique=True)))
    ]
    deployments = [
        Deployment(
            draw(st.sampled_from(["pipelines", "github"])),
            f"d{i}",
            "web",
            env,
            env != "staging",
            draw(st.sampled_from(["success", "success", "failure"])),
            None,
            day(draw(st.integers(-2, 8))),  # few whole days: ties on finish time are common
            draw(st.none() | st.sampled_from(SHAS)),
            tuple(draw(st.lists(st.sampled_from(DELIVERABLES), min_size=1, max_size=4, unique=True))),
        )
        for i, env in enumerate(
            draw(st.lists(st.sampled_from(["production", "Prod", "staging"]), min_size=1, max_size=8))
        )
    ]
    return changes, deployments


def released_by_definition(
    item: WorkItem, changes: list[Change], deployments: list[Deployment], links: list[Link]
) -> tuple[tuple[str, ...], tuple[float, float]] | None:
    """docs/definitions.md, one item at a time: finish of the first successful production deployment
    containing anything linked to the item (a pull request stands for its commits too) - created_at;
    nothing for an item removed now, one whose history cannot be ordered, or one released before it
    was created. Ties on finish time go to the lower (source, native_id)."""
    try:
        times = item_times(item)
    except Rejected:
        return None
    if times.current is X:
        return None
    linked = {link.target for link in links if link.work_item == item.ref}
    linked |= {commit_ref(s) for c in changes if c.ref in linked for s in c.commits}
    shipped = [
        d
        for d in deployments
        if d.production and d.status == "success" and linked & {*d.contains, *([commit_ref(d.sha)] if d.sha else [])}
    ]
    if not shipped:
        return None
    first = min(shipped, key=lambda d: (d.finished_at, d.source, d.native_id))
    if first.finished_at < item.created_at:
        return None
    labels = (item.source, item.project, item.team, item.type, first.environment)
    end = first.finished_at.timestamp()
    return labels, (end, end - item.created_at.timestamp())


@settings(max_examples=200)
@given(
    st.lists(items(), min_size=1, max_size=8, unique_by=lambda w: w.native_id),
    deliveries(),
    st.lists(st.tuples(st.integers(0, 9), st.sampled_from(DELIVERABLES)), min_size=1, max_size=12),
)
def test_request_to_release_equals_the_per_item_definition(
    work: list[WorkItem], delivered: tuple[list[Change], list[Deployment]], pairs: list[tuple[int, str]]
) -> None:
    changes, deployments = delivered
    refs = [w.ref for w in work]
    links = [Link("boards", refs[i % len(refs)], target) for i, target in pairs]
    expected: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for item in work:
        found = released_by_definition(item, changes, deployments, links)
        if found is not None:
            expected.setdefault(found[0], []).append(found[1])
    figures = compute(work, changes, deployments, links).request_to_release
    got = {k: sorted(figures.pairs(k)) for k in figures.by_labels}
    assert got == {k: sorted(v) for k, v in expected.items()}


@settings(max_examples=150)
@given(st.lists(items(), max_size=25, unique_by=lambda w: w.native_id))
def test_vectorised_compute_equals_the_per_item_definition(work: list[WorkItem]) -> None:
    """compute() is columnar for speed; item_times() is the readable definition. They must agree."""
    figures = compute(work, [], [], [])
    lead: dict[tuple, list] = {}
    cycle: dict[tuple, list] = {}
    states: dict[tuple, float] = {}
    active: dict[tuple, list] = {}
    rejected = 0
    for w in work:
        try:
            t = item_times(w)
        except Rejected:
            rejected += 1
            continue
        labels = (w.source, w.project, w.team, w.type)
        if t.current is C:
            lead.setdefault(labels, []).append((t.completed_at, t.lead_time))
            working = sum(secs for (_, cat), secs in t.time_in_states().items() if cat is IP)
            active.setdefault(labels, []).append((t.completed_at, working))
            if t.cycle_time is not None:
                cycle.setdefault(labels, []).append((t.completed_at, t.cycle_time))
            for (state, cat), secs in t.time_in_states().items():
                key = (*labels, state, cat.value)
                states[key] = states.get(key, 0.0) + secs
    assert {k: figures.lead_time.pairs(k) for k in figures.lead_time.by_labels} == lead
    assert {k: figures.cycle_time.pairs(k) for k in figures.cycle_time.by_labels} == cycle
    assert figures.state_seconds == pytest.approx(states)
    assert set(figures.active_time.by_labels) == set(active)
    for labels, pairs in active.items():
        got = figures.active_time.pairs(labels)
        assert [e for e, _ in got] == [e for e, _ in pairs]
        assert [v for _, v in got] == pytest.approx([v for _, v in pairs])
    assert sum(figures.rejected.values()) == rejected


# -- where the time goes: stages ----------------------------------------------------------------------------


def pr_change(
    n: int,
    first: float,
    merged: float,
    *shas: str,
    ready: float | None = None,
    review: float | None = None,
    repo: str = "contoso/web",
) -> Change:
    ref = gh_pr_ref(repo, n)
    return Change(
        "github",
        f"{repo}#{n}",
        ref,
        repo,
        "pull_request",
        day(first),
        day(merged),
        shas,
        None if ready is None else day(ready),
        None if review is None else day(review),
    )


def stage_days(observations, *labels: str) -> dict[str, list[float]]:
    """stage → values in days, for the label sets that start with ``labels``."""
    out: dict[str, list[float]] = {}
    for key, block in observations.by_labels.items():
        if key[: len(labels)] == labels:
            out.setdefault(key[-1], []).extend(float(v) / DAY for v in block[:, 1])
    return out


def test_a_draft_pr_is_coded_until_it_is_marked_ready() -> None:
    """First commit day 0, opened as a draft, ready day 2, reviewed by someone else day 3, merged day 4,
    in production day 7: coding 2, pickup 1, review 1, deploy 3, summing to the lead time of 7 days."""
    sha = "a" * 40
    pr = pr_change(1, 0, 4, sha, ready=2, review=3)
    figures = compute([], [pr], [deploy(1, 7, commit_ref(sha))], [])
    assert stage_days(figures.change_stages, "github", "contoso/web") == {
        "coding": [2.0],
        "pickup": [1.0],
        "review": [1.0],
        "deploy": [3.0],
    }
    assert only(figures.change_lead_time) == [(day(7).timestamp(), 7 * DAY)]
    assert {float(b[0, 0]) for b in figures.change_stages.by_labels.values()} == {day(7).timestamp()}


def test_commits_after_the_opening_make_coding_zero_and_no_review_runs_pickup_to_the_merge() -> None:
    sha = "b" * 40
    pr = pr_change(2, 1, 3, sha, ready=0)  # opened on day 0, first commit day 1, nobody reviewed
    figures = compute([], [pr], [deploy(1, 5, commit_ref(sha))], [])
    assert stage_days(figures.change_stages) == {"coding": [0.0], "pickup": [2.0], "review": [0.0], "deploy": [2.0]}


def test_a_review_after_the_merge_counts_as_none_and_unknown_readiness_means_the_first_commit() -> None:
    sha = "c" * 40
    pr = pr_change(3, 0, 2, sha, review=2.5)
    figures = compute([], [pr], [deploy(1, 3, commit_ref(sha))], [])
    assert stage_days(figures.change_stages) == {"coding": [0.0], "pickup": [2.0], "review": [0.0], "deploy": [1.0]}


def test_a_direct_commit_has_only_deploy() -> None:
    sha = "d" * 40
    push = Change("pipelines", sha, commit_ref(sha), "web-ci", "commit", day(1), day(1), (sha,))
    figures = compute([], [push], [deploy(1, 4, commit_ref(sha))], [])
    assert list(figures.change_stages.by_labels) == [("pipelines", "web-ci", "deploy")]
    assert stage_days(figures.change_stages) == {"deploy": [3.0]}


def test_request_stages_from_backlog_to_release() -> None:
    """Created day 0, Active day 3, first linked PR ready day 5, the last linked change merged day 9,
    released day 12: backlog 3, development 2, review 4, release 3 = request-to-release 12."""
    sha1, sha2 = "1" * 40, "2" * 40
    first = pr_change(1, 4, 6, sha1, ready=5)
    second = pr_change(2, 6.5, 9, sha2, ready=7)
    item = wi(1, (0, "New", P), (3, "Active", IP), (13, "Closed", C))
    links = [Link("github", ado_ref(1), first.ref), Link("github", ado_ref(1), commit_ref(sha2))]
    figures = compute([item], [first, second], [deploy(1, 12, commit_ref(sha1), commit_ref(sha2))], links)
    assert stage_days(figures.request_stages, "boards", "Fabrikam", "Web", "Bug") == {
        "backlog": [3.0],
        "development": [2.0],
        "review": [4.0],
        "release": [3.0],
    }
    assert only(figures.request_to_release) == [(day(12).timestamp(), 12 * DAY)]


def test_an_item_without_a_linked_pr_has_no_review_and_development_runs_to_its_last_change() -> None:
    sha = "3" * 40
    push = Change("pipelines", sha, commit_ref(sha), "web-ci", "commit", day(6), day(6), (sha,))
    built = wi(1, (0, "New", P), (2, "Active", IP))
    never_started = wi(2, (0, "New", P))
    figures = compute(
        [built, never_started],
        [push],
        [deploy(1, 8, commit_ref(sha), build_ref(4))],
        [Link("pipelines", ado_ref(1), commit_ref(sha)), Link("pipelines", ado_ref(2), build_ref(4))],
    )
    assert stage_days(figures.request_stages) == {
        # item 1: backlog 2, development to the pushed commit on day 6, release 2
        # item 2: linked to a build only, never started: all of it waited in the backlog
        "backlog": [2.0, 8.0],
        "development": [4.0, 0.0],
        "review": [0.0, 0.0],
        "release": [2.0, 0.0],
    }


TIMES = st.none() | st.floats(-3, 10).map(lambda d: round(d, 3))


@st.composite
def reviewed_deliveries(draw: st.DrawFn) -> tuple[list[Change], list[Deployment]]:
    """deliveries() whose pull requests got arbitrary readiness, review and merge times (in any order:
    sources see clock skew), plus some direct commits."""
    changes, deployments = draw(deliveries())
    changes = [
        Change(
            c.source,
            c.native_id,
            c.ref,
            c.service,
            c.kind,
            day(first := draw(st.floats(-3, 6))),
            draw(st.none() | st.floats(first - 1, 9).map(day)),
            c.commits,
            (lambda t: None if t is None else day(t))(draw(TIMES)),
            (lambda t: None if t is None else day(t))(draw(TIMES)),
        )
        for c in changes
    ]
    for sha in draw(st.lists(st.sampled_from(SHAS), max_size=2, unique=True)):
        pushed = day(draw(st.floats(-3, 8)))
        # pushed to the PRs' repository (their deploy stages share a series) or built by a pipeline
        source, service = draw(st.sampled_from([("github", "contoso/web"), ("pipelines", "web-ci")]))
        changes.append(Change(source, sha, commit_ref(sha), service, "commit", pushed, pushed, (sha,)))
    return changes, deployments


def stages_by_definition(bounds: list[float | None]) -> list[float]:
    """docs/definitions.md, written another way: each boundary is the latest of the known ones up to
    it (a missing one standing for the next known), capped at the end; a stage is the difference."""
    end = bounds[-1]
    assert end is not None
    filled = []
    for i, b in enumerate(bounds):
        filled.append(b if b is not None else next(x for x in bounds[i + 1 :] if x is not None))
    effective = [min(end, max(filled[: i + 1])) for i in range(len(filled))]
    return [later - earlier for earlier, later in itertools.pairwise(effective)]


@settings(max_examples=200)
@given(
    st.lists(items(), min_size=1, max_size=6, unique_by=lambda w: w.native_id),
    reviewed_deliveries(),
    st.lists(st.tuples(st.integers(0, 9), st.sampled_from(DELIVERABLES)), min_size=1, max_size=12),
)
def test_stages_equal_the_per_item_definition_and_sum_to_the_whole(
    work: list[WorkItem], delivered: tuple[list[Change], list[Deployment]], pairs: list[tuple[int, str]]
) -> None:
    changes, deployments = delivered
    refs = [w.ref for w in work]
    links = [Link("boards", refs[i % len(refs)], target) for i, target in pairs]
    figures = compute(work, changes, deployments, links)

    # request stages: one observation per stage per released item, summing to its request-to-release
    want: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for item in work:
        found = released_by_definition(item, changes, deployments, links)
        if found is None:
            continue
        labels, (end, whole) = found
        targets = {link.target for link in links if link.work_item == item.ref}
        mine = [c for c in changes if c.ref in targets or targets & {commit_ref(s) for s in c.commits}]
        started = [s.at.timestamp() for s in sorted(item.history, key=lambda s: s.seq) if s.category in (IP, R)]
        readies = [(c.ready_at or c.first_commit_at).timestamp() for c in mine if c.kind == "pull_request"]
        merges = [c.merged_at.timestamp() for c in mine if c.merged_at is not None]
        bounds = [
            item.created_at.timestamp(),
            started[0] if started else None,
            min(readies) if readies else None,
            max(merges) if merges else None,
            end,
        ]
        seconds = stages_by_definition(bounds)
        assert all(s >= 0 for s in seconds) and sum(seconds) == pytest.approx(whole, abs=1e-6)
        for stage, s in zip(("backlog", "development", "review", "release"), seconds, strict=True):
            want.setdefault((*labels[:4], stage), []).append((end, s))
    got = {k: sorted(figures.request_stages.pairs(k)) for k in figures.request_stages.by_labels}
    assert got.keys() == want.keys()
    for key, pairs_ in want.items():
        assert [e for e, _ in got[key]] == [e for e, _ in sorted(pairs_)]
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in sorted(pairs_)], abs=1e-6)

    # change stages: a pull request's four (a direct commit's one) sum to its change lead time
    lead_total = sum(float(b[:, 1].sum()) for b in figures.change_lead_time.by_labels.values())
    stage_total = sum(float(b[:, 1].sum()) for b in figures.change_stages.by_labels.values())
    assert stage_total == pytest.approx(lead_total, abs=1e-3)
    assert all((b[:, 1] >= 0).all() for b in figures.change_stages.by_labels.values())
    lead_count = sum(len(b) for b in figures.change_lead_time.by_labels.values())
    for stage in ("deploy",):
        assert sum(len(b) for k, b in figures.change_stages.by_labels.items() if k[2] == stage) == lead_count
