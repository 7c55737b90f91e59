"""``owner/*`` at organisation scale: requests of discovery, a first sync, idle passes and a push.

The sandbox organisation gets N more repositories beside its three services (``--github-repos``:
of every twenty, nine empty, five archived, five forks, one small live repository); one GitHub
source reads ``contoso/*`` with the default ``skip_*`` options. Requests are counted per endpoint
by the sandbox (``/_sandbox/stats``); 304s (free against GitHub's rate limit) separately.

Target: an idle pass asks at most one request per kept repository: under ``auto`` (the default)
the listing's page 1, one GraphQL change probe per 100 kept repositories and the conditional
re-read of unfinished deployments; under ``rest`` two conditional requests per kept repository
(issues, deliveries) (docs/definitions.md "Idle passes"). GraphQL points are counted apart.

Usage: ``bench_owner.py [--api auto|rest|graphql] [REPOSITORIES ...]`` (default auto; 2,000 and 10,000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from collector.config import GitHubConfig
from collector.sources.base import SourceContext
from collector.sources.github import GitHubSource
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions, default_now

TOKEN = "sandbox-token"


def delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int, int, dict[str, int]]:
    by = {k: v - before["by_endpoint"].get(k, 0) for k, v in after["by_endpoint"].items()}
    points = sum(after["points_by_endpoint"].values()) - sum(before["points_by_endpoint"].values())
    return (
        after["total"] - before["total"],
        after["not_modified"] - before["not_modified"],
        points,
        {k.removeprefix("github."): v for k, v in sorted(by.items()) if v},
    )


def run(extra: int, api: str) -> None:
    now = default_now()
    clock = {"now": now}
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=now, github_repos=extra)) as sandbox:
        sandbox.github.set_rate_limit(limit=10**7)  # the budget is not what is measured here
        kept = sum(1 for r in sandbox.github.data.repos.values() if r.main and not r.archived and not r.fork)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{Path(tmp)}/owner.db")
            config = GitHubConfig(
                name="github",
                kind="github",
                base_url=sandbox.github_url,
                token=TOKEN,
                repositories=["contoso/*"],
                api=api,
            )
            source = GitHubSource(config, SourceContext(now=lambda: clock["now"]))
            print(f"\n{len(sandbox.github.data.repos):,} repositories, {kept:,} kept by the default options, api {api}")
            print(f"{'pass':<34} {'requests':>8} {'304s':>6} {'per kept':>8} {'points':>6} {'seconds':>7}  by endpoint")
            steps = ("first sync", "idle (issues `since` re-asked)", "idle", "after a push to 2 repositories")
            for label in steps:
                if label.startswith("after a push"):
                    clock["now"] = now + timedelta(hours=1)
                    repos = sandbox.github.data.repos
                    empty = sorted(n for n, r in repos.items() if not r.main)
                    live = sorted(n for n, r in repos.items() if r.main and not (r.service or r.archived or r.fork))
                    for name in (empty[0], live[0]):  # a first push, and a push to a kept repository
                        sandbox.github.push(name, clock["now"])
                before = sandbox.server.stats.snapshot()
                started = time.perf_counter()
                report = source.sync(store)
                seconds = time.perf_counter() - started
                total, not_modified, points, by = delta(before, sandbox.server.stats.snapshot())
                assert not report.problems, report.problems
                per = total / kept
                print(f"{label:<34} {total:>8,} {not_modified:>6,} {per:>8.2f} {points:>6,} {seconds:>7.1f}  {by}")
            store.close()


def main(args: list[str]) -> None:
    api = "auto"
    if args[:1] == ["--api"]:
        api, args = args[1], args[2:]
    for n in [int(a) for a in args] or [2_000, 10_000]:
        run(n, api)


if __name__ == "__main__":
    main(sys.argv[1:])
