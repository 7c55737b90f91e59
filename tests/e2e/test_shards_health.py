"""A source's health with shards (docs/sharding.md, "Source health"): one shard's failing pass takes
the source down on whichever shard exports its health, even when another shard's pass succeeded
after it; the shipped CycletimeSourceDown alert sees it on a real Prometheus scraping `cycletime
serve` shards; after scaling, the earlier number of shards' rows no longer count.

The failure is real: a repository the configuration names but GitHub does not have (HTTP 404) is
one scope, owned by one shard, whose passes fail; the other shard's passes succeed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
import sqlalchemy as sa
from conftest import github_source, sandbox_config
from delivery.promql import RULES_FILE, load_rules
from harness import Prometheus, Serve, free_port, wait_until
from test_shards import TOKEN, _cli, _metrics, _series, _union, databases, sandbox  # noqa: F401 (the fixtures)

from collector.sharding import SOURCE_SCOPE, Shards, owner
from collector.store import normalise_url
from sandbox.app import Sandbox

UP = 'cycletime_source_up{source="github"}'


def _missing_repository(total: int) -> str:
    """A repository the sandbox does not have, owned by another shard than the source's health."""
    health = owner("github", SOURCE_SCOPE, total)
    return next(f"contoso/gone-{k}" for k in range(100) if owner("github", f"contoso/gone-{k}", total) != health)


def _config(tmp: Path, api: Sandbox, store: str, name: str, repositories: list[str], **settings: object) -> Path:
    path = tmp / f"{name}.yaml"
    source = github_source(api.url, TOKEN, ["contoso/web", *repositories], deployments_from="deployments")
    path.write_text(sandbox_config(store, [source], history="400d", **settings))
    return path


def _sync(config: Path, shard: int, total: int) -> int:
    proc = _cli("sync", "--config", str(config), "--shard", str(shard), "--total-shards", str(total))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err.decode()[-3000:]
    return proc.returncode


def _alert_expr(name: str) -> str:
    return next(r["expr"] for g in load_rules()["groups"] for r in g["rules"] if r.get("alert") == name)


def test_a_failing_shard_takes_the_source_down_and_the_alert_sees_it(
    sandbox: Sandbox,  # noqa: F811
    databases: Iterator[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store = next(databases)
    gone = _missing_repository(2)
    failing = owner("github", gone.lower(), 2)
    health = owner("github", SOURCE_SCOPE, 2)
    assert failing != health and Shards(health, 2).owns("github", SOURCE_SCOPE)
    broken = _config(tmp_path, sandbox, store, "broken", [gone])

    # the failing shard's pass first, then the other's success: the latest pass is a success
    assert _sync(broken, failing, 2) == 1
    # a scope whose poll failed is not marked polled: the shard run again within the pass window
    # (a restart, a twin replica) polls it again and fails again, rather than skip it and pass
    assert _sync(broken, failing, 2) == 1
    assert _sync(broken, health, 2) == 0
    parts = [_series(_metrics(broken, at, (i, 2))) for i in range(2)]
    union = _union(parts)  # no series on both shards
    assert union[UP] == "0.0"
    assert UP in parts[health] and UP not in parts[failing]
    assert 'cycletime_source_last_success_timestamp_seconds{source="github"}' in parts[health]

    # the shipped alert on a real Prometheus scraping both shards (`serve`, an hour between polls:
    # the pass on start fails again on the failing shard; the other's scopes were just polled)
    serves = []
    for i in range(2):
        port = free_port()
        config = _config(tmp_path, sandbox, store, f"serve{i}", [gone], listen=f"127.0.0.1:{port}", poll_interval="1h")
        serves.append(Serve(config, port, tmp_path / f"serve{i}.log", ("--shard", str(i), "--total-shards", "2")))
    prom = None
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Serve.start, serves))
        prom = Prometheus([f"127.0.0.1:{s.port}" for s in serves], [RULES_FILE])
        wait_until(lambda: prom.query("count(up == 1) == 2"), 30, "both shards scraped")
        down = prom.query(_alert_expr("CycletimeSourceDown"))
        assert [(r["metric"]["source"], r["metric"]["instance"]) for r in down] == [
            ("github", f"127.0.0.1:{serves[health].port}")
        ]
        assert prom.query('count(cycletime_source_up{source="github"})')[0]["value"][1] == "1"  # once
        pending = 'ALERTS{alertname="CycletimeSourceDown",source="github",alertstate="pending"}'
        wait_until(lambda: prom.query(pending), 30, "CycletimeSourceDown pending for github")
        page = requests.get(serves[health].url, timeout=10).text
        assert f"shard {failing} of 2: contoso/gone" in page  # the landing page names the failing shard
    finally:
        if prom is not None:
            prom.stop()
        for s in serves:
            if s.proc is not None and s.proc.poll() is None:
                s.stop()

    # the repository dropped from the configuration and the shards scaled to 3: the failing row of
    # shard `failing` of 2 stays in the store and no longer counts once the 3 shards have passed
    time.sleep(1.5)  # a poll interval of 2 s: the next pass window is open
    fixed = _config(tmp_path, sandbox, store, "fixed", [], poll_interval="2s", allow_short_poll_interval=True)
    assert [_sync(fixed, i, 3) for i in range(3)] == [0, 0, 0]
    union = _union([_series(_metrics(fixed, at, (i, 3))) for i in range(3)])
    assert union[UP] == "1.0"
    engine = sa.create_engine(normalise_url(store))
    try:
        with engine.connect() as conn:
            old = conn.execute(sa.text("SELECT shard, ok FROM source_status WHERE total_shards = 2")).all()
    finally:
        engine.dispose()
    assert (failing, False) in [(shard, bool(ok)) for shard, ok in old]
