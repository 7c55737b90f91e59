"""A source with 10,000 area paths: /metrics stays bounded and loses no observation."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from fixture_data import NOW
from prometheus_client.parser import text_string_to_metric_families

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.model import Batch, Category, Deployment, StateChange, WorkItem, ado_ref, gh_issue_ref
from collector.store import Store
from exporters.prometheus import MetricsCache

AREAS = 10_000


def test_ten_thousand_area_paths_fold_into_other_and_every_observation_stays(tmp_path: Path) -> None:
    config = parse_config(
        f"""
store: sqlite:///{tmp_path}/s.db
max_label_values: 200
sources:
  - {{name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}}
""",
        {},
    )
    store = Store(config.store)
    items = []
    for i in range(AREAS + 500):
        created = NOW - timedelta(days=20, hours=i % 97)
        done = NOW - timedelta(days=1 + i % 13)
        wid = str(i)
        # 500 items share one area, so it must survive the cap; the rest have an area each
        team = "Fabrikam\\Core" if i < 500 else f"Fabrikam\\Area{i:05d}"
        items.append(
            WorkItem(
                "boards",
                wid,
                ado_ref(i),
                "Fabrikam",
                team,
                "Bug",
                created,
                (
                    StateChange(wid, 1, created, "New", Category.PROPOSED),
                    StateChange(wid, 2, done, "Closed", Category.COMPLETED),
                ),
            )
        )
    store.commit("boards", Batch(work_items=items))
    text = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp)).exposition().decode()
    teams: set[str] = set()
    count_by_team: dict[str, float] = defaultdict(float)
    capped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "team" in sample.labels:
                teams.add(sample.labels["team"])
            if sample.name == "cycletime_work_item_lead_time_seconds_count":
                count_by_team[sample.labels["team"]] += sample.value
            if sample.name == "cycletime_label_values_capped_total":
                capped[sample.labels["label"]] = sample.value
    assert len(teams) == 200
    assert "other" in teams and "Fabrikam\\Core" in teams
    assert sum(count_by_team.values()) == AREAS + 500, "folding merges observations, never drops them"
    assert count_by_team["Fabrikam\\Core"] == 500
    assert capped == {"team": AREAS + 1 - 199}
    assert len(text) < 2_000_000, f"{len(text)} bytes"


def test_github_team_labels_and_environments_fold_into_other_alike(tmp_path: Path) -> None:
    """The cap is per label per source, whatever the kind: 1,000 team labels and 1,000 environments
    of one repository publish 50 values each, every issue and deployment still counted."""
    config = parse_config(
        f"""
store: sqlite:///{tmp_path}/s.db
max_label_values: 50
sources:
  - {{name: gh, kind: github, base_url: "http://127.0.0.1:1/api/v3", token: t, repositories: [contoso/web]}}
""",
        {},
    )
    store = Store(config.store)
    items, deployments = [], []
    for i in range(1_000):
        created, done = NOW - timedelta(days=20, hours=i % 97), NOW - timedelta(days=1 + i % 13)
        wid = f"contoso/web#{i + 1}"
        states = (
            StateChange(wid, 1, created, "open", Category.PROPOSED),
            StateChange(wid, 2, done, "closed", Category.COMPLETED),
        )
        items.append(
            WorkItem(
                "gh", wid, gh_issue_ref("contoso/web", i + 1), "contoso/web", f"team{i:04d}", "Issue", created, states
            )
        )
        deployments.append(
            Deployment("gh", f"deployment:{i + 1}", "contoso/web", f"review-{i:04d}", False, "success", created, done)
        )
    store.commit("gh", Batch(work_items=items, deployments=deployments))
    text = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp)).exposition().decode()
    values: dict[str, set[str]] = defaultdict(set)
    issues = deployed = 0.0
    capped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label in ("team", "environment"):
                if label in sample.labels:
                    values[label].add(sample.labels[label])
            if sample.name == "cycletime_work_item_lead_time_seconds_count":
                issues += sample.value
            if sample.name == "cycletime_deployments_total":
                deployed += sample.value
            if sample.name == "cycletime_label_values_capped_total":
                capped[sample.labels["label"]] = sample.value
    assert len(values["team"]) == 50 and "other" in values["team"]
    assert len(values["environment"]) == 50 and "other" in values["environment"]
    assert issues == 1_000 and deployed == 1_000, "folding merges observations, never drops them"
    assert capped == {"team": 1_000 + 1 - 50, "environment": 1_000 + 1 - 50}
