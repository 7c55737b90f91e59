"""The GitHub change probe: one GraphQL query asks up to 100 repositories for their newest marks.

Against the sandbox's three services (one ``deployments_from`` mode each): every change GitHub
makes without a push is read by the next pass and the store equals the sandbox's truth; a pass
stopped between the probe and the end of the streams stores no marks; a node-limit answer splits
the batch. The idle request counts of ``owner/*`` are in test_github_owner.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_github import _assert_matches_truth, _delta, _stored

import sandbox.github.graphql as sandbox_graphql
from collector.config import GitHubConfig
from collector.sources.base import SourceContext, SyncReport
from collector.sources.github import GitHubSource
from collector.sources.github_graphql import probe_marks, proves
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.data import USERS, Issue, PullRequest

NOW = datetime(2026, 1, 15, tzinfo=UTC)
TOKEN = "sandbox-token"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW)) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/probe.db")
    yield s
    s.close()


def _source(
    sandbox: Sandbox,
    repo: str,
    mode: str,
    clock: Clock,
    api: str = "auto",
    should_stop: Callable[[], bool] | None = None,
) -> GitHubSource:
    config = GitHubConfig(
        name="gh_" + repo.split("/")[1].replace("-", "_"),
        kind="github",
        base_url=sandbox.github_url,
        token=TOKEN,
        repositories=[repo],
        deployments_from=mode,
        api=api,
        probe_min_repositories=1,  # one repository a source: probed all the same
    )
    ctx: dict[str, Any] = {"now": clock, "sleep": lambda s: None}
    if should_stop is not None:
        ctx["should_stop"] = should_stop
    return GitHubSource(config, SourceContext(**ctx))


def _sync(sources: dict[str, GitHubSource], store: Store) -> dict[str, SyncReport]:
    reports = {repo: source.sync(store) for repo, source in sources.items()}
    assert not [p for r in reports.values() for p in r.problems]
    return reports


def _unchanged(reports: dict[str, SyncReport]) -> dict[str, int]:
    return {repo: r.details["repositories_unchanged"] for repo, r in reports.items()}


# -- the marks (pure) -----------------------------------------------------------------------
def _conn(*nodes: tuple[str, int], count: int | None = None, key: str = "number") -> dict[str, Any]:
    at = "createdAt" if key == "databaseId" else "updatedAt"
    return {"totalCount": len(nodes) if count is None else count, "nodes": [{at: t, key: n} for t, n in nodes]}


def test_marks_prove_nothing_when_the_two_newest_share_their_second() -> None:
    repo = {
        "pushedAt": "2026-01-10T08:00:00Z",
        "issues": _conn(("2026-01-10T09:00:00Z", 7), ("2026-01-09T09:00:00Z", 3), count=40),
        "pullRequests": _conn(("2026-01-10T07:00:00Z", 9)),
    }
    marks = probe_marks(repo, ("issues", "pulls"))
    assert marks == {
        "pushed_at": "2026-01-10T08:00:00Z",
        "issues": [40, [["2026-01-10T09:00:00Z", 7], ["2026-01-09T09:00:00Z", 3]]],
        "pulls": [1, [["2026-01-10T07:00:00Z", 9]]],
    }
    assert proves(marks)
    # a third issue updated in the newest one's second might not be among the first two
    same = probe_marks({**repo, "issues": _conn(("2026-01-10T09:00:00Z", 7), ("2026-01-10T09:00:00Z", 3))}, ("issues",))
    assert same is not None and not proves(same)
    # an answer of another shape leaves the repository unprobed (read as without a probe)
    assert probe_marks({**repo, "issues": {"nodes": []}}, ("issues",)) is None
    assert probe_marks({**repo, "issues": _conn(("yesterday", 7))}, ("issues",)) is None
    assert probe_marks(None, ("issues",)) is None


# -- against the sandbox --------------------------------------------------------------------
def _open_issue(sandbox: Sandbox, name: str, plain: bool = False) -> Issue:
    """An open issue nobody is assigned to (``plain``: of no type either, neither label nor native)."""
    repo = sandbox.github.data.repos[name]
    return next(
        i
        for i in repo.items.values()
        if isinstance(i, Issue)
        and not i.malformed
        and i.state == "open"
        and not i.assignees
        and not (plain and (i.native_type or {"bug", "feature"} & set(i.labels)))
    )


def _unreviewed_pull(sandbox: Sandbox, repo: str) -> PullRequest:
    """A merged pull request nobody else reviewed: a review now sets its first review."""
    truth = {c["native_id"]: c for c in sandbox.github.truth()["changes"]}
    items = sandbox.github.data.repos[repo.split("/")[1]].items.values()
    return next(
        p
        for p in items
        if isinstance(p, PullRequest)
        and f"{repo}#{p.number}" in truth
        and truth[f"{repo}#{p.number}"]["first_review_at"] is None
    )


def test_every_change_without_a_push_is_read_by_the_next_pass(sandbox: Sandbox, store: Store) -> None:
    clock = Clock()
    modes = sandbox.github.truth()["repos"]
    web, api = (r for r, m in modes.items() if m in ("deployments", "releases"))
    sources = {repo: _source(sandbox, repo, mode, clock) for repo, mode in modes.items()}
    _sync(sources, store)
    assert _unchanged(_sync(sources, store)) == dict.fromkeys(modes, 1)  # idle: every repository proven
    data = sandbox.github.data
    pending = next(d for d in data.repos["web"].deployments if d.outcome() is None)
    reviewed = _unreviewed_pull(sandbox, web)
    assigned, labelled = _open_issue(sandbox, "web"), _open_issue(sandbox, "api", plain=True)

    def assign() -> str:
        sandbox.github.assign("web", assigned.number, USERS[1], clock.now)
        return web

    def label() -> str:
        sandbox.github.label("api", labelled.number, "bug", clock.now)
        return api

    def review() -> str:
        sandbox.github.review(
            "web", reviewed.number, next(u for u in USERS if u != reviewed.author), "APPROVED", clock.now
        )
        return web

    def deploy() -> str:  # a commit deployed before, deployed again: no push
        sandbox.github.deploy("web", "production", data.repos["web"].main[-3], clock.now, "success")
        return web

    def finish() -> str:  # a status of a deployment left unfinished: no mark moves, it is re-read
        sandbox.github.add_status("web", pending.id, "success", clock.now)
        return ""

    def release() -> str:  # releases keep their conditional REST request: no mark of theirs
        sandbox.github.release("api", "v9.0.0", data.repos["api"].main[-1], clock.now)
        return ""

    for change in (assign, label, review, deploy, finish, release):
        clock.now += timedelta(minutes=10)
        changed = change()
        before = sandbox.server.stats.snapshot()
        reports = _sync(sources, store)
        asked = _delta(sandbox, before)["by_endpoint"]
        # the repository whose marks moved reads its lists; the others are proven unchanged
        assert _unchanged(reports) == {repo: int(repo != changed) for repo in modes}, change.__name__
        assert asked["github.graphql"] >= len(modes), change.__name__
        _assert_matches_truth(store, sandbox.github.truth())
        assert _unchanged(_sync(sources, store)) == dict.fromkeys(modes, 1), change.__name__  # idle again

    stored = _stored(store)
    items = {w["native_id"]: w for w in stored["work_items"]}
    assert items[f"{web}#{assigned.number}"]["history"][-1]["state"] == "in_progress"
    assert items[f"{api}#{labelled.number}"]["type"] == "Bug"
    changes = {c["native_id"]: c for c in stored["changes"]}
    assert changes[f"{web}#{reviewed.number}"]["first_review_at"] is not None
    deployments = {d["native_id"]: d for d in stored["deployments"]}
    assert deployments[f"deployment:{pending.id}"]["status"] == "success"
    assert any(
        d["native_id"].startswith("release:") and d["sha"] == data.repos["api"].main[-1] for d in deployments.values()
    )


def test_a_pass_stopped_before_its_streams_end_stores_no_marks(sandbox: Sandbox, store: Store) -> None:
    clock = Clock()
    web = next(r for r, m in sandbox.github.truth()["repos"].items() if m == "deployments")
    _source(sandbox, web, "deployments", clock).sync(store)
    marks = store.watermark("gh_web", f"probe:{web}")
    assert marks
    clock.now += timedelta(minutes=10)
    pull = _unreviewed_pull(sandbox, web)
    sandbox.github.review("web", pull.number, next(u for u in USERS if u != pull.author), "APPROVED", clock.now)
    new = sandbox.github.deploy("web", "production", sandbox.github.data.repos["web"].main[-2], clock.now, "success")
    pulls = store.watermark("gh_web", f"pulls:{web}")

    # stopped once the pull requests are read, before the deployments: the marks stay as they were
    stopped = _source(
        sandbox, web, "deployments", clock, should_stop=lambda: store.watermark("gh_web", f"pulls:{web}") != pulls
    )
    stopped.sync(store)
    assert store.watermark("gh_web", f"pulls:{web}") != pulls  # it did read the pull requests
    assert f"deployment:{new}" not in {d.native_id for d in store.deployments()}
    assert store.watermark("gh_web", f"probe:{web}") == marks

    # the next pass is not fooled: its probe differs from the stored marks, so it reads on
    report = _source(sandbox, web, "deployments", clock).sync(store)
    assert not report.problems and report.details["repositories_unchanged"] == 0
    _assert_matches_truth(store, sandbox.github.truth(), {web})
    assert store.watermark("gh_web", f"probe:{web}") != marks
    assert _source(sandbox, web, "deployments", clock).sync(store).details["repositories_unchanged"] == 1


def test_an_idle_graphql_pass_asks_only_the_probe_and_the_rest_lists(sandbox: Sandbox, store: Store) -> None:
    """``api: graphql``: the streams' GraphQL lists are skipped too; releases and workflow runs
    (no GraphQL list) keep their conditional REST request, the unfinished deployment its re-read."""
    clock = Clock()
    modes = sandbox.github.truth()["repos"]
    sources = {repo: _source(sandbox, repo, mode, clock, api="graphql") for repo, mode in modes.items()}
    _sync(sources, store)
    before = sandbox.server.stats.snapshot()
    assert _unchanged(_sync(sources, store)) == dict.fromkeys(modes, 1)
    asked = _delta(sandbox, before)["by_endpoint"]
    assert asked == {
        "github.graphql": len(modes),
        "github.releases": 1,
        "github.workflow_runs": 1,
        "github.deployment_statuses": 1,
    }
    _assert_matches_truth(store, sandbox.github.truth())


def test_a_node_limit_splits_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe of 100 repositories is 600 nodes: under a lower limit it is asked again in halves."""
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW, github_repos=2000)) as org:
        store = Store(f"sqlite:///{tmp_path}/owner.db")
        config = GitHubConfig(
            name="github", kind="github", base_url=org.github_url, token=TOKEN, repositories=["contoso/*"]
        )
        source = GitHubSource(config, SourceContext(now=Clock(), sleep=lambda s: None))
        report = source.sync(store)
        kept = report.details["repositories"]
        assert kept > 100 and not report.problems
        monkeypatch.setattr(sandbox_graphql, "MAX_NODES", 400)
        before = org.server.stats.snapshot()
        report = source.sync(store)
        asked = _delta(org, before)["by_endpoint"]
        assert not report.problems and report.details["repositories_unchanged"] == kept
        # the batch of 100 refused, then two of 50; the rest in one
        assert asked["github.graphql"] == 1 + 2 + math.ceil((kept - 100) / 100)
        assert "github.issues" not in asked
        store.close()


def test_a_pass_stopped_between_chunks_of_deliveries_stores_no_marks(sandbox: Sandbox, store: Store) -> None:
    """The deliveries stream returns quietly when stopped between its chunks of 50: the marks must
    not take that for a complete read."""
    clock = Clock()
    web = next(r for r, m in sandbox.github.truth()["repos"].items() if m == "deployments")
    _source(sandbox, web, "deployments", clock).sync(store)
    marks = store.watermark("gh_web", f"probe:{web}")
    main = sandbox.github.data.repos["web"].main
    for i in range(60):  # redeployments of existing commits: more than one chunk
        clock.now += timedelta(seconds=30)
        sandbox.github.deploy("web", "staging", main[-1 - i % 5], clock.now, "success")
    deployments = store.watermark("gh_web", f"deployments:{web}")

    def moved() -> bool:
        return store.watermark("gh_web", f"deployments:{web}") != deployments

    _source(sandbox, web, "deployments", clock, should_stop=moved).sync(store)
    assert moved()  # its first chunk was committed
    assert store.watermark("gh_web", f"probe:{web}") == marks
    report = _source(sandbox, web, "deployments", clock).sync(store)
    assert not report.problems and report.details["repositories_unchanged"] == 0
    _assert_matches_truth(store, sandbox.github.truth(), {web})


def test_without_graphql_budget_an_idle_pass_falls_back_to_the_conditional_requests(
    sandbox: Sandbox, store: Store
) -> None:
    """The probe is an optimisation: when it cannot be asked (GraphQL spent for two hours), the
    lists are asked conditionally as without it, and nothing fails."""
    clock = Clock()
    modes = sandbox.github.truth()["repos"]
    sources = {repo: _source(sandbox, repo, mode, clock) for repo, mode in modes.items()}
    _sync(sources, store)
    _sync(sources, store)
    records = {k: v for k, v in store.content_digest().items() if k != "watermarks"}
    sandbox.github.set_rate_limit(remaining=0, reset_in=7200, resource="graphql")
    before = sandbox.server.stats.snapshot()
    reports = _sync(sources, store)  # no problem: asserted there
    asked = _delta(sandbox, before)
    assert _unchanged(reports) == dict.fromkeys(modes, 0)
    # every list asked conditionally; the probes' refusals (200s with errors) cost nothing, and
    # no other GraphQL query is needed. The issues lists answer 200 once: the REST plan's first
    # idle pass re-asks them with the newer `since`, which the probed passes never did
    assert asked["by_endpoint"]["github.graphql"] == len(modes)
    assert asked["by_endpoint"]["github.issues"] == len(modes)
    assert asked["total"] - asked["not_modified"] == len(modes) + len(modes)
    assert {k: v for k, v in store.content_digest().items() if k != "watermarks"} == records
