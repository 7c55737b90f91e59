"""Steady state at scale: what idle passes and small changes cost a collector holding N items.

A `serve` process spends its life polling sources that mostly answer "nothing new". This measures,
in one process holding N completed items (four revisions each) in a real SQLite store:

- the first refresh (store load + compute), wall seconds;
- an idle pass: what the runner writes for a pass that found nothing (status, request counts,
  watermark) followed by the refresh the scheduler triggers, CPU seconds (median of the idle passes);
- a refresh after 1% of the items changed (a new revision each), wall seconds including the store
  reads (median; its CPU seconds beside it, the figure other load on the machine cannot inflate):
  the rows written since the last refresh merged into the kept table, then compute;
- the process's RSS high-water mark (``VmHWM``, the peak, not a sample; see ``rss.py``) over all passes;
- for comparison, after the passes: one full reload (what the first refresh, or a fallback, costs
  with figures already published), wall seconds, and the high-water mark it leaves.

Targets (at 1M items): idle pass < 0.5 CPU-s, refresh after a 1% change < 2 s, RSS high-water < 400 MB.
The largest size is measured twice: items alone, and with one in ten released through its own
pull request (``synthetic.released``: 100k changes, 2,000 deployments at 1M); there each 1% change
also brings a pull request for a tenth of the changed items (1% more changes), their links and the
deployment that shipped them, so changes, deployments and links are read again too.
Usage: ``bench_steady.py [PASSES] [ITEMS ...]`` (defaults 50, then 100,000 and 1,000,000; every 10th
pass changes 1%).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rss import high_water_mb

ROOT = Path(__file__).resolve().parents[1]


def measure(url: str, n: int, passes: int, released_every: int = 0) -> dict[str, float]:
    from collector.figures import FigureCache, Settings
    from collector.model import Batch, Category, Change, Deployment, Link, StateChange, WorkItem, ado_ref
    from collector.runner import POLL_BUCKETS
    from collector.store import Store

    store = Store(url)
    settings = Settings(
        (("7d", 7 * 86400.0), ("30d", 30 * 86400.0), ("90d", 90 * 86400.0)), (0.5, 0.85, 0.95), ("boards",)
    )
    cache = FigureCache(store, settings)
    start = time.perf_counter()
    cache.refresh(force=True)
    first = time.perf_counter() - start
    idle_cpu, change_wall, change_cpu = [], [], []
    for p in range(passes):
        if p % 10 == 9:  # 1% of the items move on: a new revision each
            now = datetime.now(UTC)
            changed = [
                WorkItem(
                    "boards",
                    str(i),
                    ado_ref(i),
                    "Fabrikam",
                    f"team-{i % 20}",
                    "User Story",
                    datetime.fromtimestamp(0, UTC),
                    (StateChange(str(i), 100 + p, now, "Closed", Category.COMPLETED),),
                )
                for i in range(p, n, 100)
            ]
            store.commit("boards", Batch(work_items=changed))
            if released_every:
                # with releases, a tenth of the changed items also gets a new pull request, merged and
                # shipped now by one new deployment: 1% more changes, and the links and deployment
                prs = [
                    Change(
                        "github",
                        f"p{p}-{i}",
                        f"ghpr:o/r#p{p}-{i}",
                        "o/r",
                        "pull_request",
                        now,
                        now,
                        (f"{p:08x}{i:032x}",),
                        now,
                        now,
                    )
                    for i in range(p, n, 100)
                    if (i // 100) % 10 == 0
                ]
                links = [Link("github", ado_ref(c.native_id.split("-")[1]), c.ref) for c in prs]
                store.commit("github", Batch(changes=prs, links=links))
                contains = tuple(f"commit:{c.commits[0]}" for c in prs)
                shipped = Deployment("p", f"p{p}", "web", "production", True, "success", None, now, None, contains)
                store.commit("p", Batch(deployments=[shipped]))
            start, cpu = time.perf_counter(), time.process_time()
            snapshot = cache.refresh()
            change_wall.append(time.perf_counter() - start)
            change_cpu.append(time.process_time() - cpu)
            assert snapshot.version == store.data_version, "the change was taken in"
            continue
        cpu = time.process_time()
        store.add_api_requests("boards", Counter({"200": 1}))
        store.record_poll(
            "boards",
            ok=True,
            started_at=time.time(),
            duration=0.1,
            bounds=POLL_BUCKETS,
            items=0,
            error=None,
            rate_limit_remaining=None,
        )
        store.set_watermark("boards", "revisions", f"token-{p}")
        cache.refresh()
        idle_cpu.append(time.process_time() - cpu)
    peak_mb = high_water_mb()
    start = time.perf_counter()
    cache.refresh(force=True)
    return {
        "first": first,
        "idle_cpu": statistics.median(idle_cpu),
        "change_wall": statistics.median(change_wall) if change_wall else float("nan"),
        "change_cpu": statistics.median(change_cpu) if change_cpu else float("nan"),
        "peak_mb": peak_mb,
        "full_wall": time.perf_counter() - start,
        "full_peak_mb": high_water_mb(),
    }


def run(n: int, passes: int, released_every: int = 0) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import sqlite_store

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        url = sqlite_store(Path(tmp) / "store.db", n, released_every=released_every)
        what = f", one in {released_every} released" if released_every else ""
        print(f"steady: built a store of {n:,} items{what} in {time.perf_counter() - start:.0f} s", flush=True)
        # measured in a fresh process, so its peak RSS is the collector's, not the builder's
        done = subprocess.run(
            [sys.executable, __file__, "--measure", url, str(n), str(passes), str(released_every)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return {k: float(v) for k, v in (line.split("=", 1) for line in done.stdout.split())}


def main(passes: int = 50, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> None:
    """Each size, then the largest again with one item in ten released through its own pull request
    (100k changes and their deployments at 1M: the figures a real store feeds, not items alone)."""
    rows = [(n, 0) for n in sizes] + [(sizes[-1], 10)]
    results = [(n, every, run(n, passes, every)) for n, every in rows]
    print(
        f"{'items':>10} {'released':>9} {'passes':>6} {'first refresh s':>16} {'idle pass CPU s':>16} "
        f"{'1% change s':>12} {'(CPU s)':>8} {'RSS high-water MB':>18} {'full reload s':>14} {'after it MB':>12}"
    )
    for n, every, f in results:
        print(
            f"{n:>10,} {n // every if every else 0:>9,} {passes:>6} {f['first']:>16.2f} {f['idle_cpu']:>16.3f} "
            f"{f['change_wall']:>12.2f} {f['change_cpu']:>8.2f} {f['peak_mb']:>18.0f} {f['full_wall']:>14.2f} "
            f"{f['full_peak_mb']:>12.0f}"
        )
    print("targets at 1M items: idle pass < 0.5 CPU s; refresh after a 1% change < 2 s; RSS high-water < 400 MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        result = measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        print(" ".join(f"{k}={v}" for k, v in result.items()))
    else:
        args = [int(a) for a in sys.argv[1:]]
        main(*args[:1], *([tuple(args[1:])] if args[1:] else []))
