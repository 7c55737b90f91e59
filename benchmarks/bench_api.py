"""API requests of a full sync and of an idle re-sync of the sandbox organisation, counted by the sandbox.

Ours (the three source kinds over both Azure DevOps projects and the three GitHub repositories,
run by ``collector.runner.Runner``) against the page-size minimum (the fewest requests any client
reading the same data through the same REST endpoints at their largest page size must make) and
against ``naive_client.NaiveClient`` (WIQL + one ``updates`` request per work item, per-record
requests, no conditional requests). The sandbox runs as its own process (``cycletime sandbox``),
so it and the client each have a core; its request counts come from ``GET /_sandbox/stats``.

Targets: full sync <= 1.1 x the minimum; idle re-sync <= 1 request per polled stream (304s, free
against GitHub's rate limit, are counted separately).

Usage: ``bench_api.py [WORK_ITEMS ...]`` (default 10,000 and 30,000; see RESULTS.md for 100,000).
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from naive_client import NaiveClient
from organisation import PROJECTS, REPOSITORIES, TOKEN, organisation_yaml

from collector.config import Config, parse_config
from collector.runner import Runner
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions, default_now

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxProcess:
    """``cycletime sandbox`` in a subprocess, with GitHub's hourly budget lifted for big syncs."""

    def __init__(self, work_items: int, seed: int = SEED, latency: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector",
                "sandbox",
                "--port",
                str(self.port),
                "--seed",
                str(seed),
                "--work-items",
                str(work_items),
                "--log-format",
                "json",
                *(["--latency", latency] if latency else []),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening" in line, f"sandbox did not start: {line!r}"
        deadline = time.time() + 60
        while True:
            try:
                requests.post(f"{self.url}/_sandbox/ratelimit", json={"limit": 10**9}, timeout=10)
                break
            except requests.ConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def organisation_config(sandbox_url: str, store_url: str, max_concurrency: int | None = None) -> Config:
    """Every project and repository of the sandbox organisation: 2 Boards, 2 Pipelines, 3 GitHub sources
    (the Azure ones at ``max_concurrency`` requests in flight, the default when None)."""
    return parse_config(organisation_yaml(sandbox_url, store_url, max_concurrency), {})


def delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(requests, of which 304) between two ``/_sandbox/stats`` snapshots."""
    return after["total"] - before["total"], after["not_modified"] - before["not_modified"]


def endpoints(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    counts = {k.split(".", 1)[1]: v - before["by_endpoint"].get(k, 0) for k, v in after["by_endpoint"].items()}
    return {k: v for k, v in sorted(counts.items()) if v}


# -- the page-size minimum ---------------------------------------------------------------------------


def boards_minimum(truth: dict[str, Any], project: str, page_size: int) -> int:
    """1 ``workitemtypes`` + ⌈revisions / page⌉ reporting pages + the relations of each item that still
    exists, once (``workitemsbatch``, 200 ids a request). Same formula as tests/sources/azure_truth.py."""
    revisions = sum(len(w["history"]) for w in truth["work_items"] if w["project"] == project)
    revisions += sum(1 for r in truth["rejected"] if r["project"] == project)
    pages = max(1, math.ceil(revisions / page_size))
    live = sum(1 for w in truth["work_items"] if w["project"] == project and not w["deleted"])
    return 1 + pages + math.ceil(live / 200)


def pipelines_minimum(truth: dict[str, Any], project: str) -> int:
    """1 environments list + ⌈records / 1000⌉ per environment + ⌈runs / 100⌉ ``builds?buildIds=`` + 2 per
    distinct (previous successful build, build) pair (changes + work items between them) + ⌈classic
    deployments / 100⌉ + 1 per release. Same formula as tests/sources/azure_truth.py."""
    deployments = [d for d in truth["deployments"] if d["project"] == project]

    def build(d: dict[str, Any]) -> int:
        return next(int(ref[6:]) for ref in d["contains"] if ref.startswith("build:"))

    yaml = [d for d in deployments if d["native_id"].startswith("env:")]
    per_env = Counter(d["native_id"].split(":")[1] for d in yaml)
    total = 1 + sum(max(1, math.ceil(n / 1000)) for n in per_env.values())
    total += math.ceil(len({build(d) for d in yaml}) / 100)
    pairs: set[tuple[int | None, int]] = set()
    last_good: dict[tuple[str, str], int] = {}
    for d in sorted(deployments, key=lambda d: (d["finished_at"], d["native_id"])):
        key = (d["service"], d["environment"])
        pairs.add((last_good.get(key), build(d)))
        if d["status"] == "success":
            last_good[key] = build(d)
    total += 2 * len({p for p in pairs if p[0] != p[1]})
    releases = [d for d in deployments if d["native_id"].startswith("release:")]
    total += max(1, math.ceil(len(releases) / 100)) + len({build(d) for d in releases})
    return total


def github_minimum(sandbox: Sandbox, repo_name: str) -> int:
    """A lower bound for one repository over REST at ``per_page=100``.

    1 repository (canonical name, default branch) + ⌈issues and PRs / 100⌉ ``/issues`` pages + 1
    timeline per valid issue + ⌈closed PRs / 100⌉ ``/pulls`` pages + 1 commit list and 1 timeline
    (readiness, reviews) per merged valid PR
    + the deliveries list ⌈n / 100⌉ + per delivery what its outcome needs (deployments: 1 statuses
    read; releases: 1 tag lookup, ``target_commitish`` being a branch) + 1 compare (or, for the first
    delivery to an environment, 1 commit list) per delivery whose commit differs from its base's, the
    base being the latest earlier successful delivery to the same environment whose commit exists.
    Multi-page timelines, commit lists and compares would only add to it.
    """
    data = sandbox.github.data
    truth = sandbox.github.truth()
    repo = data.repos[repo_name.split("/", 1)[1]]
    items = list(repo.items.values())
    total = 1 + math.ceil(len(items) / 100)
    total += sum(1 for w in truth["work_items"] if w["project"] == repo_name)
    total += math.ceil(sum(1 for i in items if i.is_pr and i.closed_at) / 100)
    total += sum(1 for c in truth["changes"] if c["service"] == repo_name)
    total += sum(1 for c in truth["changes"] if c["service"] == repo_name and c["kind"] == "pull_request")
    delivered = [d for d in truth["deployments"] if d["service"] == repo_name]
    if repo.mode == "deployments":
        total += math.ceil(len(repo.deployments) / 100) + len(repo.deployments)
    elif repo.mode == "releases":
        total += math.ceil(len(repo.releases) / 100) + len(delivered)
    else:
        total += math.ceil(sum(1 for r in repo.runs if r.workflow.path.endswith("/deploy.yml")) / 100)
    succeeded: dict[str, list[str]] = {}
    for d in delivered:  # the truth lists them in creation order
        earlier = succeeded.setdefault(d["environment"], [])
        base = next((sha for sha in reversed(earlier) if sha in repo.commits), None)
        total += base != d["sha"]  # the same commit again: nothing to ask
        if d["status"] == "success":
            earlier.append(d["sha"])
    return total


def minimums(work_items: int) -> dict[str, int]:
    """The same organisation built in this process (same seed and day), read for its sizes only."""
    sandbox = Sandbox(SandboxOptions(seed=SEED, work_items=work_items, now=default_now()))
    sandbox.server.server_close()
    truth = sandbox.azure.truth()
    out = {}
    for project, (boards, pipelines) in PROJECTS.items():
        out[boards] = boards_minimum(truth, project, sandbox.azure.page_size)
        out[pipelines] = pipelines_minimum(truth, project)
    for repo, (name, _mode) in REPOSITORIES.items():
        out[name] = github_minimum(sandbox, repo)
    return out


# -- the runs ------------------------------------------------------------------------------------------


@dataclass
class Measured:
    full: dict[str, int] = field(default_factory=dict)
    idle: dict[str, tuple[int, int]] = field(default_factory=dict)
    idle_again: dict[str, tuple[int, int]] = field(default_factory=dict)
    idle_endpoints: dict[str, dict[str, int]] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    records: int = 0


def measure_ours(sandbox: SandboxProcess, tmp: Path) -> Measured:
    config = organisation_config(sandbox.url, f"sqlite:///{tmp}/ours.db")
    store = Store(config.store)
    runner = Runner(config, store)
    out = Measured()
    started = time.perf_counter()
    for name in runner.sources:
        before = sandbox.stats()
        result = runner.run(name)
        assert result.ok, f"{name}: {result.error}"
        out.full[name] = delta(before, sandbox.stats())[0]
        out.records += result.items
    out.seconds = time.perf_counter() - started
    for name in runner.sources:  # the same runner, as `cycletime serve` polls: an idle re-sync
        before = sandbox.stats()
        assert runner.run(name).ok
        after = sandbox.stats()
        out.idle[name], out.idle_endpoints[name] = delta(before, after), endpoints(before, after)
        out.streams[name] = len(store.watermarks(name))
    for name in runner.sources:  # and the one after it
        before = sandbox.stats()
        assert runner.run(name).ok
        out.idle_again[name] = delta(before, sandbox.stats())
    store.close()
    return out


BOARDS_ENDPOINTS = {"workitemtypes", "wiql", "updates", "reporting_revisions", "workitemsbatch"}


def by_part(requests_by_endpoint: dict[str, int]) -> dict[str, int]:
    """Requests per API part: Boards, Pipelines (with classic releases), GitHub."""
    out: Counter[str] = Counter()
    for endpoint, n in requests_by_endpoint.items():
        half, _, name = endpoint.partition(".")
        out["github" if half == "github" else "boards" if name in BOARDS_ENDPOINTS else "pipelines"] += n
    return dict(out)


def measure_naive(sandbox: SandboxProcess) -> tuple[int, int, float, dict[str, int]]:
    """(full sync requests, idle re-sync requests, full sync seconds, full sync requests per API part)."""
    client = NaiveClient(
        f"{sandbox.url}/contoso",
        f"{sandbox.url}/api/v3",
        TOKEN,
        list(PROJECTS),
        {repo: mode for repo, (_name, mode) in REPOSITORIES.items()},
    )
    before = sandbox.stats()
    started = time.perf_counter()
    client.sync()
    seconds = time.perf_counter() - started
    middle = sandbox.stats()
    client.sync()
    parts = by_part({k: v - before["by_endpoint"].get(k, 0) for k, v in middle["by_endpoint"].items()})
    return delta(before, middle)[0], delta(middle, sandbox.stats())[0], seconds, parts


def run(work_items: int) -> None:
    started = time.perf_counter()
    minimum = minimums(work_items)
    sandbox = SandboxProcess(work_items)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours = measure_ours(sandbox, Path(tmp))
        naive_full, naive_idle, naive_seconds, naive_parts = measure_naive(sandbox)
    finally:
        sandbox.stop()
    print(
        f"\n{work_items:,} work items: ours synced {ours.records:,} records in {ours.seconds:.0f} s "
        f"(naive client: {naive_seconds:.0f} s); benchmark took {time.perf_counter() - started:.0f} s"
    )
    print(
        f"{'source':<20} {'full':>8} {'minimum':>8} {'x min':>6} {'watermarks':>10} {'idle (304s)':>12} "
        f"{'next idle (304s)':>17}"
    )

    def row(
        label: str, full: int, least: int, streams: int | str, idle: tuple[int, int], again: tuple[int, int] | None
    ) -> None:
        later = f"{again[0]} ({again[1]})" if again else "-"
        print(
            f"{label:<20} {full:>8,} {least:>8,} {full / least:>6.3f} {streams:>10} {f'{idle[0]} ({idle[1]})':>12} "
            f"{later:>17}"
        )

    for name, full in ours.full.items():
        row(name, full, minimum[name], ours.streams[name], ours.idle[name], ours.idle_again[name])

    def total(parts: dict[str, tuple[int, int]]) -> tuple[int, int]:
        return sum(i for i, _ in parts.values()), sum(n for _, n in parts.values())

    least = sum(minimum.values())
    row(
        "ours, total",
        sum(ours.full.values()),
        least,
        sum(ours.streams.values()),
        total(ours.idle),
        total(ours.idle_again),
    )
    row("naive client, total", naive_full, least, "-", (naive_idle, 0), None)
    ours_parts: Counter[str] = Counter()
    for name, n in ours.full.items():
        ours_parts[
            "boards" if name.startswith("boards") else "pipelines" if name.startswith("pipelines") else "github"
        ] += n
    print(
        "full sync by part, ours vs naive client: "
        + ", ".join(
            f"{part} {ours_parts[part]:,} vs {naive_parts.get(part, 0):,}" for part in ("boards", "pipelines", "github")
        )
    )
    print(
        "idle re-sync by endpoint: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in parts.items()) for name, parts in ours.idle_endpoints.items()
        )
    )


def main(sizes: list[int]) -> None:
    print(
        "api requests: full sync then idle re-sync of the sandbox organisation (2 Azure DevOps projects, "
        "3 GitHub repositories), counted by the sandbox"
    )
    for n in sizes:
        run(n)
    print(
        "\ntargets: full <= 1.1 x minimum; idle <= 1 request per polled list (watermarks: the streams a source "
        "keeps a position for; the idle breakdown shows every list polled; 304s are free against GitHub's "
        "rate limit)"
    )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 30_000])
