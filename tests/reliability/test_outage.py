"""An API outage in the middle of a pass, then recovery: the next pass of the same process ends with the
store and the figures of an uninterrupted sync.

Unlike ``kill -9`` (test_kill.py), the process survives the failed pass, as ``cycletime serve`` does:
whatever a source keeps in memory between passes (caches of build contents, process states…) must
not keep the half-read state of the pass that failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from reliability_kit import (
    PROJECTS,
    REPOSITORIES,
    data_tables,
    organisation,
    quick_sleep,
    samples,
    start_sandbox,
    sync_measured,
    sync_until_ok,
)

from collector.http import RetryPolicy
from collector.runner import Runner
from collector.sources.azure_common import DEFAULT_CONCURRENCY
from collector.store import Store
from sandbox.app import Sandbox, default_now

#: an outage in the middle of each source's pass
SOURCES = [name for names in PROJECTS.values() for name in names] + [n for n, _ in REPOSITORIES.values()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("outage")
    sandbox = start_sandbox(seed=2, work_items=200)
    config = organisation(sandbox, f"sqlite:///{tmp}/reference.db")
    store = Store(config.store)
    spans = sync_measured(sandbox, Runner(config, store, sleep=quick_sleep))
    yield {"tmp": tmp, "sandbox": sandbox, "config": config, "store": store, "spans": spans}
    store.close()
    sandbox.stop()


def outage(sandbox: Sandbox, after: int, failed_attempts: int) -> threading.Thread:
    """Once ``after`` more requests were served, answer every request 503 until ``failed_attempts`` were."""

    def run() -> None:
        stats = sandbox.server.stats
        start = stats.snapshot()["total"]
        while stats.snapshot()["total"] - start < after:
            time.sleep(0.0005)
        down = stats.snapshot()["by_status"].get("503", 0)
        sandbox.server.faults.kinds, sandbox.server.faults.rate = ("503",), 1.0
        while stats.snapshot()["by_status"].get("503", 0) - down < failed_attempts:
            time.sleep(0.0005)
        sandbox.server.faults.rate = 0.0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("source", SOURCES)
def test_a_pass_failed_by_an_outage_leaves_nothing_stale(reference: dict, source: str) -> None:
    sandbox: Sandbox = reference["sandbox"]
    config = organisation(sandbox, f"sqlite:///{reference['tmp']}/outage-{source}.db")
    store = Store(config.store)
    start, end = reference["spans"][source]
    # six 503s in a row fail one request after all its retries, and the pass it belongs to; with
    # up to four requests in flight (Azure sources) the outage must outlast four times that
    watcher = outage(sandbox, after=(start + end) // 2, failed_attempts=RetryPolicy().attempts * DEFAULT_CONCURRENCY)
    failed = sync_until_ok(Runner(config, store, sleep=quick_sleep))
    watcher.join(timeout=30)
    # the source whose pass the outage hit (perhaps again on its next try), no other
    assert failed and {r.source for r in failed} == {source}, [(r.source, r.error) for r in failed]

    assert data_tables(store) == data_tables(reference["store"])
    clock = default_now().timestamp()
    assert samples(store, config, clock) == samples(reference["store"], reference["config"], clock)
    store.close()
