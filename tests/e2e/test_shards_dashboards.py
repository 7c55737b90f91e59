"""The dashboards and rules aggregate across shards (CONTRACT §7, issue 18): every figure panel query
and every figure rule of config/prometheus/rules.yaml, run on a real Prometheus scraping 3 `cycletime
serve` shards, answers what it answers on a Prometheus scraping a single replica of the same data.

A single replica syncs the sandbox into store A and 3 shards sync it into store B (as test_shards.py
does); then `serve` runs on each store (one process on A, the 3 shards on B) with a poll interval of
an hour, so nothing changes while the two Prometheus servers are compared at one instant.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from delivery.dashboard_queries import iter_panel_queries
from delivery.promql import RULES_FILE, load_rules
from harness import Prometheus, Serve, free_port, wait_until
from test_shards import _config, _sync_all, databases, sandbox  # noqa: F401 (the fixtures)

from sandbox.app import Sandbox

#: the dashboards of figures; collector-health.json shows each process's own passes (their timing,
#: requests and budget), which are per replica by nature: test_shards.py compares those series
FIGURE_DASHBOARDS = ("request-to-release.json", "flow.json", "dora.json", "where-the-time-goes.json")
#: rule groups skipped: cycletime.collector alerts on each process's source health and timing
#: (cycletime_source_up, the last success timestamp, the rate-limit budget, the sync backlog, the
#: rejected records' increase): not figures, and they name the instance that polls
SKIPPED_GROUPS = ("cycletime.collector",)
DROPPED = ("instance", "job")
#: a comparison with a number in an alert's expression (its threshold)
_THRESHOLD = re.compile(r"(>=|<=|==|!=|>|<)\s*(-?\d[\d.eE+]*)")


def _answer(prom: Prometheus, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], float]:
    """The result of ``expr`` at ``at``: labels without instance and job → value; a label set that
    appears twice after dropping them is a series counted by two shards, reported as a failure."""
    params = {"query": expr, "time": at}
    body = requests.get(f"{prom.url}/api/v1/query", params=params, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    data = body["data"]
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for row in data["result"]:
        key = tuple(sorted((k, v) for k, v in row["metric"].items() if k not in DROPPED))
        assert key not in out, f"one series twice once instance and job are dropped: {dict(key)} in {expr}"
        out[key] = float(row["value"][1])
    return out


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _differences(what: str, single: dict[Any, float], sharded: dict[Any, float]) -> list[str]:
    if set(single) != set(sharded):
        only = sorted(set(single) ^ set(sharded))[:3]
        return [f"{what}: series differ ({len(single)} single, {len(sharded)} sharded), e.g. {only}"]
    bad = [(k, single[k], sharded[k]) for k in single if not _same(single[k], sharded[k])]
    return [f"{what}: values differ, e.g. {bad[:3]}"] if bad else []


def _evaluated_since(prom: Prometheus, since: float) -> bool:
    """Every rule group of ``prom`` evaluated after ``since`` (seconds since the epoch)."""
    groups = requests.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    times = [re.sub(r"(\.\d{6})\d*", r"\1", g["lastEvaluation"]).replace("Z", "+00:00") for g in groups]
    return bool(groups) and all(datetime.fromisoformat(t).timestamp() > since for t in times)


def _queries() -> list[tuple[str, str]]:
    """(what, PromQL): the figure panels' queries (variables on "All") and the figure rules, each
    recording rule both as its recorded series (evaluated by Prometheus) and as its expression."""
    out = [(f"{q.dashboard} / {q.panel}", q.expr) for q in iter_panel_queries() if q.dashboard in FIGURE_DASHBOARDS]
    for group in load_rules()["groups"]:
        if group["name"] in SKIPPED_GROUPS:
            continue
        for rule in group["rules"]:
            if "record" in rule:
                out.append((f"recorded {rule['record']}", rule["record"]))
            out.append((f"rule {rule.get('record') or rule['alert']}", rule["expr"]))
            if "alert" in rule:  # its thresholds as `bool` comparisons: every series it weighs, 0 or 1
                out.append((f"rule {rule['alert']} (bool)", _THRESHOLD.sub(r"\1 bool \2", rule["expr"])))
    return out


def test_dashboards_and_rules_answer_the_same_on_three_shards_as_on_one_replica(
    sandbox: Sandbox,  # noqa: F811
    databases: Iterator[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    queries = _queries()
    assert len({q for q in queries if q[0].startswith(FIGURE_DASHBOARDS)}) >= 20
    assert sum(q[0].endswith("(bool)") for q in queries) >= 6

    store_a, store_b = next(databases), next(databases)
    _sync_all(sandbox, _config(tmp_path, sandbox, store_a, "single"), None)
    _sync_all(sandbox, _config(tmp_path, sandbox, store_b, "sharded"), [(0, 3), (1, 3), (2, 3)])

    def serve(name: str, store: str, flags: tuple[str, ...] = ()) -> Serve:
        port = free_port()
        # an hour between polls: the pass on start is an idle one (the single replica) or skipped
        # (the shards polled their scopes minutes ago), and nothing changes while compared
        config = _config(tmp_path, sandbox, store, name, listen=f"127.0.0.1:{port}", poll_interval="1h")
        return Serve(config, port, tmp_path / f"{name}.log", flags)

    serves = [serve("serve_single", store_a)] + [
        serve(f"serve_shard{i}", store_b, ("--shard", str(i), "--total-shards", "3")) for i in range(3)
    ]
    proms: list[Prometheus] = []
    try:
        # started at once: each slides its rolling windows on from its first figures (at most a
        # minute apart), so the four processes' windows end within a second or two of each other
        with ThreadPoolExecutor(len(serves)) as pool:
            list(pool.map(Serve.start, serves))
        rules = [RULES_FILE]
        proms = [Prometheus([f"127.0.0.1:{serves[0].port}"], rules)]
        proms.append(Prometheus([f"127.0.0.1:{s.port}" for s in serves[1:]], rules))
        single, sharded = proms
        # two scrapes of every target, then an evaluation of every rule group after them
        for prom, targets in ((single, 1), (sharded, 3)):
            enough = f"count(count_over_time(up[1m]) >= 2 and up == 1) == {targets}"
            wait_until(lambda p=prom, e=enough: p.query(e), 30, f"two scrapes of {targets} target(s)")
        scraped = time.time()
        wait_until(lambda: all(_evaluated_since(p, scraped) for p in proms), 30, "a rule evaluation after them")
        at = round(time.time(), 3)

        assert _answer(sharded, "count(cycletime_shard_info)", at) == {(): 3.0}
        total = "sum(cycletime_deployments_total)"
        naive = _answer(single, total, at)
        assert naive and naive[()] > 0 and _differences(total, naive, _answer(sharded, total, at)) == []

        problems: list[str] = []
        answered = 0
        for what, expr in queries:
            a = _answer(single, expr, at)
            answered += bool(a)
            problems += _differences(f"{what}: {' '.join(expr.split())}", a, _answer(sharded, expr, at))
        assert not problems, "answers differ across shards:\n" + "\n".join(problems)
        assert answered >= len(queries) // 2, "most queries must have an answer to compare"
    finally:
        for prom in proms:
            prom.stop()
        for s in serves:
            if s.proc is not None and s.proc.poll() is None:
                s.stop()
