"""Ours against the collectors users would write: the azure-devops SDK and PyGithub (``peers/``).

One sandbox process per size; each client does a full sync of its half of the organisation in a
process of its own, n times, in turn: ours (``peers/ours.py``, Azure DevOps or GitHub sources
into a fresh SQLite store) and the peer for that half. Per run: requests (the sandbox's
``/_sandbox/stats``), wall time, CPU time of the client's process (user + system, ``os.wait4``'s
rusage), its peak RSS (``VmHWM``, written by ``peers/measure.py``: a child's ``ru_maxrss`` carries
the parent's), and completeness: the share of the truth's records of each kind the client ended up
with (work items, state changes = revisions or timeline-derived states, deployments, changes). The
peers store nothing; ours also writes its store.

Usage: ``bench_peers.py [--runs N] [WORK_ITEMS ...]`` (default 3 runs at 2,000 and 10,000).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from bench_api import TOKEN, SandboxProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECTS = ["Fabrikam", "Tailspin"]
REPOSITORIES = {
    "contoso/web": "deployments",
    "contoso/api": "releases",
    "contoso/mobile-app": "workflow_runs:deploy.yml",
}
KINDS = ("work_items", "state_changes", "deployments", "changes")


@dataclass
class Runs:
    requests: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    complete: dict[str, float] = field(default_factory=dict)


def command(client: str, sandbox: SandboxProcess, tmp: str) -> list[str]:
    if client == "ours (azure)":
        return [sys.executable, str(HERE / "peers" / "ours.py"), sandbox.url, "azure", tmp]
    if client == "ours (github)":
        return [sys.executable, str(HERE / "peers" / "ours.py"), sandbox.url, "github", tmp]
    if client == "azure-devops SDK":
        return [sys.executable, str(HERE / "peers" / "ado_sdk_peer.py"), f"{sandbox.url}/contoso", TOKEN, *PROJECTS]
    return [
        sys.executable,
        str(HERE / "peers" / "pygithub_peer.py"),
        f"{sandbox.url}/api/v3",
        TOKEN,
        *(f"{repo}={mode}" for repo, mode in REPOSITORIES.items()),
    ]


def run_once(client: str, sandbox: SandboxProcess) -> tuple[int, float, float, float, dict[str, list[str]]]:
    """(requests, wall s, CPU s, peak RSS MB, records read) of one full sync in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp, open(f"{tmp}/out.json", "w+") as out:
        env = dict(
            os.environ,
            AZURE_DEVOPS_CACHE_DIR=tmp,  # the SDK's discovery cache: cold every run
            PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
        )
        before = sandbox.stats()["total"]
        started = time.perf_counter()
        measured = [
            sys.executable,
            str(HERE / "peers" / "measure.py"),
            f"{tmp}/peak",
            *command(client, sandbox, tmp)[1:],
        ]
        proc = subprocess.Popen(measured, stdout=out, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, f"{client} failed ({proc.returncode})"
        made = sandbox.stats()["total"] - before
        out.seek(0)
        peak_mb = int(Path(f"{tmp}/peak").read_text()) / 1024
        return made, wall, usage.ru_utime + usage.ru_stime, peak_mb, json.load(out)


def expected(truth: dict[str, Any], half: str) -> dict[str, set[str]]:
    t = truth[half]
    return {
        "work_items": {w["native_id"] for w in t["work_items"]},
        "state_changes": {f"{w['native_id']}:{h['seq']}" for w in t["work_items"] for h in w["history"]},
        "deployments": {d["native_id"] for d in t["deployments"]},
        "changes": {c["native_id"] for c in t["changes"]},
    }


def completeness(got: dict[str, list[str]], want: dict[str, set[str]]) -> dict[str, float]:
    """Share of the truth's records of each kind the client has. PyGithub's peer reads every issue's
    timeline without deriving states: each issue whose timeline it read counts for all its states."""
    out = {}
    for kind in KINDS:
        have = set(got.get(kind, []))
        if kind == "state_changes" and "histories" in got:
            read = set(got["histories"])
            have = {s for s in want[kind] if s.rsplit(":", 1)[0] in read}
        out[kind] = len(have & want[kind]) / len(want[kind]) if want[kind] else 1.0
    return out


def fmt(values: list[float], spec: str) -> str:
    return f"{min(values):{spec}} / {statistics.median(values):{spec}}"


def run(work_items: int, runs: int) -> None:
    started = time.perf_counter()
    sandbox = SandboxProcess(work_items)
    results: dict[str, Runs] = {}
    try:
        truth = requests.get(f"{sandbox.url}/_sandbox/truth", timeout=120).json()
        clients = {
            "ours (azure)": "azure",
            "azure-devops SDK": "azure",
            "ours (github)": "github",
            "PyGithub": "github",
        }
        for _ in range(runs):
            for client, half in clients.items():
                made, wall, cpu, rss, got = run_once(client, sandbox)
                r = results.setdefault(client, Runs())
                r.requests.append(made)
                r.wall.append(wall)
                r.cpu.append(cpu)
                r.rss_mb.append(rss)
                r.complete = completeness(got, expected(truth, half))
    finally:
        sandbox.stop()
    print(
        f"\n{work_items:,} work items, {runs} runs each (benchmark took {time.perf_counter() - started:.0f} s); "
        "min / median"
    )
    print(
        f"{'client':<18} {'requests':>8} {'wall s':>13} {'CPU s':>13} {'peak RSS MB':>13}   "
        + " ".join(f"{k:>13}" for k in KINDS)
    )
    for client, r in results.items():
        print(
            f"{client:<18} {min(r.requests):>8,} {fmt(r.wall, '5.1f'):>13} {fmt(r.cpu, '5.1f'):>13} "
            f"{fmt(r.rss_mb, '5.1f'):>13}   " + " ".join(f"{r.complete[k]:>12.1%} " for k in KINDS)
        )


def main(argv: list[str]) -> None:
    runs = 3
    if argv[:1] == ["--runs"]:
        runs, argv = int(argv[1]), argv[2:]
    print(
        "peers: full sync of each half of the sandbox organisation, each client in its own process; "
        "completeness = share of the truth's records of each kind"
    )
    for n in [int(a) for a in argv] or [2_000, 10_000]:
        run(n, runs)


if __name__ == "__main__":
    main(sys.argv[1:])
