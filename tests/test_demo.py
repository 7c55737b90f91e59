"""`make demo` for real: sandbox, `cycletime serve` and Prometheus started by scripts/demo.py."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]


def run_demo(folder: Path, *flags: str, activity: float = 10) -> tuple[str, dict[str, str]]:
    """``scripts/demo.py --once --fresh`` on free ports; its output and environment."""
    env = {
        **os.environ,
        "DEMO_SANDBOX_PORT": str(free_port()),
        "DEMO_COLLECTOR_PORT": str(free_port()),
        "DEMO_PROMETHEUS_PORT": str(free_port()),
        "DEMO_DIR": str(folder),
        "DEMO_ACTIVITY": str(activity),
    }
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--once", "--fresh", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, env


HEADLINE_ROW = (
    r"^    (\S+)\s+([\d.]+|-)\s+(\d+)\s+([\d.]+|-)\s+(\d+)   (-|(?:backlog|development|review|release) \d+%)$"
)


def headline_rows(out: str) -> list[tuple[str, float, int]]:
    rows = re.findall(HEADLINE_ROW, out, re.M)
    return [(r[0], float(r[1]) if r[1] != "-" else -1.0, int(r[2])) for r in rows]


def headline_stages(out: str) -> dict[str, str]:
    return {r[0]: r[5] for r in re.findall(HEADLINE_ROW, out, re.M)}


def assert_headline_equals_the_exposition(out: str, folder: Path, env: dict[str, str]) -> None:
    """The headline's counts are the exposition's at the headline's instant (`metrics --at`): the
    items per project and the production deployments in the last 30 days."""
    at = re.search(r"^  as of (\S+)$", out, re.M)
    assert at, out
    text = subprocess.run(
        [sys.executable, "-m", "collector", "metrics", "--config", str(folder / "demo.yaml"), "--at", at.group(1)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    items: dict[str, float] = defaultdict(float)
    deployments: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("window") != "30d":
                continue
            if s.name == "cycletime_request_to_release_window_count":
                items[s.labels["project"]] += s.value
            elif s.name == "cycletime_deployments_window_count" and s.labels["production"] == "true":
                deployments[s.labels["status"]] += s.value
    rows = headline_rows(out)
    assert {project: count for project, _, count in rows} == {p: int(n) for p, n in items.items()}
    dora = re.search(
        r"production deployments, last 30 days: ([\d.]+) per day \((\d+) successful\); "
        r"change failure rate ([\d.]+%|-) \((\d+) of (\d+)\)",
        out,
    )
    assert dora, out
    assert int(dora.group(2)) == deployments["success"] > 0
    assert int(dora.group(4)) == deployments["failure"]


def test_demo_starts_everything_and_prints_the_headline(tmp_path: Path) -> None:
    out, env = run_demo(tmp_path / "demo")
    assert f"http://127.0.0.1:{env['DEMO_COLLECTOR_PORT']}/metrics" in out
    assert "new activity every 10 s" in out
    assert "scraping the collector, shipped rules, a year of history backfilled" in out, out
    # the headline: a short table per project, slowest first, then the DORA figures
    assert "request to release, p85 in days" in out and "last 30 days" in out and "a year ago" in out
    rows = headline_rows(out)
    assert {r[0] for r in rows} >= {"Fabrikam", "Tailspin"}, out
    p85 = [r[1] for r in rows]
    assert p85 == sorted(p85, reverse=True)
    # where the time goes: every project with releases in the last 30 days names its largest stage
    stages = headline_stages(out)
    assert all(stages[project] != "-" for project, _, count in rows if count), out
    assert_headline_equals_the_exposition(out, tmp_path / "demo", env)
    assert "cycle time, 3 to 0 months ago" in out and "request to release, 12 to 9 months ago" in out
    log = (tmp_path / "demo" / "collector.log").read_text()
    assert '"level": "error"' not in log, log[-3000:]
    assert "sandbox activity:" in (tmp_path / "demo" / "sandbox.log").read_text()
    # everything the demo started is gone again
    for port in ("DEMO_SANDBOX_PORT", "DEMO_COLLECTOR_PORT", "DEMO_PROMETHEUS_PORT"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
            s.bind(("127.0.0.1", int(env[port])))


def test_the_headline_equals_the_exposition_in_fresh_runs_with_live_activity(tmp_path: Path) -> None:
    # with the first test, five fresh runs; here the sandbox adds activity every second meanwhile.
    # The year of Prometheus history is left out (the first test has it): it is most of a run's
    # time, and the headline is computed from the collector, not from Prometheus.
    for run in range(4):
        out, env = run_demo(tmp_path / f"run{run}", "--no-history", activity=1)
        assert "scraping the collector, shipped rules, no history (--no-history)" in out, out
        assert_headline_equals_the_exposition(out, tmp_path / f"run{run}", env)
