"""config/grafana/*.json: structure, contract metrics only, valid PromQL, generator is a no-op."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .dashboard_queries import iter_panel_queries, iter_panels, iter_variable_queries, load_dashboards, substitute
from .promql import (
    CHART_DIR,
    CONTRACT_METRICS,
    GRAFANA_DIR,
    ROOT,
    RULES_FILE,
    check_exprs_with_promtool,
    load_rules,
    metric_names,
    recording_rule_names,
    run_promtool,
)

EXPECTED = {
    "request-to-release.json",
    "flow.json",
    "dora.json",
    "collector-health.json",
    "where-the-time-goes.json",
}
REQUIRED_VARIABLES = {"datasource", "source", "project", "team", "type", "environment"}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}

DASHBOARDS = load_dashboards()


def test_the_five_dashboards_exist() -> None:
    assert set(DASHBOARDS) == EXPECTED


def test_uids_and_titles_unique() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    assert all(uid and len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_structure(name: str) -> None:
    d = DASHBOARDS[name]
    assert d["title"]
    assert d["schemaVersion"] == 39
    assert d["time"]["from"] and d["time"]["to"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert set(variables) >= REQUIRED_VARIABLES
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DS_REF
            assert var["definition"].startswith("label_values(")
            if var["name"] != "window":
                assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", var["name"]
    ids = set()
    for panel in iter_panels(d):
        where = f"{name}: {panel.get('title')!r}"
        assert isinstance(panel["id"], int) and panel["id"] not in ids, where
        ids.add(panel["id"])
        assert panel["type"] in {"timeseries", "stat", "bargauge", "heatmap", "table", "gauge", "barchart"}
        assert panel["title"], where
        assert len(panel.get("description", "")) >= 40, f"{where}: needs a description of the figure"
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), where
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
        assert panel["datasource"] == DS_REF, where
        assert panel["targets"], f"{where}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), where
        for t in panel["targets"]:
            assert t["expr"].strip() and t["refId"], where
            assert t.get("datasource", DS_REF) == DS_REF, where
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if panel["type"] != "heatmap":
            assert unit, f"{where}: set a unit"


def _no_overlap(panels: list[dict[str, Any]]) -> None:
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps another panel"
                cells.add((x, y))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_panels_do_not_overlap(name: str) -> None:
    _no_overlap(list(iter_panels(DASHBOARDS[name])))


def test_issue_contents() -> None:
    def exprs(name: str) -> str:
        return "\n".join(t["expr"] for p in iter_panels(DASHBOARDS[name]) for t in p["targets"])

    r2r = exprs("request-to-release.json")
    for q in ("0.5", "0.85", "0.95"):
        assert 'cycletime_request_to_release_window_seconds{source=~"$source"' in r2r and f'"{q}"' in r2r
    assert "cycletime_request_to_release_seconds_bucket" in r2r
    assert 'cycletime_request_to_release_window_count{source=~"$source"' in r2r and 'window="7d"' in r2r
    assert "offset 90d" in r2r
    flow = exprs("flow.json")
    for needle in (
        "cycletime_work_item_lead_time_window_seconds",
        "cycletime_work_item_cycle_time_window_seconds",
        "cycletime_work_item_state_seconds_total",
        "cycletime_work_items_in_progress",
        "cycletime_work_item_lead_time_window_count",
        "cycletime_work_item_flow_efficiency_window_ratio",
    ):
        assert needle in flow, needle
    dora = exprs("dora.json")
    for needle in (
        "cycletime_deployments_window_count",
        "cycletime_change_lead_time_window_seconds",
        'status="failure"',
        "cycletime_failed_deployment_recovery_window_seconds",
    ):
        assert needle in dora, needle
    dora_steps = [
        p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        for p in iter_panels(DASHBOARDS["dora.json"])
        if p["type"] == "stat"
    ]
    assert len(dora_steps) == 4 and all(len(s) == 4 for s in dora_steps), "DORA bands: elite/high/medium/low"
    health = exprs("collector-health.json")
    for needle in (
        "cycletime_source_up",
        "cycletime_source_last_success_timestamp_seconds",
        "cycletime_source_poll_duration_seconds_bucket",
        "cycletime_api_requests_total",
        "cycletime_api_rate_limit_remaining",
        "cycletime_api_budget_remaining",
        "cycletime_sync_backlog",
        "cycletime_records_rejected_total",
    ):
        assert needle in health, needle
    stages = exprs("where-the-time-goes.json")
    for needle in (
        'cycletime_request_stage_window_seconds{source=~"$source",project=~"$project",team=~"$team",type=~"$type"',
        'cycletime_change_stage_window_seconds{source=~"$source",service=~"$service"',
        "max by (team, stage)",
        "max by (service, stage)",
        'quantile="0.5"',
        'window="30d",quantile="0.85"',
        'window="90d",quantile="0.85"',
        "cycletime_request_stage_window_count",
        "cycletime_change_stage_window_count",
    ):
        assert needle in stages, needle


def test_only_contract_metrics_and_recording_rules() -> None:
    known = CONTRACT_METRICS | recording_rule_names()
    problems = []
    queries = list(iter_panel_queries()) + list(iter_variable_queries())
    assert len(queries) > 40
    for q in queries:
        used = metric_names(q.expr)
        if not used:
            problems.append(f"{q[0]} {q[1]!r}: selects no metric: {q.expr}")
        elif not used <= known:
            problems.append(f"{q[0]} {q[1]!r}: not a contract metric: {sorted(used - known)}")
    assert not problems, "\n".join(problems)


def test_every_query_is_valid_promql() -> None:
    items = [(f"{q.dashboard} {q.panel!r}", q.expr) for q in iter_panel_queries()]
    items += [(f"{q.dashboard} ${q.variable}", q.expr) for q in iter_variable_queries()]
    result = check_exprs_with_promtool(items)
    if result.returncode != 0:  # name the culprit: check one by one
        bad = [
            f"{where}: {expr}\n{r.stdout}{r.stderr}"
            for where, expr in items
            if (r := check_exprs_with_promtool([(where, expr)])).returncode != 0
        ]
        pytest.fail("invalid PromQL:\n" + "\n".join(bad or [result.stdout + result.stderr]), pytrace=False)
    assert f"SUCCESS: {len(items)} rules found" in result.stdout


def test_substitution() -> None:
    assert substitute('x{a=~"$source"}[$__rate_interval] ${team}') == 'x{a=~".*"}[5m] .*'
    assert substitute("[$window]", {"window": "7d"}) == "[7d]"
    with pytest.raises(KeyError):
        substitute("$nope")


def test_generator_is_a_no_op() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, "generated files are out of date, run `make dashboards`:\n" + result.stdout


def test_chart_copies_equal_config_grafana() -> None:
    copies = {p.name: p.read_bytes() for p in sorted((CHART_DIR / "dashboards").glob("*.json"))}
    originals = {p.name: p.read_bytes() for p in sorted(GRAFANA_DIR.glob("*.json"))}
    assert copies == originals


#: panels showing one figure for "the last N days" (not a plot over scraped time)
FIGURE_PANELS = {"stat", "gauge", "table", "bargauge", "barchart"}


def test_figure_panels_read_window_gauges_not_scraped_history() -> None:
    """A stat, gauge, table or bar reads what the collector computed (window gauges, counters and
    histograms derived from the store): increase() and rate() would be empty until Prometheus has
    scraped for as long as their range."""
    problems = []
    for name, d in DASHBOARDS.items():
        for panel in iter_panels(d):
            if panel["type"] not in FIGURE_PANELS:
                continue
            for t in panel["targets"]:
                if re.search(r"\b(increase|rate|irate|delta|changes)\s*\(", t["expr"]):
                    problems.append(f"{name} {panel['title']!r}: {t['expr']}")
    assert not problems, "figure panels that need scraped history:\n" + "\n".join(problems)


def test_production_is_the_label_never_an_environment_name() -> None:
    texts = {name: json.dumps(d) for name, d in DASHBOARDS.items()}
    texts["rules.yaml"] = RULES_FILE.read_text(encoding="utf-8")
    for name, text in texts.items():
        assert not re.search(r'environment\s*=~?\s*\\?"[^"$\\]*prod', text, re.I), name
    dora = [t["expr"] for p in iter_panels(DASHBOARDS["dora.json"]) for t in p["targets"]]
    for expr in dora:
        if "cycletime_deployments" in expr or "failed_deployment_recovery" in expr:
            assert 'production="true"' in expr, expr
    rules = [r for g in load_rules()["groups"] for r in g["rules"]]
    for rule in rules:
        if "cycletime_deployments_window_count{" in rule["expr"]:
            assert 'production="true"' in rule["expr"], rule
    assert not any("cycletime_deployments_total" in r["expr"] for r in rules)


# --------------------------------------------------------------------------- where the time goes

_WI = 'source="boards",project="Fabrikam",type="Bug"'
_DAY = 86400
#: (labels, stage) -> (p85 over 30d, p85 over 90d, items in 30d): window gauges as the collector exports them
_REQUEST_STAGES = {
    ('team="Web"', "backlog"): (10 * _DAY, 5 * _DAY, 12),
    ('team="Web"', "development"): (2 * _DAY, 2 * _DAY, 12),
    ('team="Web"', "review"): (0.75 * _DAY, 0.5 * _DAY, 12),
    ('team="Web"', "release"): (3 * _DAY, 4 * _DAY, 12),
    # quadrupled, but 3 items in 30 days: too few for the growth ranking (the table lists it)
    ('team="Ops"', "backlog"): (20 * _DAY, 5 * _DAY, 3),
}
_CHANGE_STAGES = {
    ('service="contoso/web"', "coding"): (7200, 3600, 40),
    ('service="contoso/web"', "pickup"): (14400, 14400, 40),
    ('service="contoso/web"', "review"): (3600, 7200, 40),
    ('service="contoso/web"', "deploy"): (64800, 43200, 40),
    # a 90-day p85 of 0 would make the growth +Inf: left out instead
    ('service="contoso/api"', "pickup"): (600, 0, 2),
}


def _stage_series() -> list[dict[str, str]]:
    series = []
    for base, fixed, stages in (
        ("cycletime_request_stage", _WI, _REQUEST_STAGES),
        ("cycletime_change_stage", 'source="github"', _CHANGE_STAGES),
    ):
        for (labels, stage), (p85_30d, p85_90d, items) in stages.items():
            sel = f'{fixed},{labels},stage="{stage}",job="cycletime",instance="c:9184"'
            for window, value in (("30d", p85_30d), ("90d", p85_90d)):
                series.append(
                    {
                        "series": f'{base}_window_seconds{{{sel},window="{window}",quantile="0.85"}}',
                        "values": f"{value}x5",
                    }
                )
                series.append(
                    {
                        "series": f'{base}_window_seconds{{{sel},window="{window}",quantile="0.5"}}',
                        "values": f"{value / 2}x5",
                    }
                )
            series.append({"series": f'{base}_window_count{{{sel},window="30d"}}', "values": f"{items}x5"})
    return series


def _stage_query(title: str, ref: str = "A") -> str:
    for panel in iter_panels(DASHBOARDS["where-the-time-goes.json"]):
        if panel["title"] == title:
            return substitute(next(t["expr"] for t in panel["targets"] if t["refId"] == ref))
    raise KeyError(title)


def test_where_the_time_goes_answers_from_the_stage_gauges(tmp_path: Path) -> None:
    """The stage panels' queries on a real PromQL engine (promtool), fed the window gauges the
    collector exports: the headline stages, the growth ranking and the per-team bars."""
    web = 'project="Fabrikam",team="Web",type="Bug"'
    cases = [
        ("Largest request stage (p85)", "A", [('{stage="backlog"}', 20 * _DAY)]),
        # Ops's backlog grew more, from 3 items: Web's doubled backlog is the stage that grew most
        ("Request stage that grew most", "A", [(f'{{source="boards",{web},stage="backlog"}}', 1.0)]),
        ("Largest change stage (p85)", "A", [('{stage="deploy"}', 64800)]),
        ("Change stage that grew most", "A", [('{source="github",service="contoso/web",stage="coding"}', 1.0)]),
        (
            "Request stage growth: p85 last 30 days vs 90 days",
            "A",
            [
                ('{stage="backlog"}', 1.0),
                ('{stage="review"}', 0.5),
                ('{stage="development"}', 0.0),
                ('{stage="release"}', -0.25),
            ],
        ),
        (
            "Change stage growth: p85 last 30 days vs 90 days",
            "A",
            [
                ('{stage="coding"}', 1.0),
                ('{stage="deploy"}', 0.5),
                ('{stage="pickup"}', 0.0),
                ('{stage="review"}', -0.5),
            ],
        ),
        (
            "Request to release by stage per team: p85",
            "A",
            [
                ('{team="Ops",stage="backlog"}', 20 * _DAY),
                ('{team="Web",stage="backlog"}', 10 * _DAY),
                ('{team="Web",stage="development"}', 2 * _DAY),
                ('{team="Web",stage="release"}', 3 * _DAY),
                ('{team="Web",stage="review"}', 0.75 * _DAY),
            ],
        ),
        (
            "Change lead time by stage per service: p50",
            "A",
            [
                ('{service="contoso/api",stage="pickup"}', 300),
                ('{service="contoso/web",stage="coding"}', 3600),
                ('{service="contoso/web",stage="deploy"}', 32400),
                ('{service="contoso/web",stage="pickup"}', 7200),
                ('{service="contoso/web",stage="review"}', 1800),
            ],
        ),
        (
            "Request stages per team: p85 last 30 days vs 90 days",
            "D",
            [
                (f'{{{web},stage="backlog"}}', 1.0),
                (f'{{{web},stage="development"}}', 0.0),
                (f'{{{web},stage="review"}}', 0.5),
                (f'{{{web},stage="release"}}', -0.25),
                ('{project="Fabrikam",team="Ops",type="Bug",stage="backlog"}', 3.0),
            ],
        ),
        (
            "Change stages per service: p85 last 30 days vs 90 days",
            "C",
            [(f'{{service="contoso/web",stage="{stage}"}}', 40) for stage in ("coding", "pickup", "review", "deploy")]
            + [('{service="contoso/api",stage="pickup"}', 2)],
        ),
    ]
    tests = [
        {
            "expr": _stage_query(title, ref),
            "eval_time": "1m",
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
        }
        for title, ref, samples in cases
    ]
    (tmp_path / "none.yaml").write_text("groups: []\n", encoding="utf-8")
    unit = {
        "rule_files": ["none.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _stage_series(), "promql_expr_test": tests}],
    }
    path = tmp_path / "stages_test.yaml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
