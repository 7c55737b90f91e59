"""`make demo` for real: sandbox, `cycletime serve` and Prometheus started by scripts/demo.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_starts_everything_and_prints_the_headline(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_SANDBOX_PORT": str(free_port()), "DEMO_COLLECTOR_PORT": str(free_port()),
           "DEMO_PROMETHEUS_PORT": str(free_port()), "DEMO_DIR": str(tmp_path / "demo")}
    result = subprocess.run([sys.executable, "scripts/demo.py", "--once", "--fresh"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"http://127.0.0.1:{env['DEMO_COLLECTOR_PORT']}/metrics" in out
    assert "scraping the collector, shipped rules" in out, out  # Prometheus is a test dependency here
    assert "p85 request-to-release over the last 30 days" in out
    assert "days  cycletime_request_to_release_window_seconds{" in out
    assert "cycle time, 3 to 0 months ago" in out and "request to release, 12 to 9 months ago" in out
    log = (tmp_path / "demo" / "collector.log").read_text()
    assert '"level": "error"' not in log, log[-3000:]
    # everything the demo started is gone again
    for port in ("DEMO_SANDBOX_PORT", "DEMO_COLLECTOR_PORT", "DEMO_PROMETHEUS_PORT"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
            s.bind(("127.0.0.1", int(env[port])))
