"""Progress of a sync pass: a live table on a terminal (rich), nothing extra otherwise (JSON logs)."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table


class Progress:
    def __init__(self, sources: list[str], enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.counts = dict.fromkeys(sources, 0)
        self.state = dict.fromkeys(sources, "waiting")
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
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

    def finish(self, name: str, ok: bool) -> None:
        with self._lock:
            self.state[name] = "done" if ok else "failed"
        self._refresh()

    def _refresh(self) -> None:
        if self._live:
            self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title="cycletime sync")
        for col in ("source", "state", "records", "records/s"):
            table.add_column(col)
        for name, count in self.counts.items():
            elapsed = time.monotonic() - self.started[name] if name in self.started else 0
            rate = f"{count / elapsed:.0f}" if elapsed > 0 else "-"
            table.add_row(name, self.state[name], str(count), rate)
        return table
