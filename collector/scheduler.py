"""APScheduler: one job per source at its poll_interval, with jitter, never two at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.runner import PassResult, Runner

log = logging.getLogger(__name__)


def build_scheduler(runner: Runner, after_pass: Callable[[PassResult], None]) -> BackgroundScheduler:
    """Each source polls on its own interval; the first pass starts immediately.

    ``max_instances=1`` + ``coalesce`` mean a slow pass delays the next instead of stacking up;
    jitter (10% of the interval, at most a minute) spreads sources that share an interval so they
    don't hit one API at the same second.
    """
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max(2, len(runner.sources)))},
                                    timezone=UTC)
    for cfg in runner.config.sources:
        interval = runner.config.interval_of(cfg).total_seconds()

        def job(name: str = cfg.name) -> None:
            after_pass(runner.run(name))

        scheduler.add_job(job, IntervalTrigger(seconds=interval, jitter=min(60, int(interval * 0.1))),
                          id=cfg.name, name=f"poll {cfg.name}", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(UTC), misfire_grace_time=int(interval))
    return scheduler
