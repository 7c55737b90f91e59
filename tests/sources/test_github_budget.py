"""A first sync larger than the rate budget: it never spends the reserve, and ends with the same store.

The sandbox's GitHub serves budgets (REST requests, GraphQL points) per ``WINDOW`` seconds; the sync
needs several windows of each. Either the pass pauses at the reserve of whichever API runs out until
its reset, or (when it may not wait that long) it ends early and the next pass after the reset goes
on from the watermarks. Both under the REST plan and under ``auto`` (the default: conditional REST
requests and GraphQL histories), each spending its own budgets.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
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
from sandbox.github.apps import SandboxApp


@dataclass(frozen=True)
class Plan:
    """An ``api`` plan, the sandbox size it syncs, and the sandbox's budget per window of each
    resource it spends (``core``: REST requests, ``graphql``: GraphQL points)."""

    api: str
    items: int
    limits: tuple[tuple[str, int], ...]


#: ``auto`` needs a small part of REST's requests (39 at 1,500 work items, its workflow runs' jobs
#: over GraphQL too) and a few dozen points: a bigger sandbox and smaller windows make its first
#: sync several windows of both
PLANS = {
    "rest": Plan("rest", 600, (("core", 200),)),
    "auto": Plan("auto", 1500, (("core", 12), ("graphql", 8))),
}
LIMIT = dict(PLANS["rest"].limits)["core"]
WINDOW = 3
RESERVE = 0.1


def _sources(sandbox: Sandbox, api: str = "rest", **settings: Any) -> list[Any]:
    return _github_sources(sandbox, api=api, **settings)


def _data(store: Store) -> dict[str, Any]:
    """The store's rows, without the watermarks (whose ETags say when a list was read)."""
    return {k: v for k, v in store.content_digest().items() if k != "watermarks"}


@functools.cache
def _unlimited(api: str) -> dict[str, Any]:
    """The store of a sync (of ``api``'s plan) that never met a limit, and what it spent of each budget."""
    plan = PLANS[api]
    with Sandbox(SandboxOptions(seed=7, work_items=plan.items, now=NOW)) as sb, tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/unlimited.db")
        reports = _sync_all(_sources(sb, api), store)
        assert all(not r.problems and r.backlog == 0 for r in reports)
        _assert_matches_truth(store, sb.github.truth())
        spent = {resource: sb.github.rate_stats(resource)["used"] for resource, _ in plan.limits}
        out = {"data": _data(store), "spent": spent}
        store.close()
    return out


def _budgeted(plan: Plan = PLANS["rest"]) -> Sandbox:
    sandbox = Sandbox(SandboxOptions(seed=7, work_items=plan.items, now=NOW)).start()
    for resource, limit in plan.limits:
        sandbox.github.set_rate_limit(limit=limit, window=WINDOW, resource=resource)
    return sandbox


def _within_reserve(sandbox: Sandbox, plan: Plan) -> None:
    """Every budget of the plan: never refused, never spent below its reserve."""
    for resource, limit in plan.limits:
        stats = sandbox.github.rate_stats(resource)
        assert stats["refused"] == 0, resource  # never ran into the limit
        assert stats["lowest"] >= math.ceil(RESERVE * limit), resource  # never spent the reserve


def _resumes(store: Store) -> list[str]:
    """Pull request streams a walk left unfinished."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT stream, value FROM watermarks").all()
    return [stream for stream, value in rows if stream.startswith("pulls:") and json.loads(value).get("resume")]


@pytest.mark.parametrize("api", PLANS)
def test_the_sync_pauses_at_the_reserve_and_ends_identical(
    api: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan, unlimited = PLANS[api], _unlimited(api)
    for resource, limit in plan.limits:
        assert unlimited["spent"][resource] > 3 * limit, resource  # the first sync needs several windows
    caplog.set_level(logging.INFO, logger="collector.http")
    sandbox = _budgeted(plan)
    try:
        telemetry = ApiTelemetry()  # one token, one budget: the sources share what they learn of it
        store = Store(f"sqlite:///{tmp_path}/paused.db")
        started = time.monotonic()
        plans: list[tuple[int, int]] = []
        sources = _sources(
            sandbox,
            api,
            reserve=RESERVE,
            sleep=time.sleep,
            telemetry=telemetry,
            plan=lambda d, t: plans.append((d, t)),
        )
        reports = _sync_all(sources, store)
        elapsed = time.monotonic() - started
        _within_reserve(sandbox, plan)
        truth = sandbox.github.truth()
    finally:
        sandbox.stop()
    print(f"{api}: paused sync done in {elapsed:.1f}s, slept {telemetry.slept_seconds:.1f}s")
    # paused for the reset of each budget it spends (under auto, REST's and GraphQL's in turn)
    for resource, _ in plan.limits:
        api_name = "rest" if resource == "core" else resource
        assert f" {api_name} budget down to its reserve" in caplog.text, api_name
    assert telemetry.slept_seconds >= 1.0
    assert all(not r.problems and "deferred" not in r.details and r.backlog == 0 for r in reports)
    assert _data(store) == unlimited["data"]
    _assert_matches_truth(store, truth)
    assert _resumes(store) == []
    # each source (one repository each) reported its three streams: none done, then all
    assert plans == [(0, 3), (3, 3)] * len(sources)


def _pass(sources: list[Any], store: Store) -> list[SyncReport]:
    reports = _sync_all(sources, store)
    assert all(not r.problems for r in reports), [r.problems for r in reports]
    return reports


@pytest.mark.parametrize("api", PLANS)
def test_a_pass_that_may_not_wait_ends_early_and_the_next_ones_converge(api: str, tmp_path: Path) -> None:
    plan, unlimited = PLANS[api], _unlimited(api)
    sandbox = _budgeted(plan)
    try:
        telemetry = ApiTelemetry()
        sources = _sources(
            sandbox, api, reserve=RESERVE, telemetry=telemetry, http_policy=RetryPolicy(max_rate_limit_wait=0.5)
        )
        store = Store(f"sqlite:///{tmp_path}/spread.db")
        backlogs: list[int] = []
        resumed: list[str] = []
        for _ in range(25):  # auto, whose chunks are planned at 3 requests a record, needs ~11
            reports = _pass(sources, store)
            backlogs.append(sum(r.backlog or 0 for r in reports))
            resumed += _resumes(store)
            if not backlogs[-1]:
                break
            assert any("deferred" in r.details for r in reports)
            if len(backlogs) == 1:  # (a later pass may store the last records, its stream not done yet)
                assert _data(store) != unlimited["data"]
            reset = max(sandbox.github.rate_stats(resource)["reset"] for resource, _ in plan.limits)
            time.sleep(max(0.0, reset - time.time()) + 0.2)  # the next pass, after the windows reset
        _within_reserve(sandbox, plan)
        truth = sandbox.github.truth()
    finally:
        sandbox.stop()
    print(f"{api}: spread sync: {len(backlogs)} passes, backlogs {backlogs}, pull request walks resumed: {resumed}")
    assert len(backlogs) >= 3 and backlogs[-1] == 0
    assert resumed  # a pull request walk was cut by the budget and went on from there
    assert _data(store) == unlimited["data"]
    _assert_matches_truth(store, truth)
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


def test_sources_on_one_app_installation_share_its_budget(tmp_path: Path) -> None:
    """Two sources of one GitHub App on the same installation spend one rate limit on GitHub: the
    runner gives them one budget, so the reserve holds for their sum, as for a shared token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "app.pem"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()))
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    app = SandboxApp(app_id=4242, public_key_pem=public, installations={"contoso": 101})
    sandbox = Sandbox(SandboxOptions(seed=7, work_items=PLANS["rest"].items, now=NOW, github_app=app)).start()
    try:
        sandbox.github.set_rate_limit(limit=LIMIT, window=600)  # no reset within the test
        repos = list(sandbox.github.truth()["repos"].items())
        # each source finds the app's installation on its owner, contoso: one installation
        sources = "\n".join(
            f"  - {{name: gh{i}, kind: github, base_url: '{sandbox.github_url}', repositories: [{repo}], "
            f"deployments_from: '{mode}', api: rest, app: {{app_id: 4242, private_key_file: '{pem}'}}}}"
            for i, (repo, mode) in enumerate(repos)
        )
        config = parse_config(
            f"store: sqlite:///{tmp_path}/app.db\nhistory: 1000d\nhttp: {{max_rate_limit_wait: 5s}}\n"
            f"sources:\n{sources}\n"
        )
        store = Store(config.store)
        runner = Runner(config, store)
        shared = {id(runner.telemetry[f"gh{i}"].budgets) for i in range(len(repos))}
        results = runner.run_all()
        stats = sandbox.github.rate_stats()
        issued = dict(sandbox.github.apps.issued)
    finally:
        sandbox.stop()
    assert len(shared) == 1  # one budget for the installation
    assert set(issued) == {101}  # the requests went out on installation 101's tokens
    assert all(r.ok for r in results)
    assert stats["refused"] == 0 and stats["lowest"] == math.ceil(RESERVE * LIMIT)
    backlogs = store.backlogs()
    assert backlogs["gh0"] > 0 or backlogs["gh1"] > 0  # the budget ran out before the first sync was done
    assert backlogs[f"gh{len(repos) - 1}"] == 3  # the last source found the budget at its reserve


def test_the_budget_is_shared_by_credential_not_by_source() -> None:
    """Which sources the runner gives one budget: one token, or one app installation (named or found
    on the same owners); another token, installation or owner is a budget of its own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()).decode()

    def github(name: str, repos: str, **credential: Any) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "github",
            "base_url": "https://github.example/api/v3",
            "repositories": [repos],
            **credential,
        }

    def app(**extra: Any) -> dict[str, Any]:
        return {"app": {"app_id": 7, "private_key": pem, **extra}}

    sources = [
        github("t1", "a/x", token="tok-one"),
        github("t2", "a/y", token="tok-one"),
        github("t3", "a/z", token="tok-two"),
        github("i1", "a/x", **app(installation_id=5)),
        github("i2", "b/y", **app(installation_id=5)),
        github("o1", "a/x", **app()),
        github("o2", "a/y", **app()),
        github("o3", "b/x", **app()),
    ]
    config = parse_config(json.dumps({"store": "sqlite:///:memory:", "sources": sources}))
    runner = Runner(config, Store("sqlite:///:memory:"))
    groups: dict[int, list[str]] = {}
    for name, telemetry in runner.telemetry.items():
        groups.setdefault(id(telemetry.budgets), []).append(name)
    assert sorted(groups.values()) == [["i1", "i2"], ["o1", "o2"], ["o3"], ["t1", "t2"], ["t3"]]
