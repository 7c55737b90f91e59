"""The GitHub plans (``api: rest``, ``graphql``, ``auto``) store the same records and show the same
figures: a full sync of the sandbox organisation with each, then an incremental pass after sandbox
activity, compared store against store and ``cycletime metrics --at`` against ``--at``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import github_source, sandbox_config
from test_github import _stored

from collector.cli import main
from collector.config import load_config
from collector.runner import Runner
from collector.sources import github_graphql
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.data import DEFAULT_BRANCH, Run, iso

NOW = datetime(2026, 1, 15, tzinfo=UTC)
TOKEN = "sandbox-token"
PLANS = ("rest", "graphql", "auto")
#: what a pass did rather than what it found: these differ between plans by design
OPERATIONAL = ("cycletime_api_", "cycletime_source_", "cycletime_sync_", "cycletime_shard_")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW, token=TOKEN)) as sb:
        yield sb


def _config(sandbox: Sandbox, folder: Path, api: str) -> Path:
    sources = [
        github_source(sandbox.url, TOKEN, [repo], name=f"gh_{repo.split('/')[1]}", deployments_from=mode, api=api)
        for repo, mode in sandbox.github.truth()["repos"].items()
    ]
    path = folder / f"{api}.yaml"
    path.write_text(sandbox_config(f"sqlite:///{folder}/{api}.db", sources, history="365d"))
    return path


def _sync(config: Path) -> None:
    """One pass of every source, as ``cycletime sync`` runs it."""
    parsed = load_config(config)
    store = Store(parsed.store)
    try:
        results = Runner(parsed, store).run_all()
        assert [(r.source, r.error) for r in results if not r.ok] == []
    finally:
        store.close()


def _graphql_queries(sandbox: Sandbox) -> int:
    return int(sandbox.server.stats.snapshot()["by_endpoint"].get("github.graphql", 0))


def _jobs_requests(sandbox: Sandbox) -> int:
    """REST ``/actions/runs/{id}/jobs`` requests: a run's jobs, one request a run."""
    return int(sandbox.server.stats.snapshot()["by_endpoint"].get("github.workflow_run_jobs", 0))


def _figures(config: Path, at: datetime, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert main(["metrics", "--config", str(config), "--at", at.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line for line in lines if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(OPERATIONAL)]


def _store(folder: Path, api: str) -> dict[str, Any]:
    store = Store(f"sqlite:///{folder}/{api}.db")
    try:
        return _stored(store)
    finally:
        store.close()


def test_every_plan_stores_the_same_records_and_figures(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pages of 3 so the sandbox's dozens of records a list are read over several cursors, and nested
    # lists of 2 so timelines, labels, commits and statuses overflow into follow-up queries
    monkeypatch.setattr(github_graphql, "PAGE", 3)
    monkeypatch.setattr(github_graphql, "NESTED", 2)
    follow_ups: list[tuple[str, str]] = []
    rest_query = github_graphql.rest_query
    monkeypatch.setattr(github_graphql, "rest_query", lambda t, n: follow_ups.append((t, n)) or rest_query(t, n))
    configs = {api: _config(sandbox, tmp_path, api) for api in PLANS}
    queries: dict[str, int] = {}
    jobs: dict[str, int] = {}
    for api, config in configs.items():
        before, jobs_before = _graphql_queries(sandbox), _jobs_requests(sandbox)
        _sync(config)
        queries[api] = _graphql_queries(sandbox) - before
        jobs[api] = _jobs_requests(sandbox) - jobs_before
    # 7 lists over GraphQL (issues and merged pull requests of 3 repositories, deployments of one),
    # each over several pages; the REST plan sends none
    assert queries["rest"] == 0 and queries["graphql"] > 2 * 7 and queries["auto"] > 2 * 7
    # the workflow runs' jobs: a REST request a finished run, or their check runs over GraphQL
    assert jobs["rest"] >= 3 and jobs["graphql"] == 0 and jobs["auto"] == 0
    assert {
        ("Issue", "timelineItems"),
        ("PullRequest", "commits"),
        ("PullRequest", "timelineItems"),
        ("Deployment", "statuses"),
    } <= set(follow_ups)
    stores = {api: _store(tmp_path, api) for api in PLANS}
    assert stores["rest"]["work_items"] and stores["rest"]["changes"] and stores["rest"]["deployments"]
    for api in ("graphql", "auto"):
        for part in ("work_items", "changes", "deployments", "links"):
            assert stores[api][part] == stores["rest"][part], f"{api}: {part}"
    at = NOW
    figures = {api: _figures(config, at, capsys) for api, config in configs.items()}
    assert any(line.startswith("cycletime_work_item_lead_time_seconds_count") for line in figures["rest"])
    assert figures["graphql"] == figures["rest"] and figures["auto"] == figures["rest"]

    sandbox.add_activity(3)
    for api, config in configs.items():
        jobs_before = _jobs_requests(sandbox)
        _sync(config)
        jobs[api] = _jobs_requests(sandbox) - jobs_before
    assert jobs["rest"] >= 1 and jobs["graphql"] == 0 and jobs["auto"] == 0  # the new run's
    stores = {api: _store(tmp_path, api) for api in PLANS}
    for api in ("graphql", "auto"):
        for part in ("work_items", "changes", "deployments", "links"):
            assert stores[api][part] == stores["rest"][part], f"after activity, {api}: {part}"
    later = datetime.now(UTC)
    figures = {api: _figures(config, later, capsys) for api, config in configs.items()}
    assert figures["graphql"] == figures["rest"] and figures["auto"] == figures["rest"]
    print(
        json.dumps(
            {"work_items": {api: len(s["work_items"]) for api, s in stores.items()}, "queries": queries, "jobs": jobs}
        )
    )


def _deploy_runs(sandbox: Sandbox) -> list[Run]:
    """The mobile app's finished ``deploy.yml`` runs on main that are deployments, oldest first."""
    runs = sandbox.github.data.repos["mobile-app"].runs
    return [
        r
        for r in runs
        if r.workflow.path.endswith("/deploy.yml")
        and r.head_branch == DEFAULT_BRANCH
        and r.status == "completed"
        and r.conclusion in ("success", "failure")
    ]


def _runs_config(sandbox: Sandbox, folder: Path, api: str) -> Path:
    source = github_source(
        sandbox.url, TOKEN, ["contoso/mobile-app"], name="gh_runs", deployments_from="workflow_runs:deploy.yml", api=api
    )
    path = folder / f"{api}.yaml"
    path.write_text(sandbox_config(f"sqlite:///{folder}/{api}.db", [source], history="365d"))
    return path


def test_a_run_graphql_does_not_answer_has_its_jobs_read_over_rest_alone(sandbox: Sandbox, tmp_path: Path) -> None:
    # one run's node comes back null with NOT_FOUND, another's with FORBIDDEN: the rest of the
    # answer is kept, and those two runs alone are read over REST
    runs = _deploy_runs(sandbox)
    sandbox.github.unresolvable(f"WFR_kwLO{runs[-1].id}", "NOT_FOUND")
    sandbox.github.unresolvable(f"WFR_kwLO{runs[-2].id}", "FORBIDDEN")
    jobs: dict[str, int] = {}
    for api in PLANS:
        before = _jobs_requests(sandbox)
        _sync(_runs_config(sandbox, tmp_path, api))
        jobs[api] = _jobs_requests(sandbox) - before
    assert jobs["rest"] >= 4 and jobs["graphql"] == 2 and jobs["auto"] == 2
    stores = {api: _store(tmp_path, api) for api in PLANS}
    assert len(stores["rest"]["deployments"]) >= 4
    assert stores["graphql"]["deployments"] == stores["rest"]["deployments"]
    assert stores["auto"]["deployments"] == stores["rest"]["deployments"]


def test_a_run_with_more_than_100_jobs_pages_its_check_runs(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a matrix of 150 jobs between build and deploy: deploy, the last to finish, is on the second
    # page of its check runs (and of its REST /jobs)
    run = _deploy_runs(sandbox)[-1]
    sandbox.github.many_jobs("mobile-app", run.id, 150)
    follow_ups: list[tuple[str, str]] = []
    rest_query = github_graphql.rest_query
    monkeypatch.setattr(github_graphql, "rest_query", lambda t, n: follow_ups.append((t, n)) or rest_query(t, n))
    jobs: dict[str, int] = {}
    for api in ("rest", "graphql"):
        before = _jobs_requests(sandbox)
        _sync(_runs_config(sandbox, tmp_path, api))
        jobs[api] = _jobs_requests(sandbox) - before
    assert follow_ups == [("CheckSuite", "checkRuns")]  # that run's alone, once
    stores = {api: _store(tmp_path, api) for api in ("rest", "graphql")}
    assert jobs["graphql"] == 0 and jobs["rest"] == len(stores["rest"]["deployments"]) + 1  # its /jobs: 2 pages
    assert stores["graphql"]["deployments"] == stores["rest"]["deployments"]
    deployment = next(d for d in stores["graphql"]["deployments"] if d["native_id"] == f"run:{run.id}")
    assert deployment["finished_at"] == iso(run.completed_at)
