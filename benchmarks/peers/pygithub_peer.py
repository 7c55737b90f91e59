"""A GitHub collector written as a user would, with PyGithub: the peer of our ``github`` source.

Per repository: every issue (``get_issues(state="all")``) and each one's timeline; every closed pull
request and each merged one's commits; the deliveries of the repository's mode (deployments and
each one's statuses, releases and each tag's commit, or ``deploy.yml`` runs on the default branch
and each one's jobs); and for each successful production delivery the commits since the previous
one (``compare``, or the commit list for the first). ``per_page=100`` and no pause between
requests (PyGithub's default ``seconds_between_requests=0.25`` would be artificial slowness).

What PyGithub cannot do: a ``PaginatedList`` sends no ``If-None-Match``, so every re-sync of a
list costs a full request against the rate limit; and it lazy-loads: reading ``pull_request`` of an
issue whose list entry has none (every plain issue) fetches the issue again, one more request per
issue, as the obvious ``if issue.pull_request`` does. It keeps everything in memory and stores
nothing.

Usage: ``pygithub_peer.py BASE_URL TOKEN OWNER/REPO=MODE ...``; prints the records it read as JSON
(the native ids of the sandbox's truth).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from github import Auth, Github, GithubException

PRODUCTION = "production"


def deliveries(repo: Any, mode: str) -> list[dict[str, Any]]:
    """(native id, environment, sha, status, created) of each finished delivery, oldest first."""
    out = []
    if mode == "deployments":
        for d in repo.get_deployments():
            finished = [s for s in d.get_statuses() if s.state in ("success", "failure", "error")]
            if finished:
                latest = max(finished, key=lambda s: s.created_at)
                out.append(
                    {
                        "id": f"deployment:{d.id}",
                        "environment": d.environment,
                        "sha": d.sha,
                        "success": latest.state == "success",
                        "at": d.created_at,
                    }
                )
    elif mode == "releases":
        for r in repo.get_releases():
            if not (r.draft or r.prerelease or r.published_at is None):
                sha = repo.get_git_ref(f"tags/{r.tag_name}").object.sha
                out.append(
                    {
                        "id": f"release:{r.id}",
                        "environment": PRODUCTION,
                        "sha": sha,
                        "success": True,
                        "at": r.created_at,
                    }
                )
    else:
        workflow = repo.get_workflow(mode.split(":", 1)[1])
        for run in workflow.get_runs(branch=repo.default_branch, status="completed"):
            if run.conclusion in ("success", "failure", "timed_out"):
                list(run.jobs())  # the finish time is the last job's, not the run's updated_at
                out.append(
                    {
                        "id": f"run:{run.id}",
                        "environment": PRODUCTION,
                        "sha": run.head_sha,
                        "success": run.conclusion == "success",
                        "at": run.created_at,
                    }
                )
    return sorted(out, key=lambda d: (d["at"], d["id"]))


def sync_repository(g: Github, name: str, mode: str) -> dict[str, list[str]]:
    repo = g.get_repo(name)
    out: dict[str, list[str]] = {"work_items": [], "histories": [], "deployments": [], "changes": []}
    for issue in repo.get_issues(state="all"):
        if issue.pull_request is not None and issue.pull_request.html_url:
            continue
        out["work_items"].append(f"{name}#{issue.number}")
        list(issue.get_timeline())
        out["histories"].append(f"{name}#{issue.number}")
    in_prs: set[str] = set()
    for pr in repo.get_pulls(state="closed"):
        if pr.merged_at is None:
            continue
        in_prs.update(c.sha for c in pr.get_commits())
        in_prs.add(pr.merge_commit_sha)
        out["changes"].append(f"{name}#{pr.number}")
    base: dict[str, str] = {}
    pushed: set[str] = set()
    for d in deliveries(repo, mode):
        out["deployments"].append(d["id"])
        if not (d["success"] and d["environment"] == PRODUCTION) or base.get(d["environment"]) == d["sha"]:
            continue
        try:
            if d["environment"] in base:
                shas = [c.sha for c in repo.compare(base[d["environment"]], d["sha"]).commits]
            else:
                shas = [c.sha for c in repo.get_commits(sha=d["sha"])]
        except GithubException:  # a force-pushed commit: 404/422, nothing to read
            continue
        pushed.update(s for s in shas if s not in in_prs)
        base[d["environment"]] = d["sha"]
    out["changes"] += [f"{name}@{sha}" for sha in sorted(pushed)]
    return out


def sync(base_url: str, token: str, repositories: dict[str, str]) -> dict[str, list[str]]:
    g = Github(base_url=base_url, auth=Auth.Token(token), per_page=100, seconds_between_requests=None)
    out: dict[str, list[str]] = {}
    for name, mode in repositories.items():
        for kind, ids in sync_repository(g, name, mode).items():
            out.setdefault(kind, []).extend(ids)
    return out


if __name__ == "__main__":
    repos = dict(arg.split("=", 1) for arg in sys.argv[3:])
    json.dump(sync(sys.argv[1], sys.argv[2], repos), sys.stdout)
