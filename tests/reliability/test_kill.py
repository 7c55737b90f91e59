"""``kill -9`` of ``cycletime sync`` at random points, then a fresh sync: nothing lost, nothing counted twice.

Each batch is committed together with the watermark it reaches (``Store.commit``), so a process
killed anywhere leaves a store the next sync resumes from. The kill comes once the sandbox has
served a random number of requests (plus a random few milliseconds) inside one source's pass
(each source in turn): between batches, inside a transaction, mid-response.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_kit import PROJECTS, REPOSITORIES, config_yaml, organisation, samples, start_sandbox, sync_measured

from collector.config import Config, parse_config
from collector.runner import Runner
from collector.store import Store
from sandbox.app import Sandbox, default_now

ROOT = Path(__file__).resolve().parents[2]
#: one kill inside each source's pass, at a random request (seeded per source)
SOURCES = [name for names in PROJECTS.values() for name in names] + [n for n, _ in REPOSITORIES.values()]


def cycletime_sync(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "sync", "--config", str(config), "--log-format", "json"],
        cwd=ROOT,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def write_config(tmp: Path, sandbox: Sandbox, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(config_yaml(sandbox.url, f"sqlite:///{tmp}/{name}.db"))
    return path


def served(sandbox: Sandbox) -> int:
    return int(sandbox.server.stats.snapshot()["total"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One uninterrupted sync of an organisation with a few malformed records, and where each pass lies."""
    tmp = tmp_path_factory.mktemp("kill")
    sandbox = start_sandbox(seed=9, work_items=200, malformed=6)
    config = write_config(tmp, sandbox, "reference")
    assert cycletime_sync(config, tmp / "reference.log").wait(timeout=120) == 0, (tmp / "reference.log").read_text()
    # where each source's pass lies among a sync's requests (same order as `cycletime sync`)
    measured = organisation(sandbox, f"sqlite:///{tmp}/measured.db")
    measured_store = Store(measured.store)
    spans = sync_measured(sandbox, Runner(measured, measured_store))
    measured_store.close()
    yield {"tmp": tmp, "sandbox": sandbox, "config": config, "spans": spans}
    sandbox.stop()


def positions(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """``content_digest()`` minus what identifies a request rather than a position.

    The GitHub issues watermark keeps, next to its position (``since`` + the numbers ``seen`` at
    that second), the request its page-1 ETag belongs to (``key``, ``etag``): that request is
    ``since=<where this pass started>``, the wall-clock history horizon on a first pass, the stored
    position on a resumed one. So both differ between an uninterrupted and a resumed sync while the
    position is the same. Every other watermark (Azure tokens and record ids, release times,
    GitHub pulls/deployments/repository ETags of fixed requests) is compared as is.
    """
    digest = store.content_digest()

    def position(stream: str, value: str) -> object:
        if not stream.startswith("issues:"):
            return value
        state = json.loads(value)
        return {k: v for k, v in state.items() if k not in ("key", "etag")}

    digest["watermarks"] = [(source, stream, position(stream, value)) for source, stream, value in digest["watermarks"]]
    return digest


def store_of(config: Path) -> tuple[Store, Config]:
    parsed = parse_config(config.read_text(), {})
    return Store(parsed.store), parsed


@pytest.mark.parametrize("source", SOURCES)
def test_a_killed_sync_resumes_to_the_uninterrupted_result(reference: dict, source: str) -> None:
    rng = random.Random(source)
    sandbox: Sandbox = reference["sandbox"]
    tmp: Path = reference["tmp"]
    config = write_config(tmp, sandbox, f"killed-{source}")
    log = tmp / f"killed-{source}.log"
    start, end = reference["spans"][source]
    # inside the pass, short of its last requests, so the sync cannot finish before the kill lands
    # (15 short: on a loaded machine the last five of a GitHub pass were done before it landed)
    kill_after = rng.randint(start + 1, max(start + 1, end - 15))

    start = served(sandbox)
    proc = cycletime_sync(config, log)
    deadline = time.time() + 120
    while served(sandbox) - start < kill_after and proc.poll() is None:
        assert time.time() < deadline, "the sync neither progressed nor finished"
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.02))
    assert proc.poll() is None, f"the sync finished before the kill point ({kill_after} requests)"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed_at = served(sandbox) - start

    assert cycletime_sync(config, log).wait(timeout=120) == 0, log.read_text()[-3000:]

    expected_store, expected_config = store_of(reference["config"])
    resumed_store, resumed_config = store_of(config)
    clock = default_now().timestamp()
    print(f"{source}: killed after {killed_at} requests (its pass: requests {start}-{end})")
    # every table compared, watermarks included: the resumed sync reached the same positions
    assert positions(resumed_store) == positions(expected_store)
    expected = samples(expected_store, expected_config, clock, ("cycletime_",))
    resumed = samples(resumed_store, resumed_config, clock, ("cycletime_",))
    volatile = ("cycletime_source_", "cycletime_api_")  # durations, timestamps and request counts of the runs
    assert {k: v for k, v in resumed.items() if not k[0].startswith(volatile)} == {
        k: v for k, v in expected.items() if not k[0].startswith(volatile)
    }
    assert any(k[0] == "cycletime_records_rejected_total" for k in expected)
    expected_store.close()
    resumed_store.close()
