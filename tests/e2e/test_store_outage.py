"""`cycletime serve` on PostgreSQL through an outage: the database stops mid-run and comes back on
the same address. Real processes: the sandbox, `cycletime serve`, a PostgreSQL cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import _pg_bin, _PostgresServer, free_port
from harness import ROOT, Serve, collector_config, wait_until
from prometheus_client.parser import text_string_to_metric_families

from sandbox.app import Sandbox, SandboxOptions

TOKEN = "outage-token"


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def pg_ctl(server: _PostgresServer, *args: str) -> None:
    subprocess.run([*server.prefix, _pg_bin("pg_ctl"), "-D", server.data, *args], check=True, capture_output=True)


def test_serve_outlives_a_postgresql_outage_and_resumes_when_it_returns(tmp_path: Path) -> None:
    if not _pg_bin("initdb"):
        pytest.fail("PostgreSQL binaries are missing: scripts/system-deps.sh installs them")
    server = _PostgresServer()
    sources = ("boards", "pipelines", "github")
    try:
        options = SandboxOptions(seed=5, work_items=150, token=TOKEN)
        with Sandbox(options) as sandbox:
            port = free_port()
            config = collector_config(tmp_path, sandbox.url, TOKEN, port, store=server.url, poll_interval="2s")
            serve = Serve(config, port, tmp_path / "serve.log").start()
            try:
                before = samples(serve.url)
                assert value(before, "cycletime_store_up") == 1.0
                figures = {key for key in before if key[0].startswith("cycletime_request_to_release")}
                assert figures

                pg_ctl(server, "-m", "immediate", "stop")
                down = wait_until(
                    lambda: (found := samples(serve.url)) and value(found, "cycletime_store_up") == 0.0 and found,
                    60,
                    "cycletime_store_up 0",
                )
                assert figures <= set(down), "the last figures stay published"
                readyz = requests.get(f"{serve.url}/readyz", timeout=5)
                assert readyz.status_code == 503 and "store" in readyz.text
                time.sleep(5)  # more passes fail while the database is away; the process stays up
                assert serve.proc is not None and serve.proc.poll() is None

                returned = time.time()
                pg_ctl(server, "-w", "-l", f"{server.dir}/log", "-o", f"-p {server.port} -k {server.dir}", "start")

                def recovered() -> bool:
                    found = samples(serve.url)
                    return value(found, "cycletime_store_up") == 1.0 and all(
                        (value(found, "cycletime_source_last_success_timestamp_seconds", source=s) or 0) > returned
                        for s in sources
                    )

                wait_until(recovered, 90, "every source polled successfully after the database returned")
                wait_until(lambda: requests.get(f"{serve.url}/readyz", timeout=5).status_code == 200, 30, "ready")
                after = samples(serve.url)
                assert all(value(after, "cycletime_source_up", source=s) == 1.0 for s in sources)
                assert figures <= set(after)
                # the writer lease went with the database's sessions; serve holds it again
                second = subprocess.run(
                    [sys.executable, "-m", "collector", "sync", "--config", str(config)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert second.returncode == 1 and f"store in use by PID {serve.proc.pid}" in second.stderr, (
                    second.stderr[-2000:]
                )
            finally:
                assert serve.stop() == 0
            log = (tmp_path / "serve.log").read_text()
            assert TOKEN not in log
    finally:
        server.stop()
