"""Contract tests for the sandbox's GitHub REST API, with plain ``requests`` and PyGithub as clients.

Key sets are the ``required`` properties of the named schema in ``github/rest-api-description``
(``descriptions/api.github.com/api.github.com.2022-11-28.yaml``, ``components/schemas``). The
reference reader at the bottom follows only the rules documented in ``sandbox.github.data`` and must
reproduce ``truth()`` exactly: that is what lets the real GitHub source be tested against it.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import serving_half
from github import Auth, Github

from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.routes import GitHubRoutes
from sandbox.server import SandboxHTTPServer

NOW = datetime(2025, 6, 1, tzinfo=UTC)
TOKEN = "gh-test-token"
#: Azure Boards anchors (id, created_at, done_at | None) as the Azure half would hand them over
AZURE = [
    (
        1000 + i,
        NOW - timedelta(days=340) + timedelta(hours=11 * i),
        NOW - timedelta(days=340) + timedelta(hours=11 * i + 70) if i % 3 else None,
    )
    for i in range(700)
]

# --- documented shapes: required properties of components/schemas/<name> ----------------------
ISSUE = {
    "id",
    "node_id",
    "url",
    "repository_url",
    "labels_url",
    "comments_url",
    "events_url",
    "html_url",
    "number",
    "state",
    "title",
    "user",
    "labels",
    "assignee",
    "milestone",
    "locked",
    "comments",
    "closed_at",
    "created_at",
    "updated_at",
}
ISSUE_PULL_REQUEST = {"diff_url", "html_url", "patch_url", "url"}  # issue.pull_request
LABEL = {"id", "node_id", "url", "name", "description", "color", "default"}  # pull-request-simple.labels
PULL_SIMPLE = {
    "url",
    "id",
    "node_id",
    "html_url",
    "diff_url",
    "patch_url",
    "issue_url",
    "commits_url",
    "review_comments_url",
    "review_comment_url",
    "comments_url",
    "statuses_url",
    "number",
    "state",
    "locked",
    "title",
    "user",
    "body",
    "labels",
    "milestone",
    "created_at",
    "updated_at",
    "closed_at",
    "merged_at",
    "merge_commit_sha",
    "assignee",
    "head",
    "base",
    "_links",
    "author_association",
    "auto_merge",
}
PULL_FULL = PULL_SIMPLE | {
    "merged",
    "mergeable",
    "mergeable_state",
    "merged_by",
    "comments",
    "review_comments",
    "maintainer_can_modify",
    "commits",
    "additions",
    "deletions",
    "changed_files",
}
PULL_REF = {"label", "ref", "repo", "sha", "user"}  # pull-request.head / .base
PULL_LINKS = {"comments", "commits", "statuses", "html", "issue", "review_comments", "review_comment", "self"}
COMMIT = {"url", "sha", "node_id", "html_url", "comments_url", "commit", "author", "committer", "parents"}
GIT_COMMIT = {"url", "author", "committer", "message", "comment_count", "tree"}  # commit.commit
COMPARISON = {
    "url",
    "html_url",
    "permalink_url",
    "diff_url",
    "patch_url",
    "base_commit",
    "merge_base_commit",
    "status",
    "ahead_by",
    "behind_by",
    "total_commits",
    "commits",
}
DEPLOYMENT = {
    "url",
    "id",
    "node_id",
    "sha",
    "ref",
    "task",
    "payload",
    "environment",
    "description",
    "creator",
    "created_at",
    "updated_at",
    "statuses_url",
    "repository_url",
}
DEPLOYMENT_STATUS = {
    "url",
    "id",
    "node_id",
    "state",
    "creator",
    "description",
    "target_url",
    "created_at",
    "updated_at",
    "deployment_url",
    "repository_url",
}
RELEASE = {
    "url",
    "html_url",
    "assets_url",
    "upload_url",
    "tarball_url",
    "zipball_url",
    "id",
    "node_id",
    "tag_name",
    "target_commitish",
    "name",
    "draft",
    "prerelease",
    "created_at",
    "published_at",
    "author",
    "assets",
}
WORKFLOW = {"id", "node_id", "name", "path", "state", "created_at", "updated_at", "url", "html_url", "badge_url"}
WORKFLOW_RUN = {
    "id",
    "node_id",
    "head_branch",
    "head_sha",
    "path",
    "run_number",
    "event",
    "status",
    "conclusion",
    "workflow_id",
    "url",
    "html_url",
    "pull_requests",
    "created_at",
    "updated_at",
    "jobs_url",
    "logs_url",
    "check_suite_url",
    "artifacts_url",
    "cancel_url",
    "rerun_url",
    "workflow_url",
    "head_commit",
    "repository",
    "head_repository",
    "display_title",
}
SIMPLE_USER = {
    "login",
    "id",
    "node_id",
    "avatar_url",
    "gravatar_id",
    "url",
    "html_url",
    "followers_url",
    "following_url",
    "gists_url",
    "starred_url",
    "subscriptions_url",
    "organizations_url",
    "repos_url",
    "events_url",
    "received_events_url",
    "type",
    "site_admin",
}
MINIMAL_REPOSITORY = {
    "id",
    "node_id",
    "name",
    "full_name",
    "owner",
    "private",
    "html_url",
    "description",
    "fork",
    "url",
    "archive_url",
    "assignees_url",
    "blobs_url",
    "branches_url",
    "collaborators_url",
    "comments_url",
    "commits_url",
    "compare_url",
    "contents_url",
    "contributors_url",
    "deployments_url",
    "downloads_url",
    "events_url",
    "forks_url",
    "git_commits_url",
    "git_refs_url",
    "git_tags_url",
    "hooks_url",
    "issue_comment_url",
    "issue_events_url",
    "issues_url",
    "keys_url",
    "labels_url",
    "languages_url",
    "merges_url",
    "milestones_url",
    "notifications_url",
    "pulls_url",
    "releases_url",
    "stargazers_url",
    "statuses_url",
    "subscribers_url",
    "subscription_url",
    "tags_url",
    "teams_url",
    "trees_url",
}
ISSUE_EVENT = {
    "id",
    "node_id",
    "url",
    "actor",
    "event",
    "commit_id",
    "commit_url",
    "created_at",
    "performed_via_github_app",
}  # state-change-issue-event (closed, reopened)
LABELED_EVENT = ISSUE_EVENT | {"label"}  # labeled-issue-event; label: {name, color}
ASSIGNED_EVENT = ISSUE_EVENT | {"assignee", "assigner"}  # assigned-issue-event
CROSS_REFERENCED = {"event", "created_at", "updated_at", "source"}  # timeline-cross-referenced-event
GIT_REF = {"ref", "node_id", "url", "object"}  # git-ref; object: {type, sha, url}
RATE_LIMIT = {"limit", "remaining", "reset", "used"}  # rate-limit
JOB = {
    "id",
    "run_id",
    "run_url",
    "node_id",
    "head_sha",
    "url",
    "html_url",
    "status",
    "conclusion",
    "created_at",
    "started_at",
    "completed_at",
    "name",
    "check_run_url",
    "labels",
    "runner_id",
    "runner_name",
    "runner_group_id",
    "runner_group_name",
    "workflow_name",
    "head_branch",
}  # job


@dataclass
class Served:
    routes: GitHubRoutes
    server: SandboxHTTPServer
    root: str  # http://127.0.0.1:PORT

    @property
    def api(self) -> str:
        return self.root + "/api/v3"

    def get(
        self, path: str, *, token: str | None = TOKEN, headers: dict[str, str] | None = None, **params: Any
    ) -> requests.Response:
        url = path if path.startswith("http") else self.api + path
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(url, params=params or None, headers={**hdrs, **(headers or {})}, timeout=30)

    def walk(self, path: str, key: str | None = None, **params: Any) -> list[Any]:
        """Every item of a list endpoint, following ``Link: rel="next"``."""
        out: list[Any] = []
        resp = self.get(path, per_page=100, **params)
        while True:
            assert resp.status_code == 200, resp.text
            body = resp.json()
            out += body[key] if key else body
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return out
            resp = self.get(nxt)

    def remaining(self) -> int:
        return int(self.get("/rate_limit").headers["x-ratelimit-remaining"])


@contextmanager
def serve(routes: GitHubRoutes) -> Iterator[Served]:
    with serving_half(routes) as (root, server):
        yield Served(routes, server, root)


def make_routes(work_items: int = 240, *, seed: int = 7, malformed: int = 0) -> GitHubRoutes:
    return GitHubRoutes(
        seed=seed,
        work_items=work_items,
        now=NOW,
        token=TOKEN,
        organization="contoso",
        azure_items=AZURE,
        malformed=malformed,
    )


@pytest.fixture(scope="module")
def gh() -> Iterator[Served]:
    """A shared, read-only GitHub half with malformed records mixed in."""
    with serve(make_routes(240, malformed=12)) as served:
        yield served


@pytest.fixture
def fresh() -> Iterator[Served]:
    """A small GitHub half of its own, for tests that change the budget or add activity."""
    with serve(make_routes(30)) as served:
        yield served


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_pr(item: dict[str, Any]) -> bool:
    """A pull request in the issues list (early issues carry ``pull_request: {html_url: null}``)."""
    return bool((item.get("pull_request") or {}).get("html_url"))


def well_formed(record: dict[str, Any]) -> bool:
    try:
        ts(record["created_at"])
    except (KeyError, TypeError, AttributeError, ValueError):
        return False
    return record["state"] in ("open", "closed")


def first_issue(gh: Served, repo: str, predicate: Any) -> dict[str, Any]:
    return next(
        i for i in gh.walk(f"/repos/{repo}/issues", state="all") if not is_pr(i) and well_formed(i) and predicate(i)
    )


# --- shapes ---------------------------------------------------------------------------------
def test_issue_list_and_issue_shapes_match_the_documented_schema(gh: Served) -> None:
    items = gh.walk("/repos/contoso/web/issues", state="all")
    issue = next(i for i in items if not is_pr(i) and i["labels"] and i["assignee"])
    pr = next(i for i in items if is_pr(i))
    assert set(issue) >= ISSUE and set(pr) >= ISSUE
    assert set(pr["pull_request"]) >= ISSUE_PULL_REQUEST and "merged_at" in pr["pull_request"]
    assert set(issue["labels"][0]) >= LABEL
    assert set(issue["user"]) >= SIMPLE_USER and set(issue["assignee"]) >= SIMPLE_USER
    single = gh.get(f"/repos/contoso/web/issues/{issue['number']}").json()
    assert set(single) >= ISSUE and "closed_by" in single
    assert {k: v for k, v in single.items() if k != "closed_by"} == issue


def test_pull_request_shapes_match_the_documented_schema(gh: Served) -> None:
    pulls = gh.walk("/repos/contoso/api/pulls", state="all")
    simple = next(p for p in pulls if p["merged_at"] and "created_at" in p)
    assert set(simple) >= PULL_SIMPLE and "merged" not in simple
    assert set(simple["head"]) >= PULL_REF and set(simple["base"]) >= PULL_REF
    assert set(simple["base"]["repo"]) >= MINIMAL_REPOSITORY
    assert set(simple["_links"]) == PULL_LINKS
    full = gh.get(f"/repos/contoso/api/pulls/{simple['number']}").json()
    assert set(full) >= PULL_FULL and full["merged"] is True
    assert full["merge_commit_sha"] == simple["merge_commit_sha"] and full["base"]["ref"] == "main"
    commits = gh.walk(f"/repos/contoso/api/pulls/{simple['number']}/commits")
    assert commits and all(set(c) >= COMMIT and set(c["commit"]) >= GIT_COMMIT for c in commits)
    assert commits[-1]["sha"] == full["head"]["sha"] and full["commits"] == len(commits)


def test_commit_and_comparison_shapes(gh: Served) -> None:
    commits = gh.walk("/repos/contoso/web/commits")
    head = gh.get("/repos/contoso/web/commits/main").json()
    assert set(head) >= COMMIT and {"stats", "files"} <= set(head) and head["sha"] == commits[0]["sha"]
    cmp = gh.get(f"/repos/contoso/web/compare/{commits[5]['sha']}...{commits[0]['sha']}").json()
    assert set(cmp) >= COMPARISON and cmp["status"] == "ahead"
    assert set(cmp["base_commit"]) >= COMMIT and cmp["merge_base_commit"]["sha"] == commits[5]["sha"]


def test_deployment_release_and_workflow_shapes(gh: Served) -> None:
    dep = gh.get("/repos/contoso/web/deployments", per_page=1).json()[0]
    assert set(dep) >= DEPLOYMENT and set(dep["creator"]) >= SIMPLE_USER
    status = gh.get(dep["statuses_url"]).json()[0]
    assert set(status) >= DEPLOYMENT_STATUS
    rel = next(r for r in gh.walk("/repos/contoso/api/releases") if not r["draft"])
    assert set(rel) >= RELEASE and rel["target_commitish"] == "main"
    ref = gh.get(f"/repos/contoso/api/git/ref/tags/{rel['tag_name']}").json()
    assert set(ref) >= GIT_REF and set(ref["object"]) == {"type", "sha", "url"} and ref["object"]["type"] == "commit"
    assert gh.get(f"/repos/contoso/api/git/refs/tags/{rel['tag_name']}").json() == ref  # both spellings
    workflows = gh.get("/repos/contoso/mobile-app/actions/workflows").json()
    assert workflows["total_count"] == 2 and all(set(w) >= WORKFLOW for w in workflows["workflows"])
    runs = gh.get("/repos/contoso/mobile-app/actions/runs", per_page=2).json()
    assert set(runs) == {"total_count", "workflow_runs"}
    assert all(set(r) >= WORKFLOW_RUN for r in runs["workflow_runs"])


def test_timeline_and_event_shapes(gh: Served) -> None:
    issue = first_issue(gh, "contoso/web", lambda i: i["state"] == "closed" and i["assignee"] and i["labels"])
    timeline = gh.walk(f"/repos/contoso/web/issues/{issue['number']}/timeline")
    kinds = {e["event"]: e for e in timeline}
    assert set(kinds["labeled"]) >= LABELED_EVENT and set(kinds["labeled"]["label"]) == {"name", "color"}
    assert set(kinds["assigned"]) >= ASSIGNED_EVENT
    assert set(kinds["closed"]) >= ISSUE_EVENT and kinds["closed"]["state_reason"] in ("completed", "not_planned")
    xref = next(
        e
        for i in gh.walk("/repos/contoso/web/issues", state="closed")
        if not is_pr(i)
        for e in gh.walk(f"/repos/contoso/web/issues/{i['number']}/timeline")
        if e["event"] == "cross-referenced"
    )
    assert set(xref) >= CROSS_REFERENCED and "id" not in xref
    assert set(xref["source"]["issue"]) >= ISSUE and "pull_request" in xref["source"]["issue"]
    assert "repository" in xref["source"]["issue"]
    events = gh.walk(f"/repos/contoso/web/issues/{issue['number']}/events")
    assert [e["event"] for e in events] == [e["event"] for e in timeline if e["event"] != "cross-referenced"]
    repo_events = gh.get("/repos/contoso/web/issues/events", per_page=50).json()
    assert all("issue" in e and set(e) >= ISSUE_EVENT for e in repo_events)
    assert [e["id"] for e in repo_events] == sorted((e["id"] for e in repo_events), reverse=True)


def test_organisation_repositories_and_rate_limit_overview(gh: Served) -> None:
    repos = gh.walk("/orgs/contoso/repos")
    assert {r["full_name"] for r in repos} == {"contoso/web", "contoso/api", "contoso/mobile-app"}
    assert all(set(r) >= MINIMAL_REPOSITORY and r["default_branch"] == "main" for r in repos)
    assert gh.walk("/users/contoso/repos") == repos and gh.walk("/users/alice/repos") == []
    assert gh.get("/orgs/contoso").json()["type"] == "Organization"
    overview = gh.get("/rate_limit").json()
    assert {"core", "search", "graphql"} <= set(overview["resources"])
    assert set(overview["rate"]) == RATE_LIMIT and overview["rate"] == overview["resources"]["core"]


# --- pagination, filters, conditional requests ------------------------------------------------
def test_link_pagination_is_complete_and_duplicate_free(gh: Served) -> None:
    assert len(gh.walk("/repos/contoso/web/commits")) > 100
    assert len(gh.get("/repos/contoso/web/commits", per_page=1000).json()) == 100  # per_page is capped at 100
    assert len(gh.get("/repos/contoso/web/commits").json()) == 30  # and defaults to 30
    pages, resp = [], gh.get("/repos/contoso/web/issues", state="all", per_page=7)
    links = resp.links
    last = int(re.search(r"[?&]page=(\d+)", links["last"]["url"]).group(1))
    while True:
        pages.append([i["number"] for i in resp.json()])
        for link in resp.links.values():
            assert link["url"].startswith(gh.api + "/repos/contoso/web/issues?state=all&per_page=7&page=")
        if "next" not in resp.links:
            break
        resp = gh.get(resp.links["next"]["url"])
    numbers = [n for p in pages for n in p]
    assert len(pages) == last and len(numbers) == len(set(numbers))
    assert set(numbers) == {i["number"] for i in gh.walk("/repos/contoso/web/issues", state="all")}
    middle = gh.get("/repos/contoso/web/issues", state="all", per_page=7, page=2).links
    assert set(middle) == {"prev", "next", "last", "first"}
    assert "Link" not in gh.get("/repos/contoso/web/releases", per_page=100).headers


def test_served_at_the_root_too_with_links_on_that_prefix(gh: Served) -> None:
    resp = requests.get(
        gh.root + "/repos/contoso/web/pulls",
        params={"state": "all", "per_page": 5},
        headers={"Authorization": f"token {TOKEN}"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.links["next"]["url"].startswith(gh.root + "/repos/contoso/web/pulls?")
    assert resp.json()[0]["url"].startswith(gh.root + "/repos/contoso/web/pulls/")
    assert resp.json()[0]["url"] == gh.get(f"/repos/contoso/web/pulls/{resp.json()[0]['number']}").json()[
        "url"
    ].replace("/api/v3", "")


def test_issue_filters_since_sort_direction_and_state(gh: Served) -> None:
    every = gh.walk("/repos/contoso/api/issues", state="all")
    default = gh.walk("/repos/contoso/api/issues")
    assert {i["state"] for i in default} == {"open"}  # state defaults to open
    assert [i["number"] for i in default] == [i["number"] for i in every if i["state"] == "open"]
    created = [ts(i["created_at"]) for i in every if well_formed(i)]
    assert created == sorted(created, reverse=True)  # sort=created, direction=desc by default
    since = NOW - timedelta(days=60)
    recent = gh.walk(
        "/repos/contoso/api/issues", state="all", since="2025-04-02T00:00:00Z", sort="updated", direction="asc"
    )
    updated = [ts(i["updated_at"]) for i in recent]
    assert updated == sorted(updated) and all(u >= since for u in updated)
    assert len(recent) == sum(1 for i in every if ts(i["updated_at"]) >= since)
    bugs = gh.walk("/repos/contoso/api/issues", state="all", labels="bug,team/api")
    assert bugs and all({"bug", "team/api"} <= {lb["name"] for lb in i["labels"]} for i in bugs)
    assert gh.get("/repos/contoso/api/issues", since="yesterday").status_code == 422


def test_pull_filters_sort_and_direction_defaults(gh: Served) -> None:
    closed = gh.walk("/repos/contoso/web/pulls", state="closed")
    assert closed and all(p["state"] == "closed" for p in closed)
    by_update = gh.walk("/repos/contoso/web/pulls", state="all", sort="updated")
    updated = [ts(p["updated_at"]) for p in by_update]
    assert updated == sorted(updated)  # direction defaults to asc when sort is not created
    broken = {r["record_id"] for r in gh.routes.truth()["rejected"]}  # numbered last, created any time
    newest = [
        p["number"]
        for p in gh.walk("/repos/contoso/web/pulls", state="all")
        if f"contoso/web#{p['number']}" not in broken
    ]
    assert newest == sorted(newest, reverse=True)  # sort=created, direction=desc by default
    assert gh.walk("/repos/contoso/web/pulls", state="all", base="develop") == []


def test_etag_gives_a_free_304_without_link(fresh: Served) -> None:
    first = fresh.get("/repos/contoso/web/issues", state="all", per_page=5)
    tag = first.headers["ETag"]
    assert tag.startswith('W/"') and "Link" in first.headers
    before = int(first.headers["x-ratelimit-remaining"])
    again = fresh.get("/repos/contoso/web/issues", state="all", per_page=5, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and "Link" not in again.headers
    assert int(again.headers["x-ratelimit-remaining"]) == before
    other = fresh.get("/repos/contoso/web/issues", state="all", per_page=5, headers={"If-None-Match": 'W/"stale"'})
    assert other.status_code == 200 and int(other.headers["x-ratelimit-remaining"]) == before - 1
    assert fresh.server.stats.snapshot()["not_modified"] == 1
    old_release = fresh.walk("/repos/contoso/api/releases")[-1]["url"]
    release_tag = fresh.get(old_release).headers["ETag"]
    tags = {
        r: fresh.get(f"/repos/contoso/{r}/issues", state="all").headers["ETag"] for r in ("web", "api", "mobile-app")
    }
    added = fresh.routes.add_activity(random.Random(1), NOW + timedelta(hours=1))
    name = added["issues"][0].split("#")[0].split("/")[1]
    changed = fresh.get(f"/repos/contoso/{name}/issues", state="all", headers={"If-None-Match": tags[name]})
    assert changed.status_code == 200 and changed.headers["ETag"] != tags[name]  # new data, new tag
    assert fresh.get(old_release, headers={"If-None-Match": release_tag}).status_code == 304  # unchanged


# --- rate limits and auth ---------------------------------------------------------------------
def test_primary_rate_limit_exhaustion_then_reset(fresh: Served) -> None:
    state = fresh.routes.set_rate_limit(limit=3, reset_in=3)
    assert state["remaining"] == 3
    for left in (2, 1, 0):
        resp = fresh.get("/repos/contoso/web")
        assert resp.status_code == 200 and resp.headers["x-ratelimit-remaining"] == str(left)
        assert resp.headers["x-ratelimit-used"] == str(3 - left) and resp.headers["x-ratelimit-resource"] == "core"
    blocked = fresh.get("/repos/contoso/web")
    assert blocked.status_code == 403 and blocked.headers["x-ratelimit-remaining"] == "0"
    assert blocked.json()["message"].startswith("API rate limit exceeded")
    reset = int(blocked.headers["x-ratelimit-reset"])
    assert fresh.get("/rate_limit").status_code == 200  # free, even when exhausted
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    after = fresh.get("/repos/contoso/web")
    assert after.status_code == 200 and after.headers["x-ratelimit-remaining"] == "2"
    assert int(after.headers["x-ratelimit-reset"]) > reset


def test_secondary_rate_limit_answers_429_with_retry_after(fresh: Served) -> None:
    fresh.routes.set_rate_limit(secondary=2, retry_after=7)
    for _ in range(2):
        resp = fresh.get("/repos/contoso/api/releases")
        assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
        assert resp.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert fresh.get("/repos/contoso/api/releases").status_code == 200


def test_authentication(fresh: Served) -> None:
    wrong = fresh.get("/repos/contoso/web", token="not-the-token")
    assert wrong.status_code == 401 and wrong.json()["message"] == "Bad credentials"
    assert "x-ratelimit-limit" in wrong.headers
    assert fresh.get("/repos/contoso/web", token=None).json()["message"] == "Requires authentication"
    for scheme in ("Bearer", "token"):
        ok = requests.get(fresh.api + "/repos/contoso/web", headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=30)
        assert ok.status_code == 200


def test_unknown_and_private_repositories(gh: Served) -> None:
    assert gh.get("/repos/contoso/nope/issues").status_code == 404
    assert gh.get("/repos/other/web").status_code == 404
    private = gh.get("/repos/contoso/private-infra/pulls")
    assert private.status_code == 403 and "not accessible" in private.json()["message"]
    issue_number = first_issue(gh, "contoso/web", lambda i: True)["number"]
    assert gh.get(f"/repos/contoso/web/pulls/{issue_number}").status_code == 404  # an issue is not a PR


# --- commit graph ---------------------------------------------------------------------------
def test_compare_lists_exactly_the_commits_between(gh: Served) -> None:
    successes = [
        d
        for d in gh.routes.truth()["deployments"]
        if d["service"] == "contoso/web" and d["environment"] == "production" and d["status"] == "success"
    ]
    known = gh.routes.data.repos["web"].commits
    older, newer = next(
        (a, b)
        for a, b in zip(successes[-6:], successes[-5:], strict=False)
        if a["sha"] != b["sha"] and a["sha"] in known and b["sha"] in known
    )
    cmp = gh.get(f"/repos/contoso/web/compare/{older['sha']}...{newer['sha']}").json()
    shas = [c["sha"] for c in cmp["commits"]]
    assert sorted(f"commit:{s}" for s in shas) == newer["contains"]
    dates = [ts(c["commit"]["committer"]["date"]) for c in cmp["commits"]]
    assert dates == sorted(dates) and cmp["ahead_by"] == cmp["total_commits"] == len(shas)
    history = [c["sha"] for c in gh.walk("/repos/contoso/web/commits", sha=newer["sha"])]
    assert set(shas) <= set(history) and newer["sha"] in shas
    back = gh.get(f"/repos/contoso/web/compare/{newer['sha']}...{older['sha']}").json()
    assert back["status"] == "behind" and back["behind_by"] == len(shas) and back["commits"] == []
    same = gh.get(f"/repos/contoso/web/compare/{newer['sha']}...{newer['sha']}").json()
    assert same["status"] == "identical" and same["total_commits"] == 0


def test_compare_is_paginated_on_request_and_capped_at_250_otherwise() -> None:
    with serve(make_routes(900)) as gh:
        compare_in_pages(gh)


def compare_in_pages(gh: Served) -> None:
    commits = gh.walk("/repos/contoso/web/commits")
    first, head = commits[-1]["sha"], commits[0]["sha"]
    whole = gh.get(f"/repos/contoso/web/compare/{first}...main").json()
    assert whole["total_commits"] == len(commits) - 1 > 250 and len(whole["commits"]) == 250
    paged, resp = [], gh.get(f"/repos/contoso/web/compare/{first}...{head}", per_page=100, page=1)
    while True:
        paged += [c["sha"] for c in resp.json()["commits"]]
        if "next" not in resp.links:
            break
        resp = gh.get(resp.links["next"]["url"])
    assert len(paged) == len(set(paged)) == len(commits) - 1 and set(paged) == {c["sha"] for c in commits[:-1]}


def test_a_force_pushed_sha_is_gone(gh: Served) -> None:
    (gone,) = gh.routes.data.repos["web"].gone
    deployed = [d for d in gh.walk("/repos/contoso/web/deployments") if d["sha"] == gone]
    assert {d["environment"] for d in deployed} == {"staging", "production"}
    assert gh.get(f"/repos/contoso/web/commits/{gone}").status_code == 422
    assert gh.get(f"/repos/contoso/web/compare/{gone}...main").status_code == 404
    assert gh.get(f"/repos/contoso/web/compare/main...{gone}").status_code == 404


def test_deployment_statuses_are_newest_first_with_inactive_after_success(gh: Served) -> None:
    deployments = gh.walk("/repos/contoso/web/deployments", environment="production")
    assert deployments and all(d["environment"] == "production" for d in deployments)
    assert [d["id"] for d in deployments] == sorted((d["id"] for d in deployments), reverse=True)
    first_ok = next(
        d for d in gh.routes.truth()["deployments"] if d["environment"] == "production" and d["status"] == "success"
    )
    old = next(d for d in deployments if f"deployment:{d['id']}" == first_ok["native_id"])
    statuses = gh.walk(f"/repos/contoso/web/deployments/{old['id']}/statuses")
    states = [s["state"] for s in statuses]
    assert states[0] == "inactive" and states[-2:] == ["in_progress", "queued"] and "success" in states
    assert gh.walk("/repos/contoso/web/deployments", sha=old["sha"], environment="production")[-1]["id"] == old["id"]


def test_workflow_run_filters(gh: Served) -> None:
    every = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs")
    deploy = gh.walk("/repos/contoso/mobile-app/actions/workflows/deploy.yml/runs", key="workflow_runs")
    assert {r["path"] for r in deploy} == {".github/workflows/deploy.yml"} and len(deploy) < len(every)
    wf_id = deploy[0]["workflow_id"]
    assert gh.walk(f"/repos/contoso/mobile-app/actions/workflows/{wf_id}/runs", key="workflow_runs") == deploy
    main = gh.walk("/repos/contoso/mobile-app/actions/workflows/deploy.yml/runs", key="workflow_runs", branch="main")
    assert {r["head_branch"] for r in main} == {"main"} and len(main) < len(deploy)
    ok = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", status="success")
    assert ok and {r["conclusion"] for r in ok} == {"success"}
    running = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", status="in_progress")
    assert [r["conclusion"] for r in running] == [None]
    prs = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", event="pull_request")
    assert prs and {r["event"] for r in prs} == {"pull_request"}
    window = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", created="2025-03-01..2025-03-31")
    assert window == [r for r in every if "2025-03-01" <= r["created_at"][:10] <= "2025-03-31"]
    since = gh.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", created=">=2025-05-01T00:00:00Z")
    assert since == [r for r in every if r["created_at"] >= "2025-05-01T00:00:00Z"]
    one = gh.get("/repos/contoso/mobile-app/actions/runs", head_sha=main[-1]["head_sha"]).json()
    assert one["total_count"] >= 1 and main[-1]["head_sha"] in {r["head_sha"] for r in one["workflow_runs"]}
    assert gh.get("/repos/contoso/mobile-app/actions/runs", per_page=1).json()["total_count"] == len(every)
    assert gh.get(f"/repos/contoso/mobile-app/actions/runs/{main[0]['id']}").json() == main[0]


def test_a_filtered_run_search_yields_at_most_1000_runs() -> None:
    with serve(make_routes(14000)) as big:
        first = big.get("/repos/contoso/mobile-app/actions/runs", event="pull_request", per_page=100).json()
        assert first["total_count"] > 1000
        got = big.walk("/repos/contoso/mobile-app/actions/runs", key="workflow_runs", event="pull_request")
        assert len(got) == 1000  # window by `created` to see the rest, as on GitHub
        unfiltered = big.get(
            "/repos/contoso/mobile-app/actions/runs", per_page=100, page=-(-first["total_count"] // 100)
        ).json()["workflow_runs"]
        assert unfiltered  # without a filter every page is served


# --- the seeded data ----------------------------------------------------------------------------
def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b, c = make_routes(90, malformed=4), make_routes(90, malformed=4), make_routes(90, seed=8, malformed=4)
    assert a.truth() == b.truth() and a.truth() != c.truth()
    with serve(a) as sa, serve(b) as sb:
        for path in (
            "/repos/contoso/web/issues?state=all",
            "/repos/contoso/api/releases",
            "/repos/contoso/mobile-app/actions/runs",
        ):
            body_a = sa.get(path).content.replace(sa.root[7:].encode(), b"HOST")
            assert body_a == sb.get(path).content.replace(sb.root[7:].encode(), b"HOST")
    ra, rb = random.Random(5), random.Random(5)
    assert a.add_activity(ra, NOW + timedelta(hours=1)) == b.add_activity(rb, NOW + timedelta(hours=1))
    assert a.truth() == b.truth()


def test_truth_is_internally_consistent(gh: Served) -> None:
    truth = gh.routes.truth()
    data = gh.routes.data
    assert truth["repos"] == {
        "contoso/web": "deployments",
        "contoso/api": "releases",
        "contoso/mobile-app": "workflow_runs:deploy.yml",
    }
    changes = {c["ref"]: c for c in truth["changes"]}
    items = {w["ref"]: w for w in truth["work_items"]}
    azure = {f"ado:{i}": (created, done) for i, created, done in AZURE}
    commits = {f"commit:{s}" for r in data.repos.values() for s in r.commits}
    for link in truth["links"]:
        assert link["work_item"] in items or link["work_item"] in azure
        assert link["target"] in changes or link["target"] in commits
        if link["work_item"] in azure and link["target"] in changes:
            assert ts(changes[link["target"]]["merged_at"]) > azure[link["work_item"]][0]
    assert any(lk["work_item"].startswith("ado:") and lk["target"].startswith("commit:") for lk in truth["links"])
    for w in truth["work_items"]:
        seqs = [h["seq"] for h in w["history"]]
        assert seqs == list(range(1, len(seqs) + 1)) and w["history"][0]["at"] == w["created_at"]
        assert all(a["state"] != b["state"] for a, b in zip(w["history"], w["history"][1:], strict=False))
    for c in truth["changes"]:
        if c["kind"] == "pull_request":
            assert ts(c["first_commit_at"]) < ts(c["merged_at"]) and len(c["commits"]) >= 2
        else:
            assert c["ref"] == f"commit:{c['commits'][0]}" and len(c["commits"]) == 1
    for d in truth["deployments"]:
        assert set(d["contains"]) <= commits and ts(d["started_at"]) <= ts(d["finished_at"])
    assert {d["status"] for d in truth["deployments"]} == {"success", "failure"}
    assert len(truth["rejected"]) == 12
    assert {r["reason"] for r in truth["rejected"]} == {
        "missing_field",
        "bad_timestamp",
        "wrong_type",
        "end_before_start",
        "unknown_state",
        "too_large",
    }
    states = {h["state"] for w in truth["work_items"] for h in w["history"]}
    assert states == {"open", "in_progress", "completed", "not_planned"}


def test_the_real_world_variations_are_served_by_default(gh: Served) -> None:
    truth = gh.routes.truth()
    items = {w["native_id"]: w for w in truth["work_items"]}
    listed = gh.walk("/repos/contoso/web/issues", state="all")
    # early issues carry a pull_request stub without URLs: issues all the same
    legacy = [i for i in listed if "pull_request" in i and i["pull_request"]["html_url"] is None]
    assert legacy and all(f"contoso/web#{i['number']}" in items for i in legacy)
    # a native issue type wins over the type labels
    typed = [
        (repo, i)
        for repo in truth["repos"]
        for i in gh.walk(f"/repos/{repo}/issues", state="all")
        if not is_pr(i) and i.get("type") and well_formed(i)
    ]
    assert typed and all(items[f"{repo}#{i['number']}"]["type"] == i["type"]["name"] for repo, i in typed)
    by_label = {"bug": "Bug", "feature": "Feature"}
    disagree = [
        i
        for r in gh.routes.data.repos.values()
        for i in r.items.values()
        if getattr(i, "native_type", None)
        and i.native_type != next((by_label[lb] for lb in i.labels if lb in by_label), "Issue")
    ]
    assert disagree  # somewhere the native type and the labels say different things
    # pull requests linked in the sidebar, and a failure reported again as a success
    timelines = [
        gh.walk(f"/repos/{repo}/issues/{i['number']}/timeline")
        for repo in truth["repos"]
        for i in gh.walk(f"/repos/{repo}/issues", state="closed")
        if not is_pr(i)
    ]
    assert any(e["event"] == "connected" for t in timelines for e in t)
    assert any(e["event"] == "disconnected" for t in timelines for e in t)
    redone = [
        d for d in gh.routes.data.repos["web"].deployments if [s.state for s in d.statuses][-2:] == ["error", "success"]
    ]
    assert len(redone) == 1
    assert (
        next(d for d in truth["deployments"] if d["native_id"] == f"deployment:{redone[0].id}")["status"] == "success"
    )
    # pull requests that only mention an issue ("Related to #N")
    assert any("Related to #" in (p["body"] or "") for p in gh.walk("/repos/contoso/web/pulls", state="all"))
    # direct pushes: changes of their own, one closing an issue by its message, one with a skewed clock
    pushes = {c["ref"]: c for c in truth["changes"] if c["kind"] == "commit"}
    assert {c["service"] for c in pushes.values()} == set(truth["repos"])
    assert any(lk["work_item"].startswith("gh:") and lk["target"] in pushes for lk in truth["links"])
    shipped = {
        ref: d
        for d in sorted(truth["deployments"], key=lambda d: d["finished_at"], reverse=True)
        if d["production"] and d["status"] == "success"
        for ref in d["contains"]
    }
    assert any(
        ts(c["first_commit_at"]) > ts(shipped[ref]["finished_at"]) for ref, c in pushes.items() if ref in shipped
    )
    # rebased commits: authored before they were committed
    commits = gh.walk("/repos/contoso/api/commits")
    assert any(
        ts(c["commit"]["author"]["date"]) < ts(c["commit"]["committer"]["date"])
        for c in commits
        if len(c["parents"]) == 1
    )
    # workflow runs whose updated_at moved long after their last job finished
    runs = gh.walk(
        "/repos/contoso/mobile-app/actions/workflows/deploy.yml/runs",
        key="workflow_runs",
        branch="main",
        status="completed",
    )
    late = 0
    for run in runs:
        jobs = gh.get(f"/repos/contoso/mobile-app/actions/runs/{run['id']}/jobs").json()
        assert set(jobs) == {"total_count", "jobs"} and jobs["total_count"] == len(jobs["jobs"]) == 2
        assert all(set(j) >= JOB for j in jobs["jobs"])
        end = max(ts(j["completed_at"]) for j in jobs["jobs"])
        late += ts(run["updated_at"]) - end > timedelta(days=20)
    assert late >= 1


def test_cycle_time_improves_over_the_year() -> None:
    routes = make_routes(900)
    start = NOW - timedelta(days=360)
    quarters: dict[int, list[float]] = {}
    for w in routes.truth()["work_items"]:
        h = w["history"]
        began = next((ts(x["at"]) for x in h if x["state"] == "in_progress"), None)
        if h[-1]["state"] == "completed" and began:
            quarters.setdefault((ts(w["created_at"]) - start).days // 90, []).append(
                (ts(h[-1]["at"]) - began).total_seconds()
            )
    assert statistics.median(quarters[3]) < 0.75 * statistics.median(quarters[0])


def test_malformed_records_are_served_as_documented(gh: Served) -> None:
    rejected = {r["record_id"]: r["reason"] for r in gh.routes.truth()["rejected"]}
    for record, reason in rejected.items():
        repo, number = record.split("#")
        as_issue = gh.get(f"/repos/{repo}/issues/{number}").json()
        if is_pr(as_issue):
            assert isinstance(as_issue["created_at"], str)  # the PR's issue view stays well-formed
            body = gh.get(f"/repos/{repo}/pulls/{number}").json()
            end = "merged_at"
        else:
            body, end = as_issue, "closed_at"
        expected = {
            "missing_field": lambda b: "created_at" not in b,
            "bad_timestamp": lambda b: b["created_at"] == "not-a-timestamp",
            "wrong_type": lambda b: isinstance(b["created_at"], int),
            "end_before_start": lambda b, e=end: ts(b[e]) < ts(b["created_at"]),
            "unknown_state": lambda b: b["state"] not in ("open", "closed"),
            "too_large": lambda b: len(b["body"]) > 65536,
        }[reason]
        assert expected(body), (record, reason)


def test_activity_happens_now_and_updates_the_truth(fresh: Served) -> None:
    before = fresh.routes.truth()
    at = NOW + timedelta(hours=3)
    added = fresh.routes.add_activity(random.Random(2), at)
    after = fresh.routes.truth()
    stamp = "2025-06-01T03:00:00Z"
    (issue,) = added["issues"]
    repo, number = issue.split("#")
    assert fresh.get(f"/repos/{repo}/issues/{number}").json()["created_at"] == stamp
    (pull,) = added["pulls"]
    prepo, pnumber = pull.split("#")
    pr = fresh.get(f"/repos/{prepo}/pulls/{pnumber}").json()
    assert pr["merged_at"] == stamp
    assert fresh.get(f"/repos/{prepo}/commits/main").json()["sha"] == pr["merge_commit_sha"]

    def pulls(truth: dict[str, Any]) -> int:  # direct pushes appear as deployments reach them
        return sum(c["kind"] == "pull_request" for c in truth["changes"])

    assert pulls(after) == pulls(before) + 1
    assert len(after["work_items"]) == len(before["work_items"]) + 1
    new = {d["native_id"] for d in after["deployments"]} - {d["native_id"] for d in before["deployments"]}
    assert new == set(added["deployments"]) and len(new) == 4
    assert all(d["finished_at"] == stamp for d in after["deployments"] if d["native_id"] in new)
    # contents are read for successful production deployments only
    assert all(
        f"commit:{pr['merge_commit_sha']}" in d["contains"] if d["production"] else d["contains"] == []
        for d in after["deployments"]
        if d["native_id"] in new and d["service"] == prepo
    )
    recent = fresh.walk(f"/repos/{prepo}/issues", state="all", since=stamp)
    assert int(pnumber) in {i["number"] for i in recent}


# --- clients ----------------------------------------------------------------------------------
def test_pygithub_reads_every_kind_of_record(gh: Served) -> None:
    g = Github(base_url=gh.api, auth=Auth.Token(TOKEN), per_page=100, seconds_between_requests=0)
    assert sorted(r.name for r in g.get_organization("contoso").get_repos()) == ["api", "mobile-app", "web"]
    web = g.get_repo("contoso/web")
    issues = [i for i in web.get_issues(state="all", since=NOW - timedelta(days=90)) if i.pull_request is None]
    assert issues and all(i.updated_at >= NOW - timedelta(days=90) for i in issues)
    done = next(i for i in issues if i.state == "closed" and i.state_reason == "completed")
    assert {e.event for e in done.get_timeline()} >= {"labeled", "closed"}
    pr = next(p for p in web.get_pulls(state="closed", sort="updated", direction="desc") if p.merged)
    commits = list(pr.get_commits())
    assert commits[-1].sha == pr.head.sha and commits[0].commit.author.date < pr.created_at
    deployments = web.get_deployments(environment="production")
    assert deployments.totalCount == len(list(deployments)) > 0
    statuses = [s.state for s in deployments[0].get_statuses()]
    assert statuses[-1] == "queued"
    known = [d for d in deployments if d.sha not in gh.routes.data.repos["web"].gone]
    comparison = web.compare(known[3].sha, known[0].sha)
    assert comparison.total_commits == len(list(comparison.commits)) and comparison.status in ("ahead", "identical")
    api = g.get_repo("contoso/api")
    release = next(r for r in api.get_releases() if not r.draft and not r.prerelease)
    assert api.get_git_ref(f"tags/{release.tag_name}").object.sha == gh.routes.data.repos["api"].resolve(
        release.tag_name
    )
    assert api.get_release(release.tag_name).id == release.id
    runs = g.get_repo("contoso/mobile-app").get_workflow("deploy.yml").get_runs(branch="main")
    assert runs.totalCount > 0 and all(r.head_branch == "main" for r in runs)
    assert g.get_rate_limit().resources.core.limit == 5000
    single = web.get_issue(done.number)
    spent = gh.remaining()
    assert single.update() is False and gh.remaining() == spent  # a conditional GET: 304, free


def test_sandbox_app_serves_github_and_counts_requests_by_endpoint() -> None:
    options = SandboxOptions(seed=3, work_items=60, token=TOKEN, now=NOW)
    with Sandbox(options) as sandbox:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        assert s.get(sandbox.github_url + "/repos/contoso/web/issues").status_code == 200
        assert s.get(sandbox.github_url + "/repos/contoso/web/issues/1/timeline").status_code == 200
        assert s.get(sandbox.github_url + "/repos/contoso/api/releases").status_code == 200
        stats = s.get(sandbox.url + "/_sandbox/stats").json()
        assert stats["by_endpoint"] == {"github.issues": 1, "github.issue_timeline": 1, "github.releases": 1}
        limited = s.post(sandbox.url + "/_sandbox/ratelimit", json={"limit": 10, "remaining": 1}).json()
        assert limited["remaining"] == 1 and limited["limit"] == 10
        assert s.get(sandbox.github_url + "/repos/contoso/web").status_code == 200
        assert s.get(sandbox.github_url + "/repos/contoso/web").status_code == 403
        truth = s.get(sandbox.url + "/_sandbox/truth").json()["github"]
        assert truth == sandbox.truth()["github"] and truth["work_items"]


# --- reference reader: the documented rules, applied through the API only ------------------------
CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?::\s*|\s+)(?:([\w.-]+)/([\w.-]+))?#(\d+)", re.I)
MENTION = re.compile(r"\bAB#(\d+)")
CATEGORY = {"open": "Proposed", "in_progress": "InProgress", "completed": "Completed", "not_planned": "Removed"}


def rejection(record: dict[str, Any], end: str) -> str | None:
    created = record.get("created_at")
    if created is None:
        return "missing_field"
    if not isinstance(created, str):
        return "wrong_type"
    try:
        start = ts(created)
    except ValueError:
        return "bad_timestamp"
    if record["state"] not in ("open", "closed"):
        return "unknown_state"
    if record.get(end) and ts(record[end]) < start:
        return "end_before_start"
    return "too_large" if len(record.get("body") or "") > 65536 else None


def closes(pr: dict[str, Any], repo: str, number: int) -> bool:
    """Whether a PR's title or body has a closing keyword for ``repo#number``."""
    own = pr["repository"]["full_name"]
    return any(
        (f"{o}/{r}" if o else own) == repo and int(n) == number
        for o, r, n in CLOSING.findall(f"{pr['title']}\n{pr['body']}")
    )


def read_history(gh: Served, repo: str, issue: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for i, ev in enumerate(gh.walk(f"/repos/{repo}/issues/{issue['number']}/timeline")):
        if ev["event"] == "cross-referenced" and not closes(ev["source"]["issue"], repo, issue["number"]):
            continue  # a PR (or issue) that only mentions it
        steps.append((ts(ev["created_at"]), 0, i, ev))
        source = ev.get("source", {}).get("issue", {})
        if ev["event"] == "cross-referenced" and "pull_request" in source and source["closed_at"]:
            steps.append((ts(source["closed_at"]), 1, i, {"event": "pr_closed", "url": source["url"]}))
    closed, assignees, open_prs = None, set(), set()
    history = [(issue["created_at"], "open")]
    for at, _, _, ev in sorted(steps, key=lambda s: s[:3]):
        kind = ev["event"]
        if kind == "assigned":
            assignees.add(ev["assignee"]["login"])
        elif kind == "unassigned":
            assignees.discard(ev["assignee"]["login"])
        elif kind == "closed":
            closed = ev.get("state_reason") or "completed"
        elif kind == "reopened":
            closed = None
        elif kind == "cross-referenced" and "pull_request" in ev["source"]["issue"]:
            open_prs.add(ev["source"]["issue"]["url"])
        elif kind == "pr_closed":
            open_prs.discard(ev["url"])
        elif kind == "connected":
            open_prs.add("connected")
        elif kind == "disconnected":
            open_prs.discard("connected")
        else:
            continue
        state = closed or ("in_progress" if assignees or open_prs else "open")
        if state != history[-1][1]:
            history.append((at.strftime("%Y-%m-%dT%H:%M:%SZ"), state))
    return [{"seq": n + 1, "at": at, "state": s, "category": CATEGORY[s]} for n, (at, s) in enumerate(history)]


def read_contains(gh: Served, repo: str, sha: str, earlier_ok: list[str]) -> list[dict[str, Any]]:
    """The commits a deployment of ``sha`` contains, as listed (compare, else the commit list)."""
    for base in reversed(earlier_ok):
        resp = gh.get(f"/repos/{repo}/compare/{base}...{sha}", per_page=100, page=1)
        if resp.status_code == 404:
            continue
        commits = []
        while True:
            commits += resp.json()["commits"]
            if "next" not in resp.links:
                return commits
            resp = gh.get(resp.links["next"]["url"])
    if gh.get(f"/repos/{repo}/commits/{sha}").status_code != 200:
        return []
    return gh.walk(f"/repos/{repo}/commits", sha=sha)


def read_deployments(gh: Served, repo: str, mode: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The deployments, and the commits the successful production ones contain."""
    rows = []
    if mode == "deployments":
        for d in sorted(gh.walk(f"/repos/{repo}/deployments"), key=lambda d: d["id"]):
            statuses = sorted(gh.walk(f"/repos/{repo}/deployments/{d['id']}/statuses"), key=lambda s: s["id"])
            end = next((s for s in reversed(statuses) if s["state"] in ("success", "failure", "error")), None)
            if end:
                rows.append(
                    (
                        f"deployment:{d['id']}",
                        d["environment"],
                        end["state"] == "success",
                        d["created_at"],
                        end["created_at"],
                        d["sha"],
                    )
                )
    elif mode == "releases":
        for r in sorted(gh.walk(f"/repos/{repo}/releases"), key=lambda r: r["id"]):
            if not r["draft"] and not r["prerelease"]:
                sha = gh.get(f"/repos/{repo}/git/ref/tags/{r['tag_name']}").json()["object"]["sha"]
                rows.append((f"release:{r['id']}", "production", True, r["created_at"], r["published_at"], sha))
    else:
        runs = gh.walk(
            f"/repos/{repo}/actions/workflows/{mode.split(':')[1]}/runs",
            key="workflow_runs",
            branch="main",
            status="completed",
        )
        for run in sorted(runs, key=lambda r: r["id"]):
            if run["conclusion"] in ("success", "failure", "timed_out"):
                jobs = gh.walk(f"/repos/{repo}/actions/runs/{run['id']}/jobs", key="jobs")
                end = max((j["completed_at"] for j in jobs), key=ts)
                rows.append(
                    (
                        f"run:{run['id']}",
                        "production",
                        run["conclusion"] == "success",
                        run["run_started_at"],
                        end,
                        run["head_sha"],
                    )
                )
    out, ok, shipped = [], {}, []
    for native, env, success, start, end, sha in rows:
        commits = read_contains(gh, repo, sha, ok.get(env, [])) if success and env == "production" else []
        shipped += commits
        out.append(
            {
                "native_id": native,
                "service": repo,
                "environment": env,
                "production": env == "production",
                "status": "success" if success else "failure",
                "started_at": start,
                "finished_at": end,
                "sha": sha,
                "contains": sorted(f"commit:{c['sha']}" for c in commits),
            }
        )
        if success:
            ok.setdefault(env, []).append(sha)
    return out, shipped


def read_review_times(gh: Served, repo: str, pr: dict[str, Any]) -> dict[str, Any]:
    """The documented rules for ``ready_at`` and ``first_review_at``, from the pull request's timeline."""
    timeline = gh.walk(f"/repos/{repo}/issues/{pr['number']}/timeline")
    drafts = [e for e in timeline if e["event"] in ("ready_for_review", "convert_to_draft")]
    ready = drafts[0]["created_at"] if drafts and drafts[0]["event"] == "ready_for_review" else pr["created_at"]
    author = pr["user"]["login"]
    submitted = [e for e in timeline if e["event"] == "reviewed" and e["state"] != "pending"]
    ids = {e["id"] for e in submitted}
    times = [e["submitted_at"] for e in submitted if author == "ghost" or e["user"]["login"] != author]
    times += [
        c["created_at"]
        for e in timeline
        if e["event"] == "line-commented"
        for c in e["comments"]
        if c["pull_request_review_id"] in ids and (author == "ghost" or c["user"]["login"] != author)
    ]
    return {"ready_at": ready, "first_review_at": min(times, key=ts, default=None)}


def read_everything(gh: Served) -> dict[str, Any]:
    got: dict[str, Any] = {"work_items": [], "changes": [], "deployments": [], "links": set(), "rejected": []}
    for repo, mode in gh.routes.truth()["repos"].items():
        for item in gh.walk(f"/repos/{repo}/issues", state="all"):
            if is_pr(item):
                continue
            if reason := rejection(item, "closed_at"):
                got["rejected"].append({"record_id": f"{repo}#{item['number']}", "reason": reason})
                continue
            labels = [lb["name"] for lb in item["labels"]]
            kind = (
                item["type"]["name"]
                if item.get("type")
                else next(
                    ({"bug": "Bug", "feature": "Feature"}[lb] for lb in labels if lb in ("bug", "feature")), "Issue"
                )
            )
            got["work_items"].append(
                {
                    "native_id": f"{repo}#{item['number']}",
                    "ref": f"gh:{repo}#{item['number']}",
                    "project": repo,
                    "team": next((lb[5:] for lb in labels if lb.startswith("team/")), ""),
                    "type": kind,
                    "created_at": item["created_at"],
                    "history": read_history(gh, repo, item),
                }
            )
        in_pulls: set[str] = set()
        for pr in gh.walk(f"/repos/{repo}/pulls", state="all"):
            if reason := rejection(pr, "merged_at"):
                got["rejected"].append({"record_id": f"{repo}#{pr['number']}", "reason": reason})
                continue
            if not pr["merged_at"]:
                continue
            commits = gh.walk(f"/repos/{repo}/pulls/{pr['number']}/commits")
            ref = f"ghpr:{repo}#{pr['number']}"
            shas = [c["sha"] for c in commits] + [pr["merge_commit_sha"]]
            in_pulls.update(shas)
            got["changes"].append(
                {
                    "native_id": f"{repo}#{pr['number']}",
                    "ref": ref,
                    "service": repo,
                    "kind": "pull_request",
                    "first_commit_at": min((c["commit"]["author"]["date"] for c in commits), key=ts),
                    "merged_at": pr["merged_at"],
                    "commits": shas,
                    **read_review_times(gh, repo, pr),
                }
            )
            text = f"{pr['title']}\n{pr['body']}"
            got["links"] |= {(f"gh:{f'{o}/{r}' if o else repo}#{n}".lower(), ref) for o, r, n in CLOSING.findall(text)}
            got["links"] |= {(f"ado:{n}", ref) for n in MENTION.findall(text)}
            got["links"] |= {
                (f"ado:{n}", f"commit:{c['sha']}") for c in commits for n in MENTION.findall(c["commit"]["message"])
            }
        deployments, shipped = read_deployments(gh, repo, mode)
        got["deployments"] += deployments
        pushed = {c["sha"]: c for c in shipped if c["sha"] not in in_pulls}
        for sha, c in sorted(pushed.items()):  # direct pushes: on main, in no pull request
            ref = f"commit:{sha}"
            got["changes"].append(
                {
                    "native_id": f"{repo}@{sha}",
                    "ref": ref,
                    "service": repo,
                    "kind": "commit",
                    "first_commit_at": c["commit"]["author"]["date"],
                    "merged_at": c["commit"]["committer"]["date"],
                    "commits": [sha],
                    "ready_at": None,
                    "first_review_at": None,
                }
            )
            message = c["commit"]["message"]
            got["links"] |= {
                (f"gh:{f'{o}/{r}' if o else repo}#{n}".lower(), ref) for o, r, n in CLOSING.findall(message)
            }
            got["links"] |= {(f"ado:{n}", ref) for n in MENTION.findall(message)}
    got["links"] = [{"work_item": w, "target": t} for w, t in sorted(got["links"])]
    return got


def assert_reproduces_truth(gh: Served) -> None:
    got, truth = read_everything(gh), gh.routes.truth()
    for key in ("work_items", "changes", "deployments", "links", "rejected"):
        assert sorted(got[key], key=repr) == sorted(truth[key], key=repr), key


def test_the_documented_rules_reproduce_the_truth_through_the_api(gh: Served) -> None:
    assert_reproduces_truth(gh)


def test_pull_requests_carry_the_awkward_review_variations(gh: Served) -> None:
    """Drafts made ready later, ready PRs sent back to draft, ghost authors, self-reviews (alone too),
    pending reviews, review comments drafted before their review, bots: each shows up, and the
    truth's first review is never a pending one, nor the author's own."""
    seen: dict[str, int] = dict.fromkeys(
        ("draft", "redraft", "ghost", "self", "only_self", "pending", "early_comment", "bot", "unreviewed"), 0
    )
    truth = {c["native_id"]: c for c in gh.routes.truth()["changes"]}
    for repo in gh.routes.truth()["repos"]:
        for pr in gh.walk(f"/repos/{repo}/pulls", state="closed"):
            if not pr["merged_at"] or f"{repo}#{pr['number']}" not in truth:
                continue
            expected = truth[f"{repo}#{pr['number']}"]
            timeline = gh.walk(f"/repos/{repo}/issues/{pr['number']}/timeline")
            kinds = [e["event"] for e in timeline]
            author = pr["user"]["login"]
            reviews = [e for e in timeline if e["event"] == "reviewed"]
            mine = [r for r in reviews if r["user"]["login"] == author]
            others = [r for r in reviews if r["user"]["login"] != author and r["state"] != "pending"]
            comments = [c for e in timeline if e["event"] == "line-commented" for c in e["comments"]]
            # the timeline holds what the pull request's own lists hold
            assert gh.walk(f"/repos/{repo}/pulls/{pr['number']}/comments") == comments
            listed = gh.walk(f"/repos/{repo}/pulls/{pr['number']}/reviews")
            assert [(r["id"], r["state"].lower(), r.get("submitted_at")) for r in listed] == [
                (r["id"], r["state"], r.get("submitted_at")) for r in reviews
            ]
            seen["draft"] += kinds[:1] == ["ready_for_review"] or (
                "ready_for_review" in kinds and "convert_to_draft" not in kinds
            )
            seen["redraft"] += "convert_to_draft" in kinds
            seen["ghost"] += author == "ghost"
            seen["self"] += bool(mine) and author != "ghost"
            seen["only_self"] += bool(mine) and not others and author != "ghost"
            seen["pending"] += any(r["state"] == "pending" and "submitted_at" not in r for r in reviews)
            seen["early_comment"] += any(
                c["created_at"] < r["submitted_at"]
                for r in others
                for c in comments
                if c["pull_request_review_id"] == r["id"]
            )
            seen["bot"] += any(r["user"]["login"].endswith("[bot]") for r in others)
            seen["unreviewed"] += expected["first_review_at"] is None
            if expected["first_review_at"] is not None and author != "ghost":
                assert expected["first_review_at"] not in [r["submitted_at"] for r in mine if r not in others] or any(
                    r["submitted_at"] == expected["first_review_at"] for r in others
                )
    assert all(seen.values()), seen


def test_the_truth_stays_reproducible_after_activity(fresh: Served) -> None:
    rng = random.Random(11)
    for step in range(1, 4):
        fresh.routes.add_activity(rng, NOW + timedelta(hours=step))
    assert_reproduces_truth(fresh)
