"""Contract tests of the sandbox's Azure Repos endpoints, with plain ``requests``.

Shapes are checked against ``specification/git/7.1/git.json`` (``GitPullRequest``,
``GitCommitRef``, ``GitPullRequestCommentThread``, ``ResourceRef``) and its httpExamples (the
vendored copies in ``tests/fixtures/azure``); paging against the reference (``$top``/``$skip`` on the
pull request list, a continuation token on a pull request's commits); the data against the rest of
the organisation: merge commits are the builds' ``sourceVersion``, and a pull request's work items
are the Boards items whose ``Pull Request`` ArtifactLink names it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from conftest import ADO_ORG_NOW, ADO_ORG_TOKEN

from sandbox.app import Sandbox
from sandbox.azure.data import SeededAzureOrg
from sandbox.azure.repos import COMMITS_PAGE

NOW, TOKEN = ADO_ORG_NOW, ADO_ORG_TOKEN
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "azure"


def example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8-sig"))["responses"]["200"]["body"]


def repositories(ado_org: Sandbox, ado_api: requests.Session, project: str = "Fabrikam") -> dict[str, dict[str, Any]]:
    body = ado_api.get(f"{ado_org.url}/contoso/{project}/_apis/git/repositories").json()
    return {r["name"]: r for r in body["value"]}


def completed(ado_org: Sandbox, ado_api: requests.Session, repo: str, **params: Any) -> list[dict[str, Any]]:
    url = f"{ado_org.url}/contoso/Fabrikam/_apis/git/repositories/{repo}/pullrequests"
    return ado_api.get(url, params={"searchCriteria.status": "completed", **params}).json()["value"]


def test_repositories_and_pull_requests_have_the_reference_shapes(ado_org: Sandbox, ado_api: requests.Session) -> None:
    repos = repositories(ado_org, ado_api)
    assert set(repos) == {"web", "payments"}
    official_repo = example("GET__git_repositories.json")["value"][1]
    assert set(official_repo) <= set(repos["web"])
    prs = completed(ado_org, ado_api, repos["web"]["id"], **{"$top": 1000})
    assert prs
    official = example("GET__git_repositories__repositoryId__pullRequests_status-completed.json")["value"][0]
    # every key of the official example, except those some answers leave out
    optional = {"description", "closedBy", "isDraft"}
    for pr in prs:
        assert set(official) - optional <= set(pr)
        assert pr["status"] == "completed" and pr["repository"]["id"] == repos["web"]["id"]
        assert _t(pr["creationDate"]) <= _t(pr["closedDate"])
    assert any("description" not in pr for pr in prs) and any("isDraft" not in pr for pr in prs)
    assert any(not pr["reviewers"] for pr in prs)
    # a repository is named by id or by name; the active list (the default status) is empty here
    assert completed(ado_org, ado_api, "WEB", **{"$top": 1000}) == prs
    url = f"{ado_org.url}/contoso/Fabrikam/_apis/git/repositories/web/pullrequests"
    assert ado_api.get(url).json() == {"value": [], "count": 0}
    missing = ado_api.get(f"{ado_org.url}/contoso/Fabrikam/_apis/git/repositories/nope/pullrequests")
    assert missing.status_code == 404 and missing.json()["typeKey"] == "GitRepositoryNotFoundException"


def test_the_list_pages_with_top_and_skip_and_filters_by_closed_time(
    ado_org: Sandbox, ado_api: requests.Session
) -> None:
    every = completed(ado_org, ado_api, "web", **{"$top": 1000})
    ids = [pr["pullRequestId"] for pr in every]
    assert ids == sorted(ids, reverse=True)  # newest first
    pages = [completed(ado_org, ado_api, "web", **{"$top": 7, "$skip": skip}) for skip in range(0, len(ids), 7)]
    assert [pr["pullRequestId"] for page in pages for pr in page] == ids
    assert len(completed(ado_org, ado_api, "web")) == min(len(ids), 101)  # the service's default page
    middle = sorted(pr["closedDate"] for pr in every)[len(every) // 2]
    after = completed(
        ado_org,
        ado_api,
        "web",
        **{"$top": 1000, "searchCriteria.queryTimeRangeType": "closed", "searchCriteria.minTime": middle},
    )
    assert {pr["pullRequestId"] for pr in after} == {
        pr["pullRequestId"] for pr in every if _t(pr["closedDate"]) >= _t(middle)
    }
    # without queryTimeRangeType, minTime is about creation
    created = completed(ado_org, ado_api, "web", **{"$top": 1000, "searchCriteria.minTime": middle})
    assert {pr["pullRequestId"] for pr in created} == {
        pr["pullRequestId"] for pr in every if _t(pr["creationDate"]) >= _t(middle)
    }


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_commits_page_with_a_continuation_token(ado_org: Sandbox, ado_api: requests.Session) -> None:
    truth = ado_org.truth()["azure"]["pull_requests"]
    big = next(p for p in truth if p["project"] == "Fabrikam" and len(p["commits"]) > COMMITS_PAGE + 1)
    url = (
        f"{ado_org.url}/contoso/Fabrikam/_apis/git/repositories/{big['repository_id']}"
        f"/pullRequests/{big['number']}/commits"
    )
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"$top": 500}
    while True:
        resp = ado_api.get(url, params=params)
        page = resp.json()["value"]
        assert len(page) <= COMMITS_PAGE
        seen += page
        token = resp.headers.get("x-ms-continuationtoken")
        if not token:
            break
        params["continuationToken"] = token
    shas = [c["commitId"] for c in seen]
    own = [sha for sha in big["commits"] if sha != big["merge_commit"] or not big["squash"]]
    assert sorted(shas) == sorted(own)
    for commit in seen:  # GitCommitRef with GitUserDate author and committer
        assert {"commitId", "author", "committer", "comment", "url"} <= set(commit)
        assert {"name", "email", "date"} <= set(commit["author"])
    first = min(_t(c["author"]["date"]) for c in seen)
    assert first.isoformat() == big["first_commit_at"]


def test_threads_and_work_items_have_the_reference_shapes(ado_org: Sandbox, ado_api: requests.Session) -> None:
    official = example("GET__git_repositories__repositoryId__pullRequests__pullRequestId__threads.json")["value"]
    truth = [p for p in ado_org.truth()["azure"]["pull_requests"] if p["project"] == "Fabrikam"]
    kinds: set[str] = set()
    for pr in truth:
        base = (
            f"{ado_org.url}/contoso/Fabrikam/_apis/git/repositories/{pr['repository_id']}/pullRequests/{pr['number']}"
        )
        threads = ado_api.get(f"{base}/threads").json()["value"]
        for thread in threads:
            assert {"id", "publishedDate", "lastUpdatedDate", "comments", "isDeleted"} <= set(thread)
            assert set(thread["comments"][0]) >= set(official[0]["comments"][0])
            kinds.add(((thread.get("properties") or {}).get("CodeReviewThreadType") or {}).get("$value", "text"))
        items = ado_api.get(f"{base}/workitems").json()["value"]
        assert [f"ado:{i['id']}" for i in items] == pr["work_items"]
        assert all(isinstance(i["id"], str) and i["url"].endswith(f"/_apis/wit/workItems/{i['id']}") for i in items)
    assert {"VoteUpdate", "IsDraftUpdated", "ReviewersUpdate", "MergeAttempt", "StatusUpdate", "text"} <= kinds


def test_pull_requests_agree_with_boards_and_pipelines() -> None:
    org = SeededAzureOrg(seed=7, work_items=300, now=NOW)
    truth = org.truth()
    prs = {p["ref"]: p for p in truth["pull_requests"]}
    # every Pull Request ArtifactLink names a pull request that exists, and it names the item back
    linked = {(w["ref"], t) for w in truth["work_items"] for t in w["links"] if t.startswith("adopr:")}
    assert linked == {(item, p["ref"]) for p in prs.values() for item in p["work_items"]}
    # most merge commits of squash merges are what a build deployed to production built
    production = {d["sha"] for d in truth["deployments"] if d["production"] and d["status"] == "success"}
    squash = [p for p in prs.values() if p["squash"]]
    assert sum(p["merge_commit"] in production for p in squash) > len(squash) // 3
    # a squash merge's own commits are not on main; a fast-forward's are
    on_main = {c.sha for r in org.repos for c in r.commits}
    for p in prs.values():
        own = [s for s in p["commits"] if s != p["merge_commit"]]
        assert p["merge_commit"] in on_main
        assert all((s in on_main) != p["squash"] for s in own)
        assert p["first_commit_at"] <= p["merged_at"] and p["ready_at"] <= p["merged_at"]
    # seeded: the same seed gives the same pull requests, another seed others
    assert SeededAzureOrg(seed=7, work_items=300, now=NOW).truth()["pull_requests"] == truth["pull_requests"]
    assert SeededAzureOrg(seed=8, work_items=300, now=NOW).truth()["pull_requests"] != truth["pull_requests"]
