"""Recompute every figure for 10k, 100k and 1M completed items. Target: < 2 s at 1M, roughly linear.

Then the same with one item in ten released through its own pull request (ready, reviewed, merged,
deployed 50 to a deployment): request-to-release, change lead time and both stage breakdowns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from synthetic import released, table

from collector.compute import Figures, change_figures, compute, compute_tables
from collector.linking import ChangeTable
from collector.table import WorkItemTable


def timed(run: Callable[[], Figures]) -> tuple[float, Figures]:
    """Median seconds of 3 runs, and the figures."""
    runs, figures = [], Figures()
    for _ in range(3):
        start = time.perf_counter()
        figures = run()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), figures


def both(data: WorkItemTable, columns: ChangeTable) -> Figures:
    return compute_tables(data, change_figures(columns))


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
    print("compute: the same items, one in ten released through a reviewed PR (stages included), median of 3:")
    print("  from records: compute() over Change/Deployment/Link objects (a ChangeTable built each call);")
    print("  from columns: the ChangeTable the store loads, change_figures + compute_tables (a refresh after")
    print("  changes arrived); items only: compute_tables with change_figures kept (after items alone changed)")
    print(f"{'items':>10} {'released':>9} {'from records':>13} {'from columns':>13} {'items only':>11} {'stages':>9}")
    for n in (100_000, 1_000_000):
        data = table(n)
        changes, deployments, links = released(n)
        columns = ChangeTable.from_records(changes, deployments, links)
        kept = change_figures(columns)
        records, figures = timed(partial(compute, data, changes, deployments, links))
        assert figures.request_to_release.count() == len(changes)
        from_columns, again = timed(partial(both, data, columns))
        items_only, _ = timed(partial(compute_tables, data, kept))
        assert again.request_to_release.count() == len(changes)
        stages = figures.request_stages.count() + figures.change_stages.count()
        print(f"{n:>10,} {len(changes):>9,} {records:>13.3f} {from_columns:>13.3f} {items_only:>11.3f} {stages:>9,}")


if __name__ == "__main__":
    main()
