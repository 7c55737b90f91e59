"""The exporter on a real store: values, restarts, content negotiation, auth, probes, promtool."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from conftest import record_pass
from fixture_data import NOW, load
from prometheus_client.parser import text_string_to_metric_families

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.http import REDACT
from collector.store import Store
from exporters.prometheus import MetricsCache
from exporters.web import ExporterApp, serve_http

DAY = 86400.0
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-token-value"

CONFIG = f"""
listen: 127.0.0.1:0
store: sqlite:///unused.db
sources:
  - name: boards
    kind: azure_boards
    organization_url: http://127.0.0.1:1/contoso
    project: Fabrikam
    token: {SECRET}
  - name: pipelines
    kind: azure_pipelines
    organization_url: http://127.0.0.1:1/contoso
    project: Fabrikam
    token: {SECRET}
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples[(name, frozenset(labels.items()))]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/store.db")
    load(store)
    return store


@pytest.fixture
def config():
    return parse_config(CONFIG, {})


def exposition(store: Store, config) -> str:
    return MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp)).exposition().decode()


def test_figures_match_hand_worked_values(store: Store, config) -> None:
    s = samples(exposition(store, config))
    wl = {"source": "boards", "project": "Fabrikam", "team": "Web", "type": "User Story"}
    # cycle times 2d (item 1) and 4d (item 2) are User Stories completed 1 and 5 days ago
    assert value(s, "cycletime_work_item_cycle_time_window_seconds", **wl, window="7d", quantile="0.5") == 3 * DAY
    assert value(s, "cycletime_work_item_cycle_time_window_count", **wl, window="7d") == 2
    assert value(s, "cycletime_work_item_cycle_time_seconds_count", **wl) == 2
    assert value(s, "cycletime_work_item_cycle_time_seconds_bucket", **wl, le="172800.0") == 1  # le=2d
    assert value(s, "cycletime_work_item_cycle_time_seconds_bucket", **wl, le="+Inf") == 2
    assert value(s, "cycletime_work_item_cycle_time_seconds_sum", **wl) == 6 * DAY
    bug = {**wl, "type": "Bug"}
    assert value(s, "cycletime_work_item_cycle_time_window_count", **bug, window="7d") == 0
    assert (
        "cycletime_work_item_cycle_time_window_seconds",
        frozenset({**bug, "window": "7d", "quantile": "0.5"}.items()),
    ) not in s  # empty window: no NaN sample
    assert value(s, "cycletime_work_item_cycle_time_window_seconds", **bug, window="30d", quantile="0.85") == 10 * DAY
    assert value(s, "cycletime_work_item_lead_time_seconds_sum", **wl) == (29 + 35) * DAY
    r2r = {**wl, "environment": "production"}
    assert value(s, "cycletime_request_to_release_seconds_count", **r2r) == 2
    assert value(s, "cycletime_request_to_release_seconds_sum", **r2r) == (27 + 37) * DAY
    dep = {"source": "pipelines", "service": "web-ci", "environment": "production"}
    assert value(s, "cycletime_change_lead_time_seconds_sum", **dep) == 5 * DAY
    prod = {**dep, "production": "true"}
    assert value(s, "cycletime_failed_deployment_recovery_seconds_sum", **prod) == 1 * DAY
    assert value(s, "cycletime_deployments_total", **prod, status="success") == 1
    assert value(s, "cycletime_deployments_total", **prod, status="failure") == 1
    assert (
        value(
            s,
            "cycletime_deployments_total",
            **{**dep, "environment": "staging", "production": "false"},
            status="success",
        )
        == 1
    )
    # the failure finished 4 days ago and the recovery 3 days ago (fixture_data): both inside every window
    assert value(s, "cycletime_deployments_window_count", **prod, status="failure", window="7d") == 1
    assert value(s, "cycletime_deployments_window_count", **prod, status="success", window="90d") == 1
    assert value(s, "cycletime_work_item_flow_efficiency_window_ratio", **wl, window="90d") > 0
    assert value(s, "cycletime_work_items_in_progress", **wl, category="InProgress") == 1
    assert value(s, "cycletime_work_items_in_progress", **{**wl, "team": "Payments"}, category="Proposed") == 1
    assert value(s, "cycletime_work_item_state_seconds_total", **wl, state="Resolved", category="Resolved") == DAY
    assert value(s, "cycletime_records_rejected_total", source="boards", reason="missing_field") == 1
    assert value(s, "cycletime_source_up", source="boards") == 0  # configured, never polled


def test_restart_reexports_identical_counters_and_buckets(tmp_path: Path, config) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    first = Store(url)
    load(first)
    record_pass(first, "boards", started_at=NOW.timestamp() - 10, duration=3.0, items=5, rate_limit_remaining=180)
    before = exposition(first, config)
    first.close()
    after = exposition(Store(url), config)
    assert after == before
    assert 'cycletime_source_poll_duration_seconds_count{source="boards"} 1.0' in after


def test_openmetrics_is_negotiated(store: Store, config) -> None:
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp))
    om = cache.exposition(openmetrics_format=True).decode()
    assert om.rstrip().endswith("# EOF")
    assert "# TYPE cycletime_deployments counter" in om
    assert "# EOF" not in cache.exposition().decode()


#: promtool's lint flags two naming rules that CONTRACT §5 itself mandates for the window gauges
#: (a `quantile` label on a gauge, a `_count` suffix on a gauge); see README "Contract notes".
CONTRACT_LINT = re.compile(
    r'^cycletime_\w+_window_(seconds non-summary metrics should not have "quantile" label'
    r'|count non-histogram and non-summary metrics should not have "_count" suffix)$'
)


def promtool_problems(text: str) -> list[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required: make test installs it"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode in (0, 3), f"exposition does not parse: {result.stderr}"  # 1 = parse error
    return [line for line in (result.stdout + result.stderr).splitlines() if line and not CONTRACT_LINT.match(line)]


def test_promtool_check_metrics_is_clean(store: Store, config) -> None:
    text = exposition(store, config)
    assert promtool_problems(text) == []
    assert promtool_problems(text + "# TYPE bad_total gauge\nbad_total 1\n"), "the check must be able to fail"


def test_cycletime_metrics_cli_prints_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    load(Store(url))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("sqlite:///unused.db", url))
    result = subprocess.run(
        [sys.executable, "-m", "collector", "metrics", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    s = samples(result.stdout)
    dep = {"source": "pipelines", "service": "web-ci", "environment": "production", "production": "true"}
    assert value(s, "cycletime_deployments_total", **dep, status="success") == 1
    assert SECRET not in result.stdout + result.stderr


def test_http_server_probes_auth_and_landing_page(store: Store, tmp_path: Path) -> None:
    REDACT.add(SECRET)
    config = parse_config(
        CONFIG
        + textwrap.dedent("""
        web:
          basic_auth: {username: prom, password: pw-123456}
    """),
        {},
    )
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp))
    app = ExporterApp(cache, store, config)
    server = serve_http(app, "127.0.0.1:0")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503 and "boards" in ready.text  # never synced
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"prom:pw-123456").decode()}
        assert requests.get(f"{base}/metrics", headers={"Authorization": "Basic eDp5"}, timeout=5).status_code == 401
        metrics = requests.get(f"{base}/metrics", headers=auth, timeout=5)
        assert metrics.status_code == 200 and "cycletime_deployments_total" in metrics.text
        assert "process_resident_memory_bytes" in metrics.text and 'cycletime_build_info{version="' in metrics.text
        assert promtool_problems(metrics.text) == []
        om = requests.get(
            f"{base}/metrics", headers={**auth, "Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5
        )
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.text.count("# EOF") == 1 and om.text.endswith("# EOF\n") and "process_cpu_seconds" in om.text
        assert metrics.headers["Content-Encoding"] == "gzip"  # requests asks for gzip and unpacks it
        plain = requests.get(f"{base}/metrics", headers={**auth, "Accept-Encoding": "identity"}, timeout=5)
        assert "Content-Encoding" not in plain.headers and plain.content.startswith(b"# HELP")
        for name in ("boards", "pipelines"):
            record_pass(store, name, started_at=NOW.timestamp(), items=3)
        record_pass(
            store, "pipelines", started_at=NOW.timestamp() + 60, ok=False, error=f"401 for token {SECRET} <script>"
        )
        # each source synced once, but the figures published were computed before: not ready yet
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503 and "figures not computed" in ready.text
        cache.refresh()  # what serve does after every pass
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        page = requests.get(f"{base}/", headers=auth, timeout=5)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert "boards" in page.text and "azure_pipelines" in page.text and "down" in page.text
        assert "5 work items" in page.text and "3 deployments" in page.text  # what the store holds per source
        assert SECRET not in page.text and "<script>" not in page.text and "&lt;script&gt;" in page.text
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.shutdown()


def _figure_lines(text: str) -> list[str]:
    """The cached figures of an exposition: the process metrics change between two scrapes."""
    return [line for line in text.splitlines() if not re.search(r"\b(process|python)_", line)]


def test_gzip_answers_are_one_member_holding_the_figures_of_the_moment(store: Store, config) -> None:
    """The cached part is compressed once per snapshot and format and continued per scrape by the
    process metrics: each answer must still be one plain gzip member, with the current figures."""
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp))
    server = serve_http(ExporterApp(cache, store, config), "127.0.0.1:0")
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    formats = {"text": "", "openmetrics": "application/openmetrics-text; version=1.0.0"}

    def scrape(accept: str, encoding: str) -> tuple[str, str | None]:
        resp = requests.get(url, headers={"Accept": accept, "Accept-Encoding": encoding}, stream=True, timeout=5)
        raw = resp.raw.read(decode_content=False)
        if resp.headers.get("Content-Encoding") != "gzip":
            return raw.decode(), None
        member = zlib.decompressobj(31)  # gzip, one member
        text = member.decompress(raw).decode()
        assert member.eof and member.unused_data == b"", "one gzip member, nothing after it"
        return text, resp.headers["Content-Length"]

    try:
        first = {}
        for name, accept in formats.items():
            packed, length = scrape(accept, "gzip")
            plain, _ = scrape(accept, "identity")
            assert length is not None and "process_cpu_seconds_total" in packed
            assert _figure_lines(packed) == _figure_lines(plain) and "cycletime_deployments_total" in packed
            if name == "openmetrics":
                assert packed.count("# EOF") == 1 and packed.endswith("# EOF\n")
            first[name] = packed
        with ThreadPoolExecutor(8) as pool:  # scrapes at once share the kept compressor
            for packed, _ in pool.map(lambda _: scrape(formats["text"], "gzip"), range(32)):
                assert _figure_lines(packed) == _figure_lines(first["text"])
        record_pass(store, "boards", started_at=NOW.timestamp() + 3600, items=3)
        cache.refresh()  # new figures: the compressed prefix is made again
        for name, accept in formats.items():
            packed, _ = scrape(accept, "gzip")
            assert _figure_lines(packed) == _figure_lines(scrape(accept, "identity")[0])
            assert _figure_lines(packed) != _figure_lines(first[name])
    finally:
        server.shutdown()


def test_windows_slide_without_new_data(store: Store, config) -> None:
    clock = [NOW.timestamp()]
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=lambda: clock[0], max_age=60))
    wl = {"source": "boards", "project": "Fabrikam", "team": "Web", "type": "User Story"}
    assert (
        value(samples(cache.exposition().decode()), "cycletime_work_item_cycle_time_window_count", **wl, window="7d")
        == 2
    )
    clock[0] += timedelta(days=3).total_seconds()
    cache.refresh()
    assert (
        value(samples(cache.exposition().decode()), "cycletime_work_item_cycle_time_window_count", **wl, window="7d")
        == 1
    )


def test_a_scrape_never_waits_for_a_refresh(store: Store, config) -> None:
    figures = FigureCache(store, Settings.from_config(config), clock=NOW.timestamp)
    cache = MetricsCache(figures)
    before = cache.exposition()
    computing, release = threading.Event(), threading.Event()
    original = figures.refresh

    def slow_refresh(force: bool = False):
        computing.set()
        release.wait(10)
        return original(force)

    figures.refresh = slow_refresh  # type: ignore[method-assign]
    refresher = threading.Thread(target=cache.refresh, args=(True,))
    refresher.start()
    try:
        assert computing.wait(5)
        started = time.monotonic()
        assert cache.exposition() == before  # served from the previous snapshot...
        assert time.monotonic() - started < 1  # ...at once
    finally:
        release.set()
        refresher.join(10)
