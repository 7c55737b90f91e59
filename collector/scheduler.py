"""APScheduler: one job per source at its poll_interval, with jitter, never two at once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.runner import PassResult, Runner

log = logging.getLogger(__name__)


class DaemonThreadExecutor(BaseExecutor):
    """Runs each job in its own daemon thread.

    APScheduler's thread pool uses concurrent.futures, whose workers the interpreter joins at exit:
    a pass blocked in a network read would hold a stopping process for as long as the read takes.
    ``max_instances=1`` per job keeps the thread count at one per job.
    """

    def __init__(self) -> None:
        super().__init__()
        self._threads: set[threading.Thread] = set()
        self._guard = threading.Lock()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)
            finally:
                with self._guard:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=target, name=f"job {job.id}", daemon=True)
        with self._guard:
            self._threads.add(thread)
        thread.start()

    def join(self, timeout: float | None = None) -> list[str]:
        """Waits up to ``timeout`` seconds for running jobs; returns the names of those still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._guard:
            threads = list(self._threads)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return sorted(t.name for t in threads if t.is_alive())

    def shutdown(self, wait: bool = True) -> None:
        if wait:
            self.join()


class PollScheduler(BackgroundScheduler):
    def __init__(self) -> None:
        self.job_threads = DaemonThreadExecutor()
        super().__init__(executors={"default": self.job_threads}, timezone=UTC)

    def stop(self, grace: float) -> list[str]:
        """Stops scheduling and waits up to ``grace`` seconds for running jobs; returns those still running."""
        self.shutdown(wait=False)
        return self.job_threads.join(grace)


def build_scheduler(runner: Runner, after_pass: Callable[[PassResult], None]) -> PollScheduler:
    """Each source polls on its own interval; the first pass starts immediately.

    ``max_instances=1`` + ``coalesce`` mean a slow pass delays the next instead of stacking up;
    jitter (10% of the interval, at most a minute) spreads sources that share an interval so they
    don't hit one API at the same second.
    """
    scheduler = PollScheduler()
    for cfg in runner.config.sources:
        if not runner.owns(cfg.name):
            continue  # a one-scope source another shard owns (docs/sharding.md)
        interval = runner.config.interval_of(cfg).total_seconds()

        def job(name: str = cfg.name) -> None:
            after_pass(runner.run(name))

        scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval, jitter=min(60, int(interval * 0.1))),
            id=cfg.name,
            name=f"poll {cfg.name}",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=int(interval),
        )
    return scheduler
