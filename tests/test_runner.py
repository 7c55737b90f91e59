"""The job boundary: a failing source is recorded and does not stop the others; one pass at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import azure_source, github_source, sandbox_config

from collector.config import parse_config
from collector.runner import Runner
from collector.scheduler import build_scheduler
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "runner-token-1234"


def config_for(sandbox: Sandbox, tmp_path: Path, bad_token: str = "wrong-token-5678"):
    sources = [
        github_source(sandbox.url, TOKEN, name="good"),
        azure_source("azure_boards", sandbox.url, bad_token, name="bad"),
        github_source(sandbox.url, TOKEN, ["contoso/nope"], name="gone"),
    ]
    store = f"sqlite:///{tmp_path}/s.db"
    return parse_config(sandbox_config(store, sources, poll_interval="2s", allow_short_poll_interval=True), {})


def test_a_failing_source_is_recorded_and_the_others_still_sync(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(seed=3, work_items=90, token=TOKEN)) as sandbox:
        config = config_for(sandbox, tmp_path)
        store = Store(config.store)
        results = {r.source: r for r in Runner(config, store, sleep=lambda s: None).run_all()}
    assert results["good"].ok and results["good"].items > 0
    assert not results["bad"].ok and "401" in results["bad"].error
    assert not results["gone"].ok and "contoso/nope" in results["gone"].error
    statuses = store.statuses()
    assert statuses["good"].ok and statuses["good"].last_success is not None
    assert not statuses["bad"].ok and statuses["bad"].last_success is None
    assert "wrong-token-5678" not in statuses["bad"].last_error
    assert store.work_items("good") and not store.work_items("bad")
    codes = {code for (source, code) in store.api_request_counts() if source == "bad"}
    assert codes == {"401"}


def test_one_pass_per_source_at_a_time(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(seed=3, work_items=90, token=TOKEN)) as sandbox:
        config = config_for(sandbox, tmp_path)
        runner = Runner(config, Store(config.store), sleep=lambda s: None)
        gate = threading.Event()
        original = runner.sources["good"].sync

        def slow_sync(store):
            gate.wait(10)
            return original(store)

        runner.sources["good"].sync = slow_sync  # type: ignore[method-assign]
        first = threading.Thread(target=runner.run, args=("good",))
        first.start()
        time.sleep(0.2)
        second = runner.run("good")
        gate.set()
        first.join()
    assert second.error == "skipped: still running"


def test_scheduler_polls_every_source_on_its_interval(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(seed=3, work_items=90, token=TOKEN)) as sandbox:
        config = config_for(sandbox, tmp_path)
        runner = Runner(config, Store(config.store), sleep=lambda s: None)
        passes: list[str] = []
        scheduler = build_scheduler(runner, lambda result: passes.append(result.source))
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"good", "bad", "gone"}
        assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
        scheduler.start()
        try:
            deadline = time.time() + 20
            while time.time() < deadline and passes.count("good") < 2:
                time.sleep(0.2)
        finally:
            scheduler.shutdown(wait=True)
    assert passes.count("good") >= 2, passes  # first pass at start, the next after ~2 s
    assert {"bad", "gone"} <= set(passes)  # failing sources keep being polled, and don't stop "good"
