"""Azure Pipelines source: environment deployment records, classic releases, commits and work items."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure_replay import PROJECT, FakePipelines, _commit, replay_pipelines_config, serving
from azure_truth import (
    NOW,
    context,
    expected_build_links,
    expected_changes,
    expected_deployments,
    pipelines_config,
    pipelines_minimum_requests,
    requests_made,
    start_sandbox,
    store_killed_at_commit,
    stored_changes,
    stored_deployments,
)

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.model import ado_ref, build_ref, commit_ref
from collector.runner import Runner
from collector.sources import SOURCES, azure_pipelines
from collector.sources.azure_common import release_url
from collector.sources.azure_pipelines import AzurePipelinesSource
from collector.sources.base import SourceContext
from collector.sources.base import matches_environment as is_production
from collector.store import Store
from exporters.prometheus import MetricsCache
from exporters.web import ExporterApp
from sandbox.app import Sandbox


def sha(n: int) -> str:
    return f"{n:040x}"


def record(
    rid: int,
    env: int,
    build: int,
    result: str | None,
    start: str,
    finish: str | None,
    pipeline: str = "web-ci",
    stage: str = "Deploy",
    attempt: int = 1,
    job: str = "deploy",
) -> dict[str, Any]:
    """An EnvironmentDeploymentExecutionRecord (taskAgent.json): one job of one stage attempt of a run."""
    return {
        "id": rid,
        "environmentId": env,
        "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
        "requestIdentifier": f"req-{rid}",
        "planType": "Build",
        "planId": f"plan-{rid}",
        "definition": {"id": 7, "name": pipeline},
        "owner": {"id": build, "name": f"2026.{build}"},
        "stageName": stage,
        "jobName": job,
        "stageAttempt": attempt,
        "jobAttempt": 1,
        "queueTime": start,
        "startTime": start,
        "finishTime": finish,
        "result": result,
    }


def release_deployment(did: int, release: int, env: str, status: str, start: str, finish: str | None) -> dict[str, Any]:
    """A classic release Deployment (release.json), as the list returns it (no artifacts)."""
    return {
        "id": did,
        "release": {"id": release, "name": f"Release-{release}", "artifacts": []},
        "releaseDefinition": {"id": 3, "name": "legacy-api", "path": "\\"},
        "releaseEnvironment": {"id": 100 + release, "name": env},
        "definitionEnvironmentId": 9,
        "attempt": 1,
        "deploymentStatus": status,
        "operationStatus": "Approved" if status != "inProgress" else "Queued",
        "queuedOn": start,
        "startedOn": start,
        "completedOn": finish,
        "lastModifiedOn": finish or start,
    }


def release(rid: int, build: int) -> dict[str, Any]:
    return {
        "id": rid,
        "name": f"Release-{rid}",
        "artifacts": [
            {
                "sourceId": "p:1",
                "type": "Git",
                "alias": "scripts",
                "isPrimary": False,
                "definitionReference": {"version": {"id": "abc", "name": "main"}},
            },
            {
                "sourceId": "p:2",
                "type": "Build",
                "alias": "_api",
                "isPrimary": True,
                "definitionReference": {
                    "definition": {"id": "2", "name": "api-ci"},
                    "project": {"id": "ac7c05bb-7f8e-4880-85a6-e08f37fd4a10", "name": PROJECT},
                    "version": {"id": str(build), "name": f"2026.{build}"},
                    "sourceVersion": {"id": sha(build), "name": sha(build)[:7]},
                },
            },
        ],
    }


def world() -> FakePipelines:
    t = "2026-02-{:02d}T10:00:00Z".format
    records = {
        2: [
            record(1, 2, 100, "succeeded", t(1), t(2)),
            record(3, 2, 101, "failed", t(3), t(4)),
            record(4, 2, 101, "succeeded", t(5), t(6), attempt=2),  # the stage retried
            record(5, 2, 102, "canceled", t(7), t(7)),
            record(6, 2, 103, None, t(9), None),  # still running
            record(8, 2, 104, "succeeded", t(11), t(10)),
        ],  # finished before it started
        1: [record(2, 1, 101, "succeededWithIssues", t(3), t(4)), record(7, 1, 103, "succeeded", t(8), t(9))],
    }
    return FakePipelines(
        environments=[
            {"id": 1, "name": "staging", "project": {"id": "p"}},
            {"id": 2, "name": "Production"},
            {"id": 3, "name": "empty"},
        ],
        records=records,
        deployments=[
            release_deployment(31, 50, "prod", "succeeded", t(1), t(1).replace("10:", "11:")),
            release_deployment(32, 51, "prod", "failed", t(2), t(2).replace("10:", "11:")),
            release_deployment(33, 52, "prod", "inProgress", t(3), None),
            release_deployment(34, 53, "qa", "notDeployed", t(4), None),
            release_deployment(35, 54, "qa", "succeeded", t(5), None),
        ],  # succeeded without a finish
        releases={50: release(50, 200), 51: release(51, 201), 52: release(52, 202), 54: release(54, 203)},
        build_changes={
            100: [_commit(sha(1), t(1))],
            101: [_commit(sha(2), t(2)), _commit(sha(3), t(3))],
            102: [_commit(sha(4), t(6))],
            103: [_commit(sha(5), t(7))],
            200: [_commit(sha(20), t(1))],
            201: [_commit(sha(21), t(2))],
        },
        build_work_items={100: [11], 101: [12], 103: [13, 14], 201: [21]},
        build_versions={b: sha(b) for b in range(100, 105)},
    )


def env(environment: int, build: int, attempt: int = 1) -> str:
    """A deployment's id: one per (run, stage, stage attempt) of an environment."""
    return f"env:{environment}:{build}:Deploy:{attempt}"


@pytest.fixture
def replay_pipelines() -> Iterator[tuple[FakePipelines, str]]:
    fake = world()
    with serving(fake) as url:
        yield fake, url


@pytest.fixture
def pipelines_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/pipelines.db")


def deployments(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        d.native_id: (d.service, d.environment, d.production, d.status, sorted(d.contains))
        for d in store.deployments("pipelines")
    }


def test_registered_under_its_kind() -> None:
    assert SOURCES["azure_pipelines"] is AzurePipelinesSource


def test_deployments_contain_the_commits_since_the_previous_success(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    _fake, url = replay_pipelines
    AzurePipelinesSource(replay_pipelines_config(url), context()).sync(pipelines_store)
    c = commit_ref
    assert deployments(pipelines_store) == {
        # first deployment to Production: the build's own changes
        env(2, 100): ("web-ci", "Production", True, "success", sorted([c(sha(1)), build_ref(100)])),
        # a failure, then its successful retry (stage attempt 2): what came after build 100. Only
        # successful production deployments are opened: the others hold their run only
        env(2, 101): ("web-ci", "Production", True, "failure", [build_ref(101)]),
        env(2, 101, 2): ("web-ci", "Production", True, "success", sorted([c(sha(2)), c(sha(3)), build_ref(101)])),
        env(1, 101): ("web-ci", "staging", False, "success", [build_ref(101)]),
        env(1, 103): ("web-ci", "staging", False, "success", [build_ref(103)]),
        # classic releases: the release's primary Build artifact
        "release:31": ("legacy-api", "prod", True, "success", sorted([c(sha(20)), build_ref(200)])),
        "release:32": ("legacy-api", "prod", True, "failure", [build_ref(201)]),
        # finished without completedOn: it finished when last modified
        "release:35": ("legacy-api", "qa", False, "success", [build_ref(203)]),
    }
    changes = {
        ch.native_id: (ch.service, ch.kind, ch.first_commit_at, ch.merged_at, ch.commits)
        for ch in pipelines_store.changes("pipelines")
    }
    first = datetime(2026, 2, 1, 10, tzinfo=UTC)
    assert changes[sha(1)] == ("web-ci", "commit", first, first, (sha(1),))
    assert changes[sha(20)][0] == "legacy-api"
    assert set(changes) == {sha(n) for n in (1, 2, 3, 20)}
    assert {(link.work_item, link.target) for link in pipelines_store.links("pipelines")} == {
        (ado_ref(11), build_ref(100)),
        (ado_ref(12), build_ref(101)),
    }
    # the deployed commit: the run's sourceVersion (YAML), the Build artifact's (classic)
    assert {d.native_id: d.sha for d in pipelines_store.deployments()} == {
        env(2, 100): sha(100),
        env(2, 101): sha(101),
        env(2, 101, 2): sha(101),
        env(1, 101): sha(101),
        env(1, 103): sha(103),
        "release:31": sha(200),
        "release:32": sha(201),
        "release:35": sha(203),
    }
    assert pipelines_store.rejection_counts() == {("pipelines", "end_before_start"): 1}


def test_requests_are_cached_per_build_pair_and_use_the_documented_parameters(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    AzurePipelinesSource(replay_pipelines_config(url), context()).sync(pipelines_store)
    paths = [p.split("/_apis/", 1)[1] for _, p, _ in fake.requests]
    # only successful production deployments are opened: (100→101) by the retry; the first ones
    # of Production (100) and prod (200) read their build's own changes
    assert paths.count("build/changes") == 1 and paths.count("build/workitems") == 1
    assert paths.count("build/builds/100/changes") == 1 and paths.count("build/builds/200/changes") == 1
    assert "build/builds/101/changes" not in paths and "build/builds/201/changes" not in paths
    assert paths.count("release/releases/50") == 1 and "release/releases/53" not in paths
    # one bulk read of the new runs' commits per environment
    bulk = [q["buildIds"] for _, p, q in fake.requests if p.endswith("/build/builds")]
    # Production's 101 and 103 were read for staging; 104's record is rejected, its run never read
    assert bulk == [["101,103"], ["100"]]
    records = [q for _, p, q in fake.requests if p.endswith("/environmentdeploymentrecords")]
    assert all("top" in q and "$top" not in q for q in records)
    releases = next(q for _, p, q in fake.requests if p.endswith("/release/deployments"))
    assert releases["queryOrder"] == ["ascending"] and releases["minStartedTime"] == ["2025-03-01T00:00:00.000Z"]


def test_watermarks_stay_below_runs_still_in_progress(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    source = AzurePipelinesSource(replay_pipelines_config(url), context())
    source.sync(pipelines_store)
    assert pipelines_store.watermarks("pipelines") == {
        "environment:1": "7",
        "environment:2": "5",
        "releases": "2026-02-02T10:00:00.000Z",
    }

    before = pipelines_store.content_digest()
    fake.requests.clear()
    source.sync(pipelines_store)
    streams = [p.split("/_apis/", 1)[1] for _, p, _ in fake.requests]
    # one request per stream: environments, each environment's first page, the release window
    assert sorted(streams) == sorted(
        [
            "distributedtask/environments",
            "distributedtask/environments/1/environmentdeploymentrecords",
            "distributedtask/environments/2/environmentdeploymentrecords",
            "distributedtask/environments/3/environmentdeploymentrecords",
            "release/deployments",
        ]
    )
    assert pipelines_store.content_digest() == before

    # the running deployment finishes, and the running release too
    running = next(r for r in fake.records[2] if r["id"] == 6)
    running.update(result="succeeded", finishTime="2026-02-10T10:00:00Z")
    fake.deployments[2].update(deploymentStatus="succeeded", completedOn="2026-02-03T12:00:00Z")
    fake.releases[52] = release(52, 202)
    fake.build_changes[202] = [_commit(sha(22), "2026-02-03T09:00:00Z")]
    source.sync(pipelines_store)
    found = deployments(pipelines_store)
    assert found[env(2, 103)] == (
        "web-ci",
        "Production",
        True,
        "success",
        sorted([commit_ref(sha(4)), commit_ref(sha(5)), build_ref(103)]),
    )
    assert found["release:33"][3] == "success"
    assert pipelines_store.watermarks("pipelines")["environment:2"] == "8"


def test_only_the_configured_kinds_of_deployment_are_read(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    AzurePipelinesSource(replay_pipelines_config(url, deployments_from=["releases"]), context()).sync(pipelines_store)
    assert {d.native_id.split(":")[0] for d in pipelines_store.deployments()} == {"release"}
    assert not any("distributedtask" in p for _, p, _ in fake.requests)


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("production", ["production"], True),
        ("Production", ["production"], True),
        ("production-eu", ["production"], False),
        ("prod-eu", ["/^prod-/"], True),
        ("preprod-eu", ["/^prod-/"], False),
        ("Prod", ["production", "Prod"], True),  # the sandbox's classic release environment
    ],
)
def test_production_environments(name: str, patterns: list[str], expected: bool) -> None:
    assert is_production(name, patterns) is expected


@pytest.mark.parametrize(
    ("org", "rm"),
    [
        ("https://dev.azure.com/contoso", "https://vsrm.dev.azure.com/contoso"),
        ("https://contoso.visualstudio.com/", "https://contoso.vsrm.visualstudio.com"),
        ("https://tfs.example.com/tfs/DefaultCollection", "https://tfs.example.com/tfs/DefaultCollection"),
        ("http://127.0.0.1:8089/contoso", "http://127.0.0.1:8089/contoso"),
    ],
)
def test_classic_releases_host(org: str, rm: str) -> None:
    assert release_url(org) == rm


# -- against the sandbox's seeded organisation ----------------------------------------------------------


@pytest.fixture
def pipelines_sandbox() -> Iterator[Sandbox]:
    sandbox = start_sandbox(work_items=120)
    yield sandbox
    sandbox.stop()


def assert_matches_truth(store: Store, truth: dict[str, Any], project: str) -> None:
    assert stored_deployments(store) == expected_deployments(truth, project)
    assert stored_changes(store) == expected_changes(truth, project)
    assert {(link.work_item, link.target) for link in store.links("pipelines")} == expected_build_links(truth, project)


@pytest.mark.parametrize("project", ["Fabrikam", "Tailspin"])  # YAML environments only / YAML + classic
def test_a_full_sync_equals_the_sandbox_truth(pipelines_sandbox: Sandbox, pipelines_store: Store, project: str) -> None:
    before = requests_made(pipelines_sandbox.server)
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url, project), context()).sync(pipelines_store)
    made = requests_made(pipelines_sandbox.server) - before
    truth = pipelines_sandbox.truth()["azure"]
    assert_matches_truth(pipelines_store, truth, project)
    found = pipelines_store.deployments()
    assert {d.status for d in found} == {"success", "failure"} and any(d.production for d in found)
    if project == "Tailspin":
        assert any(d.native_id.startswith("release:") for d in found)
    # within 10% of the fewest requests a sync can make (formula: azure_truth.pipelines_minimum_requests)
    minimum = pipelines_minimum_requests(truth, project)
    assert minimum <= made <= math.ceil(minimum * 1.1), (made, minimum)


def test_no_new_activity_costs_one_request_per_stream_then_new_activity_appears(
    pipelines_sandbox: Sandbox, pipelines_store: Store
) -> None:
    source = AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context())
    source.sync(pipelines_store)
    streams = [s for s in pipelines_store.watermarks("pipelines")]
    assert sorted(streams) == ["environment:4", "environment:5", "environment:6", "releases"]
    before, digest = requests_made(pipelines_sandbox.server), pipelines_store.content_digest()
    source.sync(pipelines_store)
    # the environments list, then one page per stream: each environment's records and the release window
    assert requests_made(pipelines_sandbox.server) - before == 1 + len(streams)
    assert pipelines_store.content_digest() == digest

    added = pipelines_sandbox.add_activity(steps=4)["azure"]
    assert any(step["deployments"] or step["release_deployments"] for step in added)
    source.sync(pipelines_store)
    assert_matches_truth(pipelines_store, pipelines_sandbox.truth()["azure"], "Tailspin")


def test_a_sync_killed_after_a_batch_and_resumed_ends_like_an_uninterrupted_one(
    pipelines_sandbox: Sandbox, tmp_path: Path
) -> None:
    whole = Store(f"sqlite:///{tmp_path}/whole.db")
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context()).sync(whole)

    path = f"sqlite:///{tmp_path}/killed.db"
    killed = store_killed_at_commit(path, 2)  # the second batch dies before it commits
    with pytest.raises(SystemExit):
        AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context()).sync(killed)
    resumed = Store(path)
    assert 0 < len(resumed.deployments()) < len(whole.deployments())
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context()).sync(resumed)
    assert resumed.content_digest() == whole.content_digest()


def test_429_5xx_resets_and_truncated_bodies_do_not_change_the_result(
    pipelines_sandbox: Sandbox, tmp_path: Path
) -> None:
    clean = Store(f"sqlite:///{tmp_path}/clean.db")
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context()).sync(clean)
    pipelines_sandbox.server.faults.rate = 0.2
    faulty = Store(f"sqlite:///{tmp_path}/faulty.db")
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url), context()).sync(faulty)
    faults = pipelines_sandbox.server.stats.snapshot()["faults"]
    assert set(faults) == {"429", "500", "503", "reset", "truncate"}
    assert faulty.content_digest() == clean.content_digest()


def test_a_pass_commits_every_few_contents_reads_only_once_a_request_was_retried(
    pipelines_sandbox: Sandbox, tmp_path: Path
) -> None:
    """While every request succeeds at once, a transaction holds up to 100 deployments; once one
    was retried, what a few contents reads brought is committed right away (every pass moves
    forward at a high fault rate: tests/reliability/test_faults.py)."""
    config = pipelines_config(pipelines_sandbox.azure_url)
    clean = AzurePipelinesSource(config, context()).sync(Store(f"sqlite:///{tmp_path}/clean.db"))
    pipelines_sandbox.server.faults.rate = 0.2
    faulty = AzurePipelinesSource(config, context()).sync(Store(f"sqlite:///{tmp_path}/faulty.db"))
    assert clean.items == faulty.items
    assert clean.batches * 2 < faulty.batches, (clean.batches, faulty.batches)


# -- reads between builds have no continuation token ------------------------------------------------------


def test_a_full_page_between_builds_is_split_at_the_builds_between_until_complete(
    pipelines_sandbox: Sandbox, pipelines_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # build/changes and build/workitems cut at $top silently: with 3 per page, many ranges overflow
    monkeypatch.setattr(azure_pipelines, "BUILD_TOP", 3)
    AzurePipelinesSource(pipelines_config(pipelines_sandbox.azure_url, "Fabrikam"), context()).sync(pipelines_store)
    assert_matches_truth(pipelines_store, pipelines_sandbox.truth()["azure"], "Fabrikam")
    assert not pipelines_store.rejection_counts()


def test_what_cannot_be_split_further_is_counted_as_truncated(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = replay_pipelines
    fake.build_work_items[103] = [13, 14, 15]  # one build, more work items than a page holds
    monkeypatch.setattr(azure_pipelines, "BUILD_TOP", 2)
    # staging counted as production here, so its deployments are opened too
    AzurePipelinesSource(
        replay_pipelines_config(url, production_environments=["production", "staging", "/^prod$/"]), context()
    ).sync(pipelines_store)
    found = deployments(pipelines_store)
    # staging 101 → 103 brings two commits, a full page: split at build 102, both read
    assert found[env(1, 103)][4] == sorted([commit_ref(sha(4)), commit_ref(sha(5)), build_ref(103)])
    split = [q for _, p, q in fake.requests if p.endswith("/build/changes") and q["toBuildId"] == ["102"]]
    assert split == [{"fromBuildId": ["101"], "toBuildId": ["102"], "$top": ["2"], "api-version": ["7.1-preview.2"]}]
    # 102 → 103 still fills a page of work items with no build between to split at: counted, never silent;
    # so is Production's 100 → 101 (a full page of two commits between consecutive builds)
    assert pipelines_store.rejection_counts()[("pipelines", "truncated")] == 2
    assert {link.work_item for link in pipelines_store.links("pipelines")} >= {ado_ref(13), ado_ref(14)}


# -- a stream the server does not have -----------------------------------------------------------------


def test_without_release_management_the_stream_is_unavailable_not_the_source(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    fake.release_management = False  # Azure DevOps Server without Release Management: 404
    clock = [NOW]
    source = AzurePipelinesSource(
        replay_pipelines_config(url),
        SourceContext(history=timedelta(days=365), now=lambda: clock[0], sleep=lambda s: None),
    )

    def probes() -> int:
        return sum(p.endswith("/release/deployments") for _, p, _ in fake.requests)

    report = source.sync(pipelines_store)
    assert not report.problems and report.details["unavailable"] == ["releases: not on this server (404)"]
    assert {d.native_id.split(":")[0] for d in pipelines_store.deployments()} == {"env"}
    clock[0] += timedelta(hours=23)
    assert source.sync(pipelines_store).details["unavailable"] and probes() == 1  # not asked again the same day
    clock[0] += timedelta(hours=2)
    fake.release_management = True  # installed after all: the daily probe finds it
    assert not source.sync(pipelines_store).details and probes() == 2
    assert "release:31" in {d.native_id for d in pipelines_store.deployments()}


def test_an_unavailable_stream_keeps_the_source_up_and_shows_on_the_landing_page(
    replay_pipelines: tuple[FakePipelines, str], tmp_path: Path
) -> None:
    fake, url = replay_pipelines
    fake.release_management = False
    cfg = parse_config(
        f"""
store: sqlite:///{tmp_path}/landing.db
sources:
  - {{name: pipelines, kind: azure_pipelines, organization_url: "{url}", project: {PROJECT}, token: t0k3n-1234}}
""",
        {},
    )
    store = Store(cfg.store)
    result = Runner(cfg, store, sleep=lambda s: None).run("pipelines")
    assert result.ok and result.error is None
    status = store.statuses()["pipelines"]
    assert status.ok and "releases: not on this server (404)" in (status.last_error or "")
    page = ExporterApp(MetricsCache(FigureCache(store, Settings.from_config(cfg))), store, cfg).landing_page()
    assert '<span class="up">up</span>' in page and "not on this server (404)" in page


# -- records are per job, in no documented order ---------------------------------------------------------


def test_records_out_of_id_order_are_read_past_the_watermark(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    source = AzurePipelinesSource(replay_pipelines_config(url), context())
    source.sync(pipelines_store)
    assert pipelines_store.watermarks("pipelines")["environment:1"] == "7"
    t = "2026-02-{:02d}T10:00:00Z".format
    fake.records[1] += [
        record(11, 1, 104, "succeeded", t(12), t(13), job="deploy"),
        record(12, 1, 104, "failed", t(12), t(14), job="smoke"),
    ]
    # served [7, 11] then [12, 2]: the first page reaches the watermark but its ids rise
    fake.record_order, fake.records_cap = [7, 11, 12, 2], 2
    source.sync(pipelines_store)
    # both jobs of the stage attempt were read: one deployment, failed because one job failed
    found = deployments(pipelines_store)
    assert found[env(1, 104)] == ("web-ci", "staging", False, "failure", [build_ref(104)])
    assert pipelines_store.watermarks("pipelines")["environment:1"] == "12"


def test_a_stage_attempt_waits_for_all_its_jobs_and_is_one_deployment(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    t = "2026-02-{:02d}T10:00:00Z".format
    fake.records[1] += [
        record(11, 1, 104, "succeeded", t(12), t(13), job="deploy"),
        record(12, 1, 104, None, t(12), None, job="smoke"),  # still running
        record(13, 1, 104, "canceled", t(12), t(12), stage="Cleanup"),
    ]
    source = AzurePipelinesSource(replay_pipelines_config(url), context())
    source.sync(pipelines_store)
    assert env(1, 104) not in deployments(pipelines_store)
    assert pipelines_store.watermarks("pipelines")["environment:1"] == "7"  # below the unfinished attempt
    fake.records[1][-2].update(result="succeededWithIssues", finishTime=t(15))
    source.sync(pipelines_store)
    stored = {d.native_id: d for d in pipelines_store.deployments("pipelines")}
    ours = [d for d in stored if d.startswith("env:1:104:")]
    assert ours == [env(1, 104)]  # two jobs, one deployment; the canceled stage is none
    deployment = stored[env(1, 104)]
    assert deployment.status == "success"
    assert (deployment.started_at, deployment.finished_at) == (
        datetime(2026, 2, 12, 10, tzinfo=UTC),
        datetime(2026, 2, 15, 10, tzinfo=UTC),
    )
    assert pipelines_store.watermarks("pipelines")["environment:1"] == "13"


def test_a_release_rejected_as_incomplete_holds_the_watermark_until_it_is_complete(
    replay_pipelines: tuple[FakePipelines, str], pipelines_store: Store
) -> None:
    fake, url = replay_pipelines
    t = "2026-02-{:02d}T10:00:00Z".format
    incomplete = release_deployment(36, 54, "qa", "succeeded", t(6), None)
    incomplete["lastModifiedOn"] = None  # finished, but no finish time at all: rejected, for now
    fake.deployments = [
        fake.deployments[0],
        fake.deployments[4],
        incomplete,
        release_deployment(37, 54, "prod", "succeeded", t(7), t(7).replace("10:", "11:")),
    ]
    source = AzurePipelinesSource(replay_pipelines_config(url), context())
    source.sync(pipelines_store)
    assert pipelines_store.rejection_counts()[("pipelines", "missing_field")] == 1
    assert "release:37" in deployments(pipelines_store)
    # not past the incomplete one: the next pass reads it again
    assert pipelines_store.watermarks("pipelines")["releases"] == "2026-02-05T10:00:00.000Z"
    incomplete["lastModifiedOn"] = "2026-02-06T10:30:00.4700000Z"
    source.sync(pipelines_store)
    assert deployments(pipelines_store)["release:36"][3] == "success"
    assert pipelines_store.watermarks("pipelines")["releases"] == "2026-02-07T10:00:00.000Z"
