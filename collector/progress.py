"""Progress of a sync pass: a live table on a terminal (rich), nothing extra otherwise (JSON logs)."""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is loaded by the live display only: the daemon imports Plan, not rich
    from rich.live import Live
    from rich.table import Table

#: the length of a rate-limit window when the API does not say (GitHub's primary limit: an hour)
WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Plan:
    """How far a pass is through the work it knows of, and what it has spent of its budget."""

    done: int
    total: int
    #: requests sent so far in the pass
    spent: int = 0
    #: the budget left in the current window, its limit and reset (Unix time), when the API reports one
    remaining: float | None = None
    limit: float | None = None
    reset_at: float | None = None
    #: the share of each window never spent (``rate_limit_reserve``)
    reserve: float = 0.0


def eta_seconds(plan: Plan, elapsed: float, now: float, window: float = WINDOW_SECONDS) -> float | None:
    """Seconds until the pass is done: the pace so far, or the budget's windows when the budget is
    what holds it back. None until there is a pace to go by.

    The requests still needed are the requests per unit so far times the units left; what the
    current window has above its reserve pays for the first of them, each later window for
    ``limit * (1 - reserve)``.
    """
    if plan.done <= 0 or elapsed <= 0:
        return None
    left = max(plan.total - plan.done, 0)
    by_pace = elapsed / plan.done * left
    if not left or plan.remaining is None or not plan.limit or plan.reset_at is None or plan.spent <= 0:
        return by_pace
    needed = plan.spent / plan.done * left
    usable = max(plan.remaining - plan.reserve * plan.limit, 0.0)
    if needed <= usable:
        return by_pace
    per_window = plan.limit * (1 - plan.reserve)
    windows = math.ceil((needed - usable) / per_window) if per_window > 0 else 0
    return max(by_pace, max(plan.reset_at - now, 0.0) + (windows - 1) * window)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class Progress:
    def __init__(self, sources: list[str], enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.counts = dict.fromkeys(sources, 0)
        self.state = dict.fromkeys(sources, "waiting")
        self.started: dict[str, float] = {}
        self.plans: dict[str, Plan] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live:
            self._live.update(self._table())
            self._live.__exit__(exc_type, exc, tb)

    def start(self, name: str) -> None:
        with self._lock:
            self.state[name] = "syncing"
            self.started[name] = time.monotonic()
        self._refresh()

    def advance(self, name: str, n: int) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n
        self._refresh()

    def plan(self, name: str, plan: Plan) -> None:
        with self._lock:
            self.plans[name] = plan
        self._refresh()

    def finish(self, name: str, ok: bool) -> None:
        with self._lock:
            self.state[name] = "done" if ok else "failed"
        self._refresh()

    def _refresh(self) -> None:
        if self._live:
            self._live.update(self._table())

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(title="cycletime sync")
        for col in ("source", "state", "records", "records/s", "done", "ETA"):
            table.add_column(col)
        for name, count in self.counts.items():
            elapsed = time.monotonic() - self.started[name] if name in self.started else 0
            rate = f"{count / elapsed:.0f}" if elapsed > 0 else "-"
            plan = self.plans.get(name)
            done = f"{plan.done}/{plan.total}" if plan else "-"
            eta = _duration(eta_seconds(plan, elapsed, time.time())) if plan and self.state[name] == "syncing" else "-"
            table.add_row(name, self.state[name], str(count), rate, done, eta)
        return table
