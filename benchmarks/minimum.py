"""The fewest requests a complete full sync of the sandbox organisation needs, from its ground truth alone.

Independent of the product: this reads ``GET /_sandbox/truth`` (what a perfect sync stores) and
counts, per source and per stream, the requests any REST client must make to read that data at the
largest page size each API documents. It never looks at how ``collector`` reads anything.

What must be read, and why (each line is one stream in the result):

Azure Boards (per project)
  - ``workitemtypes``: 1 (the state → category map; one call covers every type).
  - ``reporting_revisions``: ⌈revisions / 200⌉. The spec gives ``$maxPageSize`` no bound
    (vsts-rest-api-specs wit/7.1 workItemTracking.json: "The maximum number of results to return
    in this batch"); 200 is the largest batch the sandbox sends, as the service is observed to
    (not documented: a larger real batch would lower this minimum and raise our ratio).
  - ``workitemsbatch``: ⌈work items / 200⌉ with ``$expand=Relations``: the reporting stream has no
    relations (artifact links), and ``workitemsbatch`` takes at most 200 ids (VS403474).
Azure Pipelines (per project)
  - ``environments``: 1.
  - ``environment_records``: ⌈records / 1000⌉ per environment, records = the jobs the truth's
    deployments are made of. The spec documents ``top`` without a bound (distributedTask/7.1
    taskAgent.json); 1000 is the most the sandbox serves. A lower bound: canceled and skipped
    records are listed by the API but absent from the truth.
  - ``builds``: the commit a run built is not in its environment record: the cheaper of
    ⌈deployed runs / 100⌉ ``builds?buildIds=`` (100 ids keep the URL short) and every build of the
    project listed ⌈builds / 1000⌉ (``$top`` is unbounded in build/7.1 build.json; 1000 is the
    service's default page).
  - ``build_contents``: 2 per distinct (previous successful production build, build) pair of a
    *successful production* deployment (its changes and its work items; the only deployments whose
    contents a figure uses); one page each (``$top`` is unbounded in build/7.1 build.json).
  - ``release_deployments``: ⌈classic deployments / 100⌉: ``$top`` is capped at 100 by the service
    (azure-devops-node-api #562: "not returning more than 100 deployments per call").
  - ``releases``: 1 ``release/releases/{id}`` per distinct release (its build artifact: the list
    leaves ``release.artifacts`` empty).
GitHub (per repository), REST, ``per_page`` ≤ 100 (github/rest-api-description, every list)
  - ``repository``: 1 for a workflow-runs source only (its default branch decides which runs count).
  - ``issues``: ⌈(issues + merged PRs) / 100⌉ ``/issues`` pages (the list includes PRs; PRs that
    never merged are not in the truth, so a lower bound).
  - ``timelines``: 1 per issue: ``cross-referenced`` events exist only in the timeline, and REST
    has no bulk form of it (multi-page timelines would add more); and 1 per merged PR: its
    ``ready_for_review`` events are only in the timeline and events lists, its reviews and review
    comments in the timeline or two lists of their own (``/reviews``, ``/comments``).
  - ``pulls``: ⌈merged PRs / 100⌉ ``/pulls?state=closed`` (``merge_commit_sha``).
  - ``pull_commits``: ⌈commits / 100⌉ per merged PR (at least 1).
  - ``deliveries``: the deliveries list ⌈n / 100⌉, plus per delivery what its outcome needs:
    a deployment's statuses (1), a release's tag commit (1 ``git/ref``), a run's jobs (1, its
    finish time).
  - ``contents``: per *successful production* delivery whose commit differs from its base's (the
    latest earlier successful production delivery of the same service whose commit still exists):
    1 compare of ≤ 250 commits (else ⌈commits / 100⌉ pages); the first one, without a base, a
    commit list ⌈commits / 100⌉; a delivery of a commit that no longer exists still costs the
    1 request that finds it gone.

Idle (a second pass with nothing new): 1 request per stream a client must poll: the reporting
revisions stream; every environment's records, the environments list and the classic deployments
list; ``/issues``, ``/pulls`` and the deliveries list. Run contents, timelines and the like are only
read for new records, so they cost nothing when nothing changed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

REVISIONS_PAGE = 200
BATCH_IDS = 200
RECORDS_PAGE = 1000
BUILD_IDS = 100
BUILDS_PAGE = 1000
RELEASE_DEPLOYMENTS_PAGE = 100
PER_PAGE = 100
COMPARE_UNPAGED = 250


def pages(n: int, size: int) -> int:
    """Requests to list ``n`` records at ``size`` a page: an empty list still costs one."""
    return max(1, math.ceil(n / size))


def boards(truth: dict[str, Any], project: str) -> dict[str, int]:
    items = [w for w in truth["work_items"] if w["project"] == project]
    revisions = sum(len(w["history"]) for w in items)
    revisions += sum(1 for r in truth["rejected"] if r["project"] == project)
    return {
        "workitemtypes": 1,
        "reporting_revisions": pages(revisions, REVISIONS_PAGE),
        "workitemsbatch": math.ceil(sum(1 for w in items if not w["deleted"]) / BATCH_IDS),
    }


def _build(deployment: dict[str, Any]) -> int:
    return next(int(ref[6:]) for ref in deployment["contains"] if ref.startswith("build:"))


def pipelines(truth: dict[str, Any], project: str) -> dict[str, int]:
    deployments = [d for d in truth["deployments"] if d["project"] == project]
    yaml = [d for d in deployments if d["native_id"].startswith("env:")]
    classic = [d for d in deployments if d["native_id"].startswith("release:")]
    records: dict[str, int] = defaultdict(int)
    for d in yaml:
        records[d["native_id"].split(":")[1]] += d.get("jobs", 1)
    pairs: set[tuple[int | None, int]] = set()
    last_good: dict[tuple[str, str], int] = {}
    for d in sorted(deployments, key=lambda d: (d["finished_at"], d["native_id"])):
        if not (d["production"] and d["status"] == "success"):
            continue
        key = (d["service"], d["environment"])
        if last_good.get(key) != _build(d):
            pairs.add((last_good.get(key), _build(d)))
        last_good[key] = _build(d)
    out = {
        "environments": 1,
        "environment_records": sum(pages(n, RECORDS_PAGE) for n in records.values()),
        "builds": min(
            math.ceil(len({_build(d) for d in yaml}) / BUILD_IDS),
            pages(sum(1 for b in truth["builds"] if b["project"] == project), BUILDS_PAGE),
        ),
        "build_contents": 2 * len(pairs),
    }
    if classic:
        out["release_deployments"] = pages(len(classic), RELEASE_DEPLOYMENTS_PAGE)
        out["releases"] = len({_build(d) for d in classic})  # a release deploys one build run
    return out


def github(truth: dict[str, Any], repo: str) -> dict[str, int]:
    mode = truth["repos"][repo]
    issues = [w for w in truth["work_items"] if w["project"] == repo]
    merged = [c for c in truth["changes"] if c["service"] == repo and c["kind"] == "pull_request"]
    delivered = [d for d in truth["deployments"] if d["service"] == repo]
    out = {
        "repository": 1 if mode.startswith("workflow_runs") else 0,
        "issues": pages(len(issues) + len(merged), PER_PAGE),
        "timelines": len(issues) + len(merged),
        "pulls": pages(len(merged), PER_PAGE),
        "pull_commits": sum(pages(len(c["commits"]) - 1, PER_PAGE) for c in merged),
        "deliveries": pages(len(delivered), PER_PAGE) + len(delivered),
    }
    contents = 0
    bases: dict[str, str] = {}  # environment -> sha of the latest successful production delivery that exists
    for d in sorted(delivered, key=lambda d: (d["started_at"], d["native_id"])):
        if not (d["production"] and d["status"] == "success"):
            continue
        base = bases.get(d["environment"])
        if base == d["sha"]:
            continue  # the same commit again: nothing to ask
        commits = len(d["contains"])
        if base is None:
            contents += pages(commits, PER_PAGE)
        else:
            contents += 1 if commits <= COMPARE_UNPAGED else math.ceil(commits / PER_PAGE)
        if commits:  # an empty answer: the commit is gone, it cannot be a base
            bases[d["environment"]] = d["sha"]
    out["contents"] = contents
    return out


#: source name (as bench_api.organisation_config names them) -> (half, what it reads)
SOURCES = {
    "boards": ("azure", "Fabrikam"),
    "pipelines": ("azure", "Fabrikam"),
    "boards_tailspin": ("azure", "Tailspin"),
    "pipelines_tailspin": ("azure", "Tailspin"),
    "gh_web": ("github", "contoso/web"),
    "gh_api": ("github", "contoso/api"),
    "gh_mobile_app": ("github", "contoso/mobile-app"),
}


def full_sync(truth: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per source, per stream: the fewest requests of a complete full sync."""
    out = {}
    for name, (half, scope) in SOURCES.items():
        if half == "github":
            out[name] = github(truth["github"], scope)
        elif name.startswith("boards"):
            out[name] = boards(truth["azure"], scope)
        else:
            out[name] = pipelines(truth["azure"], scope)
    return out


def idle(truth: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per source, per stream: the fewest requests of a pass that finds nothing new."""
    out: dict[str, dict[str, int]] = {}
    for name, (half, scope) in SOURCES.items():
        if half == "github":
            out[name] = {"issues": 1, "pulls": 1, "deliveries": 1}
        elif name.startswith("boards"):
            out[name] = {"reporting_revisions": 1}
        else:
            deployments = [d for d in truth["azure"]["deployments"] if d["project"] == scope]
            environments = {d["native_id"].split(":")[1] for d in deployments if d["native_id"].startswith("env:")}
            out[name] = {"environments": 1, "environment_records": len(environments)}
            if any(d["native_id"].startswith("release:") for d in deployments):
                out[name]["release_deployments"] = 1
    return out
