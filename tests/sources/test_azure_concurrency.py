"""Azure sources with requests in flight at once: the same requests and store as one at a time, one
pause for every worker when the organisation throttles, and a prompt stop."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from azure_truth import NOW, boards_config, pipelines_config

from collector.errors import SourceError
from collector.sources.azure_boards import AzureBoardsSource
from collector.sources.azure_pipelines import AzurePipelinesSource
from collector.sources.base import Source, SourceContext
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.server import Answered


def sandbox(
    latency: float, fault_rate: float = 0.0, kinds: tuple[str, ...] = ("429", "500", "503", "reset", "truncate")
) -> Sandbox:
    options = SandboxOptions(
        seed=11, work_items=200, now=NOW, latency=latency, fault_rate=fault_rate, fault_kinds=kinds
    )
    return Sandbox(options).start()


def sources(url: str, concurrency: int, ctx: SourceContext) -> list[Source]:
    return [
        AzureBoardsSource(boards_config(url, "Fabrikam").model_copy(update={"max_concurrency": concurrency}), ctx),
        AzurePipelinesSource(
            pipelines_config(url, "Tailspin").model_copy(update={"max_concurrency": concurrency}), ctx
        ),
        AzurePipelinesSource(
            pipelines_config(url, "Fabrikam").model_copy(
                update={"name": "pipelines_fabrikam", "max_concurrency": concurrency}
            ),
            ctx,
        ),
    ]


def most_in_flight(log: list[Answered]) -> int:
    """The most requests the sandbox was answering at one instant."""
    events = sorted([(r.arrived, 1) for r in log] + [(r.answered, -1) for r in log], key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def sync_until_complete(source: Source, store: Store) -> int:
    """Passes until one ends without an error (a 20% fault rate may exhaust a request's retries)."""
    for passes in range(1, 11):
        try:
            source.sync(store)
            return passes
        except SourceError:  # the next pass resumes from what was committed
            continue
    raise AssertionError("no complete pass in 10")


def test_concurrent_reading_stores_what_serial_reading_stores_despite_faults(tmp_path: Any) -> None:
    """20% of answers are faults (429s, 5xx, resets, truncated bodies); four readers in flight
    store exactly what one at a time stores, watermarks included, with the same requests."""
    stores, requests, in_flight = {}, {}, {}
    for concurrency in (1, 4):
        sb = sandbox(latency=0.004, fault_rate=0.2)
        try:
            store = Store(f"sqlite:///{tmp_path}/c{concurrency}.db")
            ctx = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=lambda s: None)
            for source in sources(sb.azure_url, concurrency, ctx):
                sync_until_complete(source, store)
            stats = sb.server.stats.snapshot()
            # what a complete sync asks for, whatever the faults made it repeat
            requests[concurrency] = {k: v for k, v in stats["by_endpoint"].items()}
            in_flight[concurrency] = most_in_flight(sb.server.stats.requests())
            assert stats["faults"], "no fault injected: the test proves nothing"
            stores[concurrency] = store.content_digest()
            store.close()
        finally:
            sb.stop()
    assert in_flight[1] == 1
    assert 2 <= in_flight[4] <= 4  # concurrent, and bounded per organisation
    assert stores[4] == stores[1]
    assert len(stores[1]["deployments"]) > 50 and len(stores[1]["links"]) > 50
    # faults make the counts differ by retries only: the same endpoints were read
    assert requests[4].keys() == requests[1].keys()


def test_without_faults_concurrency_sends_exactly_the_serial_requests(tmp_path: Any) -> None:
    counts = {}
    for concurrency in (1, 4):
        sb = sandbox(latency=0.002)
        try:
            store = Store(f"sqlite:///{tmp_path}/c{concurrency}.db")
            ctx = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=lambda s: None)
            for source in sources(sb.azure_url, concurrency, ctx):
                source.sync(store)
            counts[concurrency] = (sb.server.stats.snapshot()["by_endpoint"], store.content_digest())
            store.close()
        finally:
            sb.stop()
    assert counts[4][0] == counts[1][0]
    assert counts[4][1] == counts[1][1]
    assert sum(counts[1][0].values()) > 200


def test_a_throttled_answer_pauses_every_worker_of_the_organisation(tmp_path: Any) -> None:
    """A 429 with ``Retry-After: 1`` to one worker: no worker sends anything until the second is over."""
    sb = sandbox(latency=0.02, fault_rate=0.03, kinds=("429",))
    try:
        store = Store(f"sqlite:///{tmp_path}/throttled.db")
        ctx = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=time.sleep)
        pipelines = sources(sb.azure_url, 4, ctx)[1]
        pipelines.sync(store)
        log = sb.server.stats.requests()
        store.close()
    finally:
        sb.stop()
    throttled = [r for r in log if r.status == 429]
    assert throttled, "no 429 injected: the test proves nothing"
    assert most_in_flight(log) >= 2  # outside the pauses the workers do overlap
    for answer in throttled:
        # requests already on their way when the 429 left may still arrive just after it
        quiet_from, quiet_to = answer.answered + 0.05, answer.answered + 0.95
        during = [r for r in log if quiet_from < r.arrived < quiet_to]
        assert not during, f"{len(during)} requests sent during the pause after the 429 at {answer.answered:.3f}"


def test_stopping_ends_the_pass_within_a_request_and_the_next_pass_completes_it(tmp_path: Any) -> None:
    """Stopped while contents reads are queued: the pass ends within a request or two, commits
    nothing half-read, and the next pass completes the store."""
    reference_store = Store(f"sqlite:///{tmp_path}/reference.db")
    store = Store(f"sqlite:///{tmp_path}/stopped.db")
    sb = Sandbox(SandboxOptions(seed=11, work_items=600, now=NOW, latency=0.05)).start()
    try:
        quiet = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=lambda s: None)
        sources(sb.azure_url, 4, quiet)[1].sync(reference_store)
        sb.server.stats.reset()
        stop = threading.Event()
        ctx = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=stop.wait, should_stop=stop.is_set)
        worker = threading.Thread(target=sources(sb.azure_url, 4, ctx)[1].sync, args=(store,))
        worker.start()
        deadline = time.monotonic() + 30
        while sb.server.stats.snapshot()["by_endpoint"].get("azure.changes_between_builds", 0) < 20:
            assert worker.is_alive() and time.monotonic() < deadline, "no contents read before the stop"
            time.sleep(0.01)
        stopped_at = time.monotonic()
        stop.set()
        worker.join(timeout=30)
        took = time.monotonic() - stopped_at
        assert not worker.is_alive()
        assert took < 0.5, f"stopping took {took:.2f}s"  # a request or two at 50 ms, not the rest of the pass
        assert store.content_digest() != reference_store.content_digest()  # it did stop short
        resumed = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=lambda s: None)
        sources(sb.azure_url, 4, resumed)[1].sync(store)
        assert store.content_digest() == reference_store.content_digest()
    finally:
        sb.stop()
        store.close()
        reference_store.close()


@pytest.mark.parametrize("value", [0, 17])
def test_max_concurrency_is_validated(value: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_concurrency"):
        pipelines_config("http://127.0.0.1:1/contoso").model_validate(
            {**pipelines_config("http://127.0.0.1:1/contoso").model_dump(), "max_concurrency": value}
        )
