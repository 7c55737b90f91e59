"""The sync progress display: done/total, and an ETA from the pace or from the rate budget."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from collector.progress import Plan, Progress, eta_seconds

NOW = 1_800_000_000.0


def test_without_a_budget_the_eta_follows_the_pace() -> None:
    assert eta_seconds(Plan(done=3, total=12), elapsed=30, now=NOW) == pytest.approx(90)
    assert eta_seconds(Plan(done=0, total=12), elapsed=30, now=NOW) is None  # no pace yet
    assert eta_seconds(Plan(done=12, total=12, spent=500), elapsed=30, now=NOW) == 0


def test_a_budget_that_pays_for_the_rest_does_not_slow_the_eta() -> None:
    plan = Plan(done=3, total=6, spent=300, remaining=4000, limit=5000, reset_at=NOW + 1200, reserve=0.1)
    assert eta_seconds(plan, elapsed=60, now=NOW) == pytest.approx(60)  # 300 more requests: affordable


def test_a_budget_too_small_for_the_rest_puts_the_eta_at_its_windows() -> None:
    # 3 of 12 streams cost 4,500 requests: 13,500 to go; the window has 500 above its reserve of 500,
    # then each window pays 4,500: the third window from the reset (in 20 minutes) finishes the pass
    plan = Plan(done=3, total=12, spent=4500, remaining=1000, limit=5000, reset_at=NOW + 1200, reserve=0.1)
    assert eta_seconds(plan, elapsed=600, now=NOW) == pytest.approx(1200 + 2 * 3600)


def test_the_table_shows_done_of_total_and_the_eta() -> None:
    progress = Progress(["github", "boards"], enabled=False)
    progress.start("github")
    progress.plan("github", Plan(done=4, total=9))
    out = io.StringIO()
    Console(file=out, width=200).print(progress._table())
    row = next(line for line in out.getvalue().splitlines() if "github" in line)
    assert "4/9" in row and "syncing" in row
    boards = next(line for line in out.getvalue().splitlines() if "boards" in line)
    assert "/" not in boards  # no plan: no done/total
