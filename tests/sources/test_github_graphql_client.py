"""The GraphQL plan of the GitHub source against a GraphQL server on 127.0.0.1 answering in GitHub's
shapes (docs.github.com/graphql: ``data`` + ``errors`` with ``type`` and ``path``, ``rateLimit``,
``pageInfo`` cursors): what reaches the store, what a partial answer keeps, how overflowing nested
connections, node limits and ``RATE_LIMITED`` are handled, and what the budget telemetry says."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from collector.config import GitHubConfig
from collector.errors import RateLimited
from collector.model import Category
from collector.sources.base import SourceContext
from collector.sources.github import GitHubSource, issue_history, review_times
from collector.sources.github_api import GitHubApi
from collector.sources.github_graphql import (
    LISTS,
    GitHubGraphQL,
    graphql_url,
    issue_record,
    list_cost,
    list_query,
    pull_record,
)
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions

NOW = datetime(2026, 1, 15, tzinfo=UTC)
T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
RESET = "2026-01-15T01:00:00Z"

Handler = Callable[[str, dict[str, Any]], tuple[int, Any, dict[str, str]]]


def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate(cost: int = 1, remaining: int = 4990) -> dict[str, Any]:
    return {"cost": cost, "remaining": remaining, "resetAt": RESET}


def _conn(nodes: list[Any], cursor: str | None = None) -> dict[str, Any]:
    return {"pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor}, "nodes": nodes}


def _issue(number: int, timeline: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": f"I_{number}",
        "number": number,
        "createdAt": _at(0),
        "updatedAt": _at(10 + number),
        "closedAt": None,
        "state": "OPEN",
        "body": "",
        "issueType": None,
        "labels": _conn([{"name": "team/web"}]),
        "timelineItems": timeline,
        **extra,
    }


def _assigned(hours: float, login: str = "ana") -> dict[str, Any]:
    return {"__typename": "AssignedEvent", "createdAt": _at(hours), "assignee": {"login": login}}


def _closed(hours: float, reason: str = "COMPLETED") -> dict[str, Any]:
    return {"__typename": "ClosedEvent", "createdAt": _at(hours), "stateReason": reason}


class FakeGitHub:
    """``GET /repos/o/r`` and ``POST /graphql`` on a free port; ``graphql`` answers each query."""

    def __init__(self, graphql: Handler) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []
        fake = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.startswith("/api/v3/repos/o/r"):
                    self._send(200, {"full_name": "o/r", "default_branch": "main"}, {"ETag": '"repo"'})
                else:
                    self._send(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.queries.append((request["query"], request["variables"]))
                self._send(*graphql(request["query"], request["variables"]))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/gql.db")
    yield s
    s.close()


def _serve(graphql: Handler) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(graphql)
    try:
        yield fake
    finally:
        fake.close()


def _source(fake: FakeGitHub, slept: list[float] | None = None) -> GitHubSource:
    config = GitHubConfig(
        name="gh", kind="github", base_url=fake.base_url, token="t0ken-secret", repositories=["o/r"], api="graphql"
    )
    ctx = SourceContext(now=lambda: NOW, sleep=(slept.append if slept is not None else lambda s: None))
    return GitHubSource(config, ctx)


def _empty_lists(query: str) -> dict[str, Any] | None:
    """Empty pull request and deployment lists (the tests here are about issues)."""
    for connection in ("pullRequests", "deployments"):
        if f"{connection}(" in query:
            return {"data": {"rateLimit": _rate(), "repository": {connection: _conn([])}}}
    return None


# -- the URL --------------------------------------------------------------------------------------------
def test_graphql_url_for_github_com_and_enterprise_server() -> None:
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"


# -- the normaliser -----------------------------------------------------------------------------------
def test_a_graphql_issue_gives_the_history_its_rest_timeline_gives() -> None:
    timeline = [
        _assigned(1),
        {
            # a closing pull request (GitHub says so: willCloseTarget) open until hour 5
            "__typename": "CrossReferencedEvent",
            "createdAt": _at(2),
            "willCloseTarget": True,
            "source": {
                "__typename": "PullRequest",
                "number": 9,
                "url": "https://github.com/o/r/pull/9",
                "closedAt": _at(5),
            },
        },
        {
            # a pull request that only mentions it: not work on it
            "__typename": "CrossReferencedEvent",
            "createdAt": _at(2.5),
            "willCloseTarget": False,
            "source": {
                "__typename": "PullRequest",
                "number": 10,
                "url": "https://github.com/o/r/pull/10",
                "closedAt": None,
            },
        },
        {"__typename": "UnassignedEvent", "createdAt": _at(3), "assignee": {"login": "ana"}},
        _closed(6, "NOT_PLANNED"),
        {"__typename": "ReopenedEvent", "createdAt": _at(7)},
        _closed(8),
    ]
    record = issue_record(_issue(2, _conn(timeline), issueType={"name": "Bug"}))
    assert record["type"] == {"name": "Bug"} and record["labels"] == [{"name": "team/web"}]
    states = [
        (s.seq, (s.at - T0).total_seconds() / 3600, s.state, s.category)
        for s in issue_history("o/r#2", T0, record["_timeline"])
    ]
    assert states == [
        (1, 0, "open", Category.PROPOSED),
        (2, 1, "in_progress", Category.IN_PROGRESS),
        (3, 5, "open", Category.PROPOSED),  # unassigned at 3 but PR 9 open until 5
        (4, 6, "not_planned", Category.REMOVED),
        (5, 7, "open", Category.PROPOSED),
        (6, 8, "completed", Category.COMPLETED),
    ]


def _review(login: str | None, state: str, created: float, submitted: float | None) -> dict[str, Any]:
    return {
        "__typename": "PullRequestReview",
        "author": {"login": login} if login else None,
        "state": state,
        "createdAt": _at(created),
        "submittedAt": None if submitted is None else _at(submitted),
    }


def test_a_graphql_pull_request_is_ready_and_first_reviewed_as_its_rest_timeline_says() -> None:
    """GraphQL shapes (docs.github.com/graphql: ``PullRequest.timelineItems`` with
    ``READY_FOR_REVIEW_EVENT``, ``CONVERT_TO_DRAFT_EVENT``, ``PULL_REQUEST_REVIEW``;
    ``PullRequestReview.createdAt`` / ``submittedAt: DateTime`` null while ``PENDING``; a deleted
    account's ``author`` is null; a ``Bot``'s login has no ``[bot]``)."""
    node = {
        "id": "PR_1",
        "number": 7,
        "createdAt": _at(0),
        "updatedAt": _at(30),
        "mergedAt": _at(30),
        "title": "Add a cache",
        "body": "",
        "author": {"login": "mona"},
        "mergeCommit": {"oid": "a" * 40},
        "commits": _conn([]),
        "timelineItems": _conn(
            [
                {"__typename": "ReadyForReviewEvent", "createdAt": _at(2)},  # opened as a draft
                _review("mona", "COMMENTED", 3, 3),  # the author's own
                _review("carol", "PENDING", 4, None),  # never submitted
                _review("copilot-pull-request-reviewer", "COMMENTED", 9, 9),  # a bot (REST: …[bot])
                _review("bob", "APPROVED", 6, 12),  # started with a comment at 6, submitted at 12
                {"__typename": "ConvertToDraftEvent", "createdAt": _at(13)},
                {"__typename": "ReadyForReviewEvent", "createdAt": _at(14)},
            ]
        ),
    }
    record = pull_record(node)
    assert record["user"] == {"login": "mona"}
    assert review_times(T0, record["user"], record["_timeline"]) == (T0 + timedelta(hours=2), T0 + timedelta(hours=6))
    # the same pull request by a deleted account: its own review counts like anyone's
    ghost = pull_record({**node, "author": None})
    assert ghost["user"] is None
    assert review_times(T0, ghost["user"], ghost["_timeline"])[1] == T0 + timedelta(hours=3)


# -- against a GraphQL server -------------------------------------------------------------------------
def test_an_overflowing_timeline_is_read_to_its_end_for_that_issue_only(store: Store) -> None:
    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if (empty := _empty_lists(query)) is not None:
            return 200, empty, {}
        if "node(id:" in query:  # the follow-up: the rest of issue 1's timeline after its cursor
            assert variables == {"id": "I_1", "first": 100, "after": "t1"}
            return 200, {"data": {"rateLimit": _rate(), "node": {"timelineItems": _conn([_closed(5)])}}}, {}
        issues = [_issue(1, _conn([_assigned(1)], cursor="t1")), _issue(2, _conn([_assigned(2)]))]
        return 200, {"data": {"rateLimit": _rate(2), "repository": {"issues": _conn(issues)}}}, {}

    for fake in _serve(graphql):
        report = _source(fake).sync(store)
        assert report.problems == []
        follow_ups = [v for q, v in fake.queries if "node(id:" in q]
        assert follow_ups == [{"id": "I_1", "first": 100, "after": "t1"}]  # issue 2 needed none
    items = {w.native_id: [s.state for s in w.history] for w in store.work_items()}
    assert items == {"o/r#1": ["open", "in_progress", "completed"], "o/r#2": ["open", "in_progress"]}


def test_a_partial_answer_keeps_the_valid_issues_and_fails_the_part_visibly(store: Store) -> None:
    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if (empty := _empty_lists(query)) is not None:
            return 200, empty, {}
        issues = [_issue(1, _conn([_assigned(1)])), None, _issue(3, _conn([]))]
        error = {
            "type": "SERVICE_UNAVAILABLE",
            "path": ["repository", "issues", "nodes", 1, "timelineItems"],
            "message": "Something went wrong while executing your query.",
        }
        return 200, {"data": {"rateLimit": _rate(), "repository": {"issues": _conn(issues)}}, "errors": [error]}, {}

    for fake in _serve(graphql):
        report = _source(fake).sync(store)
    assert sorted(w.native_id for w in store.work_items()) == ["o/r#1", "o/r#3"]
    assert len(report.problems) == 1 and "issues" in report.problems[0]
    assert "SERVICE_UNAVAILABLE" in report.problems[0] and "partial answer" in report.problems[0]
    # the watermark did not move past the failed issue: the next pass reads the page again
    assert store.watermark("gh", "issues:o/r") is None


def test_a_node_limit_halves_the_page_and_asks_again(store: Store) -> None:
    firsts: list[int] = []

    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if (empty := _empty_lists(query)) is not None:
            return 200, empty, {}
        firsts.append(variables["first"])
        if variables["first"] > 25:
            error = {
                "type": "MAX_NODE_LIMIT_EXCEEDED",
                "message": "By the time this query traverses to the timelineItems connection, it is requesting "
                "up to 1,000,000 possible nodes which exceeds the maximum limit of 500,000.",
            }
            return 200, {"errors": [error]}, {}
        return 200, {"data": {"rateLimit": _rate(), "repository": {"issues": _conn([_issue(1, _conn([]))])}}}, {}

    for fake in _serve(graphql):
        report = _source(fake).sync(store)
    assert report.problems == []
    assert firsts == [100, 50, 25]
    assert [w.native_id for w in store.work_items()] == ["o/r#1"]


def test_rate_limited_waits_for_the_reset_then_asks_again() -> None:
    answers = [
        (200, {"data": None, "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}, {}),
        (200, {"data": {"rateLimit": _rate(cost=3, remaining=4000), "repository": None}}, {}),
    ]
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)

    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        status, body, _ = answers.pop(0)
        return status, body, {"x-ratelimit-reset": str(int(reset.timestamp())), "x-ratelimit-remaining": "0"}

    slept: list[float] = []
    for fake in _serve(graphql):
        ctx = SourceContext(now=lambda: NOW, sleep=slept.append)
        client = GitHubGraphQL(GitHubApi("gh", fake.base_url, "t0ken-secret", ctx), fake.base_url, ctx)
        answer = client.query("query { rateLimit { cost remaining resetAt } }", {})
        assert answer.data["rateLimit"]["cost"] == 3
        # the budget is kept apart from REST's, in points
        graphql, rest = ctx.telemetry.budget("graphql"), ctx.telemetry.budget("rest")
        assert graphql is not None and graphql.remaining == 4000 and client.budget.spent == 3
        assert rest is None or rest.remaining != 4000
    assert len(slept) == 1 and 100 < slept[0] <= 122  # until the reset (+1 s), not a fixed back-off


def test_rate_limited_beyond_the_longest_wait_fails_with_rate_limited() -> None:
    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        errors = [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]
        far = int(datetime.now(UTC).timestamp()) + 7200
        return 200, {"data": None, "errors": errors}, {"x-ratelimit-reset": str(far)}

    for fake in _serve(graphql):
        ctx = SourceContext(sleep=lambda s: None)
        client = GitHubGraphQL(GitHubApi("gh", fake.base_url, "t0ken-secret", ctx), fake.base_url, ctx)
        with pytest.raises(RateLimited):
            client.query("query { rateLimit { cost } }", {})


def test_a_list_query_costs_what_the_client_expects_before_sending_it() -> None:
    """The reserve is checked before a query is sent: the cost the client expects for its list
    queries is the cost GitHub's documented formula charges (the sandbox applies it), for every
    page size a node limit may halve them to."""
    with Sandbox(SandboxOptions(seed=7, work_items=60, now=NOW)) as sandbox:
        url = graphql_url(sandbox.github_url)
        charged = {}
        for connection in LISTS:
            for first in (100, 50, 25, 1):
                variables = {"owner": "contoso", "name": "web", "first": first, "after": None}
                if connection == "issues":
                    variables["since"] = "2025-01-01T00:00:00Z"
                answer = requests.post(
                    url,
                    json={"query": list_query(connection), "variables": variables},
                    headers={"Authorization": "Bearer sandbox-token"},
                    timeout=30,
                ).json()
                charged[(connection, first)] = answer["data"]["rateLimit"]["cost"]
    assert charged == {key: list_cost(*key) for key in charged}
    assert charged[("pullRequests", 100)] == 2 and charged[("deployments", 1)] == 1  # not all 1


def test_run_jobs_halve_the_batch_on_a_node_limit_and_leave_out_runs_they_cannot_use() -> None:
    """Runs' jobs by node id: a node-limit error halves the batch; a null node with its error, or a
    node of another id, is left out (the source reads those runs' jobs over REST)."""
    sizes: list[int] = []

    def graphql(query: str, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        ids = variables["ids"]
        sizes.append(len(ids))
        if len(ids) > 30:
            error = {"type": "MAX_NODE_LIMIT_EXCEEDED", "message": "exceeds the maximum limit of 500,000."}
            return 200, {"errors": [error]}, {}
        nodes: list[Any] = []
        for node_id in ids:
            n = int(node_id.removeprefix("WFR_"))
            check = {"name": "deploy", "status": "COMPLETED", "conclusion": "SUCCESS"}
            check |= {"startedAt": _at(0), "completedAt": _at(n)}
            suite = {"id": f"CS_{n}", "checkRuns": _conn([check])}
            nodes.append(None if n == 7 else {"id": "WFR_999" if n == 8 else node_id, "checkSuite": suite})
        errors = [{"type": "NOT_FOUND", "path": ["nodes", ids.index("WFR_7")]}] if "WFR_7" in ids else []
        return 200, {"data": {"rateLimit": _rate(), "nodes": nodes}, "errors": errors}, {}

    for fake in _serve(graphql):
        graphql_client = _source(fake).graphql
        assert graphql_client is not None
        jobs = graphql_client.run_jobs("o", {n: f"WFR_{n}" for n in range(1, 81)})
    assert sizes == [80, 40, 20, 20, 40, 20, 20]
    assert set(jobs) == set(range(1, 81)) - {7, 8}
    assert jobs[5] == [
        {"name": "deploy", "status": "completed", "conclusion": "success", "started_at": _at(0), "completed_at": _at(5)}
    ]
