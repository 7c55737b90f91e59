"""A first sync larger than the rate budget: it never spends the reserve, and ends with the same store.

The sandbox's GitHub serves a budget of ``LIMIT`` requests per ``WINDOW`` seconds; the sync needs
several windows. Either the pass pauses at the reserve until the reset, or (when it may not wait
that long) it ends early and the next pass after the reset goes on from the watermarks.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from test_github import NOW, _assert_matches_truth, _sync_all
from test_github import _sources as _github_sources

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.http import ApiTelemetry, RetryPolicy
from collector.runner import Runner
from collector.sources.base import SyncReport
from collector.store import Store
from exporters.prometheus import MetricsCache
from exporters.web import ExporterApp, serve_http
from sandbox.app import Sandbox, SandboxOptions


def _sources(sandbox: Sandbox, **settings: Any) -> list[Any]:
    """The REST plan: these budgets are REST's (requests an hour); the GraphQL plan's points budget
    is planned by the same client, tested in test_github.py."""
    return _github_sources(sandbox, api="rest", **settings)


ITEMS = 600
LIMIT = 200
WINDOW = 3
RESERVE = 0.1


def _data(store: Store) -> dict[str, Any]:
    """The store's rows, without the watermarks (whose ETags say when a list was read)."""
    return {k: v for k, v in store.content_digest().items() if k != "watermarks"}


@pytest.fixture(scope="module")
def unlimited() -> dict[str, Any]:
    """The store of a sync that never met a limit, and the requests it took."""
    with Sandbox(SandboxOptions(seed=7, work_items=ITEMS, now=NOW)) as sb, tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/unlimited.db")
        reports = _sync_all(_sources(sb), store)
        assert all(not r.problems and r.backlog == 0 for r in reports)
        _assert_matches_truth(store, sb.github.truth())
        out = {"data": _data(store), "requests": sb.github.rate_stats()["used"]}
        store.close()
    return out


def _budgeted() -> Sandbox:
    sandbox = Sandbox(SandboxOptions(seed=7, work_items=ITEMS, now=NOW)).start()
    sandbox.github.set_rate_limit(limit=LIMIT, window=WINDOW)
    return sandbox


def _resumes(store: Store) -> list[str]:
    """Pull request streams a walk left unfinished."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT stream, value FROM watermarks").all()
    return [stream for stream, value in rows if stream.startswith("pulls:") and json.loads(value).get("resume")]


def test_the_sync_pauses_at_the_reserve_and_ends_identical(unlimited: dict[str, Any], tmp_path: Path) -> None:
    assert unlimited["requests"] > 3 * LIMIT  # the first sync needs several windows
    sandbox = _budgeted()
    try:
        telemetry = ApiTelemetry()  # one token, one budget: the sources share what they learn of it
        store = Store(f"sqlite:///{tmp_path}/paused.db")
        started = time.monotonic()
        plans: list[tuple[int, int]] = []
        sources = _sources(
            sandbox, reserve=RESERVE, sleep=time.sleep, telemetry=telemetry, plan=lambda d, t: plans.append((d, t))
        )
        reports = _sync_all(sources, store)
        elapsed = time.monotonic() - started
        stats = sandbox.github.rate_stats()
    finally:
        sandbox.stop()
    print(f"paused sync: done in {elapsed:.1f}s, slept {telemetry.slept_seconds:.1f}s")
    assert stats["refused"] == 0  # never ran into the limit
    assert stats["lowest"] >= math.ceil(RESERVE * LIMIT)  # never spent the reserve
    assert telemetry.slept_seconds >= 1.0  # paused at least once for a reset
    assert all(not r.problems and "deferred" not in r.details and r.backlog == 0 for r in reports)
    assert _data(store) == unlimited["data"]
    assert _resumes(store) == []
    # each source (one repository each) reported its three streams: none done, then all
    assert plans == [(0, 3), (3, 3)] * len(sources)


def _pass(sources: list[Any], store: Store) -> list[SyncReport]:
    reports = _sync_all(sources, store)
    assert all(not r.problems for r in reports), [r.problems for r in reports]
    return reports


def test_a_pass_that_may_not_wait_ends_early_and_the_next_ones_converge(
    unlimited: dict[str, Any], tmp_path: Path
) -> None:
    sandbox = _budgeted()
    try:
        telemetry = ApiTelemetry()
        sources = _sources(
            sandbox, reserve=RESERVE, telemetry=telemetry, http_policy=RetryPolicy(max_rate_limit_wait=0.5)
        )
        store = Store(f"sqlite:///{tmp_path}/spread.db")
        backlogs: list[int] = []
        resumed: list[str] = []
        for _ in range(15):
            reports = _pass(sources, store)
            backlogs.append(sum(r.backlog or 0 for r in reports))
            resumed += _resumes(store)
            if not backlogs[-1]:
                break
            assert any("deferred" in r.details for r in reports)
            assert _data(store) != unlimited["data"]
            reset = sandbox.github.rate_stats()["reset"]
            time.sleep(max(0.0, reset - time.time()) + 0.2)  # the next pass, after the window resets
        stats = sandbox.github.rate_stats()
    finally:
        sandbox.stop()
    print(f"spread sync: {len(backlogs)} passes, backlogs {backlogs}, pull request walks resumed: {resumed}")
    assert len(backlogs) >= 3 and backlogs[-1] == 0
    assert resumed  # a pull request walk was cut by the budget and went on from there
    assert stats["refused"] == 0 and stats["lowest"] >= math.ceil(RESERVE * LIMIT)
    assert _data(store) == unlimited["data"]
    assert _resumes(store) == []


def test_the_budget_and_the_backlog_reach_the_metrics(tmp_path: Path) -> None:
    """A pass ended by the budget: its budget per API and its backlog are on /metrics."""
    sandbox = _budgeted()
    try:
        sandbox.github.set_rate_limit(limit=LIMIT, window=600)  # no reset within the test
        db = tmp_path / "metrics.db"
        config = parse_config(
            f"""
store: sqlite:///{db}
history: 1000d
http: {{max_rate_limit_wait: 5s}}
sources:
  - name: gh
    kind: github
    base_url: {sandbox.github_url}
    token: sandbox-token
    repositories: [{", ".join(sandbox.github.truth()["repos"])}]
    api: rest
"""
        )
        store = Store(f"sqlite:///{db}")
        result = Runner(config, store).run("gh")
        cache = MetricsCache(FigureCache(store, Settings.from_config(config)))
        server = serve_http(ExporterApp(cache, store, config), "127.0.0.1:0")
        try:
            text = requests.get(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=10).text
        finally:
            server.shutdown()
            server.server_close()
        shown = store.statuses()["gh"].last_error
    finally:
        sandbox.stop()
    assert result.ok and shown is not None and shown.startswith("deferred:")  # up, with a note
    budget = [line for line in text.splitlines() if line.startswith("cycletime_api_budget_remaining{")]
    assert budget == [f'cycletime_api_budget_remaining{{api="rest",source="gh"}} {math.ceil(RESERVE * LIMIT)}.0']
    backlog = [line for line in text.splitlines() if line.startswith("cycletime_sync_backlog{")]
    assert len(backlog) == 1 and float(backlog[0].rsplit(" ", 1)[1]) > 0


def test_sources_sharing_a_token_share_its_budget(tmp_path: Path) -> None:
    """The second source knows what the first left: it does not send one request into the reserve."""
    sandbox = _budgeted()
    try:
        sandbox.github.set_rate_limit(limit=LIMIT, window=600)
        repos = list(sandbox.github.truth()["repos"].items())
        sources = "\n".join(
            f"  - {{name: gh{i}, kind: github, base_url: '{sandbox.github_url}', token: sandbox-token, "
            f"repositories: [{repo}], deployments_from: '{mode}', api: rest}}"
            for i, (repo, mode) in enumerate(repos)
        )
        config = parse_config(
            f"store: sqlite:///{tmp_path}/shared.db\nhistory: 1000d\nhttp: {{max_rate_limit_wait: 5s}}\n"
            f"sources:\n{sources}\n"
        )
        store = Store(config.store)
        runner = Runner(config, store)
        results = runner.run_all()
        stats = sandbox.github.rate_stats()
    finally:
        sandbox.stop()
    assert all(r.ok for r in results)
    assert stats["refused"] == 0 and stats["lowest"] == math.ceil(RESERVE * LIMIT)
    backlogs = store.backlogs()
    assert backlogs["gh0"] > 0 or backlogs["gh1"] > 0  # the budget ran out before the first sync was done
    assert backlogs[f"gh{len(repos) - 1}"] == 3  # the last source found the budget at its reserve
