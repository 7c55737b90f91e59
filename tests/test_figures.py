"""collector/figures.py: when figures are computed, readiness, the monthly trend and the headline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fixture_data import NOW, a_year_of_releases, load, year_item

from collector.compute import compute, window_quantiles
from collector.config import parse_config
from collector.figures import FigureCache, Settings, headline, month_ends, trend
from collector.model import Batch
from collector.runner import POLL_BUCKETS
from collector.store import Store

DAY = 86400.0
CONFIG = """
store: sqlite:///unused.db
sources:
  - {name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}
  - {name: pipelines, kind: azure_pipelines, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/store.db")


def settings() -> Settings:
    return Settings.from_config(parse_config(CONFIG, {}))


def synced(store: Store, name: str) -> None:
    store.record_poll(
        name,
        ok=True,
        started_at=NOW.timestamp(),
        duration=1.0,
        bounds=POLL_BUCKETS,
        items=1,
        error=None,
        rate_limit_remaining=None,
    )


def test_ready_only_once_the_figures_include_every_sources_first_pass(store: Store) -> None:
    figures = FigureCache(store, settings(), clock=NOW.timestamp)
    figures.refresh()
    assert figures.ready(store.statuses()) == (False, "not synced yet: boards, pipelines")
    load(store)  # boards' pass commits its data, then its status
    synced(store, "boards")
    figures.refresh()
    ready, why = figures.ready(store.statuses())
    assert not ready and why == "not synced yet: pipelines"
    synced(store, "pipelines")  # every source synced, but the published figures predate that
    ready, why = figures.ready(store.statuses())
    assert not ready and "figures not computed" in why
    snapshot = figures.refresh()
    assert figures.ready(store.statuses()) == (True, "ready")
    assert snapshot.figures.deployments  # ...and they hold what the passes brought


def test_a_pass_that_brought_nothing_new_still_completes_the_figures(store: Store) -> None:
    load(store)
    figures = FigureCache(store, settings(), clock=NOW.timestamp)
    before = figures.refresh()
    synced(store, "boards")
    synced(store, "pipelines")
    after = figures.refresh()
    assert after.figures is before.figures  # nothing recomputed: the data version did not move
    assert figures.ready(store.statuses()) == (True, "ready")


def test_windows_slide_only_after_max_age_and_data_loads_only_when_it_changed(store: Store) -> None:
    load(store)
    clock = [NOW.timestamp()]
    figures = FigureCache(store, settings(), clock=lambda: clock[0], max_age=60)
    first = figures.refresh()
    clock[0] += 30
    assert figures.refresh().now == first.now
    clock[0] += 60
    slid = figures.refresh()
    assert slid.now == clock[0] and slid.figures is first.figures
    store.commit("boards", Batch(work_items=[year_item("99", NOW - timedelta(days=3), NOW - timedelta(days=1))]))
    assert figures.refresh().figures is not first.figures


def test_month_ends_are_month_starts_and_now() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
    ends = month_ends(now, 4)
    assert [m for m, _ in ends] == ["2025-12", "2026-01", "2026-02", "2026-03"]
    assert ends[0][1] == datetime(2026, 1, 1, tzinfo=UTC).timestamp() and ends[-1][1] == now


def test_the_trend_is_the_30_day_window_at_each_month_end(store: Store) -> None:
    now = NOW
    a_year_of_releases(store, now)
    links = store.links()
    table = store.work_item_table({link.work_item for link in links})
    figures = compute(table, store.changes(), store.deployments(), links)
    points = trend(figures, now.timestamp())
    assert len(points) == 12 and points[-1].end == now.timestamp()
    assert all(p.request_to_release is not None and p.cycle_time is not None for p in points[1:])
    for point in points:
        # the --at reading: every figure as it stood at the month's end, then its 30-day window
        then = compute(table, store.changes(), store.deployments(), links, as_of=point.end)
        r2r = np.vstack(list(then.request_to_release.by_labels.values()))
        expected = window_quantiles(r2r, point.end, 30 * DAY, [0.85])
        assert point.request_to_release == expected.quantiles.get(0.85)
        assert point.request_to_release_count == expected.count


def test_the_headline_pools_a_projects_teams_and_counts_production_deployments(store: Store) -> None:
    a_year_of_releases(store, NOW)
    links = store.links()
    figures = compute(
        store.work_item_table({link.work_item for link in links}), store.changes(), store.deployments(), links
    )
    top = headline(figures, NOW.timestamp())
    assert {p.project for p in top.projects} == {"Fabrikam", "Tailspin"}
    values = [p.p85 for p in top.projects]
    assert values == sorted(values, reverse=True)
    # deployments 2 days after completions every 3.5 days: those finished in (now - 30d, now]
    finished = [NOW - timedelta(days=3.5 * n - 2) for n in range(1, 105)]
    recent = [n for n, t in zip(range(1, 105), finished, strict=True) if NOW - timedelta(days=30) < t <= NOW]
    assert top.deployments_failed == sum(1 for n in recent if n % 10 == 0)
    assert top.deployments_succeeded == len(recent) - top.deployments_failed
