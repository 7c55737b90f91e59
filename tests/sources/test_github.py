"""The GitHub source: normalisation rules, then full and incremental syncs against the sandbox.

The sandbox (``sandbox/github/``) serves GitHub's REST v3 shapes over real HTTP on
127.0.0.1 and knows the ground truth of what a perfect sync stores; each repository there delivers
through one ``deployments_from`` mode, so a test configures one source per repository.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import serving_half

from collector.config import GitHubConfig
from collector.errors import AuthError, SourceError
from collector.model import Category
from collector.sources import SOURCES
from collector.sources.base import SourceContext, SyncReport
from collector.sources.github import GitHubSource, _History, deployment_outcome, issue_history, review_times
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.routes import GitHubRoutes

NOW = datetime(2026, 1, 15, tzinfo=UTC)
TOKEN = "sandbox-token"
T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)


# -- normalisation rules (pure) -----------------------------------------------------------------
def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(kind: str, hours: float, **extra: Any) -> dict[str, Any]:
    return {"id": int(hours * 100) + 1, "event": kind, "created_at": _at(hours), **extra}


def _states(history: tuple[Any, ...]) -> list[tuple[int, float, str, Category]]:
    return [(s.seq, (s.at - T0).total_seconds() / 3600, s.state, s.category) for s in history]


def test_issue_history_assignment_close_reopen() -> None:
    events = [
        _event("labeled", 0.5, label={"name": "bug"}),
        _event("assigned", 1, assignee={"login": "ana"}),
        _event("commented", 2),
        _event("closed", 3, state_reason="completed"),
        _event("reopened", 4, state_reason="reopened"),
        _event("unassigned", 5, assignee={"login": "ana"}),
        _event("assigned", 5.5, assignee={"login": "bo"}),
        _event("assigned", 5.6, assignee={"login": "cy"}),  # still in progress: no new state
        _event("closed", 6, state_reason="not_planned"),
    ]
    assert _states(issue_history("o/r#1", T0, events)) == [
        (1, 0, "open", Category.PROPOSED),
        (2, 1, "in_progress", Category.IN_PROGRESS),
        (3, 3, "completed", Category.COMPLETED),
        (4, 4, "in_progress", Category.IN_PROGRESS),  # reopened while still assigned
        (5, 5, "open", Category.PROPOSED),
        (6, 5.5, "in_progress", Category.IN_PROGRESS),
        (7, 6, "not_planned", Category.REMOVED),
    ]


def test_an_open_closing_pull_request_is_in_progress_until_it_closes() -> None:
    def ref(number: int, closed: float | None, hours: float, body: str = "Fixes #2") -> dict[str, Any]:
        issue = {
            "number": number,
            "url": f"https://api/o/r/issues/{number}",
            "closed_at": closed and _at(closed),
            "repository_url": "https://api/repos/o/r",
            "title": "A change",
            "body": body,
            "pull_request": {"url": f"https://api/repos/o/r/pulls/{number}", "merged_at": None},
        }
        return {"event": "cross-referenced", "created_at": _at(hours), "source": {"type": "issue", "issue": issue}}

    mention = ref(8, None, 1)
    del mention["source"]["issue"]["pull_request"]  # another issue mentioning ours: not work on it
    related = ref(11, None, 1.5, "Related to #2")  # an open PR that only mentions it: not work on it either
    events = [mention, related, ref(9, 5, 2), ref(10, 7, 3, "closes: O/R#2"), _event("closed", 7)]
    assert _states(issue_history("o/r#2", T0, events)) == [
        (1, 0, "open", Category.PROPOSED),
        (2, 2, "in_progress", Category.IN_PROGRESS),  # PR 9 closed at 5, PR 10 still open then
        (3, 7, "completed", Category.COMPLETED),  # PR 10's close comes after the close event at 7
    ]


def test_deployment_outcome_is_the_latest_finished_status() -> None:
    def status(state: str, hours: float) -> dict[str, Any]:
        return {"id": int(hours * 10), "state": state, "created_at": _at(hours)}

    # the API lists statuses newest first; an old success gains "inactive" later
    assert deployment_outcome([status("inactive", 9), status("success", 2), status("in_progress", 1)]) == (
        "success",
        T0 + timedelta(hours=2),
    )
    assert deployment_outcome([status("error", 3), status("queued", 1)]) == ("failure", T0 + timedelta(hours=3))
    # the latest finished status decides: a failure reported again as a success succeeded
    assert deployment_outcome([status("success", 4), status("failure", 2)]) == ("success", T0 + timedelta(hours=4))
    assert deployment_outcome([status("error", 5), status("success", 4)]) == ("failure", T0 + timedelta(hours=5))
    assert deployment_outcome([status("queued", 1), status("in_progress", 2)]) is None
    assert deployment_outcome([]) is None


def _review(login: str | None, hours: float | None, state: str = "approved", **extra: Any) -> dict[str, Any]:
    review = {"id": 900 + len(login or ""), "event": "reviewed", "user": {"login": login} if login else None}
    return {**review, "state": state, **({"submitted_at": _at(hours)} if hours is not None else {}), **extra}


def _comment(login: str, hours: float, review: int | None) -> dict[str, Any]:
    return {
        "event": "line-commented",
        "comments": [{"user": {"login": login}, "created_at": _at(hours), "pull_request_review_id": review}],
    }


def _times(author: str | None, events: list[dict[str, Any]]) -> tuple[float, float | None]:
    ready, first = review_times(T0, {"login": author} if author else None, events)
    return (ready - T0).total_seconds() / 3600, None if first is None else (first - T0).total_seconds() / 3600


def test_ready_for_review_is_the_creation_unless_opened_as_a_draft() -> None:
    assert _times("mona", [])[0] == 0
    assert (
        _times("mona", [_event("ready_for_review", 5), _event("convert_to_draft", 6), _event("ready_for_review", 8)])[0]
        == 5
    )
    # opened ready, sent back to draft and made ready again: ready since it was opened
    assert _times("mona", [_event("convert_to_draft", 2), _event("ready_for_review", 3)])[0] == 0


def test_the_first_review_is_by_someone_else_and_submitted() -> None:
    bob = _review("bob", 9)
    assert _times("mona", [_review("mona", 2, "commented"), bob]) == (0, 9)  # the author's own: no review
    assert _times("mona", [_review("Mona", 2, "commented")]) == (0, None)  # logins compare case-insensitively
    assert _times("mona", [_review("carol", None, "pending"), bob]) == (0, 9)  # pending: unsubmitted
    # a comment drafted before its review was submitted counts at its own time; a pending review's
    # comment, or the author's, does not
    assert _times("mona", [_comment("bob", 4, bob["id"]), bob]) == (0, 4)
    assert _times("mona", [_comment("carol", 3, 77), _review("carol", None, "pending", id=77), bob]) == (0, 9)
    assert _times("mona", [_comment("mona", 3, bob["id"]), bob]) == (0, 9)
    # bots review like anyone, and GraphQL's bot logins have no [bot]
    assert _times("mona", [_review("copilot[bot]", 6, "commented"), bob]) == (0, 6)
    assert _times("dependabot[bot]", [_review("dependabot", 6, "commented"), bob]) == (0, 9)
    # a deleted author (REST ghost, GraphQL null): every review counts, deleted reviewers too
    assert _times("ghost", [_review("mona", 2, "commented"), bob]) == (0, 2)
    assert _times(None, [_review(None, 3, "commented"), bob]) == (0, 3)
    assert _times("mona", [_review(None, 3, "commented"), bob]) == (0, 3)
    # GraphQL: a review started (its first comment drafted) before it was submitted
    assert _times("mona", [_review("bob", 9, _started_at=_at(7))]) == (0, 7)


def test_registered_under_its_kind() -> None:
    assert SOURCES["github"] is GitHubSource


# -- against the sandbox ------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(repo: str) -> str:
    return "gh_" + repo.split("/")[1].replace("-", "_")


def _context(**overrides: Any) -> SourceContext:
    kwargs: dict[str, Any] = {"now": lambda: NOW, "sleep": lambda s: None}
    kwargs.update(overrides)
    return SourceContext(**kwargs)


def _source(
    base_url: str,
    repos: list[str],
    mode: str,
    name: str | None = None,
    reserve: float = 0.1,
    api: str = "auto",
    **ctx: Any,
) -> GitHubSource:
    config = GitHubConfig(
        name=name or _name(repos[0]),
        kind="github",
        base_url=base_url,
        token=TOKEN,
        repositories=repos,
        deployments_from=mode,
        rate_limit_reserve=reserve,
        api=api,
    )
    return GitHubSource(config, _context(**ctx))


def _sources(sandbox: Sandbox, reserve: float = 0.1, api: str = "auto", **ctx: Any) -> list[GitHubSource]:
    """One source per sandbox repository, with the deployments_from that repository uses."""
    return [
        _source(sandbox.github_url, [repo], mode, reserve=reserve, api=api, **ctx)
        for repo, mode in sandbox.github.truth()["repos"].items()
    ]


def _sync_all(sources: list[GitHubSource], store: Store) -> list[SyncReport]:
    return [s.sync(store) for s in sources]


def _stored(store: Store) -> dict[str, Any]:
    """The store in the sandbox truth's terms (ISO strings, sorted lists)."""
    return {
        "work_items": sorted(
            (
                {
                    "native_id": w.native_id,
                    "ref": w.ref,
                    "project": w.project,
                    "team": w.team,
                    "type": w.type,
                    "created_at": _iso(w.created_at),
                    "history": [
                        {"seq": s.seq, "at": _iso(s.at), "state": s.state, "category": s.category.value}
                        for s in w.history
                    ],
                }
                for w in store.work_items()
            ),
            key=lambda x: x["native_id"],
        ),
        "changes": sorted(
            (
                {
                    "native_id": c.native_id,
                    "ref": c.ref,
                    "service": c.service,
                    "kind": c.kind,
                    "first_commit_at": _iso(c.first_commit_at),
                    "merged_at": _iso(c.merged_at),
                    "commits": sorted(c.commits),
                    "ready_at": _iso(c.ready_at),
                    "first_review_at": _iso(c.first_review_at),
                }
                for c in store.changes()
            ),
            key=lambda x: x["native_id"],
        ),
        "deployments": sorted(
            (
                {
                    "native_id": d.native_id,
                    "service": d.service,
                    "environment": d.environment,
                    "production": d.production,
                    "status": d.status,
                    "started_at": _iso(d.started_at),
                    "finished_at": _iso(d.finished_at),
                    "sha": d.sha,
                    "contains": sorted(d.contains),
                }
                for d in store.deployments()
            ),
            key=lambda x: (x["service"], x["native_id"]),
        ),
        "links": sorted({(link.work_item, link.target) for link in store.links()}),
    }


def _expected(truth: dict[str, Any], repos: set[str] | None = None) -> dict[str, Any]:
    def keep(repo: str) -> bool:
        return repos is None or repo in repos

    # links of the kept repositories: to their pull requests, or to those pull requests' commits
    targets = {
        t
        for c in truth["changes"]
        if keep(c["service"])
        for t in (c["ref"], *(f"commit:{sha}" for sha in c["commits"]))
    }

    return {
        "work_items": sorted((w for w in truth["work_items"] if keep(w["project"])), key=lambda x: x["native_id"]),
        "changes": sorted(
            ({**c, "commits": sorted(c["commits"])} for c in truth["changes"] if keep(c["service"])),
            key=lambda x: x["native_id"],
        ),
        "deployments": sorted(
            ({**d, "contains": sorted(d["contains"])} for d in truth["deployments"] if keep(d["service"])),
            key=lambda x: (x["service"], x["native_id"]),
        ),
        "links": sorted(
            {(x["work_item"], x["target"]) for x in truth["links"] if repos is None or x["target"] in targets}
        ),
    }


def _assert_matches_truth(store: Store, truth: dict[str, Any], repos: set[str] | None = None) -> None:
    stored, expected = _stored(store), _expected(truth, repos)
    # every repository has issues, merged pull requests and deployments: equal to nothing is no match
    assert all(expected[part] for part in ("work_items", "changes", "deployments")), "nothing expected"
    for part in ("work_items", "changes", "deployments", "links"):
        assert len(stored[part]) == len(expected[part]), part
        assert stored[part] == expected[part], part


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW)) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/github.db")
    yield s
    s.close()


def _delta(sandbox: Sandbox, before: dict[str, Any]) -> dict[str, Any]:
    after = sandbox.server.stats.snapshot()
    by_endpoint = {k: v - before["by_endpoint"].get(k, 0) for k, v in after["by_endpoint"].items()}
    return {
        "total": after["total"] - before["total"],
        "not_modified": after["not_modified"] - before["not_modified"],
        "by_endpoint": {k: v for k, v in by_endpoint.items() if v},
    }


def test_full_sync_equals_the_ground_truth_for_every_deployments_mode(sandbox: Sandbox, store: Store) -> None:
    truth = sandbox.github.truth()
    assert set(truth["repos"].values()) == {"deployments", "releases", "workflow_runs:deploy.yml"}
    progressed: list[int] = []
    before = sandbox.server.stats.snapshot()
    reports = _sync_all(_sources(sandbox, progress=progressed.append), store)
    full = _delta(sandbox, before)
    print(
        f"full sync: {full['total']} requests for {len(truth['work_items'])} issues, "
        f"{len(truth['changes'])} merged PRs, {len(truth['deployments'])} deployments"
    )
    assert all(not r.problems for r in reports)
    _assert_matches_truth(store, truth)
    assert sum(progressed) >= len(truth["work_items"]) + len(truth["changes"]) + len(truth["deployments"])
    # the sample is rich enough to mean something
    stored = _stored(store)
    assert {w["history"][-1]["state"] for w in stored["work_items"]} >= {
        "open",
        "in_progress",
        "completed",
        "not_planned",
    }
    assert any(item.startswith("ado:") for item, _ in stored["links"])
    assert any(x[1].startswith("commit:") for x in stored["links"])
    assert {d["status"] for d in stored["deployments"]} == {"success", "failure"}
    # the force-pushed sha in contoso/web: compare 404s were counted, never fatal
    assert sum(r.details["compare_fallbacks"] for r in reports) >= 1
    assert full["by_endpoint"].get("github.compare", 0) >= 1
    # per_page=100 everywhere: one page per list, not ⌈n/30⌉
    assert full["by_endpoint"]["github.issues"] <= 3 * (1 + len(truth["work_items"]) // 100 + 2)


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_every_merged_pull_request_is_ready_and_first_reviewed_as_the_truth_says(
    sandbox: Sandbox, store: Store, api: str
) -> None:
    """``ready_at`` and ``first_review_at`` of every merged pull request, under both plans, equal the
    sandbox's truth (drafts made ready later, ghost authors, self-reviews, pending reviews, review
    comments drafted before their review, bots). Over REST each merged pull request costs one
    timeline request more, once: idle passes ask for none."""
    truth = {c["native_id"]: c for c in sandbox.github.truth()["changes"] if c["kind"] == "pull_request"}
    issues = len(sandbox.github.truth()["work_items"])
    sources = _sources(sandbox, api=api)
    before = sandbox.server.stats.snapshot()
    assert all(not r.problems for r in _sync_all(sources, store))
    full = _delta(sandbox, before)
    stored = {c.native_id: c for c in store.changes() if c.kind == "pull_request"}
    assert set(stored) == set(truth)
    got = {n: (_iso(c.ready_at), _iso(c.first_review_at)) for n, c in stored.items()}
    assert got == {n: (c["ready_at"], c["first_review_at"]) for n, c in truth.items()}
    # the sample holds every case: drafts made ready later, never reviewed, reviewed
    assert any(c.ready_at and c.ready_at > c.first_commit_at and c.first_review_at for c in stored.values())
    assert any(c.first_review_at is None for c in stored.values())
    assert len({r for r, _ in got.values()}) > len(got) / 2
    timelines = full["by_endpoint"].get("github.issue_timeline", 0)
    if api == "rest":
        # one timeline per issue (a page each) and, now, one per merged pull request
        assert timelines == issues + len(truth)
    else:
        assert timelines == 0 and "github.pull_commits" not in full["by_endpoint"]
    print(f"{api}: full sync {full['total']} requests, {timelines} timelines for {len(truth)} merged PRs")
    before = sandbox.server.stats.snapshot()
    _sync_all(sources, store)
    _sync_all(sources, store)
    assert "github.issue_timeline" not in _delta(sandbox, before)["by_endpoint"]


def test_idle_polls_are_conditional(sandbox: Sandbox, store: Store) -> None:
    sources = _sources(sandbox)
    _sync_all(sources, store)
    streams = 3 * len(sources)  # per repository: issues, pulls, deliveries (+ unfinished deployments)

    before = sandbox.server.stats.snapshot()
    _sync_all(sources, store)
    second = _delta(sandbox, before)
    before = sandbox.server.stats.snapshot()
    _sync_all(sources, store)
    third = _delta(sandbox, before)
    print(
        f"idle second sync: {second['total']} requests, {second['not_modified']} of them 304; "
        f"third: {third['total']} requests, {third['not_modified']} of them 304"
    )
    # the second pass re-asks issues with the newer `since` once (a new URL, so no ETag yet); the
    # unfinished deployment/run and the draft release are re-read conditionally
    assert second["total"] - second["not_modified"] <= len(sources)
    assert second["total"] <= streams + len(sources)
    assert third["total"] == third["not_modified"] > 0
    # the repository is read once per process; a draft release or a running run is on its list's
    # unchanged first page; only a deployment's status cannot show in its list, so it is re-read
    assert "github.repo" not in third["by_endpoint"]
    assert "github.release" not in third["by_endpoint"] and "github.workflow_run" not in third["by_endpoint"]
    assert third["by_endpoint"]["github.deployment_statuses"] == 1
    assert third["total"] == streams + 1
    # and the store did not change
    digest = store.content_digest()
    _sync_all(sources, store)
    assert store.content_digest() == digest


@pytest.mark.parametrize("api", ["auto", "rest"])
def test_release_tags_are_resolved_over_graphql_unless_rest(sandbox: Sandbox, store: Store, api: str) -> None:
    """The commit of each published release's tag: 50 tags a GraphQL query under ``auto``, a REST
    tag lookup each under ``rest``; the same deployments either way."""
    (source,) = [s for s in _sources(sandbox, api=api) if s.config.deployments_from == "releases"]
    before = sandbox.server.stats.snapshot()
    assert not source.sync(store).problems
    asked = _delta(sandbox, before)["by_endpoint"]
    truth = sandbox.github.truth()
    repo = source.config.repositories[0]
    published = [d for d in truth["deployments"] if d["service"] == repo]
    assert len(published) > 3
    if api == "auto":
        assert "github.git_ref" not in asked
        assert asked["github.graphql"] >= 1 + math.ceil(len(published) / 50)  # the lists, then the tags
    else:
        assert asked["github.git_ref"] == len(published)
    _assert_matches_truth(store, truth, {repo})


def test_a_draft_published_and_a_run_completed_after_idle_passes_are_read(sandbox: Sandbox, store: Store) -> None:
    """Neither is re-read while its list's first page is unchanged; its change changes that page."""
    sources = _sources(sandbox)
    _sync_all(sources, store)
    _sync_all(sources, store)
    repos = sandbox.github.data.repos
    draft = next(r for repo in repos.values() for r in repo.releases if r.draft)
    running = next(r for repo in repos.values() for r in repo.runs if r.status != "completed")
    draft.draft, draft.published_at = False, NOW - timedelta(minutes=30)
    running.status, running.conclusion = "completed", "success"
    running.completed_at = running.updated_at = NOW - timedelta(minutes=5)
    before = sandbox.server.stats.snapshot()
    _sync_all(sources, store)
    endpoints = _delta(sandbox, before)["by_endpoint"]
    assert endpoints.get("github.release") == 1 and endpoints.get("github.workflow_run") == 1
    stored = {d.native_id: d for d in store.deployments()}
    assert stored[f"release:{draft.id}"].status == "success"
    assert stored[f"run:{running.id}"].finished_at == NOW - timedelta(minutes=5)


def test_new_activity_appears_after_the_next_sync(sandbox: Sandbox, store: Store) -> None:
    sources = _sources(sandbox)
    _sync_all(sources, store)
    earlier = _stored(store)
    added = sandbox.add_activity(3)["github"]
    new_issues = {i for step in added for i in step["issues"]}
    new_pulls = {p for step in added for p in step["pulls"]}
    new_deployments = {d for step in added for d in step["deployments"]}
    # each step adds an issue, a merged pull request and deliveries: none of it was there before
    assert len(new_issues) == len(new_pulls) == 3 and new_deployments
    assert not new_issues & {w["native_id"] for w in earlier["work_items"]}
    assert not new_pulls & {c["native_id"] for c in earlier["changes"]}
    assert not new_deployments & {d["native_id"] for d in earlier["deployments"]}
    before = sandbox.server.stats.snapshot()
    reports = _sync_all(sources, store)
    print(f"sync after 3 activity steps: {_delta(sandbox, before)['total']} requests")
    assert all(not r.problems for r in reports)
    truth = sandbox.github.truth()
    _assert_matches_truth(store, truth)
    stored = _stored(store)
    assert new_issues <= {w["native_id"] for w in stored["work_items"]}
    assert new_pulls <= {c["native_id"] for c in stored["changes"]}
    # the deliveries the truth counts (finished ones) are stored, and there is at least one
    delivered = new_deployments & {d["native_id"] for d in truth["deployments"]}
    assert delivered and delivered <= {d["native_id"] for d in stored["deployments"]}
    assert len(stored["work_items"]) == len(earlier["work_items"]) + len(new_issues)


def test_rate_limits_are_waited_out(sandbox: Sandbox, store: Store) -> None:
    """A nearly spent primary budget that resets in a few seconds, then a secondary limit: real sleeps.

    No reserve: the API's own refusal is what is waited out (the reserve: test_github_budget.py).
    """
    sandbox.github.set_rate_limit(remaining=40, reset_in=2, secondary=0)
    sources = _sources(sandbox, reserve=0.0, api="rest", sleep=time.sleep)
    started = time.monotonic()
    _sync_all(sources[:1], store)
    sandbox.github.set_rate_limit(secondary=2, retry_after=1)
    reports = _sync_all(sources[1:], store)
    elapsed = time.monotonic() - started
    telemetry = sources[0].ctx.telemetry
    print(
        f"rate-limited sync took {elapsed:.1f}s; slept {telemetry.slept_seconds:.1f}s; codes {dict(telemetry.requests)}"
    )
    assert telemetry.requests["403"] == 1  # the exhausted budget answered once, then we waited for the reset
    assert telemetry.slept_seconds >= 1
    assert sum(s.ctx.telemetry.requests["429"] for s in sources[1:]) == 2
    assert all(not r.problems for r in reports)
    _assert_matches_truth(store, sandbox.github.truth())


def test_a_spent_graphql_budget_is_waited_out(sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """GraphQL's points budget is its own: nearly spent, its RATE_LIMITED (a 200) waits for the reset."""
    sandbox.github.set_rate_limit(remaining=1, reset_in=2, resource="graphql")
    sources = _sources(sandbox, sleep=time.sleep)
    reports = _sync_all(sources, store)
    assert all(not r.problems for r in reports)
    assert "GraphQL rate limited" in caplog.text
    telemetry = sources[0].ctx.telemetry
    assert telemetry.slept_seconds >= 1 and telemetry.requests.get("403", 0) == 0  # REST's budget was not touched
    assert sources[0].graphql is not None and sources[0].graphql.budget.spent > 0
    assert telemetry.budget("graphql") is not None  # kept apart from REST's
    _assert_matches_truth(store, sandbox.github.truth())


def test_a_missing_or_forbidden_repository_does_not_stop_the_others(sandbox: Sandbox, store: Store) -> None:
    # base_url as on api.github.com (no /api/v3 prefix): the sandbox serves both
    source = _source(
        sandbox.url, ["contoso/gone", "contoso/private-infra", "contoso/web"], "deployments", name="github"
    )
    report = source.sync(store)
    assert len(report.problems) == 2
    assert "contoso/gone" in report.problems[0] and "404" in report.problems[0]
    assert "contoso/private-infra" in report.problems[1] and "403" in report.problems[1]
    assert report.details["repositories"] == 1
    _assert_matches_truth(store, sandbox.github.truth(), {"contoso/web"})


def test_every_repository_of_an_owner(sandbox: Sandbox, store: Store) -> None:
    source = _source(sandbox.github_url, ["contoso/*", "alice/*"], "releases", name="github")
    report = source.sync(store)
    assert not report.problems
    assert report.details["repositories"] == 3  # the organisation's; the user alice owns none
    truth = sandbox.github.truth()
    assert _stored(store)["work_items"] == _expected(truth)["work_items"]
    # direct pushes are found in what deployments contain: those differ in releases mode
    assert [c for c in _stored(store)["changes"] if c["kind"] == "pull_request"] == [
        c for c in _expected(truth)["changes"] if c["kind"] == "pull_request"
    ]
    # the repository list is cached behind its ETag as well
    before = sandbox.server.stats.snapshot()
    source.sync(store)
    assert _delta(sandbox, before)["by_endpoint"].get("github.repos") == 1 + 1  # org (304) + user (304)


@pytest.mark.parametrize("api", ["rest", "auto"])
def test_fault_injection_ends_with_the_same_store(tmp_path: Path, api: str) -> None:
    """500s, resets, truncated bodies, 429s: retried; a pass that still fails is resumed by the next."""
    stores = []
    for rate in (0.0, 0.2):
        with Sandbox(SandboxOptions(seed=7, work_items=120, now=NOW, fault_rate=rate)) as sb:
            store = Store(f"sqlite:///{tmp_path}/faults-{rate}.db")
            sources = _sources(sb, api=api)
            for _attempt in range(8):
                failures = 0
                for source in sources:
                    try:
                        failures += bool(source.sync(store).problems)
                    except SourceError as exc:  # a pass may fail after its retries: the next resumes
                        logging.getLogger(__name__).info("pass failed: %s", exc)
                        failures += 1
                if not failures:
                    break
            faults = sb.server.stats.snapshot()["faults"]
            if rate:
                print(f"faults injected: {faults}")
                # the GraphQL plan sends a third of REST's requests, so it meets fewer faults
                assert sum(faults.values()) > (20 if api == "rest" else 10)
            _assert_matches_truth(store, sb.github.truth())
            stores.append({k: v for k, v in store.content_digest().items() if k != "watermarks"})
            store.close()
    assert stores[0] == stores[1]


@contextmanager
def _routes(**options: Any) -> Iterator[tuple[str, GitHubRoutes]]:
    """The sandbox's GitHub half alone, for options ``Sandbox`` does not expose (``malformed``)."""
    routes = GitHubRoutes(
        seed=5, work_items=90, now=NOW, token=TOKEN, organization="contoso", azure_items=[], **options
    )
    with serving_half(routes) as (root, _server):
        yield f"{root}/api/v3", routes


def test_malformed_records_are_rejected_with_a_reason(store: Store) -> None:
    with _routes(malformed=12) as (url, routes):
        truth = routes.truth()
        # over REST: GraphQL's typed answers cannot carry these faults (the sandbox serves them clean)
        sources = [_source(url, [repo], mode, api="rest") for repo, mode in truth["repos"].items()]
        reports = _sync_all(sources, store)
    assert all(not r.problems for r in reports)
    _assert_matches_truth(store, truth)
    expected: dict[tuple[str, str], int] = {}
    for r in truth["rejected"]:
        name = _name(r["record_id"].split("#")[0])
        expected[(name, r["reason"])] = expected.get((name, r["reason"]), 0) + 1
    assert len(truth["rejected"]) == 12
    assert dict(store.rejection_counts()) == expected


def test_the_token_is_never_logged_and_a_bad_one_fails_clearly(
    sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _source(sandbox.github_url, ["contoso/web", "contoso/nope"], "deployments", name="github").sync(store)
    config = GitHubConfig(
        name="bad", kind="github", base_url=sandbox.github_url, token="not-the-token-1234", repositories=["contoso/web"]
    )
    with pytest.raises(AuthError) as failed:
        GitHubSource(config, _context()).sync(store)
    assert "401" in str(failed.value)
    assert TOKEN not in caplog.text and "not-the-token-1234" not in caplog.text
    assert "contoso/nope" in caplog.text  # the 404 was logged, with context


def test_stopping_between_batches_resumes_cleanly(sandbox: Sandbox, store: Store) -> None:
    """Shutdown is checked between batches: what was committed stays, the next pass goes on from there."""
    calls = {"n": 0}

    def stop_after_the_first_batch() -> bool:
        calls["n"] += 1
        return calls["n"] > 2  # before the repository, before its issues, then after their first page

    truth = sandbox.github.truth()
    repo, mode = next(iter(truth["repos"].items()))
    _source(sandbox.github_url, [repo], mode, should_stop=stop_after_the_first_batch).sync(store)
    partial = _stored(store)
    assert partial["work_items"] == _expected(truth, {repo})["work_items"]
    assert partial["changes"] == partial["deployments"] == []
    _source(sandbox.github_url, [repo], mode).sync(store)
    _assert_matches_truth(store, truth, {repo})


def test_contents_from_a_listed_history_answer_what_compare_answers() -> None:
    """main: a ← b ← m (merges c, branched from a) ← d; the listing stops at the horizon (before a)."""

    def entry(sha: str, *parents: str) -> dict[str, Any]:
        return {"sha": sha, "parents": [{"sha": p} for p in parents]}

    a, b, c, m, d, old = (ch * 40 for ch in "abcef0")
    # newest first, as /commits lists them; a's parent is older than the horizon
    history = _History([entry(d, m), entry(m, b, c), entry(c, a), entry(b, a), entry(a, old)])
    assert [e["sha"] for e in history.ahead(d, b) or []] == [c, m, d]  # oldest first, as compare lists
    assert history.ahead(m, a) is not None and {e["sha"] for e in history.ahead(m, a) or []} == {b, c, m}
    assert history.ahead(b, d) == []  # a rollback contains nothing new
    assert history.ahead(d, "9" * 40) is None  # a base the listing does not hold: only compare can tell
    assert history.ahead(d, c) is not None
    # from a commit branched off before the horizon, the walk leaves the listing: unknown
    assert _History([entry(d, old), entry(b, a), entry(a)]).ahead(d, b) is None
