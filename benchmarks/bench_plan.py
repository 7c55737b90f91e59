"""The product's request plan against the true minimum (``minimum.py``), full sync and idle.

The sandbox runs as its own process; ours (``collector.runner.Runner`` over the whole organisation,
as ``cycletime serve`` runs it) does a full sync, then an idle pass, each counted by the sandbox's
``/_sandbox/stats``. The minimum comes from ``/_sandbox/truth`` alone (see ``minimum.py``). Every
stream over its minimum is listed with its excess.

Target: <= 1.1 x the minimum, full sync and idle, per source and in total.

Usage: ``bench_plan.py [WORK_ITEMS ...]`` (default 2,000 and 10,000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import minimum
import requests
from bench_api import SandboxProcess, organisation_config

from collector.runner import Runner
from collector.store import Store

TARGET = 1.1

#: sandbox endpoint -> the stream of ``minimum.py`` it serves
STREAMS = {
    "azure.workitemtypes": "workitemtypes",
    "azure.reporting_revisions": "reporting_revisions",
    "azure.workitemsbatch": "workitemsbatch",
    "azure.environments": "environments",
    "azure.environment_records": "environment_records",
    "azure.builds": "builds",
    "azure.build": "builds",
    "azure.build_changes": "build_contents",
    "azure.build_workitems": "build_contents",
    "azure.changes_between_builds": "build_contents",
    "azure.workitems_between_builds": "build_contents",
    "azure.release_deployments": "release_deployments",
    "azure.release": "releases",
    "github.repo": "repository",
    "github.issues": "issues",
    "github.issue_timeline": "timelines",
    "github.pulls": "pulls",
    "github.pull_commits": "pull_commits",
    "github.deployments": "deliveries",
    "github.deployment_statuses": "deliveries",
    "github.releases": "deliveries",
    "github.release": "deliveries",
    "github.git_ref": "deliveries",
    "github.workflow_runs": "deliveries",
    "github.workflow_run": "deliveries",
    "github.workflow_run_jobs": "deliveries",
    "github.compare": "contents",
    "github.commits": "contents",
    "github.commit": "contents",
}


def by_stream(before: dict[str, Any], after: dict[str, Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for endpoint, n in after["by_endpoint"].items():
        if n - before["by_endpoint"].get(endpoint, 0):
            out[STREAMS.get(endpoint, endpoint)] += n - before["by_endpoint"].get(endpoint, 0)
    return out


def measure(
    sandbox: SandboxProcess, tmp: Path
) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]], dict[str, int]]:
    """(full sync by source and stream, idle pass by source and stream, idle 304s by source)."""
    store = Store(organisation_config(sandbox.url, f"sqlite:///{tmp}/plan.db").store)
    runner = Runner(organisation_config(sandbox.url, f"sqlite:///{tmp}/plan.db"), store)
    full, idle, not_modified = {}, {}, {}
    for name in runner.sources:
        before = sandbox.stats()
        result = runner.run(name)
        assert result.ok, f"{name}: {result.error}"
        full[name] = by_stream(before, sandbox.stats())
    for name in runner.sources:
        before = sandbox.stats()
        assert runner.run(name).ok
        after = sandbox.stats()
        idle[name] = by_stream(before, after)
        not_modified[name] = after["not_modified"] - before["not_modified"]
    store.close()
    return full, idle, not_modified


def run(work_items: int) -> None:
    started = time.perf_counter()
    sandbox = SandboxProcess(work_items)
    try:
        truth = requests.get(f"{sandbox.url}/_sandbox/truth", timeout=120).json()
        with tempfile.TemporaryDirectory() as tmp:
            full, idle, not_modified = measure(sandbox, Path(tmp))
    finally:
        sandbox.stop()
    least, least_idle = minimum.full_sync(truth), minimum.idle(truth)
    print(f"\n{work_items:,} work items (benchmark took {time.perf_counter() - started:.0f} s)")
    print(
        f"{'source':<20} {'full':>8} {'minimum':>8} {'x min':>6}   {'idle':>5} {'minimum':>8} {'x min':>6} "
        f"{'idle 304s':>9}"
    )
    totals = Counter()
    misses = []
    for name in full:
        row = (
            sum(full[name].values()),
            sum(least[name].values()),
            sum(idle[name].values()),
            sum(least_idle[name].values()),
            not_modified[name],
        )
        totals.update(dict(zip(("full", "least", "idle", "least_idle", "304"), row, strict=True)))
        print(
            f"{name:<20} {row[0]:>8,} {row[1]:>8,} {row[0] / row[1]:>6.3f}   {row[2]:>5} {row[3]:>8} "
            f"{row[2] / row[3]:>6.2f} {row[4]:>9}"
        )
        for label, ours, floor in (("full", full[name], least[name]), ("idle", idle[name], least_idle[name])):
            if sum(ours.values()) > TARGET * sum(floor.values()):
                excess = {
                    s: ours[s] - floor.get(s, 0) for s in sorted(set(ours) | set(floor)) if ours[s] != floor.get(s, 0)
                }
                misses.append(
                    f"{name} {label}: "
                    + ", ".join(f"{s} {ours[s]:,} vs {floor.get(s, 0):,} ({d:+,})" for s, d in excess.items())
                )
    print(
        f"{'total':<20} {totals['full']:>8,} {totals['least']:>8,} {totals['full'] / totals['least']:>6.3f}   "
        f"{totals['idle']:>5} {totals['least_idle']:>8} {totals['idle'] / totals['least_idle']:>6.2f} "
        f"{totals['304']:>9}"
    )
    for part in ("boards", "pipelines", "gh_"):
        ours_part = sum(sum(full[n].values()) for n in full if n.startswith(part))
        least_part = sum(sum(least[n].values()) for n in full if n.startswith(part))
        print(
            f"  {part.rstrip('_') if part != 'gh_' else 'github'}: {ours_part:,} vs {least_part:,} "
            f"= {ours_part / least_part:.3f} x"
        )
    print("over the target (stream: ours vs minimum):" if misses else "every source within the target")
    for line in misses:
        print(f"  {line}")


def main(sizes: list[int]) -> None:
    print(f"request plan: ours vs the minimum computed from the sandbox's truth (minimum.py); target <= {TARGET} x")
    for n in sizes:
        run(n)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2_000, 10_000])
