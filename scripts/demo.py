"""`make demo`: the sandbox, `cycletime serve` against it, and (if installed) a Prometheus scraping it.

Everything runs on 127.0.0.1 with no credentials. Ctrl-C stops everything this script started.
`--once` waits until the collector is ready, prints a few figures and stops (used by the tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
# The ports of config/demo.yaml; DEMO_*_PORT move them (the tests run the demo on free ports)
SANDBOX_PORT = int(os.environ.get("DEMO_SANDBOX_PORT", 8089))
COLLECTOR_PORT = int(os.environ.get("DEMO_COLLECTOR_PORT", 9184))
PROMETHEUS_PORT = int(os.environ.get("DEMO_PROMETHEUS_PORT", 9090))
WORK_DIR = Path(os.environ.get("DEMO_DIR", ROOT / ".demo"))


def demo_config() -> Path:
    """config/demo.yaml with the chosen ports and working folder, written into the working folder."""
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = (
        text.replace("127.0.0.1:8089", f"127.0.0.1:{SANDBOX_PORT}")
        .replace("127.0.0.1:9184", f"127.0.0.1:{COLLECTOR_PORT}")
        .replace("sqlite:///.demo/", f"sqlite:///{WORK_DIR}/")
    )
    path = WORK_DIR / "demo.yaml"
    path.write_text(text)
    return path


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for(url: str, seconds: float, procs: list[subprocess.Popen]) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"demo: {proc.args[2:4]} exited with code {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def prometheus_config(directory: Path) -> Path:
    rules = ROOT / "config" / "prometheus" / "rules.yaml"
    cfg = directory / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 15s, evaluation_interval: 15s}\n"
        + (f"rule_files: ['{rules}']\n" if rules.exists() else "")
        + "scrape_configs:\n  - job_name: cycletime\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{COLLECTOR_PORT}']}}]\n"
    )
    return cfg


def backfill_prometheus(config: Path, data_dir: Path) -> str:
    """A year of figures into the demo Prometheus' data directory before it starts (`cycletime backfill`)."""
    if not shutil.which("promtool"):
        return "no history (promtool not installed)"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "backfill",
            "--config",
            str(config),
            "--from",
            "365d",
            "--step",
            "1d",
            "--out",
            str(WORK_DIR / "history.om"),
            "--prometheus-blocks",
            str(data_dir),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    (WORK_DIR / "backfill.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        return f"no history (backfill failed, see {WORK_DIR}/backfill.log)"
    return "a year of history backfilled"


def headline(config: Path, now: float) -> str:
    """The demo's headline from the collector's store, as of ``now``: per project, p85
    request-to-release over the last 30 days against the first quarter of the year (12 to 9 months
    ago), slowest first; then production deployment frequency and change failure rate over the last
    30 days, and the request stage that held most of the project's time (docs/definitions.md, "Where the
    time goes"). The same figures as the landing page's (``collector.figures.headline``): items of every
    team and type of a project are pooled (the dashboards show them per team)."""
    from collector.compute import compute, window_quantiles
    from collector.config import load_config
    from collector.figures import DAY, headline, pooled
    from collector.store import Store

    store = Store(load_config(config).store)
    try:
        links = store.links()
        table = store.work_item_table({link.work_item for link in links})
        changes, deployments = store.changes(), store.deployments()
    finally:
        store.close()
    figures = compute(table, changes, deployments, links, as_of=now)
    top = headline(figures, now)
    by_project = pooled(figures.request_to_release, lambda labels: labels[1])

    def days(value: float | None) -> str:
        return f"{value / DAY:8.1f}" if value is not None else "       -"

    when = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    lines = [
        f"  as of {when}",
        "  request to release, p85 in days (a project's teams and types pooled), slowest first:",
        f"    {'project':<24} {'last 30 days':>12} {'items':>6}   {'a year ago':>10} {'items':>6}   most time in",
        f"    {'':<24} {'':>12} {'':>6}   {'(12-9 mo.)':>10} {'':>6}   (last 30 days)",
    ]
    for project in top.projects:
        before = window_quantiles(by_project[project.project], now - 270 * DAY, 90 * DAY, [0.85])
        stage = "-" if project.largest_stage is None else f"{project.largest_stage} {project.largest_stage_share:.0%}"
        lines.append(
            f"    {project.project:<24} {days(project.p85):>12} {project.count:>6}   "
            f"{days(before.quantiles.get(0.85)):>10} {before.count:>6}   {stage}"
        )
    rate = top.change_failure_rate
    total = top.deployments_succeeded + top.deployments_failed
    lines.append(
        f"  production deployments, last 30 days: {top.per_day:.2f} per day ({top.deployments_succeeded} "
        f"successful); change failure rate {'-' if rate is None else f'{rate:.1%}'} "
        f"({top.deployments_failed} of {total})"
    )
    return "\n".join(lines)


def print_trend(store_file: Path) -> None:
    """The story of the year from the collector's own store: how the distributions moved by quarter."""
    import numpy as np

    from collector.compute import compute
    from collector.store import Store

    store = Store(f"sqlite:///{store_file}")
    links = store.links()
    figures = compute(
        store.work_item_table({link.work_item for link in links}), store.changes(), store.deployments(), links
    )
    store.close()
    now = time.time()
    print("\n  the year by quarter (all teams), days:        p50     p85   items")
    for name, family in (("cycle time", figures.cycle_time), ("request to release", figures.request_to_release)):
        data = np.vstack(list(family.by_labels.values())) if family.by_labels else np.empty((0, 2))
        for q in range(4, 0, -1):
            start, end = now - q * 91.25 * 86400, now - (q - 1) * 91.25 * 86400
            values = data[(data[:, 0] > start) & (data[:, 0] <= end), 1] / 86400
            if values.size:
                p50, p85 = np.quantile(values, [0.5, 0.85])
                label = f"{name}, {q * 3} to {(q - 1) * 3} months ago"
                print(f"    {label:<42} {p50:6.1f}  {p85:6.1f}  {values.size:6d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="stop once the collector is ready")
    parser.add_argument("--fresh", action="store_true", help="start from an empty store (.demo/)")
    parser.add_argument(
        "--activity",
        type=float,
        default=float(os.environ.get("DEMO_ACTIVITY", 10)),
        metavar="SECONDS",
        help="the sandbox adds new work, changes and deployments every SECONDS (0: none; default 10, or DEMO_ACTIVITY)",
    )
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="start Prometheus without the year of backfilled history (about 50 s quicker)",
    )
    args = parser.parse_args()
    busy = [p for p in (SANDBOX_PORT, COLLECTOR_PORT) if not port_free(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop what uses them and retry", file=sys.stderr)
        return 1
    if args.fresh:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    procs: list[subprocess.Popen] = []
    log_dir = WORK_DIR
    try:
        procs.append(
            subprocess.Popen(
                [py, "-m", "collector", "sandbox", "--port", str(SANDBOX_PORT), "--activity", str(args.activity)],
                cwd=ROOT,
                stdout=open(log_dir / "sandbox.log", "w"),
                stderr=subprocess.STDOUT,
            )
        )
        if not wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/stats", 60, procs):
            print(f"demo: the sandbox did not start; see {log_dir}/sandbox.log", file=sys.stderr)
            return 1
        procs.append(
            subprocess.Popen(
                [py, "-m", "collector", "serve", "--config", str(demo_config()), "--log-format", "json"],
                cwd=ROOT,
                stdout=open(log_dir / "collector.log", "w"),
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{COLLECTOR_PORT}"
        live = f"new activity every {args.activity:g} s" if args.activity > 0 else "no live activity"
        print(
            f"demo: sandbox on http://127.0.0.1:{SANDBOX_PORT} ({live}); collector syncing "
            f"(log: {log_dir}/collector.log)…",
            flush=True,
        )
        if not wait_for(f"{base}/readyz", 300, procs):
            print(f"demo: the collector was not ready within 300 s; see {log_dir}/collector.log", file=sys.stderr)
            return 1
        print(f"\n  landing page:  {base}/\n  metrics:       {base}/metrics", flush=True)
        prometheus = shutil.which("prometheus")
        if prometheus and port_free(PROMETHEUS_PORT):
            tmp = WORK_DIR / "prometheus"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            history = (
                "no history (--no-history)" if args.no_history else backfill_prometheus(demo_config(), tmp / "data")
            )
            procs.append(
                subprocess.Popen(
                    [
                        prometheus,
                        f"--config.file={prometheus_config(tmp)}",
                        f"--storage.tsdb.path={tmp / 'data'}",
                        "--storage.tsdb.retention.time=400d",
                        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                    ],
                    stdout=open(log_dir / "prometheus.log", "w"),
                    stderr=subprocess.STDOUT,
                )
            )
            ready = wait_for(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready", 60, procs)
            state = (
                f"scraping the collector, shipped rules, {history}"
                if ready
                else f"not ready; see {log_dir}/prometheus.log"
            )
            print(f"  prometheus:    http://127.0.0.1:{PROMETHEUS_PORT}/  ({state})")
        else:
            print("  prometheus:    not started (no `prometheus` binary, or port 9090 busy)")
        # only now, with the figures computed after every source's first sync (/readyz), are they the
        # whole story; whole seconds, so `cycletime metrics --at` reproduces the instant exactly
        print("\n" + headline(demo_config(), float(int(time.time()))), flush=True)
        print_trend(WORK_DIR / "cycletime.db")
        if args.once:
            return 0
        print("\nCtrl-C stops everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print("demo: a component exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
