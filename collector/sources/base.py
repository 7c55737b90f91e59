"""The one small protocol every source implements (STYLE.md: adding a source = a file + a line).

A source reads what changed since the store's watermark for each of its streams, normalises it
into the domain model and hands each batch to the store together with the watermark the batch
reaches, in one transaction (``store.commit``). A crash between batches therefore loses nothing
and repeats nothing that matters: re-reading a page is an idempotent upsert.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from collector.http import ApiTelemetry

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def matches_environment(name: str, patterns: list[str]) -> bool:
    """``production_environments``: exact names (case-insensitive, as Azure DevOps and GitHub treat
    environment names) or ``/regex/`` searched as written (config validation compiles them)."""
    for pattern in patterns:
        if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
            if re.search(pattern[1:-1], name):
                return True
        elif pattern.casefold() == name.casefold():
            return True
    return False


@dataclass
class SourceContext:
    """What a source needs from the process around it; injectable for tests."""

    history: timedelta = timedelta(days=365)
    telemetry: ApiTelemetry = field(default_factory=ApiTelemetry)
    #: called with the number of records fetched, for the progress display
    progress: Callable[[int], None] = lambda n: None
    now: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    #: raised inside a sync when the process is shutting down, between batches
    should_stop: Callable[[], bool] = lambda: False

    def history_start(self) -> datetime:
        return self.now() - self.history


@dataclass
class SyncReport:
    """What one pass did, for the landing page and the logs."""

    items: int = 0
    batches: int = 0
    #: per-part problems that did not stop the pass (e.g. one repository 404s)
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Source(ABC):
    kind: ClassVar[str]

    def __init__(self, config: Any, ctx: SourceContext) -> None:
        self.config = config
        self.name: str = config.name
        self.ctx = ctx

    @abstractmethod
    def sync(self, store: Any) -> SyncReport:
        """One incremental pass over every stream; raises SourceError if the source is unusable.

        Partial problems (one repository of several unreadable) go into ``SyncReport.problems``;
        the scheduler reports the source as down when there are any, but keeps what was read.
        """
