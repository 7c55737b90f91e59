"""The real Azure sources against the official response shapes, end to end.

``tests/fixtures/azure/`` holds the official examples of MicrosoftDocs/vsts-rest-api-specs (MIT; see
its README) and schema-exact records where the specification has no example. A small replay server
serves them over HTTP on 127.0.0.1; the real sources sync them into a real SQLite store, and
``cycletime metrics --at`` computes the exposition from that store in a separate process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure_replay import PROJECT, FakeBoards, FakePipelines, replay_boards_config, replay_pipelines_config, serving
from azure_truth import context
from prometheus_client.parser import text_string_to_metric_families

from collector.model import Category
from collector.sources.azure_boards import AzureBoardsSource
from collector.sources.azure_pipelines import AzurePipelinesSource
from collector.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "azure"
#: the official examples are from 2017, the records written from the schema from 2026 (NOW, 2026-03-01):
#: ten years of history reaches both
HISTORY = timedelta(days=3650)
#: the release → its Build artifact's version (``definitionReference.version.id``)
RELEASE_BUILDS = {11: 2, 14: 3, 15: 4, 20: 5, 55: 6}


def example(name: str) -> Any:
    """The response body of an official example (``{"parameters", "responses": {"200": {"body"}}}``)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8-sig"))["responses"]["200"]["body"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def release(release_id: int) -> dict[str, Any]:
    """``GET release/releases/{id}``: the official example, renumbered to the release asked for."""
    body = copy.deepcopy(example("GET__GetARelease.json"))
    body["id"], body["name"] = release_id, f"Release-{release_id}"
    build = str(RELEASE_BUILDS[release_id])
    body["artifacts"][0]["definitionReference"]["version"] = {"id": build, "name": build}
    return body


def replay() -> FakePipelines:
    records = fixture("environment_deployment_records.json")["value"]
    return FakePipelines(
        environments=fixture("environments.json")["value"],
        records={7: records},
        deployments=example("GET__ListDeployments.json")["value"],
        releases={r: release(r) for r in RELEASE_BUILDS},
        build_changes={int(b): body["value"] for b, body in fixture("build_changes.json").items()},
        build_work_items={},
        # served oldest first, as they are in the file: no order is documented
        record_order=[r["id"] for r in records],
    )


@pytest.fixture
def served() -> Iterator[tuple[FakePipelines, str]]:
    fake = replay()
    with serving(fake) as url:
        yield fake, url


def sync(url: str, store: Store) -> None:
    config = replay_pipelines_config(url, production_environments=["production", "PROD"])
    AzurePipelinesSource(config, context(HISTORY)).sync(store)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_classic_deployments_of_the_official_list_example(served: tuple[FakePipelines, str], tmp_path: Path) -> None:
    _fake, url = served
    store = Store(f"sqlite:///{tmp_path}/classic.db")
    sync(url, store)
    classic = {d.native_id: d for d in store.deployments("pipelines") if d.native_id.startswith("release:")}
    # every one of the 17: none carries completedOn; the finished ones finish at lastModifiedOn
    assert len(classic) == 17
    assert not store.rejection_counts()
    prod = classic["release:64"]
    assert (prod.service, prod.environment, prod.production, prod.status) == ("MyShuttle.CD", "PROD", True, "success")
    assert prod.started_at == at("2017-06-16T01:55:56.857+00:00")
    assert prod.finished_at == at("2017-06-16T01:56:43.060+00:00")
    # notDeployed with operationStatus PhaseFailed: a failed deployment
    failed = classic["release:79"]
    assert (failed.service, failed.environment, failed.status) == ("Fabrikam-web", "PROD", "failure")
    assert failed.finished_at == at("2017-08-29T16:51:40.133+00:00")
    # its contents: the build of the release's primary Build artifact (GetARelease's shape)
    assert "build:5" in prod.contains and f"commit:{'05' * 20}" in prod.contains
    # the watermark reached the newest start: nothing incomplete held it back
    assert store.watermarks("pipelines")["releases"] == "2017-08-29T16:51:32.090Z"


def test_environment_records_per_job_become_one_deployment_per_stage_attempt(
    served: tuple[FakePipelines, str], tmp_path: Path
) -> None:
    _fake, url = served
    store = Store(f"sqlite:///{tmp_path}/yaml.db")
    sync(url, store)
    yaml = {d.native_id: d for d in store.deployments("pipelines") if d.native_id.startswith("env:")}
    assert {k: (d.status, d.started_at, d.finished_at) for k, d in yaml.items()} == {
        # DeployWeb succeeded, DeployDb failed: one failed deployment, earliest start to latest finish
        "env:7:301:Production:1": ("failure", at("2026-02-10T10:00:05.123456+00:00"), at("2026-02-10T10:07:00+00:00")),
        # the stage retried: attempt 2 is its own deployment (succeeded + succeededWithIssues)
        "env:7:301:Production:2": ("success", at("2026-02-10T11:00:02+00:00"), at("2026-02-10T11:06:00+00:00")),
        # run 302 was canceled: not a deployment; run 303's two jobs are one
        "env:7:303:Production:1": ("success", at("2026-02-12T15:00:04+00:00"), at("2026-02-12T15:09:30+00:00")),
    }
    c = "commit:{}".format
    assert sorted(yaml["env:7:301:Production:2"].contains) == ["build:301", c("11" * 20), c("12" * 20)]
    assert sorted(yaml["env:7:303:Production:1"].contains) == ["build:303", c("21" * 20), c("31" * 20), c("32" * 20)]
    assert store.watermarks("pipelines")["environment:7"] == "47"


def test_later_records_are_found_although_pages_are_oldest_first(
    served: tuple[FakePipelines, str], tmp_path: Path
) -> None:
    fake, url = served
    store = Store(f"sqlite:///{tmp_path}/order.db")
    every = fake.records[7]
    fake.records[7] = every[:4]  # run 301 only
    fake.record_order = [r["id"] for r in every[:4]]
    sync(url, store)
    assert store.watermarks("pipelines")["environment:7"] == "44"
    fake.records[7] = every  # runs 302 and 303 arrive; the first page (41, 42) is below the watermark
    fake.record_order = [r["id"] for r in every]
    sync(url, store)
    assert "env:7:303:Production:1" in {d.native_id for d in store.deployments("pipelines")}


def test_cycletime_metrics_over_the_synced_store(served: tuple[FakePipelines, str], tmp_path: Path) -> None:
    _fake, url = served
    db = tmp_path / "metrics.db"
    store = Store(f"sqlite:///{db}")
    sync(url, store)
    config = tmp_path / "cycletime.yaml"
    config.write_text(f"""
store: sqlite:///{db}
sources:
  - name: pipelines
    kind: azure_pipelines
    organization_url: "{url}"
    project: {PROJECT}
    token: replay-token
    production_environments: [production, PROD]
""")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "collector", "metrics", "--config", str(config), "--at", "2026-03-01T00:00:00Z"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    samples = [s for f in text_string_to_metric_families(done.stdout) for s in f.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    deployments = "cycletime_deployments_total"
    assert total(deployments, service="MyShuttle.CD", status="success") == 16
    assert total(deployments, service="MyShuttle.CD", environment="PROD", status="success") == 4
    assert total(deployments, service="Fabrikam-web", environment="PROD", status="failure") == 1
    assert total(deployments, service="fabrikam-web-cd", status="success") == 2
    assert total(deployments, service="fabrikam-web-cd", status="failure") == 1
    lead = "cycletime_change_lead_time_seconds_count"
    # YAML production: 301's two commits (by its retry), 302's and 303's three (by 303, 302 was canceled);
    # classic PROD: builds 3, 4 and 5's commits (the rollback to build 2 brought nothing new)
    assert total(lead, service="fabrikam-web-cd", environment="production") == 5
    assert total(lead, service="MyShuttle.CD", environment="PROD") == 3
    recovery = "cycletime_failed_deployment_recovery_seconds_count"
    assert total(recovery, service="fabrikam-web-cd", environment="production") == 1
    # as of 2026-03-01: the YAML deployments of February are in the 30-day window, 2017's are not
    window = "cycletime_deployments_window_count"
    assert total(window, service="fabrikam-web-cd", window="30d", status="success") == 2
    assert total(window, service="fabrikam-web-cd", window="30d", status="failure") == 1
    assert total(window, service="MyShuttle.CD", window="30d") == 0
    assert total("cycletime_change_lead_time_window_count", service="fabrikam-web-cd", window="30d") == 5
    # the retry recovered the failed attempt 59 minutes later (10:07 to 11:06)
    assert total("cycletime_failed_deployment_recovery_seconds_sum", service="fabrikam-web-cd") == 59 * 60


# -- Boards --------------------------------------------------------------------------------------------

#: the Scrum process's Product Backlog Item states (the examples' revisions are of that type; the
#: type-states example is of an Agile type, with a custom state in InProgress)
SCRUM_PBI = [
    {"name": "New", "color": "b2b2b2", "category": "Proposed"},
    {"name": "Approved", "color": "b2b2b2", "category": "Proposed"},
    {"name": "Committed", "color": "007acc", "category": "InProgress"},
    {"name": "Done", "color": "339933", "category": "Completed"},
    {"name": "Removed", "color": "ffffff", "category": "Removed"},
]


@pytest.fixture
def boards() -> Iterator[tuple[FakeBoards, str]]:
    first = example("GET__wit_reporting_workItemRevisions.json")  # the token only inside nextLink
    # the token in the body too
    later = example("GET__wit_reporting_workItemRevisions_includeIdentityRef-true_watermark-794.json")
    fake = FakeBoards(
        revisions=first["values"] + later["values"],
        types_body=example("GET__wit_workItemTypes.json"),  # types without their states: asked per type
        reporting_bodies={"": first, "3;2;1": later},
        states={"Product Backlog Item": SCRUM_PBI, "Epic": example("GET__workitem_type_states.json")["value"]},
    )
    with serving(fake) as url:
        yield fake, url


def test_boards_follow_both_continuation_styles_of_the_official_examples(
    boards: tuple[FakeBoards, str], tmp_path: Path
) -> None:
    fake, url = boards
    store = Store(f"sqlite:///{tmp_path}/boards.db")
    config = replay_boards_config(url, work_item_types=["Product Backlog Item", "Epic"])
    source = AzureBoardsSource(config, context(timedelta(days=5000)))
    source.sync(store)
    assert store.watermarks("boards") == {"revisions": "3;2;1"}  # from nextLink: the body has no token
    source.sync(store)
    assert store.watermarks("boards") == {"revisions": "813;350;1"}  # the body's continuationToken
    asked = {p.split("/")[-2] for _, p, _, _ in fake.requests if p.endswith("/states")}
    assert asked == {"Product%20Backlog%20Item", "Epic"}  # the types list carried no states: asked per type
    items = {w.native_id: w for w in store.work_items("boards")}
    assert {i: [(h.seq, h.state, h.category) for h in w.history] for i, w in items.items()} == {
        "1": [(1, "New", Category.PROPOSED), (2, "New", Category.PROPOSED)],
        "2": [(1, "New", Category.PROPOSED)],
        "3": [(8, "Done", Category.COMPLETED)],
        "350": [(1, "New", Category.PROPOSED)],
    }
    assert items["3"].created_at == at("2014-03-18T17:17:06.857+00:00")
    assert items["3"].history[0].at == at("2015-06-23T18:25:16.137+00:00")
    assert (items["350"].type, items["350"].team) == ("Epic", "Fabrikam-Fiber-Git")
    assert not store.rejection_counts()
    reporting = [q for _, p, q, _ in fake.requests if p.endswith("/reporting/workitemrevisions")]
    assert all("System.State" in q["fields"][0] and q["types"] == ["Product Backlog Item,Epic"] for q in reporting)


def test_without_the_reporting_api_boards_replay_the_official_wiql_and_updates(tmp_path: Path) -> None:
    wiql = example("GET__wit_get_id_workitems.json")  # ids 300, 299, 298, 17, 16, 15, 14, 9, 8
    updates = example("GET__list_of_workitem_updates.json")  # one Bug's 13 updates (renumbered to item 8 here)
    final: dict[str, Any] = {}
    for update in updates["value"]:
        final.update({name: change.get("newValue") for name, change in update.get("fields", {}).items()})
    fake = FakeBoards(
        revisions=[{"id": 8, "rev": 9, "fields": final}],
        reporting=False,
        wiql_body=wiql,
        updates_bodies={8: updates},
        states={"Bug": example("GET__workitem_type_states.json")["value"]},
    )
    store = Store(f"sqlite:///{tmp_path}/wiql.db")
    with serving(fake) as url:
        config = replay_boards_config(url, work_item_types=["Bug"])
        report = AzureBoardsSource(config, context(timedelta(days=5000))).sync(store)
    assert report.details["mode"] == "wiql"
    # the other ids of the WIQL answer come back null from workitemsbatch (errorPolicy=Omit): skipped
    items = {w.native_id: w for w in store.work_items("boards")}
    assert list(items) == ["8"]
    item = items["8"]
    assert (item.type, item.team, item.created_at) == ("Bug", "MyAgilePro1", at("2017-09-04T02:08:16.600+00:00"))
    # updates that only touched relations repeat a revision number: one observation per revision
    assert [(h.seq, h.state, h.category) for h in item.history] == [
        (1, "New", Category.PROPOSED),
        (2, "New", Category.PROPOSED),
    ] + [(rev, "Active", Category.IN_PROGRESS) for rev in range(3, 10)]
    assert item.history[2].at == at("2017-09-04T02:36:18.750+00:00")
    assert not store.rejection_counts()
