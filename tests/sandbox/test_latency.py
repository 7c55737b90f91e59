"""The sandbox's ``latency`` option: every API answer takes a network's round trip, served concurrently."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from collector.cli import _parser
from sandbox.app import Sandbox, SandboxOptions
from sandbox.server import Latency

NOW = datetime(2025, 6, 1, tzinfo=UTC)
TOKEN = "test-pat"


def get_projects(url: str) -> float:
    started = time.perf_counter()
    resp = requests.get(f"{url}/_apis/projects", auth=("", TOKEN), params={"api-version": "7.1"}, timeout=10)
    assert resp.status_code == 200
    return time.perf_counter() - started


def test_latency_is_jittered_within_its_band_and_seeded() -> None:
    assert Latency(0.05, 0.2, seed=3).draw() == Latency(0.05, 0.2, seed=3).draw()  # same seed, same trips
    many = Latency(0.05, 0.2, seed=3)
    values = [many.draw() for _ in range(500)]
    assert min(values) >= 0.04 and max(values) <= 0.06
    assert max(values) - min(values) > 0.015  # jittered, not constant
    assert Latency(0.0).draw() == 0.0


def test_every_answer_waits_the_latency_and_requests_overlap() -> None:
    options = SandboxOptions(seed=5, work_items=20, token=TOKEN, now=NOW, latency=0.2)
    with Sandbox(options) as sandbox:
        assert get_projects(sandbox.azure_url) >= 0.16
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            seconds = list(pool.map(lambda _: get_projects(sandbox.azure_url), range(16)))
        wall = time.perf_counter() - started
        log = sandbox.server.stats.requests()
    assert min(seconds) >= 0.16
    # sixteen answers of at least 160 ms each in well under 16 x 160 ms: they are served in parallel
    assert wall < 1.2, wall
    assert len(log) == 17
    assert all(r.answered - r.arrived >= 0.15 for r in log)


def test_cli_takes_latency_as_a_duration() -> None:
    assert _parser().parse_args(["sandbox", "--latency", "50ms"]).latency == 0.05
    assert _parser().parse_args(["sandbox"]).latency == 0.0
