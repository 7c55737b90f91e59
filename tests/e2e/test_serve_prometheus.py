"""End to end: sandbox → `cycletime serve` (subprocess) → a real Prometheus; restarts; the landing page."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import chromium
from delivery.dashboard_queries import iter_panel_queries, iter_panels, load_dashboards, substitute
from harness import ROOT, Prometheus, Serve, collector_config, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

from collector.config import load_config
from collector.figures import FigureCache, Settings
from collector.store import Store
from exporters.prometheus import MetricsCache
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "e2e-Secret-Token-4f1d9c"

#: families derived from the store's data: equal across restarts while the data do not change
DATA_FAMILIES = (
    "cycletime_work_item_lead_time_seconds",
    "cycletime_work_item_cycle_time_seconds",
    "cycletime_request_to_release_seconds",
    "cycletime_change_lead_time_seconds",
    "cycletime_failed_deployment_recovery_seconds",
    "cycletime_work_item_state_seconds",
    "cycletime_deployments",
)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("e2e")
    sandbox = Sandbox(SandboxOptions(seed=11, work_items=300, token=TOKEN, malformed=5)).start()
    port = free_port()
    config = collector_config(tmp, sandbox.url, TOKEN, port, poll_interval="2s")
    serve = Serve(config, port, tmp / "serve.log").start()
    prometheus = Prometheus([f"127.0.0.1:{port}"], [ROOT / "config" / "prometheus" / "rules.yaml"])
    try:
        wait_until(prometheus.targets_up, 60, "prometheus scraping the collector")
        wait_until(lambda: prometheus.query("cycletime_source_up"), 30, "first samples in prometheus")
        yield {"tmp": tmp, "sandbox": sandbox, "serve": serve, "prometheus": prometheus, "config": config}
    finally:
        prometheus.stop()
        if serve.proc and serve.proc.poll() is None:
            serve.stop()
        sandbox.stop()


#: panels that show one figure ("the last N days"), not a plot over scraped time
FIGURE_PANELS = {"stat", "gauge", "table", "bargauge", "barchart"}


def figure_panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) of every stat, gauge, table and bar panel, variables on "All"."""
    out = []
    for name, dashboard in load_dashboards().items():
        for panel in iter_panels(dashboard):
            if panel["type"] in FIGURE_PANELS:
                out += [(name, panel["title"], substitute(t["expr"])) for t in panel["targets"]]
    return out


def test_every_figure_panel_answers_right_after_the_first_scrape(world: dict) -> None:
    """Runs first, while Prometheus holds a scrape or two: every stat, gauge, table and bar panel
    must show a finite figure already. Queries comparing with the past (`offset 90d`) cannot, on a
    Prometheus started seconds ago; they must evaluate here, and tests/e2e/test_backfill.py checks
    their values on a Prometheus loaded with the backfilled year."""
    prom: Prometheus = world["prometheus"]
    queries = figure_panel_queries()
    assert len(queries) >= 15
    problems = []
    for dashboard, panel, expr in queries:
        result = prom.query(expr)
        if re.search(r"offset\s+\d+[smhdwy]", expr):
            continue
        values = [float(r["value"][1]) for r in result]
        if not values:
            problems.append(f"{dashboard} / {panel}: no data: {expr}")
        elif not all(math.isfinite(v) for v in values):
            problems.append(f"{dashboard} / {panel}: not finite {values}: {expr}")
    assert not problems, "figure panels without a figure after the first scrape:\n" + "\n".join(problems)


def test_prometheus_sees_what_compute_produced(world: dict) -> None:
    prom: Prometheus = world["prometheus"]
    config = load_config(world["config"])
    expected = MetricsCache(FigureCache(Store(config.store), Settings.from_config(config)))
    # Prometheus drops empty label values (a GitHub issue without a team label has team="")
    exp = {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if v != "")): s.value
        for f in text_string_to_metric_families(expected.exposition().decode())
        for s in f.samples
    }

    up = {r["metric"]["source"]: float(r["value"][1]) for r in prom.query("cycletime_source_up")}
    assert up == {"boards": 1.0, "pipelines": 1.0, "github": 1.0}

    counts = prom.query("cycletime_work_item_lead_time_seconds_count")
    assert counts, "no lead time histogram in prometheus"
    for r in counts:
        labels = {k: v for k, v in r["metric"].items() if k not in ("job", "instance", "__name__")}
        assert float(r["value"][1]) == exp[("cycletime_work_item_lead_time_seconds_count", frozenset(labels.items()))]

    quantiles = prom.query('cycletime_work_item_cycle_time_window_seconds{window="90d",quantile="0.85"}')
    assert quantiles, "no 90d p85 cycle time in prometheus"
    for r in quantiles:
        labels = {k: v for k, v in r["metric"].items() if k not in ("job", "instance", "__name__")}
        assert float(r["value"][1]) == pytest.approx(
            exp[("cycletime_work_item_cycle_time_window_seconds", frozenset(labels.items()))]
        )

    r2r = prom.query("sum(cycletime_request_to_release_seconds_count)")
    assert r2r and float(r2r[0]["value"][1]) > 0, "no work item was released end to end"
    deployments = prom.query('sum by (status) (cycletime_deployments_total{environment="production"})')
    assert {r["metric"]["status"] for r in deployments} == {"success", "failure"}


def test_rules_load_and_evaluate(world: dict) -> None:
    prom: Prometheus = world["prometheus"]
    groups = requests.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]


def test_every_dashboard_panel_query_returns_data(world: dict) -> None:
    """Each panel of the shipped dashboards, variables set to "All", against the live Prometheus.

    A query that looks 90 days back (`offset 90d`, the trend stats) cannot have data in a Prometheus
    started seconds ago: it must evaluate without error, and the same query without the offset must
    return data.
    """
    prom: Prometheus = world["prometheus"]
    queries = list(iter_panel_queries())
    assert len(queries) >= 30
    wait_until(lambda: prom.query("count(count_over_time(cycletime_source_up[1m]) >= 3)"), 30, "three scrapes")
    # rates need counters that moved while Prometheus watched: new activity, picked up by the 2s polls
    world["sandbox"].add_activity(steps=4)
    wait_until(
        lambda: prom.query('sum(increase(cycletime_deployments_total{environment="production"}[5m])) > 0'),
        60,
        "new production deployments seen by prometheus",
    )
    wait_until(
        lambda: prom.query("source_service_environment:cycletime_change_failure_rate:ratio_7d"),
        30,
        "the recording rules to catch up",
    )
    empty = []
    for q in queries:
        expr = q.expr
        if re.search(r"offset\s+\d+[smhdwy]", expr):
            prom.query(expr)  # must parse and evaluate
            expr = re.sub(r"\s*offset\s+\d+[smhdwy]", "", expr)
        if not prom.query(expr):
            empty.append(f"{q.dashboard} / {q.panel}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_landing_page_renders_in_chromium_without_secrets(world: dict) -> None:
    serve: Serve = world["serve"]
    dom = chromium(f"{serve.url}/", world["tmp"])
    assert "<table>" in dom
    for name in ("boards", "pipelines", "github", "azure_boards", "Rate-limit budget"):
        assert name in dom
    metrics = requests.get(f"{serve.url}/metrics", timeout=10).text
    for text in (dom, metrics, serve.log.read_text()):
        assert TOKEN not in text


def test_restart_keeps_every_counter_and_bucket(world: dict) -> None:
    serve: Serve = world["serve"]
    before = scrape(serve.url)
    assert serve.stop() == 0, "serve must exit 0 on SIGTERM"
    serve.start()
    after = scrape(serve.url)
    data_before = {k: v for k, v in before.items() if k[0].startswith(DATA_FAMILIES)}
    data_after = {k: v for k, v in after.items() if k[0].startswith(DATA_FAMILIES)}
    assert data_before and data_after == data_before
    for key, value in before.items():
        if key[0].startswith(("cycletime_api_requests_total", "cycletime_source_poll_duration_seconds")):
            assert after[key] >= value, key  # self counters never go back: Prometheus sees no reset
    time.sleep(0.1)
