"""The GitHub plans compared: a full sync and an idle pass of the sandbox organisation's GitHub
repositories with ``api: rest``, ``auto`` and ``graphql``, counted by the sandbox (requests by
endpoint, 304s) and by the collector (GraphQL points from ``rateLimit.cost``).

Budget = GraphQL points + REST requests that count against the rate limit (a 304 does not).
Targets: a full sync's budget <= 1/10 of the REST plan's (9,931 requests at 10,000 work items when
the target was set); an idle pass's budget <= the REST plan's idle pass.

Usage: ``bench_github_plan.py [WORK_ITEMS]`` (default 10,000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_api import SandboxProcess

from collector.config import GitHubConfig
from collector.sources.base import SourceContext
from collector.sources.github import GitHubSource
from collector.store import Store

TOKEN = "sandbox-token"
REPOSITORIES = {
    "contoso/web": "deployments",
    "contoso/api": "releases",
    "contoso/mobile-app": "workflow_runs:deploy.yml",
}
PLANS = ("rest", "auto", "graphql")


def _sources(url: str, api: str) -> list[tuple[GitHubSource, SourceContext]]:
    out = []
    for repo, mode in REPOSITORIES.items():
        ctx = SourceContext(now=lambda: datetime.now(UTC))
        config = GitHubConfig(
            name="gh_" + repo.split("/")[1].replace("-", "_"),
            kind="github",
            base_url=f"{url}/api/v3",
            token=TOKEN,
            repositories=[repo],
            deployments_from=mode,
            api=api,
        )
        out.append((GitHubSource(config, ctx), ctx))
    return out


def _pass(sandbox: SandboxProcess, sources: list[tuple[GitHubSource, SourceContext]], store: Store) -> dict[str, Any]:
    """One pass over every source: REST requests (and 304s), GraphQL queries and points, wall seconds."""
    before = sandbox.stats()
    points = [source.graphql.budget.spent if source.graphql else 0 for source, _ in sources]
    started = time.perf_counter()
    for source, _ in sources:
        report = source.sync(store)
        assert not report.problems, report.problems
    wall = time.perf_counter() - started
    after = sandbox.stats()
    by_endpoint = Counter(after["by_endpoint"]) - Counter(before["by_endpoint"])
    graphql = sum(n for k, n in by_endpoint.items() if "graphql" in k)
    total = after["total"] - before["total"]
    not_modified = after["not_modified"] - before["not_modified"]
    spent = sum(source.graphql.budget.spent if source.graphql else 0 for source, _ in sources) - sum(points)
    rest = total - graphql
    return {
        "rest": rest,
        "rest_counted": rest - not_modified,
        "not_modified": not_modified,
        "graphql_queries": graphql,
        "graphql_points": spent,
        "budget": spent + rest - not_modified,
        "wall": wall,
        "rest_endpoints": {k.split(".", 1)[1]: n for k, n in sorted(by_endpoint.items()) if "graphql" not in k},
    }


def run(work_items: int) -> dict[str, dict[str, Any]]:
    sandbox = SandboxProcess(work_items)
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for api in PLANS:
                store = Store(f"sqlite:///{Path(tmp)}/{api}.db")
                sources = _sources(sandbox.url, api)
                full = _pass(sandbox, sources, store)
                idle = _pass(sandbox, sources, store)
                again = _pass(sandbox, sources, store)
                digest = {k: v for k, v in store.content_digest().items() if k != "watermarks"}
                results[api] = {"full": full, "idle": idle, "idle_again": again, "digest": digest}
                store.close()
    finally:
        sandbox.stop()
    return results


def main(work_items: int) -> None:
    results = run(work_items)
    rest_full = results["rest"]["full"]["budget"]
    print(f"GitHub plans, {work_items:,} work items (3 repositories; budget = GraphQL points + counted REST requests)")
    print(
        f"{'plan':<8} {'REST':>7} {'GQL q':>6} {'GQL pts':>8} {'budget':>7} {'x REST':>7} {'wall s':>7} "
        f"{'idle budget (304s)':>19} {'next idle (304s)':>17}"
    )
    for api, r in results.items():
        full, idle, again = r["full"], r["idle"], r["idle_again"]
        print(
            f"{api:<8} {full['rest']:>7,} {full['graphql_queries']:>6,} {full['graphql_points']:>8,} "
            f"{full['budget']:>7,} {full['budget'] / rest_full:>7.3f} {full['wall']:>7.1f} "
            f"{idle['budget']:>11} ({idle['not_modified']}) {again['budget']:>10} ({again['not_modified']})"
        )
    for api, r in results.items():
        print(f"{api} full sync REST by endpoint: {r['full']['rest_endpoints']}")
    rows = sum(len(v) for v in results["rest"]["digest"].values())
    for api in ("auto", "graphql"):
        same = results[api]["digest"] == results["rest"]["digest"]
        print(f"{api}: the same stored rows as rest ({rows:,} rows): {'yes' if same else 'NO'}")
    target = rest_full / 10
    auto = results["auto"]["full"]["budget"]
    print(
        f"target full sync <= {target:,.0f} (1/10 of REST's {rest_full:,}): auto {auto:,} "
        f"{'met' if auto <= target else 'MISSED'}; idle auto {results['auto']['idle_again']['budget']} "
        f"<= REST {results['rest']['idle_again']['budget']}: "
        f"{'met' if results['auto']['idle_again']['budget'] <= results['rest']['idle_again']['budget'] else 'MISSED'}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
