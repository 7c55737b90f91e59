"""Real processes for end-to-end tests: the sandbox, `cycletime serve` and a Prometheus server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests
from conftest import azure_source, free_port, github_source, sandbox_config

ROOT = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], Any], seconds: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.time() + seconds
    last: Any = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds}s waiting for {what} (last: {last!r})")


def collector_config(
    tmp: Path,
    sandbox_url: str,
    token: str,
    port: int,
    store: str | None = None,
    poll_interval: str = "10m",
    repositories: Iterable[str] = ("contoso/web",),
) -> Path:
    """The demo's three kinds of source against a sandbox at ``sandbox_url``."""
    cfg = tmp / "cycletime.yaml"
    sources = [
        azure_source("azure_boards", sandbox_url, token),
        azure_source("azure_pipelines", sandbox_url, token),
        github_source(sandbox_url, token, repositories, deployments_from="deployments"),
    ]
    cfg.write_text(
        sandbox_config(
            store or f"sqlite:///{tmp}/store.db",
            sources,
            listen=f"127.0.0.1:{port}",
            poll_interval=poll_interval,
            allow_short_poll_interval=True,
            history="400d",
        )
    )
    return cfg


class Serve:
    """`cycletime serve` as a subprocess, with its log captured to a file."""

    def __init__(self, config: Path, port: int, log: Path, flags: Iterable[str] = ()) -> None:
        """``flags``: more command-line flags, e.g. ``("--shard", "1", "--total-shards", "3")``."""
        self.config, self.port, self.log, self.flags = config, port, log, list(flags)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_within: float = 180) -> Serve:
        args = ["serve", "--config", str(self.config), "--log-format", "json", *self.flags]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", *args],
            cwd=ROOT,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"serve exited: {self.log.read_text()[-2000:]}"
            return requests.get(f"{self.url}/readyz", timeout=5).status_code == 200

        wait_until(ready, ready_within, "cycletime serve /readyz")
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


class Prometheus:
    """A real Prometheus (Debian package) on 127.0.0.1 with a temporary config and data dir."""

    def __init__(
        self,
        targets: list[str],
        rule_files: list[Path] | None = None,
        blocks: Path | None = None,
        retention: str = "15d",
    ) -> None:
        """``blocks``: a directory of TSDB blocks (``cycletime backfill --prometheus-blocks``) copied
        into the data directory before the start, as a user loads a backfill."""
        binary = shutil.which("prometheus")
        assert binary, "prometheus (Debian package `prometheus`) is required: `make test` installs it"
        self.dir = Path(tempfile.mkdtemp(prefix="cycletime-prom-"))
        if blocks is not None:
            shutil.copytree(blocks, self.dir / "data")
        self.port = free_port()
        rules = "".join(f"  - {p}\n" for p in rule_files or [])
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n  - job_name: cycletime\n    static_configs:\n"
            + (f"      - targets: [{', '.join(repr(t) for t in targets)}]\n" if targets else "      - targets: []\n")
        )
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.retention.time={retention}",
            ],
            stdout=open(self.dir / "log", "wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200, 60, "prometheus ready")

    def targets_up(self) -> bool:
        active = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr} if at is None else {"query": expr, "time": at}
        body = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
