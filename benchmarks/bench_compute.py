"""Recompute every figure for 10k, 100k and 1M completed items. Target: < 2 s at 1M, roughly linear.

Then the same with one item in ten released through its own pull request (ready, reviewed, merged,
deployed 50 to a deployment): request-to-release, change lead time and both stage breakdowns."""

from __future__ import annotations

import statistics
import time

from synthetic import released, table

from collector.compute import compute


def main() -> None:
    print("compute: all figures over N completed items (4 revisions each), median of 3 runs")
    print(f"{'items':>10} {'seconds':>9} {'items/s':>12} {'growth vs previous (x10 items)':>32}")
    previous = None
    for n in (10_000, 100_000, 1_000_000):
        data = table(n)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            figures = compute(data, [], [], [])
            runs.append(time.perf_counter() - start)
        assert figures.lead_time.count() == n
        median = statistics.median(runs)
        growth = f"{median / previous:.1f}x" if previous else "-"
        print(f"{n:>10,} {median:>9.3f} {n / median:>12,.0f} {growth:>32}")
        previous = median
    print("target: < 2 s at 1,000,000 items; ~10x time per 10x items is linear")
    print()
    print("compute: the same items, one in ten released through a reviewed PR (stages included), median of 3")
    print(f"{'items':>10} {'released':>9} {'seconds':>9} {'stage observations':>19}")
    for n in (100_000, 1_000_000):
        data = table(n)
        changes, deployments, links = released(n)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            figures = compute(data, changes, deployments, links)
            runs.append(time.perf_counter() - start)
        assert figures.request_to_release.count() == len(changes)
        stages = figures.request_stages.count() + figures.change_stages.count()
        print(f"{n:>10,} {len(changes):>9,} {statistics.median(runs):>9.3f} {stages:>19,}")


if __name__ == "__main__":
    main()
