"""Sync throughput: records stored per second by a full sync, against the floor of fetching the same pages.

The floor is the same requests (every method, URL and body our sources sent, recorded with a
``requests`` response hook) replayed with a plain ``requests.Session`` and ``json.loads`` and nothing
else: no normalisation, no store. The sandbox runs in its own process (``cycletime sandbox``), so
it does not compete with the client for the GIL. Our figure is the second full sync (a fresh
store), so both sides meet a warm sandbox. Each sync freezes the heap it starts with, as ``cycletime
sync`` does (``freeze_startup_heap``); the floor, run after the first one, finds it frozen too.
Targets: ours >= 0.5 x the floor's speed, and our client CPU (HTTP, decoding, normalising, storing)
<= 1.15 x the floor's (HTTP and decoding only).

Usage: ``bench_throughput.py [WORK_ITEMS] [--runs N] [--profile]``: N pairs of (floor, our sync)
alternating, their min and median; ``--profile`` adds a cProfile run and prints where the time goes.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from bench_api import SandboxProcess, organisation_config

from collector.cli import freeze_startup_heap
from collector.http import ApiClient
from collector.runner import Runner
from collector.sources.base import Source
from collector.store import Store

Recorded = tuple[str, str | bytes | None, str, dict[str, str]]  # method, body, url, headers


def api_clients(source: Source) -> list[ApiClient]:
    """The shared HTTP clients a source holds (directly, or inside its small REST wrappers)."""
    found: list[ApiClient] = []
    for value in vars(source).values():
        for candidate in (value, *vars(value).values()) if hasattr(value, "__dict__") else (value,):
            if isinstance(candidate, ApiClient) and candidate not in found:
                found.append(candidate)
    return found


def stored_records(store: Store) -> int:
    digest = store.content_digest()
    return sum(len(digest[t]) for t in ("work_items", "state_changes", "changes", "deployments", "links"))


def sync(
    sandbox: SandboxProcess, tmp: Path, name: str, record: dict[str, list[Recorded]] | None = None
) -> tuple[dict[str, tuple[float, float]], int]:
    """A full sync into a fresh store: ((wall, client CPU) seconds per source, records stored).

    Serial (one request in flight), like the floor it is compared with: the recording hooks sit on
    each client's own session, which the concurrent workers' sessions would bypass."""
    config = organisation_config(sandbox.url, f"sqlite:///{tmp}/{name}.db", max_concurrency=1)
    store = Store(config.store)
    runner = Runner(config, store)
    freeze_startup_heap()  # as ``cycletime sync`` and ``serve`` do once their runner is built
    if record is not None:
        for source_name, source in runner.sources.items():
            log = record.setdefault(source_name, [])
            for client in api_clients(source):
                client.session.hooks["response"].append(
                    lambda r, *_a, log=log, **_k: log.append(
                        (r.request.method, r.request.body, r.request.url, dict(r.request.headers))
                    )
                )
    seconds = {}
    for source_name in runner.sources:
        started, cpu = time.perf_counter(), time.process_time()
        result = runner.run(source_name)
        seconds[source_name] = (time.perf_counter() - started, time.process_time() - cpu)
        assert result.ok, f"{source_name}: {result.error}"
    records = stored_records(store)
    store.close()
    return seconds, records


def floor(recorded: dict[str, list[Recorded]]) -> dict[str, tuple[float, float]]:
    """The same requests with nothing but ``requests`` and ``json.loads``: (wall, CPU) seconds per source."""
    session = requests.Session()
    seconds = {}
    for source_name, calls in recorded.items():
        started, cpu = time.perf_counter(), time.process_time()
        for method, body, url, headers in calls:
            resp = session.request(method, url, data=body, headers=headers, timeout=60)
            if resp.status_code == 200:
                json.loads(resp.content)
        seconds[source_name] = (time.perf_counter() - started, time.process_time() - cpu)
    return seconds


def profile(sandbox: SandboxProcess, tmp: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    sync(sandbox, tmp, "profiled")
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(25)
        print(f"\nprofile of a full sync, top 25 by {order}:")
        print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main(work_items: int, with_profile: bool, runs: int = 1) -> None:
    """``runs`` pairs of (floor, our sync), alternating on one warm sandbox, so drift of the machine
    falls on both alike; the verdict is the median of the pairs' client CPU ratios, and the min."""
    sandbox = SandboxProcess(work_items)
    pairs: list[tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            recorded: dict[str, list[Recorded]] = {}
            sync(sandbox, Path(tmp), "recorded", recorded)
            for run in range(runs):
                base = floor(recorded)
                ours, records = sync(sandbox, Path(tmp), f"timed{run}")
                pairs.append((ours, base))
            if with_profile:
                profile(sandbox, Path(tmp))
    finally:
        sandbox.stop()
    calls = {name: len(c) for name, c in recorded.items()}
    print(
        f"throughput: full sync of the sandbox organisation with {work_items:,} work items: {records:,} records "
        f"stored from {sum(calls.values()):,} requests; {runs} run(s), floor and ours alternating"
    )
    ratios = [_table(run + 1, calls, ours, base, records) for run, (ours, base) in enumerate(pairs)]
    cpu = sorted(r[1] for r in ratios)
    print(
        f"client CPU ours / floor over {runs} run(s): min {cpu[0]:.2f} x, median {statistics.median(cpu):.2f} x, "
        f"max {cpu[-1]:.2f} x (target <= 1.15 at the median); speed vs floor median "
        f"{statistics.median(r[0] for r in ratios):.2f} (target >= 0.5)"
    )


def _table(
    run: int,
    calls: dict[str, int],
    ours: dict[str, tuple[float, float]],
    base: dict[str, tuple[float, float]],
    records: int,
) -> tuple[float, float]:
    """One run's table; (speed vs floor, client CPU ratio)."""
    print(
        f"\nrun {run}\n{'source':<20} {'requests':>9} {'ours s':>8} {'floor s':>8} {'speed vs floor':>15} "
        f"{'client CPU s: ours':>19} {'floor':>6}"
    )

    def row(label: str, n: int, mine: tuple[float, float], bare: tuple[float, float]) -> None:
        print(
            f"{label:<20} {n:>9,} {mine[0]:>8.1f} {bare[0]:>8.1f} {bare[0] / mine[0]:>15.2f} {mine[1]:>19.1f} "
            f"{bare[1]:>6.1f}"
        )

    for name in ours:
        row(name, calls[name], ours[name], base[name])
    total = (sum(w for w, _ in ours.values()), sum(c for _, c in ours.values()))
    total_floor = (sum(w for w, _ in base.values()), sum(c for _, c in base.values()))
    row("total", sum(calls.values()), total, total_floor)
    print(
        f"ours: {records / total[0]:,.0f} records/s; floor (requests + json.loads only): "
        f"{records / total_floor[0]:,.0f} records/s; ratio {total_floor[0] / total[0]:.2f} (target >= 0.5)"
    )
    print(
        f"client CPU: ours {total[1]:.1f} s, floor {total_floor[1]:.1f} s: {total[1] / total_floor[1]:.2f} x "
        f"(target <= 1.15)"
    )
    return total_floor[0] / total[0], total[1] / total_floor[1]


def _args(argv: list[str]) -> tuple[int, bool, int]:
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 1
    numbers: Any = [int(a) for i, a in enumerate(argv) if a.isdigit() and (i == 0 or argv[i - 1] != "--runs")]
    return (numbers[0] if numbers else 10_000), "--profile" in argv, runs


if __name__ == "__main__":
    main(*_args(sys.argv[1:]))
