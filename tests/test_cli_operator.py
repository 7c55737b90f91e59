"""Operator mistakes and signals, through the real command line: one clear line, the right exit code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from collector.store import Store

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "operator-token-1234"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def write_config(tmp_path: Path, store: str, listen: str = "127.0.0.1:0", api: str = "http://127.0.0.1:1") -> Path:
    cfg = tmp_path / "cycletime.yaml"
    cfg.write_text(f"""
listen: {listen}
store: {store}
sources:
  - name: github
    kind: github
    base_url: {api}/api/v3
    token: {TOKEN}
    repositories: [contoso/web]
""")
    return cfg


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/store.db", listen=f"127.0.0.1:{port}")
        result = cli("serve", "--config", str(cfg), "--log-format", "text")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"cycletime: listen 127.0.0.1:{port}: address already in use"
    assert "Traceback" not in result.stderr


def test_metrics_on_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    store = tmp_path / "not-yet" / "store.db"
    cfg = write_config(tmp_path, f"sqlite:///{store}")
    result = cli("metrics", "--config", str(cfg))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"cycletime: nothing synced yet: run cycletime sync --config {cfg}"
    assert not store.exists() and not store.parent.exists()


def test_metrics_on_an_empty_store_says_nothing_was_synced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    Store(url).close()  # the schema, no source ever polled
    result = cli("metrics", "--config", str(write_config(tmp_path, url)))
    assert result.returncode == 1 and "nothing synced yet: run cycletime sync --config" in result.stderr
    (tmp_path / "empty.db").touch()
    result = cli("metrics", "--config", str(write_config(tmp_path, f"sqlite:///{tmp_path}/empty.db")))
    assert result.returncode == 1 and "nothing synced yet" in result.stderr
    assert (tmp_path / "empty.db").stat().st_size == 0


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: an API that hangs mid-request."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.socket.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_api() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_sigterm_stops_serve_promptly_while_a_request_hangs(tmp_path: Path, silent_api: SilentServer) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    cfg = write_config(tmp_path, url, listen=f"127.0.0.1:{free_port()}", api=f"http://127.0.0.1:{silent_api.port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--config", str(cfg), "--log-format", "text"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert silent_api.accepted.wait(30), "serve never called the API"
        time.sleep(0.5)  # the request is now waiting for an answer that never comes
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        stopped_after = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert stopped_after < 6, f"serve took {stopped_after:.1f} s to stop"
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped without waiting for job github" in stderr
    store = Store(url)  # nothing half-written: the hanging pass committed nothing
    assert store.record_counts().get("github", {}) == {} or sum(store.record_counts()["github"].values()) == 0


def test_sigterm_stops_sync_promptly_while_a_request_hangs(tmp_path: Path, silent_api: SilentServer) -> None:
    """``sync`` mid-request (a read timeout of 30 s away) ends at once and commits nothing, and the
    store lease goes with it."""
    url = f"sqlite:///{tmp_path}/store.db"
    cfg = write_config(tmp_path, url, api=f"http://127.0.0.1:{silent_api.port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "sync", "--config", str(cfg), "--log-format", "text"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert silent_api.accepted.wait(30), "sync never called the API"
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        stopped_after = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert stopped_after < 3, f"sync took {stopped_after:.1f} s to stop"
    assert proc.returncode != 0, "a sync cut short must not report success"
    store = Store(url)
    assert sum(store.record_counts().get("github", {}).values()) == 0
    store.acquire_writer("test")  # raises StoreInUse while a dead sync still held the lease
    store.close()


def test_version_and_every_option_shows_its_default() -> None:
    import subprocess
    import sys

    version = subprocess.run([sys.executable, "-m", "collector", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("cycletime ")
    shown = subprocess.run(
        [sys.executable, "-m", "collector", "sandbox", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    for default in ("(default: 8089)", "(default: 600)", "(default: 0.0)", "(default: 127.0.0.1)"):
        assert default in shown.stdout
