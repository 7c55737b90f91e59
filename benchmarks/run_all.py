"""`make bench`: the benchmarks in turn, after the machine they run on (copy both into RESULTS.md).

API requests, the request plan against its minimum, the peers, sync throughput and a sync at a
real network's latency against the sandbox, then compute, scrape and memory over synthetic stores.
A failing benchmark is reported and the others still run; the exit code says so.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the benchmarks import each other (bench_api, synthetic) by module name
sys.path.insert(1, str(HERE.parent))  # and the collector, when run without an installed package


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory = next(
        (
            int(line.split()[1]) / 1024**2
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        float("nan"),
    )
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), {memory:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def benchmarks() -> list[tuple[str, Callable[[], None]]]:
    import bench_api
    import bench_backfill
    import bench_big_answer
    import bench_compute
    import bench_latency
    import bench_memory
    import bench_peers
    import bench_plan
    import bench_scrape
    import bench_steady
    import bench_throughput

    return [
        ("api requests", lambda: bench_api.main([10_000, 30_000])),
        ("request plan vs minimum", lambda: bench_plan.main([2_000, 10_000])),
        ("peers", lambda: bench_peers.main(["--runs", "3", "2000", "10000"])),
        ("sync throughput", lambda: bench_throughput.main(10_000, with_profile=False, runs=5)),
        ("real latency", lambda: bench_latency.main(10_000, "50ms", runs=1)),
        ("compute", bench_compute.main),
        ("scrape", bench_scrape.main),
        ("memory", bench_memory.main),
        ("one very large answer", bench_big_answer.main),
        ("steady state", lambda: bench_steady.main(50)),
        ("backfill", lambda: bench_backfill.main([])),
    ]


def main() -> int:
    print(machine(), flush=True)
    failed = []
    for name, run in benchmarks():
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
