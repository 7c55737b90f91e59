"""/metrics latency at ~1k and ~10k series (p50/p99 over 200 scrapes) vs prometheus_client's own
generate_latest over the same families. Target: p99 < 100 ms at 10k series."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from synthetic import sqlite_store

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from exporters.prometheus import MetricsCache, render
from exporters.web import ExporterApp, serve_http

CONFIG = """
sources:
  - {name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/x", project: Fabrikam, token: t}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


BURST = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import requests
url, clients = sys.argv[1], int(sys.argv[2])
def scrape(_):
    start = time.perf_counter()
    resp = requests.get(url, timeout=30, headers={"Connection": "close"}, stream=True)
    resp.raw.read(decode_content=False)  # as a scraper receives it; unpacking is the scraper's work
    assert resp.status_code == 200
    return (time.perf_counter() - start) * 1000
with ThreadPoolExecutor(clients) as pool:
    print(json.dumps(list(pool.map(scrape, range(clients)))))
"""


def concurrent_burst(url: str, clients: int = 200) -> tuple[float, float]:
    """p50 and p99 (ms) of ``clients`` scrapes sent at once, each on its own connection, from another
    process (as Prometheus scrapes): in this one, the clients' threads would share the server's GIL."""
    done = subprocess.run(
        [sys.executable, "-c", BURST, url, str(clients)], capture_output=True, text=True, check=True, timeout=300
    )
    latencies: list[float] = json.loads(done.stdout)
    return statistics.median(latencies), percentile(latencies, 0.99)


def main() -> None:
    config = parse_config(CONFIG, {})
    print("scrape: GET /metrics over HTTP on 127.0.0.1, 200 scrapes each")
    print(f"{'label sets':>10} {'series':>8} {'p50 ms':>8} {'p99 ms':>8} {'generate_latest ms (reference)':>32}")
    bursts: list[tuple[int, tuple[float, float]]] = []
    for label_sets in (15, 140):
        with tempfile.TemporaryDirectory() as tmp:
            url = sqlite_store(Path(tmp) / "s.db", 20_000, label_sets=label_sets)
            from collector.store import Store

            store = Store(url)
            cache = MetricsCache(FigureCache(store, Settings.from_config(config)))
            cache.refresh(force=True)
            body = cache.exposition()
            series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
            server = serve_http(ExporterApp(cache, store, config), "127.0.0.1:0")
            base = f"http://127.0.0.1:{server.server_address[1]}/metrics"
            session = requests.Session()
            latencies = []
            for _ in range(200):
                start = time.perf_counter()
                assert session.get(base, timeout=10).status_code == 200
                latencies.append((time.perf_counter() - start) * 1000)
            burst = concurrent_burst(base)
            server.shutdown()
            families = list(cache._current[0])
            reference = []
            for _ in range(20):
                start = time.perf_counter()
                render(families)
                reference.append((time.perf_counter() - start) * 1000)
            print(
                f"{label_sets:>10} {series:>8,} {statistics.median(latencies):>8.2f} "
                f"{percentile(latencies, 0.99):>8.2f} {statistics.median(reference):>32.2f}"
            )
            bursts.append((series, burst))
    print("target: p99 < 100 ms at 10k series (the exposition is rendered once per data change, not per scrape)")
    for series, (p50, p99) in bursts:
        print(f"200 concurrent scrapes at {series:,} series: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print("target: 200 concurrent scrapes p99 < 1 s (a listen backlog too short drops SYNs, retried after 1 s)")


if __name__ == "__main__":
    main()
