"""End to end: sandbox → `cycletime sync` → `cycletime backfill --prometheus-blocks` → a real Prometheus
started on those blocks answers the dashboards' queries for past days as `cycletime metrics --at` does."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery.dashboard_queries import iter_panels, load_dashboards, substitute
from harness import ROOT, Prometheus, collector_config, free_port
from prometheus_client.parser import text_string_to_metric_families

from collector.backfill import Timeline, backfill, step_times
from collector.compute import compute
from collector.config import load_config
from collector.figures import Settings
from collector.store import Store
from exporters.prometheus import figure_families, render
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "backfill-Secret-Token-77c1"
DAY = 86400
#: the dashboards' queries for a backfilled Prometheus: the 30d window, rate intervals of two steps
BACKFILL_VARS = {"window": "30d", "__rate_interval": "2d", "__range": "90d", "__interval": "1d"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "collector", *args, "--log-format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"cycletime {' '.join(args)}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def panel_query(dashboard: str, title: str, ref: str = "A") -> str:
    for panel in iter_panels(load_dashboards()[dashboard]):
        if panel["title"] == title:
            return substitute(next(t["expr"] for t in panel["targets"] if t["refId"] == ref), BACKFILL_VARS)
    raise KeyError(f"{dashboard}: no panel {title!r}")


def exposition_at(config: Path, at: float) -> dict[tuple[str, frozenset], float]:
    iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = cli("metrics", "--config", str(config), "--at", iso).stdout
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def select(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> list[float]:
    return [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]


def only_value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("backfill")
    sandbox = Sandbox(SandboxOptions(seed=11, work_items=300, token=TOKEN, malformed=5)).start()
    try:
        config = collector_config(tmp, sandbox.url, TOKEN, free_port())
        cli("sync", "--config", str(config))
    finally:
        sandbox.stop()
    out, blocks = tmp / "history.om", tmp / "blocks"
    result = cli(
        "backfill",
        "--config",
        str(config),
        "--from",
        "365d",
        "--step",
        "1d",
        "--out",
        str(out),
        "--prometheus-blocks",
        str(blocks),
    )
    last = re.search(r"steps from \S+ to (\S+)", result.stdout)
    assert last, result.stdout
    end = datetime.fromisoformat(last.group(1).replace("Z", "+00:00")).timestamp()
    prometheus = Prometheus([], blocks=blocks, retention="400d")
    try:
        yield {
            "config": config,
            "out": out,
            "blocks": blocks,
            "stdout": result.stdout,
            "end": end,
            "prometheus": prometheus,
        }
    finally:
        prometheus.stop()


def test_the_file_is_grouped_openmetrics_that_promtool_turned_into_blocks(world: dict) -> None:
    text = world["out"].read_text(encoding="utf-8")
    assert text.endswith("# EOF\n")
    families, last_time = [], {}
    for line in text.splitlines()[:-1]:
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z_:]+)(\{.*\})? (\S+) (\d+)", line)
        assert m, line
        assert m.group(1).startswith(families[-1]), f"{m.group(1)} outside its family {families[-1]}"
        series = m.group(1) + (m.group(2) or "")
        assert int(m.group(4)) > last_time.get(series, -1), f"time goes back in {series}"
        last_time[series] = int(m.group(4))
        assert int(m.group(4)) % DAY == 0, "steps are whole days"
    assert len(families) == len(set(families)), "a family appears twice: promtool needs them grouped"
    assert {
        "cycletime_deployments_window_count",
        "cycletime_work_item_cycle_time_window_seconds",
        "cycletime_request_to_release_seconds",
        "cycletime_deployments",
    } <= set(families)
    assert list(world["blocks"].glob("*/meta.json")), "promtool wrote no block"
    assert "--storage.tsdb.retention.time=" in world["stdout"] and "Mimir" in world["stdout"]


@pytest.mark.parametrize("days_ago", [90, 0])
def test_prometheus_on_the_blocks_answers_as_metrics_at(world: dict, days_ago: int) -> None:
    prom: Prometheus = world["prometheus"]
    at = world["end"] - days_ago * DAY
    expected = exposition_at(world["config"], at)

    p85_cycle = max(select(expected, "cycletime_work_item_cycle_time_window_seconds", window="30d", quantile="0.85"))
    got = only_value(prom.query(panel_query("flow.json", "p85 cycle time (worst matching series)"), at))
    assert got == pytest.approx(p85_cycle)

    p85_r2r = max(select(expected, "cycletime_request_to_release_window_seconds", window="30d", quantile="0.85"))
    got = only_value(
        prom.query(panel_query("request-to-release.json", "p85 request to release (worst matching series)"), at)
    )
    assert got == pytest.approx(p85_r2r)

    deployments = sum(
        select(expected, "cycletime_deployments_window_count", window="30d", production="true", status="success")
    )
    assert deployments > 0, "the sandbox deploys to production every month"
    got = only_value(prom.query(panel_query("dora.json", "Deployment frequency (per day, 30d)"), at))
    assert got == pytest.approx(deployments / 30)

    staging = sum(select(expected, "cycletime_deployments_window_count", window="30d", production="false"))
    failed = sum(
        select(expected, "cycletime_deployments_window_count", window="30d", production="true", status="failure")
    )
    got = only_value(prom.query(panel_query("dora.json", "Change failure rate (30d)"), at))
    assert got == pytest.approx(failed / (failed + deployments))
    assert staging > 0, "the sandbox deploys to staging too, and the DORA panels leave it out"


def test_trend_stat_p85_now_vs_90_days_ago(world: dict) -> None:
    prom: Prometheus = world["prometheus"]
    end = world["end"]
    now = max(
        select(
            exposition_at(world["config"], end),
            "cycletime_request_to_release_window_seconds",
            window="30d",
            quantile="0.85",
        )
    )
    before = max(
        select(
            exposition_at(world["config"], end - 90 * DAY),
            "cycletime_request_to_release_window_seconds",
            window="30d",
            quantile="0.85",
        )
    )
    title = "p85 change vs 90 days ago"
    change = only_value(prom.query(panel_query("request-to-release.json", title), end))
    assert math.isfinite(change) and change == pytest.approx(now / before - 1)
    assert now < before, "the sandbox's organisation gets faster over the year; the trend stat must show it"
    both = "p85 now vs 90 days ago"
    assert only_value(prom.query(panel_query("request-to-release.json", both, "A"), end)) == pytest.approx(now)
    assert only_value(prom.query(panel_query("request-to-release.json", both, "B"), end)) == pytest.approx(before)


def test_every_figure_panel_query_has_history(world: dict) -> None:
    """Every query of the delivery dashboards, time series included, answers at the last step and
    90 days before it. Not the collector-health dashboard (the collector's own health is scraped,
    not backfilled) nor queries of recording rules (evaluated by Prometheus as it scrapes)."""
    prom: Prometheus = world["prometheus"]
    empty = []
    for name in ("request-to-release.json", "flow.json", "dora.json"):
        for panel in iter_panels(load_dashboards()[name]):
            for target in panel["targets"]:
                expr = substitute(target["expr"], BACKFILL_VARS)
                if re.search(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr):
                    continue
                for at in (world["end"], world["end"] - 90 * DAY):
                    values = [float(r["value"][1]) for r in prom.query(expr, at)]
                    if not values or not all(math.isfinite(v) for v in values):
                        empty.append(f"{name} / {panel['title']} at {at:.0f}: {values}: {expr}")
    assert not empty, "queries without backfilled data:\n" + "\n".join(empty)


def test_each_step_equals_compute_as_of(world: dict) -> None:
    """The backfill's step-wise shortcut (deliveries, releases and recoveries computed once) gives
    exactly the figures compute(..., as_of=t) gives (the sandbox has reopened and removed items)."""
    config = load_config(world["config"])
    settings = Settings.from_config(config)
    store = Store(config.store)
    try:
        links = store.links()
        table = store.work_item_table(linked={link.work_item for link in links})
        changes, deployments = store.changes(), store.deployments()
        timeline = Timeline(table, store.change_table())
        for at in step_times(world["end"] - 365 * DAY, world["end"] + DAY / 2, 5 * DAY + 3600):
            expected = render(figure_families(compute(table, changes, deployments, links, as_of=at), settings, at))
            assert render(figure_families(timeline.figures(at), settings, at)) == expected, at
        one, two = io.StringIO(), io.StringIO()
        times = step_times(world["end"] - 40 * DAY, world["end"], DAY)
        backfill(store, settings, times, one, workers=1)
        backfill(store, settings, times, two, workers=2)
        assert one.getvalue() == two.getvalue() and one.getvalue().endswith("# EOF\n")
    finally:
        store.close()
