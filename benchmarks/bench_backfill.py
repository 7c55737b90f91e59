"""`cycletime backfill` speed: 365 daily steps over a store of N work items (default 100,000).

The store is a real SQLite file: N completed work items over the last year (synthetic.py), plus
deployments of 6 services to staging and production twice a working day, one change per
production deployment and a link from every third work item to a change, written through
``Store.commit`` with model objects. Target: <= 30 s for 100,000 items and 365 steps on 2 cores,
growing linearly with steps x items.

    PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/bench_backfill.py [N] [--steps 365]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from synthetic import sqlite_store

from collector.backfill import backfill, step_times
from collector.figures import Settings
from collector.model import Batch, Change, Deployment, Link
from collector.store import Store

DAY = 86400.0
SETTINGS = Settings(
    windows=(("7d", 7 * DAY), ("30d", 30 * DAY), ("90d", 90 * DAY)),
    quantiles=(0.5, 0.85, 0.95),
    sources=("boards", "pipelines"),
)


def delivery_batch(n_items: int, now: float, seed: int = 3) -> Batch:
    rng = np.random.default_rng(seed)
    changes, deployments, links = [], [], []
    for day in range(365):
        for service in range(6):
            for k in range(2):
                finished = now - 365 * DAY + day * DAY + (9 + 4 * k) * 3600 + float(rng.random()) * 3600
                when = datetime.fromtimestamp(finished, UTC)
                sha = f"{service:02x}{day:04x}{k:02x}"
                change_ref = f"change:svc{service}:{day}:{k}"
                changes.append(
                    Change(
                        "pipelines",
                        change_ref,
                        change_ref,
                        f"svc-{service}",
                        "pull_request",
                        datetime.fromtimestamp(finished - float(rng.exponential(3 * DAY)), UTC),
                        when,
                        (sha,),
                    )
                )
                for env, production in (("staging", False), ("production", True)):
                    status = "failure" if rng.random() < 0.1 else "success"
                    deployments.append(
                        Deployment(
                            "pipelines",
                            f"{sha}-{env}",
                            f"svc-{service}",
                            env,
                            production,
                            status,
                            None,
                            when,
                            sha,
                            (f"commit:{sha}",),
                        )
                    )
    for i in range(0, n_items, 3):
        change = changes[(i * 7) % len(changes)]
        links.append(Link("boards", f"ado:{i}", change.ref))
    return Batch(changes=changes, deployments=deployments, links=links)


def _cpu_seconds() -> float:
    """CPU time of this process and its (forked) workers: the figure other load cannot inflate."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="?", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=365)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url = sqlite_store(Path(tmp) / "store.db", args.items)
        store = Store(url)
        now = time.time()
        store.commit("pipelines", delivery_batch(args.items, now))
        print(
            f"store: {args.items:,} work items + a year of deliveries written in "
            f"{time.perf_counter() - started:.1f} s (not part of the figure)"
        )
        times = step_times(now - args.steps * DAY, now, DAY)
        out = Path(tmp) / "history.om"
        cpu_before = _cpu_seconds()
        with out.open("w", encoding="utf-8") as handle:
            result = backfill(store, SETTINGS, times, handle)
        cpu = _cpu_seconds() - cpu_before
        store.close()
        print(
            f"backfill: {result.steps} steps, {args.items:,} work items, {result.series:,} series, "
            f"{result.samples:,} samples, {out.stat().st_size / 1e6:.0f} MB: {result.seconds:.1f} s "
            f"({result.seconds / result.steps * 1000:.0f} ms per step) on {os.cpu_count()} CPUs; "
            f"{cpu:.1f} CPU seconds (1-minute load average: {os.getloadavg()[0]:.1f})"
        )
        print("target: <= 30 s for 365 steps at 100,000 work items")


if __name__ == "__main__":
    main()
