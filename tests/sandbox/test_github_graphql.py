"""The sandbox's GitHub GraphQL API, with plain ``requests`` against a real server on 127.0.0.1.

Every object GraphQL serves is checked field by field against the sandbox's own REST answers for
the same object, so the REST and GraphQL plans of the collector read one organisation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.apps import SandboxApp

NOW = datetime(2025, 6, 1, tzinfo=UTC)
TOKEN = "gql-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = "web"

ISSUES = """
query($o: String!, $r: String!, $after: String) {
  repository(owner: $o, name: $r) {
    issues(first: 50, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id databaseId number createdAt updatedAt closedAt state stateReason
        issueType { name }
        labels(first: 20) { nodes { name color } }
        timelineItems(first: 100) {
          pageInfo { hasNextPage }
          nodes {
            __typename
            ... on AssignedEvent { createdAt actor { login } assignee { ... on User { login } } }
            ... on UnassignedEvent { createdAt actor { login } assignee { ... on User { login } } }
            ... on ClosedEvent {
              createdAt stateReason
              closer { __typename ... on PullRequest { number mergeCommit { oid } } ... on Commit { oid } }
            }
            ... on ReopenedEvent { createdAt stateReason }
            ... on LabeledEvent { createdAt label { name } }
            ... on UnlabeledEvent { createdAt label { name } }
            ... on ConnectedEvent { createdAt }
            ... on DisconnectedEvent { createdAt }
            ... on CrossReferencedEvent {
              createdAt willCloseTarget isCrossRepository
              source { ... on PullRequest { number closedAt repository { nameWithOwner } } }
            }
          }
        }
        closedByPullRequestsReferences(first: 10, includeClosedPrs: true) { nodes { number } }
      }
    }
  }
}
"""

PULLS = """
query($o: String!, $r: String!, $after: String) {
  repository(owner: $o, name: $r) {
    pullRequests(first: 25, after: $after, orderBy: {field: CREATED_AT, direction: ASC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        number createdAt mergedAt closedAt state isDraft baseRefName body
        author { login }
        mergeCommit { oid }
        commits(first: 100) { totalCount nodes { commit { oid authoredDate committedDate } } }
        reviews(first: 20) { nodes { author { login } submittedAt state } }
        timelineItems(
          first: 50,
          itemTypes: [
            REVIEW_REQUESTED_EVENT, READY_FOR_REVIEW_EVENT, CONVERT_TO_DRAFT_EVENT, MERGED_EVENT, PULL_REQUEST_REVIEW
          ]
        ) {
          nodes {
            __typename
            ... on ReviewRequestedEvent { createdAt requestedReviewer { ... on User { login } } }
            ... on ReadyForReviewEvent { createdAt }
            ... on ConvertToDraftEvent { createdAt }
            ... on MergedEvent { createdAt commit { oid } }
            ... on PullRequestReview { createdAt submittedAt state author { login } }
          }
        }
        closingIssuesReferences(first: 10) { nodes { number } }
      }
    }
  }
}
"""

DEPLOYMENTS = """
query($o: String!, $r: String!) {
  repository(owner: $o, name: $r) {
    deployments(first: 100, orderBy: {field: CREATED_AT, direction: DESC}) {
      totalCount
      pageInfo { hasNextPage }
      nodes { databaseId createdAt environment commitOid statuses(first: 100) { nodes { state createdAt } } }
    }
  }
}
"""


class Client:
    """GraphQL and REST on one sandbox, as the collector would call them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.url = sandbox.url
        self.http = requests.Session()
        self.http.headers.update(AUTH)

    def post(self, query: str, variables: dict[str, Any] | None = None, path: str = "/graphql") -> requests.Response:
        return self.http.post(self.url + path, json={"query": query, "variables": variables or {}}, timeout=30)

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        resp = self.post(query, {"o": "contoso", "r": REPO, **variables})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def walk(self, query: str, connection: str) -> list[dict[str, Any]]:
        """Every node of ``repository.<connection>``, page by page."""
        out: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.query(query, after=after)["repository"][connection]
            out += page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return out
            after = page["pageInfo"]["endCursor"]

    def rest(self, path: str, **params: Any) -> Any:
        resp = self.http.get(f"{self.url}/repos/contoso/{REPO}{path}", params={"per_page": 100, **params}, timeout=30)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        while "next" in resp.links:
            resp = self.http.get(resp.links["next"]["url"], timeout=30)
            out += resp.json()
        return out

    def control(self, path: str, body: dict[str, Any]) -> Any:
        return requests.post(f"{self.url}/_sandbox/{path}", json=body, timeout=10).json()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=10).json()


def _sandbox() -> Sandbox:
    return Sandbox(SandboxOptions(now=NOW, work_items=240, token=TOKEN))


@pytest.fixture(scope="module")
def gql() -> Iterator[Client]:
    """A shared sandbox for the read-only comparisons."""
    with _sandbox() as sandbox:
        yield Client(sandbox)


@pytest.fixture
def fresh() -> Iterator[Client]:
    """A sandbox of its own, for tests that spend or change a budget."""
    with _sandbox() as sandbox:
        yield Client(sandbox)


def _upper(value: str | None) -> str | None:
    return value.upper() if value else None


def _closes(body: str, number: int) -> bool:
    pattern = rf"(?<![\w-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s*(?:contoso/{REPO})?#{number}(?!\d)"
    return re.search(pattern, body, re.IGNORECASE) is not None


# --- the same objects as REST -----------------------------------------------------------------------
def test_issues_and_their_timelines_are_the_rest_issues_and_timelines(gql: Client) -> None:
    nodes = gql.walk(ISSUES, "issues")
    rest = [
        i
        for i in gql.rest("/issues", state="all", direction="asc")
        if not (i.get("pull_request") or {}).get("html_url")
    ]
    assert [n["number"] for n in nodes] == [i["number"] for i in rest]
    kinds = {"AssignedEvent": 0, "ClosedEvent": 0, "CrossReferencedEvent": 0, "ReopenedEvent": 0}
    for node, issue in zip(nodes, rest, strict=True):
        assert (node["id"], node["databaseId"]) == (issue["node_id"], issue["id"])
        assert node["createdAt"] == issue["created_at"]
        assert node["updatedAt"] == issue["updated_at"]
        assert node["closedAt"] == issue["closed_at"]
        assert node["state"] == issue["state"].upper()
        assert node["stateReason"] == _upper(issue["state_reason"])
        assert node["issueType"] == ({"name": issue["type"]["name"]} if issue["type"] else None)
        assert node["labels"]["nodes"] == [{"name": lb["name"], "color": lb["color"]} for lb in issue["labels"]]
        assert not node["timelineItems"]["pageInfo"]["hasNextPage"]
        timeline = gql.rest(f"/issues/{issue['number']}/timeline")
        items = node["timelineItems"]["nodes"]
        assert len(items) == len(timeline)
        closers = []
        for item, ev in zip(items, timeline, strict=True):
            kind = item["__typename"]
            assert kind == "".join(p.capitalize() for p in ev["event"].split("-")) + "Event"
            assert item["createdAt"] == ev["created_at"]
            if kind in kinds:
                kinds[kind] += 1
            if kind in ("AssignedEvent", "UnassignedEvent"):
                assert item["assignee"]["login"] == ev["assignee"]["login"]
                assert item["actor"]["login"] == ev["actor"]["login"]
            elif kind == "ClosedEvent":
                assert item["stateReason"] == _upper(ev["state_reason"])
                closer = item["closer"]
                if closer is None:
                    assert ev["commit_id"] is None
                elif closer["__typename"] == "Commit":
                    assert closer["oid"] == ev["commit_id"]
                else:  # closed by merging a pull request, maybe of another repository
                    assert closer["mergeCommit"]["oid"] == ev["commit_id"]
            elif kind == "ReopenedEvent":
                assert item["stateReason"] == ev["state_reason"].upper()
            elif kind in ("LabeledEvent", "UnlabeledEvent"):
                assert item["label"]["name"] == ev["label"]["name"]
            elif kind == "CrossReferencedEvent":
                source = ev["source"]["issue"]
                assert item["source"] == {
                    "number": source["number"],
                    "closedAt": source["closed_at"],
                    "repository": {"nameWithOwner": source["repository"]["full_name"]},
                }
                assert item["willCloseTarget"] == _closes(source["body"] + source["title"], issue["number"])
                assert item["isCrossRepository"] is (source["repository"]["name"] != REPO)
                if item["willCloseTarget"]:
                    closers.append(source["number"])
        refs = [p["number"] for p in node["closedByPullRequestsReferences"]["nodes"]]
        assert set(closers) <= set(refs)
    assert all(kinds.values()), kinds  # every kind that matters showed up and was compared


def test_pull_requests_with_commits_and_reviews_are_the_rest_ones(gql: Client) -> None:
    nodes = gql.walk(PULLS, "pullRequests")
    rest = gql.rest("/pulls", state="all", direction="asc")
    assert [n["number"] for n in nodes] == [p["number"] for p in rest]
    reviewed = 0
    for node, pr in zip(nodes, rest, strict=True):
        n = pr["number"]
        assert node["createdAt"] == pr["created_at"]
        assert node["mergedAt"] == pr["merged_at"]
        assert node["closedAt"] == pr["closed_at"]
        assert node["state"] == ("MERGED" if pr["merged_at"] else pr["state"].upper())
        assert node["isDraft"] is pr["draft"]
        assert node["baseRefName"] == pr["base"]["ref"]
        assert node["body"] == pr["body"]
        assert node["mergeCommit"] == ({"oid": pr["merge_commit_sha"]} if pr["merged_at"] else None)
        commits = gql.rest(f"/pulls/{n}/commits")
        assert node["commits"]["totalCount"] == len(commits)
        assert [c["commit"] for c in node["commits"]["nodes"]] == [
            {
                "oid": c["sha"],
                "authoredDate": c["commit"]["author"]["date"],
                "committedDate": c["commit"]["committer"]["date"],
            }
            for c in commits
        ]
        # a deleted author is REST's ``ghost`` user and GraphQL's null; a bot's GraphQL login has no ``[bot]``
        assert node["author"] == (None if pr["user"]["login"] == "ghost" else {"login": pr["user"]["login"]})
        reviews = gql.rest(f"/pulls/{n}/reviews")
        reviewed += bool(reviews)
        assert node["reviews"]["nodes"] == [
            {
                "author": {"login": r["user"]["login"].removesuffix("[bot]")},
                "submittedAt": r.get("submitted_at"),  # a PENDING review has none
                "state": r["state"],
            }
            for r in reviews
        ]
        wanted = {
            "review_requested": "ReviewRequestedEvent",
            "ready_for_review": "ReadyForReviewEvent",
            "convert_to_draft": "ConvertToDraftEvent",
            "merged": "MergedEvent",
            "reviewed": "PullRequestReview",
        }
        rest_timeline = gql.rest(f"/issues/{n}/timeline")
        timeline = [e for e in rest_timeline if e["event"] in wanted]
        items = node["timelineItems"]["nodes"]
        assert [i["__typename"] for i in items] == [wanted[e["event"]] for e in timeline]
        comments = {
            c["pull_request_review_id"]: c
            for e in rest_timeline
            if e["event"] == "line-commented"
            for c in e["comments"]
        }
        for item, ev in zip(items, timeline, strict=True):
            if ev["event"] != "reviewed":
                assert item["createdAt"] == ev["created_at"]
            if ev["event"] == "review_requested":
                assert item["requestedReviewer"]["login"] == ev["requested_reviewer"]["login"]
            if ev["event"] == "merged":
                assert item["commit"]["oid"] == ev["commit_id"]
            if ev["event"] == "reviewed":
                assert (item["author"]["login"], item["state"], item["submittedAt"]) == (
                    ev["user"]["login"].removesuffix("[bot]"),
                    ev["state"].upper(),
                    ev.get("submitted_at"),
                )
                # a review started with a comment was created when that comment was drafted
                drafted = comments.get(ev["id"])
                assert item["createdAt"] == (drafted["created_at"] if drafted else ev["submitted_at"])
        closing = [i["number"] for i in node["closingIssuesReferences"]["nodes"]]
        same_repo = {int(m) for m in re.findall(r"(?:Fixes|Closes|Resolves) #(\d+)", pr["body"])}
        assert same_repo <= set(closing)
        assert all(_closes(pr["body"], c) or "contoso/" in pr["body"] for c in closing)
    assert reviewed > len(rest) / 2


def test_deployments_and_their_statuses_are_the_rest_ones(gql: Client) -> None:
    page = gql.query(DEPLOYMENTS)["repository"]["deployments"]
    rest = gql.rest("/deployments")  # newest first, like the DESC order asked for
    assert not page["pageInfo"]["hasNextPage"] and page["totalCount"] == len(rest) > 0
    for node, dep in zip(page["nodes"], rest, strict=True):
        assert node["databaseId"] == dep["id"]
        assert node["createdAt"] == dep["created_at"]
        assert node["environment"] == dep["environment"]
        assert node["commitOid"] == dep["sha"]
        statuses = gql.rest(f"/deployments/{dep['id']}/statuses")
        assert node["statuses"]["nodes"] == [
            {"state": s["state"].upper(), "createdAt": s["created_at"]} for s in statuses
        ]


def test_a_release_by_tag_has_the_commit_of_the_rest_tag_lookup(gql: Client) -> None:
    """``repository.release(tagName:)``: the REST release of that tag, and ``tagCommit`` the commit
    ``/git/ref/tags/{tag}`` names (none for a draft, whose tag does not exist yet; null for no release)."""
    base = f"{gql.url}/repos/contoso/api"
    releases = gql.http.get(f"{base}/releases", params={"per_page": 100}, timeout=30).json()
    assert len(releases) > 3 and any(r["draft"] for r in releases)
    fields = "databaseId tagName isDraft isPrerelease createdAt publishedAt tagCommit { oid }"
    aliases = " ".join(f'r{i}: release(tagName: "{r["tag_name"]}") {{ {fields} }}' for i, r in enumerate(releases))
    aliases += ' none: release(tagName: "no-such") { id }'
    query = f'query {{ repository(owner: "contoso", name: "api") {{ {aliases} }} }}'
    resp = gql.post(query)
    assert resp.status_code == 200 and "errors" not in resp.json(), resp.text
    found = resp.json()["data"]["repository"]
    assert found["none"] is None
    for i, rel in enumerate(releases):
        node = found[f"r{i}"]
        assert (node["databaseId"], node["tagName"], node["isDraft"], node["isPrerelease"]) == (
            rel["id"],
            rel["tag_name"],
            rel["draft"],
            rel["prerelease"],
        )
        assert (node["createdAt"], node["publishedAt"]) == (rel["created_at"], rel["published_at"])
        ref = gql.http.get(f"{base}/git/ref/tags/{rel['tag_name']}", timeout=30)
        if rel["draft"]:
            assert ref.status_code == 404 and node["tagCommit"] is None
        else:
            assert node["tagCommit"] == {"oid": ref.json()["object"]["sha"]}
    rate = gql.post(query.replace("repository(", "rateLimit { cost } repository(", 1)).json()["data"]["rateLimit"]
    assert rate["cost"] == 1  # no connection: one point for all of them


# --- pagination ---------------------------------------------------------------------------------------
PAGE = """
query($o: String!, $r: String!, $after: String, $before: String, $first: Int, $last: Int, $dir: OrderDirection!) {
  repository(owner: $o, name: $r) {
    issues(first: $first, last: $last, after: $after, before: $before, orderBy: {field: UPDATED_AT, direction: $dir}) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { number updatedAt } }
    }
  }
}
"""


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_cursor_pagination_visits_every_issue_once_in_order(gql: Client, direction: str) -> None:
    seen: list[dict[str, Any]] = []
    after, pages = None, 0
    while True:
        conn = gql.query(PAGE, after=after, first=7, dir=direction)["repository"]["issues"]
        pages += 1
        info = conn["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert info["startCursor"] == conn["edges"][0]["cursor"] and info["endCursor"] == conn["edges"][-1]["cursor"]
        seen += [e["node"] for e in conn["edges"]]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    numbers = [n["number"] for n in seen]
    assert len(numbers) == len(set(numbers)) == conn["totalCount"]
    assert pages == -(-conn["totalCount"] // 7)
    stamps = [n["updatedAt"] for n in seen]
    assert stamps == sorted(stamps, reverse=direction == "DESC")
    # backwards from the end with last/before yields the same list
    back: list[int] = []
    before = None
    while True:
        conn = gql.query(PAGE, before=before, last=10, dir=direction)["repository"]["issues"]
        back = [e["node"]["number"] for e in conn["edges"]] + back
        if not conn["pageInfo"]["hasPreviousPage"]:
            break
        before = conn["pageInfo"]["startCursor"]
    assert back == numbers


def test_cursors_are_opaque_and_a_bad_one_is_an_error(gql: Client) -> None:
    conn = gql.query(PAGE, first=2, dir="ASC")["repository"]["issues"]
    cursor = conn["pageInfo"]["endCursor"]
    assert str(conn["edges"][-1]["node"]["number"]) not in cursor  # not a plain number or offset
    body = gql.post(PAGE, {"o": "contoso", "r": REPO, "first": 2, "after": "bm9wZQ==", "dir": "ASC"}).json()
    assert body["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"
    assert body["data"]["repository"] is None


# --- limits, cost and budget --------------------------------------------------------------------------
def _cost_query(outer: int, inner: int, prs: int = 0) -> str:
    pulls = f"pullRequests(first: {prs}) {{ nodes {{ commits(first: 1) {{ totalCount }} }} }}" if prs else ""
    return f"""query {{ rateLimit {{ cost remaining used limit nodeCount resetAt }}
      repository(owner: "contoso", name: "{REPO}") {{
        issues(first: {outer}) {{ nodes {{
          labels(first: {inner}) {{ totalCount }}
          timelineItems(first: {inner}) {{ totalCount }}
        }} }}
        {pulls}
      }} }}"""


@pytest.mark.parametrize(
    ("outer", "inner", "prs", "expected"),
    [
        (1, 1, 0, 1),  # 1 + 1 + 1 requests: the minimum of 1 point
        (100, 1, 0, 2),  # 1 + 100 + 100 = 201 requests → 2.01 → 2
        (100, 100, 49, 3),  # 201 + 1 + 49 = 251 → 2.51 → 3, whatever the inner page sizes
        (40, 100, 0, 1),  # 81 requests → 0.81 → 1
    ],
)
def test_cost_is_the_documented_requests_over_100_and_spends_the_graphql_budget(
    fresh: Client, outer: int, inner: int, prs: int, expected: int
) -> None:
    before = fresh.post(_cost_query(1, 1)).json()["data"]["rateLimit"]["remaining"]
    resp = fresh.post(_cost_query(outer, inner, prs))
    rate = resp.json()["data"]["rateLimit"]
    assert rate["cost"] == expected
    assert rate["nodeCount"] == outer + 2 * outer * inner + prs + prs
    assert rate["remaining"] == before - expected
    assert rate["used"] == rate["limit"] - rate["remaining"]
    assert resp.headers["x-ratelimit-resource"] == "graphql"
    assert int(resp.headers["x-ratelimit-remaining"]) == rate["remaining"]
    assert int(resp.headers["x-ratelimit-used"]) == rate["used"]
    assert rate["resetAt"] == datetime.fromtimestamp(int(resp.headers["x-ratelimit-reset"]), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    # REST's budget is another one
    core = fresh.http.get(f"{fresh.url}/rate_limit", timeout=10).json()["resources"]
    assert core["core"]["used"] == 0 and core["graphql"]["used"] == rate["used"]


def test_cost_rounds_half_up_and_counts_one_request_per_parent_node(fresh: Client) -> None:
    # 1 (issues) + 100 (labels) + 100 (timelines) + 1 (pullRequests) + 49 (commits) = 251 requests
    rate = fresh.post(_cost_query(100, 1, 49)).json()["data"]["rateLimit"]
    assert rate["cost"] == 3
    # 1 + 100 + 100 + 1 + 47 = 249 requests
    assert fresh.post(_cost_query(100, 1, 47)).json()["data"]["rateLimit"]["cost"] == 2
    points = fresh.stats()["points_by_endpoint"]["github.graphql"]
    assert points == 5


def test_node_limit_refuses_the_query_before_it_runs_and_charges_nothing(fresh: Client) -> None:
    query = """query { repository(owner: "contoso", name: "web") {
      issues(first: 100) { nodes { timelineItems(first: 100) { nodes {
        ... on CrossReferencedEvent { source { ... on PullRequest { commits(first: 100) { totalCount } } } }
      } } } } } }"""
    resp = fresh.post(query)
    body = resp.json()
    assert resp.status_code == 200 and "data" not in body
    assert body["errors"] == [
        {
            "type": "MAX_NODE_LIMIT_EXCEEDED",
            "message": "This query requests up to 1,010,100 possible nodes which exceeds the maximum limit of 500,000.",
        }
    ]
    assert resp.headers["x-ratelimit-used"] == "0"


@pytest.mark.parametrize(
    ("args", "kind", "message"),
    [
        (
            "first: 101",
            "EXCESSIVE_PAGINATION",
            "Requesting 101 records on the `issues` connection exceeds the `first` limit of 100 records.",
        ),
        (
            "last: 500",
            "EXCESSIVE_PAGINATION",
            "Requesting 500 records on the `issues` connection exceeds the `last` limit of 100 records.",
        ),
        (
            "",
            "MISSING_PAGINATION_BOUNDARIES",
            "You must provide a `first` or `last` value to properly paginate the `issues` connection.",
        ),
    ],
)
def test_connections_need_first_or_last_up_to_100(gql: Client, args: str, kind: str, message: str) -> None:
    sel = f"issues({args})" if args else "issues"
    body = gql.post(f'query {{ repository(owner: "contoso", name: "web") {{ {sel} {{ totalCount }} }} }}').json()
    assert "data" not in body
    assert body["errors"] == [{"type": kind, "message": message, "path": ["repository", "issues"]}]


def test_page_size_from_a_variable_is_checked_too(gql: Client) -> None:
    body = gql.post(PAGE, {"o": "contoso", "r": REPO, "first": 150, "dir": "ASC"}).json()
    assert body["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    body = gql.post(PAGE, {"o": "contoso", "r": REPO, "first": 5, "last": 5, "dir": "ASC"}).json()
    assert body["errors"][0]["message"] == (
        "Passing both `first` and `last` to paginate the `issues` connection is not supported."
    )


def test_a_cursor_of_another_connection_is_refused(gql: Client) -> None:
    cursor = gql.query(PAGE, first=1, dir="ASC")["repository"]["issues"]["pageInfo"]["endCursor"]
    query = """query($after: String) { repository(owner: "contoso", name: "web") {
      issues(first: 1) { nodes { timelineItems(first: 5, after: $after) { totalCount } } } } }"""
    body = gql.post(query, {"after": cursor}).json()
    assert body["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"
    assert body["errors"][0]["path"] == ["repository", "issues", "nodes", 0, "timelineItems"]


def test_a_missing_repository_is_an_error_beside_partial_data(gql: Client) -> None:
    query = """query { rateLimit { cost }
      gone: repository(owner: "contoso", name: "no-such-repo") { name }
      private: repository(owner: "contoso", name: "private-infra") { name }
      web: repository(owner: "contoso", name: "web") { name issues(first: 1) { totalCount } } }"""
    resp = gql.post(query)
    body = resp.json()
    assert resp.status_code == 200
    assert body["data"]["gone"] is None and body["data"]["private"] is None
    assert body["data"]["web"]["name"] == "web" and body["data"]["web"]["issues"]["totalCount"] > 0
    errors = {e["path"][0]: e for e in body["errors"]}
    assert errors["gone"]["type"] == "NOT_FOUND"
    assert errors["gone"]["message"] == "Could not resolve to a Repository with the name 'contoso/no-such-repo'."
    assert errors["gone"]["locations"] == [{"line": 2, "column": 7}]
    assert errors["private"]["type"] == "FORBIDDEN"


def test_a_spent_budget_answers_rate_limited_until_the_reset(fresh: Client) -> None:
    fresh.control("ratelimit", {"resource": "graphql", "limit": 5000, "remaining": 3})
    cheap = _cost_query(1, 1)
    for left in (2, 1, 0):
        assert fresh.post(cheap).json()["data"]["rateLimit"]["remaining"] == left
    resp = fresh.post(cheap)
    body = resp.json()
    assert resp.status_code == 200 and "data" not in body
    assert body["errors"][0]["type"] == "RATE_LIMITED"
    assert body["errors"][0]["message"].startswith("API rate limit exceeded for user ID ")
    assert resp.headers["x-ratelimit-remaining"] == "0"
    # REST is untouched by GraphQL's budget
    assert fresh.http.get(f"{fresh.url}/repos/contoso/web", timeout=10).status_code == 200
    fresh.control("ratelimit", {"resource": "graphql", "reset_in": 0})
    rate = fresh.post(cheap).json()["data"]["rateLimit"]
    assert rate["remaining"] == 4999


def test_a_query_dearer_than_what_is_left_is_refused_whole(fresh: Client) -> None:
    fresh.control("ratelimit", {"resource": "graphql", "remaining": 2})
    body = fresh.post(_cost_query(100, 1, 49)).json()  # 3 points
    assert body["errors"][0]["type"] == "RATE_LIMITED"
    assert fresh.post(_cost_query(1, 1)).json()["data"]["rateLimit"]["remaining"] == 1


def test_a_dry_run_reports_the_cost_and_spends_nothing(fresh: Client) -> None:
    query = _cost_query(100, 1).replace("rateLimit {", "rateLimit(dryRun: true) {")
    rate = fresh.post(query).json()["data"]["rateLimit"]
    assert (rate["cost"], rate["remaining"]) == (2, 5000)


def test_the_budget_is_configurable(fresh: Client) -> None:
    fresh.control("ratelimit", {"resource": "graphql", "limit": 10000})
    resp = fresh.post(_cost_query(1, 1))
    assert resp.json()["data"]["rateLimit"]["limit"] == 10000
    assert resp.headers["x-ratelimit-limit"] == "10000"


def test_secondary_limit_is_a_403_with_retry_after(fresh: Client) -> None:
    fresh.control("ratelimit", {"secondary": 1, "retry_after": 7})
    resp = fresh.post(_cost_query(1, 1))
    assert resp.status_code == 403
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["message"].startswith("You have exceeded a secondary rate limit.")
    assert fresh.post(_cost_query(1, 1)).status_code == 200


# --- the HTTP surface ---------------------------------------------------------------------------------
def test_ghes_path_serves_the_same_answer(gql: Client) -> None:
    query = 'query { repository(owner: "contoso", name: "web") { issues(first: 5) { nodes { number title } } } }'
    cloud = gql.post(query).json()
    ghes = gql.post(query, path="/api/graphql")
    assert ghes.status_code == 200 and ghes.json() == cloud
    assert gql.post(query, path="/api/v3/graphql").status_code == 404


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "This endpoint requires you to be authenticated."), ({"Authorization": "Bearer wrong"}, "Bad credentials")],
)
def test_auth_is_required_as_for_rest(gql: Client, headers: dict[str, str], message: str) -> None:
    resp = requests.post(
        gql.url + "/graphql", json={"query": "query { rateLimit { cost } }"}, headers=headers, timeout=10
    )
    assert resp.status_code == 401
    assert resp.json()["message"] == message


def test_invalid_queries_are_errors_in_a_200(gql: Client) -> None:
    body = gql.post('query { repository(owner: "contoso", name: "web") { stars } }').json()
    assert body["errors"][0]["message"] == "Field 'stars' doesn't exist on type 'Repository'"
    assert body["errors"][0]["extensions"]["code"] == "undefinedField"
    assert "data" not in body
    assert "errors" in gql.post("query {").json()
    resp = gql.http.post(gql.url + "/graphql", data=b"{not json", timeout=10)
    assert resp.status_code == 400 and resp.json()["message"] == "Problems parsing JSON"


def test_fault_injection_and_request_counting_cover_graphql(fresh: Client) -> None:
    fresh.control("stats/reset", {})
    fresh.control("faults", {"rate": 1.0, "kinds": ["502"]})
    assert fresh.post(_cost_query(1, 1)).status_code == 502
    fresh.control("faults", {"rate": 0.0})
    assert fresh.post(_cost_query(1, 1)).status_code == 200
    stats = fresh.stats()
    assert stats["by_endpoint"]["github.graphql"] == 2
    assert stats["faults"] == {"502": 1}
    assert stats["points_by_endpoint"] == {"github.graphql": 1}


FILTERED = """
query($o: String!, $r: String!, $since: DateTime, $after: String) {
  repository(owner: $o, name: $r) {
    issues(first: 100, after: $after, filterBy: {since: $since}, states: [OPEN]) {
      pageInfo { hasNextPage endCursor }
      nodes { number }
    }
    pullRequests(first: 100, states: [MERGED]) { totalCount nodes { number } }
  }
}
"""


def test_filters_select_what_the_rest_filters_select(gql: Client) -> None:
    since = "2025-03-01T00:00:00Z"
    data = gql.query(FILTERED, since=since)["repository"]
    rest = gql.rest("/issues", state="open", since=since, direction="asc")
    expected = {i["number"] for i in rest if not (i.get("pull_request") or {}).get("html_url")}
    assert {n["number"] for n in data["issues"]["nodes"]} == expected and expected
    merged = {p["number"] for p in gql.rest("/pulls", state="closed") if p["merged_at"]}
    assert data["pullRequests"]["totalCount"] == len(merged)
    assert {n["number"] for n in data["pullRequests"]["nodes"]} == merged


def test_the_points_budget_is_a_sandbox_option() -> None:
    with Sandbox(SandboxOptions(now=NOW, work_items=30, token=TOKEN, github_graphql_points=10_000)) as sandbox:
        resp = Client(sandbox).post(_cost_query(1, 1))
    assert resp.headers["x-ratelimit-limit"] == "10000"
    assert resp.json()["data"]["rateLimit"]["remaining"] == 9999


def test_an_overflowing_nested_connection_is_paged_on_its_own_object(gql: Client) -> None:
    """A sync pages a long timeline or commit list by number or node id, not by re-reading the list."""
    conn = gql.query(PULLS, after=None)["repository"]["pullRequests"]["nodes"]
    pr = max(conn, key=lambda p: p["commits"]["totalCount"])
    query = """query($o: String!, $r: String!, $n: Int!, $after: String) { repository(owner: $o, name: $r) {
      pullRequest(number: $n) { id commits(first: 1, after: $after) {
        pageInfo { hasNextPage endCursor } nodes { commit { oid } } } } } }"""
    oids, after = [], None
    while True:
        page = gql.query(query, n=pr["number"], after=after)["repository"]["pullRequest"]
        oids += [c["commit"]["oid"] for c in page["commits"]["nodes"]]
        if not page["commits"]["pageInfo"]["hasNextPage"]:
            break
        after = page["commits"]["pageInfo"]["endCursor"]
    assert oids == [c["commit"]["oid"] for c in pr["commits"]["nodes"]] and len(oids) > 1
    by_id = gql.post(
        "query($id: ID!) { node(id: $id) { __typename ... on PullRequest { number } } }", {"id": page["id"]}
    ).json()
    assert by_id["data"]["node"] == {"__typename": "PullRequest", "number": pr["number"]}
    issue = gql.post(
        'query($n: Int!) { repository(owner: "contoso", name: "web") { issue(number: $n) { number } } }',
        {"n": pr["number"]},
    ).json()
    assert issue["data"]["repository"]["issue"] is None
    assert issue["errors"][0]["message"] == f"Could not resolve to an Issue with the number of {pr['number']}."
    gone = gql.post('query { node(id: "I_kwDO0") { id } }').json()
    assert gone["data"]["node"] is None and gone["errors"][0]["type"] == "NOT_FOUND"


def test_a_cursor_taken_before_new_activity_continues_with_just_the_new_issues(fresh: Client) -> None:
    query = """query($r: String!, $after: String) { repository(owner: "contoso", name: $r) {
      issues(first: 100, after: $after, orderBy: {field: CREATED_AT, direction: ASC}) {
        totalCount pageInfo { hasNextPage endCursor } nodes { number } } } }"""

    def last_page(repo: str, after: str | None = None) -> dict[str, Any]:
        while True:
            resp = fresh.post(query, {"r": repo, "after": after}).json()["data"]["repository"]["issues"]
            if not resp["pageInfo"]["hasNextPage"]:
                return resp
            after = resp["pageInfo"]["endCursor"]

    repos = ("web", "api", "mobile-app")
    before = {r: last_page(r) for r in repos}
    fresh.control("activity", {"steps": 3})
    grown = 0
    for repo in repos:
        old = before[repo]
        new = fresh.post(query, {"r": repo, "after": old["pageInfo"]["endCursor"]}).json()["data"]["repository"]
        added = new["issues"]["totalCount"] - old["totalCount"]
        assert len(new["issues"]["nodes"]) == added
        assert all(n["number"] > max(x["number"] for x in old["nodes"]) for n in new["issues"]["nodes"])
        grown += added
    assert grown == 3


def test_an_installation_token_queries_its_own_account_only() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    app = SandboxApp(app_id=5, public_key_pem=public, installations={"contoso": 11, "octo-user": 12})
    now = int(time.time())
    app_jwt = jwt.encode({"iat": now - 60, "exp": now + 500, "iss": "5"}, key, algorithm="RS256")
    query = 'query { rateLimit { cost } repository(owner: "contoso", name: "web") { name } }'
    with Sandbox(SandboxOptions(now=NOW, work_items=30, token=TOKEN, github_app=app)) as sandbox:

        def ask(token: str) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return requests.post(sandbox.url + "/graphql", json={"query": query}, headers=headers, timeout=10)

        def mint(installation: int) -> str:
            url = f"{sandbox.url}/app/installations/{installation}/access_tokens"
            return requests.post(url, headers={"Authorization": f"Bearer {app_jwt}"}, timeout=10).json()["token"]

        own = ask(mint(11)).json()
        other = ask(mint(12)).json()
        as_app = ask(app_jwt)
    assert own["data"]["repository"] == {"name": "web"} and "errors" not in own
    assert other["data"]["repository"] is None and other["errors"][0]["type"] == "NOT_FOUND"
    assert as_app.status_code == 401 and as_app.json()["message"] == "Bad credentials"


RUN_JOBS = """
query($ids: [ID!]!, $first: Int!, $after: String) { rateLimit { cost nodeCount }
  nodes(ids: $ids) { __typename ... on WorkflowRun { id runNumber createdAt
    checkSuite { id checkRuns(first: $first, after: $after, filterBy: {checkType: ALL}) {
      totalCount pageInfo { hasNextPage endCursor } nodes { name status conclusion startedAt completedAt } } } } } }
"""


def test_workflow_runs_by_node_id_have_their_rest_jobs_as_check_runs(fresh: Client) -> None:
    """``nodes(ids:)`` by the REST runs' ``node_id``: each run's check suite (REST's
    ``check_suite_node_id``) lists its ``/jobs`` as check runs, paged past 100 like any connection."""
    base = f"{fresh.url}/repos/contoso/mobile-app/actions/runs"
    runs = fresh.http.get(base, params={"per_page": 10}, timeout=30).json()["workflow_runs"]
    fresh.sandbox.github.many_jobs("mobile-app", runs[-1]["id"], 120)  # a matrix: 122 jobs
    body = fresh.post(RUN_JOBS, {"ids": [r["node_id"] for r in runs], "first": 100}).json()
    assert "errors" not in body
    # one checkRuns connection per run, 100 nodes each: the documented cost and node count
    assert body["data"]["rateLimit"] == {"cost": 1, "nodeCount": len(runs) * 101}
    for run, node in zip(runs, body["data"]["nodes"], strict=True):
        assert node["__typename"] == "WorkflowRun" and node["id"] == run["node_id"]
        assert node["runNumber"] == run["run_number"] and node["createdAt"] == run["created_at"]
        suite = node["checkSuite"]
        assert suite["id"] == run["check_suite_node_id"]
        checks = suite["checkRuns"]["nodes"]
        after = suite["checkRuns"]["pageInfo"]["endCursor"]
        while suite["checkRuns"]["pageInfo"]["hasNextPage"]:
            page = fresh.post(
                "query($id: ID!, $after: String) { node(id: $id) { ... on CheckSuite { "
                "checkRuns(first: 100, after: $after) { pageInfo { hasNextPage endCursor } "
                "nodes { name status conclusion startedAt completedAt } } } } }",
                {"id": suite["id"], "after": after},
            ).json()["data"]["node"]
            suite = {"checkRuns": page["checkRuns"]}
            checks += page["checkRuns"]["nodes"]
            after = page["checkRuns"]["pageInfo"]["endCursor"]
        jobs = []
        url: str | None = f"{base}/{run['id']}/jobs?per_page=100"
        while url:
            resp = fresh.http.get(url, timeout=30)
            jobs += resp.json()["jobs"]
            url = resp.links.get("next", {}).get("url")
        assert len(checks) == len(jobs) == (122 if run is runs[-1] else 2)
        assert checks == [
            {
                "name": j["name"],
                "status": j["status"].upper(),
                "conclusion": _upper(j["conclusion"]),
                "startedAt": j["started_at"],
                "completedAt": j["completed_at"],
            }
            for j in jobs
        ]


def test_nodes_by_id_keep_what_resolves_and_refuse_more_than_100_ids(fresh: Client) -> None:
    runs = fresh.http.get(f"{fresh.url}/repos/contoso/mobile-app/actions/runs", timeout=30).json()["workflow_runs"]
    fresh.sandbox.github.unresolvable(runs[1]["node_id"], "FORBIDDEN")
    ids = [runs[0]["node_id"], runs[1]["node_id"], "WFR_kwLO1", runs[2]["node_id"]]
    body = fresh.post(RUN_JOBS, {"ids": ids, "first": 10}).json()
    nodes = body["data"]["nodes"]
    assert [n and n["id"] for n in nodes] == [ids[0], None, None, ids[3]]
    errors = {tuple(e["path"]): e for e in body["errors"]}
    assert errors[("nodes", 1)]["type"] == "FORBIDDEN"
    assert errors[("nodes", 2)]["type"] == "NOT_FOUND"
    assert errors[("nodes", 2)]["message"] == "Could not resolve to a node with the global id of 'WFR_kwLO1'"
    # REST serves the run GraphQL does not
    assert fresh.http.get(f"{fresh.url}/repos/contoso/mobile-app/actions/runs/{runs[1]['id']}", timeout=30).ok
    before = fresh.stats()["points_by_endpoint"].get("github.graphql", 0)
    body = fresh.post(RUN_JOBS, {"ids": [runs[0]["node_id"]] * 101, "first": 10}).json()
    assert "data" not in body
    assert body["errors"] == [
        {
            "type": "ARGUMENT_LIMIT",
            "message": "You may not provide more than 100 node ids; you provided 101.",
            "path": ["nodes"],
        }
    ]
    assert fresh.stats()["points_by_endpoint"].get("github.graphql", 0) == before  # refused: nothing charged
