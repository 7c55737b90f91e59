"""`make demo` for real: sandbox, `cycletime serve` and Prometheus started by scripts/demo.py."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_demo_starts_everything_and_prints_the_headline(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_SANDBOX_PORT": str(free_port()), "DEMO_COLLECTOR_PORT": str(free_port()),
           "DEMO_PROMETHEUS_PORT": str(free_port()), "DEMO_DIR": str(tmp_path / "demo")}
    result = subprocess.run([sys.executable, "scripts/demo.py", "--once", "--fresh"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"http://127.0.0.1:{env['DEMO_COLLECTOR_PORT']}/metrics" in out
    assert "scraping the collector, shipped rules, a year of history backfilled" in out, out
    # the headline: a short table per project, slowest first, then the DORA figures
    assert "request to release, p85 in days" in out and "last 30 days" in out and "a year ago" in out
    rows = re.findall(r"^    (\S+)\s+([\d.]+)\s+(\d+)\s+([\d.]+|-)\s+(\d+)$", out, re.M)
    assert {r[0] for r in rows} >= {"Fabrikam", "Tailspin"}, out
    p85 = [float(r[1]) for r in rows]
    assert p85 == sorted(p85, reverse=True)
    dora = re.search(r"production deployments, last 30 days: ([\d.]+) per day \((\d+) successful\); "
                     r"change failure rate ([\d.]+)% \((\d+) of (\d+)\)", out)
    assert dora, out
    # ...equal to what the collector exports
    exposition = subprocess.run([sys.executable, "-m", "collector", "metrics", "--config",
                                 str(tmp_path / "demo" / "demo.yaml")], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300, check=True).stdout
    exported = sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
                   if line.startswith("cycletime_deployments_window_count{") and 'production="true"' in line
                   and 'status="success"' in line and 'window="30d"' in line)
    assert int(dora.group(2)) == exported
    assert "cycle time, 3 to 0 months ago" in out and "request to release, 12 to 9 months ago" in out
    log = (tmp_path / "demo" / "collector.log").read_text()
    assert '"level": "error"' not in log, log[-3000:]
    # everything the demo started is gone again
    for port in ("DEMO_SANDBOX_PORT", "DEMO_COLLECTOR_PORT", "DEMO_PROMETHEUS_PORT"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
            s.bind(("127.0.0.1", int(env[port])))
