"""Peak RSS of `cycletime serve` holding 1M completed items (4M revisions). Target: < 400 MB."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from synthetic import sqlite_store

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(n: int = 1_000_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        url = sqlite_store(Path(tmp) / "store.db", n)
        print(f"memory: built a store of {n:,} items in {time.perf_counter() - start:.0f} s")
        port, dead = free_port(), free_port()
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:{port}\nstore: {url}\npoll_interval: 1h\nsources:\n"
            f"  - {{name: boards, kind: azure_boards, organization_url: 'http://127.0.0.1:{dead}/x',"
            " project: Fabrikam, token: t}\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--config", str(cfg), "--log-format", "json"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            start = time.perf_counter()
            while True:
                try:
                    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
                    break
                except requests.RequestException:
                    assert proc.poll() is None, "serve exited"
                    time.sleep(0.5)
            ready = time.perf_counter() - start
            count = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("cycletime_work_item_lead_time_seconds_count")
            )
            assert count == n, count
            peak, now = vm(proc.pid, "VmHWM"), vm(proc.pid, "VmRSS")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(f"{'items':>10} {'first /metrics s':>17} {'peak RSS MB':>12} {'RSS after MB':>13}")
    print(f"{n:>10,} {ready:>17.1f} {peak:>12.0f} {now:>13.0f}")
    print("target: peak RSS < 400 MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
