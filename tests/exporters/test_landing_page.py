"""The landing page in a real browser: headline figures and the monthly chart, equal to /metrics."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from conftest import chromium, record_pass
from fixture_data import NOW, a_year_of_releases
from prometheus_client.parser import text_string_to_metric_families

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.http import REDACT
from collector.store import Store
from exporters.prometheus import MetricsCache
from exporters.web import ExporterApp, serve_http

SECRET = "landing-Secret-9d2e11"
CONFIG = f"""
listen: 127.0.0.1:0
store: sqlite:///unused.db
sources:
  - {{name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: {SECRET}}}
  - {{name: github, kind: github, base_url: "http://127.0.0.1:1/api/v3", token: {SECRET}, repositories: [contoso/web]}}
"""


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(page: str, tag: str, cls: str) -> list[dict[str, str]]:
    parser = Elements()
    parser.feed(page)
    return [a for t, a in parser.found if t == tag and cls in a.get("class", "").split()]


def window_p85(text: str, family: str, **labels: str) -> float:
    wanted = {**labels, "window": "30d", "quantile": "0.85"}
    found = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == f"{family}_window_seconds" and s.labels == wanted
    ]
    assert len(found) == 1, (family, wanted)
    return found[0]


@pytest.fixture
def served(tmp_path: Path):
    REDACT.add(SECRET)
    store = Store(f"sqlite:///{tmp_path}/store.db")
    a_year_of_releases(store, NOW, projects=("Fabrikam",))  # one series per figure: the pooled chart is it
    for name in ("boards", "github"):
        record_pass(store, name, started_at=NOW.timestamp(), items=1, rate_limit_remaining=4000)
    config = parse_config(CONFIG, {})
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp))
    cache.refresh(force=True)
    server = serve_http(ExporterApp(cache, store, config), "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_the_landing_page_shows_the_headline_and_a_year_by_month(served: str, tmp_path: Path) -> None:
    dom = chromium(f"{served}/", tmp_path, window="1000,1300", min_screenshot_bytes=10_000)
    metrics = requests.get(f"{served}/metrics", timeout=10).text
    work_item = {"source": "boards", "project": "Fabrikam", "team": "Web", "type": "User Story"}

    # the chart: an inline SVG, one point per month and figure, no script anywhere
    assert "<svg" in dom and "<script" not in dom.lower()
    r2r, cycle = elements(dom, "circle", "r2r"), elements(dom, "circle", "cycle")
    assert [p["data-month"] for p in r2r] == [p["data-month"] for p in cycle]
    assert len(r2r) == 12 and r2r[-1]["data-month"] == "2026-11"
    # this month's points are the exposition's 30-day p85
    assert float(r2r[-1]["data-seconds"]) == window_p85(
        metrics, "cycletime_request_to_release", **work_item, environment="production"
    )
    assert float(cycle[-1]["data-seconds"]) == window_p85(metrics, "cycletime_work_item_cycle_time", **work_item)
    assert len(set(p["data-seconds"] for p in r2r)) > 3, "a year of different months"

    # the headline: p85 request-to-release per project, production deployment frequency and failure rate
    (project,) = elements(dom, "tr", "project")
    assert project["data-project"] == "Fabrikam"
    assert float(project["data-seconds"]) == float(r2r[-1]["data-seconds"])
    (dora,) = elements(dom, "p", "dora")
    window_counts = {
        s.labels["status"]: s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.name == "cycletime_deployments_window_count"
        and s.labels["window"] == "30d"
        and s.labels["production"] == "true"
    }
    assert int(dora["data-succeeded"]) == window_counts["success"] > 0
    assert int(dora["data-failed"]) == window_counts.get("failure", 0)
    per_day = re.search(r"([\d.]+) per day", dom)
    assert per_day and float(per_day.group(1)) == round(window_counts["success"] / 30, 2)

    assert SECRET not in dom and SECRET not in metrics
