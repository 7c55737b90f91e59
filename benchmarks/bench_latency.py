"""Azure DevOps full sync on a network with real latency: bounded concurrency against serial.

The sandbox runs as its own process with ``--latency`` (50 ms ±20 % per answer, seeded), as a
real organisation answers across the internet, where a local sandbox's ~2 ms per request hides
what a serial pass costs. The two Azure DevOps projects (Boards + Pipelines each) are synced into
a fresh store once with ``max_concurrency: 1`` (one request at a time) and once with the default
(4 in flight per organisation); both must send the same requests (counted by the sandbox, per
endpoint) and store the same rows. Each source is run in turn by ``collector.runner.Runner``.

Target: the default's wall time <= 0.35 x the serial one.

Usage: ``bench_latency.py [WORK_ITEMS] [--latency 50ms] [--runs N]`` (default 2,000 items, 1 run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_api import SandboxProcess, endpoints, organisation_config

from collector.runner import Runner
from collector.sources.azure_common import DEFAULT_CONCURRENCY
from collector.store import Store

TARGET = 0.35


def sync(sandbox: SandboxProcess, store_path: Path, concurrency: int) -> tuple[float, dict[str, int], Any]:
    """A full sync of the Azure DevOps sources: (wall seconds, requests per endpoint, store content)."""
    config = organisation_config(sandbox.url, f"sqlite:///{store_path}")
    config.sources[:] = [
        s.model_copy(update={"max_concurrency": concurrency}) for s in config.sources if s.kind.startswith("azure")
    ]
    store = Store(config.store)
    runner = Runner(config, store)
    before = sandbox.stats()
    started = time.perf_counter()
    for name in runner.sources:
        result = runner.run(name)
        assert result.ok, f"{name}: {result.error}"
    wall = time.perf_counter() - started
    requests = endpoints(before, sandbox.stats())
    content = store.content_digest()
    store.close()
    return wall, requests, content


def main(work_items: int, latency: str, runs: int) -> dict[str, float]:
    sandbox = SandboxProcess(work_items, latency=latency)
    walls: dict[int, list[float]] = {DEFAULT_CONCURRENCY: [], 1: []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(runs):
                # the concurrent pass first: it meets the colder sandbox, which only flatters serial
                seen = {}
                for concurrency in (DEFAULT_CONCURRENCY, 1):
                    wall, requests, content = sync(sandbox, Path(tmp) / f"{concurrency}-{run}.db", concurrency)
                    walls[concurrency].append(wall)
                    seen[concurrency] = (requests, content)
                (requests_c, content_c), (requests_s, content_s) = seen[DEFAULT_CONCURRENCY], seen[1]
                assert requests_c == requests_s, f"different requests: {requests_c} vs {requests_s}"
                assert content_c == content_s, "different stores"
    finally:
        sandbox.stop()
    rows = sum(len(content_s[t]) for t in ("work_items", "state_changes", "changes", "deployments", "links"))
    serial, concurrent = statistics.median(walls[1]), statistics.median(walls[DEFAULT_CONCURRENCY])
    print(
        f"latency: Azure DevOps full sync, {work_items:,} work items per project half, {latency} ±20% per answer: "
        f"{sum(requests_s.values()):,} requests (the same for both, per endpoint), {rows:,} rows (the same store)"
    )
    print(f"{'max_concurrency':<16} {'runs':>4} {'wall min s':>10} {'median s':>9} {'requests/s':>10}")
    for concurrency in (1, DEFAULT_CONCURRENCY):
        median = statistics.median(walls[concurrency])
        print(
            f"{concurrency:<16} {runs:>4} {min(walls[concurrency]):>10.1f} {median:>9.1f} "
            f"{sum(requests_s.values()) / median:>10.1f}"
        )
    ratio = concurrent / serial
    print(f"ratio (median, {DEFAULT_CONCURRENCY} in flight / serial): {ratio:.3f} (target <= {TARGET})")
    return {"serial": serial, "concurrent": concurrent, "ratio": ratio}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("work_items", type=int, nargs="?", default=2_000)
    parser.add_argument("--latency", default="50ms")
    parser.add_argument("--runs", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _args()
    main(args.work_items, args.latency, args.runs)
