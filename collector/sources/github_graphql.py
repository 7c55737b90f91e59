"""GitHub's GraphQL API (``POST /graphql``) for the histories the REST plan reads one request at a time.

Why GraphQL here: over REST every issue's timeline, every pull request's commits, every
deployment's statuses and every finished workflow run's jobs is a request of its own; one GraphQL
query returns 100 of each with their nested lists, for a few points of the separate GraphQL budget
(docs/definitions.md, "Which GitHub API reads what"). The answers are turned into the *REST shapes*
the GitHub source's normaliser already reads (``issue_record``, ``pull_record``,
``deployment_record``, ``job_record``), so both plans produce the same domain records by
construction.

Every query goes through the REST client's :class:`~collector.http.ApiClient` session (counting,
retries, secondary limits with ``retry-after``, redaction, deadlines, and the same credentials: a
token, or a GitHub App's installation token for the owner queried). On top of it:
``rateLimit { cost remaining resetAt }`` is read on every query and kept as the GraphQL budget;
``errors`` in a 200 answer are split into what stops the query (``RATE_LIMITED``: wait for
``resetAt``; a node limit: halve the page size and ask again) and what fails one node (partial
data: the rest is kept, the failed nodes are named).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.errors import RateLimited, Rejected, SourceError
from collector.sources.base import MAX_PAGES, SourceContext
from collector.sources.github_api import GitHubApi, GitHubHTTPError, github_time

log = logging.getLogger(__name__)

#: the largest ``first`` GitHub accepts on a connection
PAGE = 100
#: nested connections read in the list query; more than this is fetched node by node (rare)
NESTED = 100
#: the smallest page a node-limit error may halve a query to before it fails
MIN_PAGE = 1

RATE = "rateLimit { cost limit remaining resetAt }"

#: the timeline events that decide an issue's state (docs/definitions.md "GitHub InProgress")
TIMELINE_TYPES = (
    "ASSIGNED_EVENT",
    "UNASSIGNED_EVENT",
    "CLOSED_EVENT",
    "REOPENED_EVENT",
    "CONNECTED_EVENT",
    "DISCONNECTED_EVENT",
    "CROSS_REFERENCED_EVENT",
)

_ACTOR = "... on User { login } ... on Bot { login }"

_TIMELINE_NODE = f"""
  __typename
  ... on AssignedEvent {{ createdAt assignee {{ {_ACTOR} }} }}
  ... on UnassignedEvent {{ createdAt assignee {{ {_ACTOR} }} }}
  ... on ClosedEvent {{ createdAt stateReason }}
  ... on ReopenedEvent {{ createdAt }}
  ... on ConnectedEvent {{ createdAt }}
  ... on DisconnectedEvent {{ createdAt }}
  ... on CrossReferencedEvent {{
    createdAt willCloseTarget
    source {{ __typename ... on PullRequest {{ number url closedAt }} }}
  }}
"""

#: the pull request timeline items that tell when it became ready and was first reviewed
PULL_TIMELINE_TYPES = ("READY_FOR_REVIEW_EVENT", "CONVERT_TO_DRAFT_EVENT", "PULL_REQUEST_REVIEW")

_PULL_TIMELINE_NODE = """
  __typename
  ... on ReadyForReviewEvent { createdAt }
  ... on ConvertToDraftEvent { createdAt }
  ... on PullRequestReview { author { login } state createdAt submittedAt }
"""

#: nested connections per node type: the field with its arguments and what each of its nodes holds
CONNECTIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("Issue", "timelineItems"): (f"itemTypes: [{', '.join(TIMELINE_TYPES)}]", _TIMELINE_NODE),
    ("Issue", "labels"): ("", "name"),
    ("PullRequest", "commits"): ("", "commit { oid authoredDate committedDate message }"),
    ("PullRequest", "timelineItems"): (f"itemTypes: [{', '.join(PULL_TIMELINE_TYPES)}]", _PULL_TIMELINE_NODE),
    ("Deployment", "statuses"): ("", "state createdAt"),
    # a workflow run's jobs are the check runs of its check suite. ALL, not LATEST: LATEST keeps one
    # check run per name, and matrix jobs may share a name; what is read of them is the latest
    # completion, and ALL gives the same as REST's ``/jobs?filter=latest`` (the latest attempt's
    # jobs): a run is re-run only once it has completed, so every job of an earlier attempt
    # completed before any job of the latest one
    ("CheckSuite", "checkRuns"): ("filterBy: { checkType: ALL }", "name status conclusion startedAt completedAt"),
}


def _nested(node_type: str, name: str, first: int) -> str:
    args, node = CONNECTIONS[(node_type, name)]
    args = f"first: {first}" + (f", {args}" if args else "")
    return f"{name}({args}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {node} }} }}"


def issue_fields() -> str:
    return (
        "id number createdAt updatedAt closedAt state body issueType { name } "
        + _nested("Issue", "labels", NESTED)
        + " "
        + _nested("Issue", "timelineItems", NESTED)
    )


def pull_fields() -> str:
    return (
        "id number createdAt updatedAt mergedAt title body author { login } mergeCommit { oid } "
        + _nested("PullRequest", "commits", NESTED)
        + " "
        + _nested("PullRequest", "timelineItems", NESTED)
    )


def deployment_fields() -> str:
    return "id databaseId createdAt environment commitOid " + _nested("Deployment", "statuses", NESTED)


#: the repository lists: connection, its arguments and its node fields
LISTS = {
    "issues": ("filterBy: { since: $since }, orderBy: { field: UPDATED_AT, direction: ASC }", issue_fields),
    "pullRequests": ("states: [MERGED], orderBy: { field: UPDATED_AT, direction: DESC }", pull_fields),
    "deployments": ("orderBy: { field: CREATED_AT, direction: DESC }", deployment_fields),
}
NODE_TYPE = {"issues": "Issue", "pullRequests": "PullRequest", "deployments": "Deployment"}


def list_query(connection: str) -> str:
    args, fields = LISTS[connection]
    since = ", $since: DateTime" if "$since" in args else ""
    return (
        f"query($owner: String!, $name: String!, $first: Int!, $after: String{since}) {{ {RATE} "
        f"repository(owner: $owner, name: $name) {{ {connection}(first: $first, after: $after, {args}) "
        f"{{ pageInfo {{ hasNextPage endCursor }} nodes {{ {fields()} }} }} }} }}"
    )


#: repositories per change probe query (aliases ``r0`` … ``r99``): 3 connections of 2 nodes each, so
#: 100 repositories are 600 nodes and 3 points; a node-limit error halves the batch
PROBE_BATCH = 100
#: nodes per probed connection: two tell a second update in the newest one's second (see ``proves``)
PROBE_TOP = 2
#: the probe's connections: (mark, connection, arguments, the node's sort time and identity)
PROBE_CONNECTIONS = {
    "issues": ("issues", "orderBy: { field: UPDATED_AT, direction: DESC }", "updatedAt", "number"),
    "pulls": ("pullRequests", "orderBy: { field: UPDATED_AT, direction: DESC }", "updatedAt", "number"),
    "deployments": ("deployments", "orderBy: { field: CREATED_AT, direction: DESC }", "createdAt", "databaseId"),
}


def probe_query(count: int, marks: tuple[str, ...]) -> str:
    """One query asking ``count`` repositories (variables ``$o0``/``$n0`` …) for their newest marks."""
    fields = " ".join(
        f"{PROBE_CONNECTIONS[m][0]}(first: {PROBE_TOP}, {PROBE_CONNECTIONS[m][1]}) "
        f"{{ totalCount nodes {{ {PROBE_CONNECTIONS[m][2]} {PROBE_CONNECTIONS[m][3]} }} }}"
        for m in marks
    )
    variables = ", ".join(f"$o{i}: String!, $n{i}: String!" for i in range(count))
    aliases = " ".join(f"r{i}: repository(owner: $o{i}, name: $n{i}) {{ pushedAt {fields} }}" for i in range(count))
    return f"query({variables}) {{ {RATE} {aliases} }}"


def probe_marks(repo: Any, marks: tuple[str, ...]) -> dict[str, Any] | None:
    """A probed repository's marks: ``pushed_at`` and, per connection, ``[totalCount, [[time, id], …]]``
    newest first; None when the answer is not of that shape (the repository is then read as usual)."""
    if not isinstance(repo, dict):
        return None
    pushed = repo.get("pushedAt")
    out: dict[str, Any] = {"pushed_at": pushed if isinstance(pushed, str) else None}
    for mark in marks:
        _, _, at, ident = PROBE_CONNECTIONS[mark]
        conn = repo.get(PROBE_CONNECTIONS[mark][0])
        count = conn.get("totalCount") if isinstance(conn, dict) else None
        nodes = conn.get("nodes") if isinstance(conn, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or not isinstance(nodes, list):
            return None
        top = []
        for node in nodes:
            value, key = (node.get(at), node.get(ident)) if isinstance(node, dict) else (None, None)
            if not isinstance(value, str) or not isinstance(key, int) or isinstance(key, bool):
                return None
            try:
                github_time(value)
            except ValueError:
                return None
            top.append([value, key])
        out[mark] = [count, top]
    return out


def proves(marks: dict[str, Any]) -> bool:
    """Whether equal marks prove a connection unchanged: not when its two newest nodes share their
    time, since a third change in that same second might not show in the first two."""
    for mark in PROBE_CONNECTIONS:
        value = marks.get(mark)
        if value is None:
            continue
        top = value[1]
        if len(top) >= PROBE_TOP and github_time(top[0][0]) <= github_time(top[-1][0]):
            return False
    return True


def points(requests: int) -> int:
    """GitHub's documented cost of a query: the requests its connections would need if every page
    were full (one per parent node), summed, divided by 100, rounded, at least 1 point."""
    return max(1, int(requests / 100 + 0.5))


def list_cost(connection: str, first: int) -> int:
    """What ``list_query(connection)`` with ``first`` costs: the list itself, and each nested
    connection once per node. Known before the query is sent, so the reserve holds for the first
    query of a kind too (learning the cost from its answer would let that one dip into it)."""
    nested = sum(1 for kind, _ in CONNECTIONS if kind == NODE_TYPE[connection])
    return points(1 + first * nested)


def rest_query(node_type: str, name: str) -> str:
    """The rest of one node's nested connection, after a cursor: only where the list query overflowed."""
    args, node = CONNECTIONS[(node_type, name)]
    args = "first: $first, after: $after" + (f", {args}" if args else "")
    return (
        f"query($id: ID!, $first: Int!, $after: String) {{ {RATE} node(id: $id) {{ ... on {node_type} "
        f"{{ {name}({args}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {node} }} }} }} }} }}"
    )


#: release tags asked in one query (aliases of ``release(tagName:)``; no connection: 1 point)
TAGS_PER_QUERY = 50


def tag_commits_query(count: int) -> str:
    """``count`` releases by tag (``$t0``…), each with the commit its tag points to (annotated tags
    resolved: ``Release.tagCommit``)."""
    tags = ", ".join(f"$t{i}: String!" for i in range(count))
    fields = " ".join(f"t{i}: release(tagName: $t{i}) {{ tagCommit {{ oid }} }}" for i in range(count))
    return (
        f"query($owner: String!, $name: String!, {tags}) {{ {RATE} "
        f"repository(owner: $owner, name: $name) {{ {fields} }} }}"
    )


#: workflow runs asked in one ``nodes(ids:)`` query: GitHub takes at most 100 ids (``ARGUMENT_LIMIT``);
#: their check runs are 100 connections, 1 point, up to 10,100 nodes
RUNS_PER_QUERY = 100


def run_jobs_query() -> str:
    """Workflow runs by node id (``$ids``), each with its jobs: its check suite's check runs. The
    run is known by its node id alone: ``WorkflowRun.databaseId`` is a 32-bit ``Int`` and run ids
    are past 2**31 (an error for that field, and no ``fullDatabaseId`` on this type)."""
    return (
        f"query($ids: [ID!]!) {{ {RATE} nodes(ids: $ids) {{ ... on WorkflowRun {{ id "
        f"checkSuite {{ id {_nested('CheckSuite', 'checkRuns', NESTED)} }} }} }} }}"
    )


def graphql_url(base_url: str) -> str:
    """Where GraphQL is: ``api.github.com`` → ``/graphql``; GHES ``https://host/api/v3`` → ``/api/graphql``."""
    base = base_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"


# -- errors ------------------------------------------------------------------------------------------
class GraphQLError(SourceError):
    """``errors`` that left no usable answer (or failed a part that must not be skipped)."""

    def __init__(self, errors: list[dict[str, Any]], what: str = "") -> None:
        self.errors = errors
        text = "; ".join(f"{e.get('type') or 'ERROR'}: {str(e.get('message', ''))[:200]}" for e in errors[:3])
        super().__init__(f"GraphQL {what + ': ' if what else ''}{text}")


#: the ``type`` of the error ``pages`` reports for a list entry that is no object and that no
#: error of the answer explains (a ``null`` node): a missing record, counted, not a failed part
NOT_A_NODE = "CYCLETIME_NOT_A_NODE"


class NodeLimit(GraphQLError):
    """The query asks for more nodes than GitHub allows (500,000): ask again with smaller pages."""


def _is_node_limit(error: dict[str, Any]) -> bool:
    message = str(error.get("message", ""))
    return error.get("type") == "MAX_NODE_LIMIT_EXCEEDED" or "exceeds the maximum limit" in message


# -- the budget --------------------------------------------------------------------------------------
@dataclass
class GraphQLBudget:
    """The GraphQL points budget, separate from REST's requests (``rateLimit`` of the last answer)."""

    remaining: int | None = None
    limit: int | None = None
    reset_at: datetime | None = None
    #: points spent by this client (the sum of every answer's ``cost``)
    spent: int = 0
    queries: int = 0

    def note(self, rate: Any) -> None:
        if not isinstance(rate, dict):
            return
        cost, remaining, limit = rate.get("cost"), rate.get("remaining"), rate.get("limit")
        if isinstance(cost, int) and not isinstance(cost, bool):
            self.spent += cost
        if isinstance(remaining, int) and not isinstance(remaining, bool):
            self.remaining = remaining
        if isinstance(limit, int) and not isinstance(limit, bool):
            self.limit = limit
        with contextlib.suppress(ValueError):
            self.reset_at = github_time(rate.get("resetAt"))


@dataclass
class Answer:
    """A query's ``data`` and the errors that failed parts of it (each with its ``path``)."""

    data: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def failed(self, *prefix: str | int) -> list[dict[str, Any]]:
        """The errors at or under ``prefix`` (a path into ``data``)."""
        n = len(prefix)
        return [e for e in self.errors if isinstance(e.get("path"), list) and tuple(e["path"][:n]) == prefix]


class GitHubGraphQL:
    """Queries against ``graphql_url(base_url)``, with the budget, waits and page halving above."""

    def __init__(self, api: GitHubApi, base_url: str, ctx: SourceContext) -> None:
        self.api = api
        self.client = api.client
        self.url = graphql_url(base_url)
        self.ctx = ctx
        self.budget = GraphQLBudget()
        #: the last cost of each query text: what the next one is expected to cost (the reserve)
        self._costs: dict[str, int] = {}

    def query(self, query: str, variables: dict[str, Any], owner: str | None = None, cost: int | None = None) -> Answer:
        """One query about ``owner``'s data (whose installation token a GitHub App sends); waits out
        ``RATE_LIMITED`` and raises NodeLimit / GraphQLError for unusable answers. ``cost``: its
        points, if known beforehand (else the last answer's cost for the same text, or 1)."""
        for _ in range(self.client.policy.attempts):
            body_json = {"query": query, "variables": variables}
            expected = cost if cost is not None else self._costs.get(query, 1)
            if self.api.app is not None and owner:
                with self.api.app.acting_for(owner):
                    data, resp = self.api.request_json(
                        "POST", self.url, json_body=body_json, api="graphql", cost=expected
                    )
            else:
                data, resp = self.api.request_json("POST", self.url, json_body=body_json, api="graphql", cost=expected)
            if resp.status_code >= 400:
                message = data.get("message", "") if isinstance(data, dict) else ""
                raise GitHubHTTPError(resp.status_code, "graphql", str(message)[:200])
            if not isinstance(data, dict):
                raise GraphQLError([{"message": f"the answer is no object but {type(data).__name__}"}])
            body = data.get("data") if isinstance(data.get("data"), dict) else None
            errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
            if body is not None:
                self.budget.note(body.get("rateLimit"))
                cost = (body.get("rateLimit") or {}).get("cost") if isinstance(body.get("rateLimit"), dict) else None
                if isinstance(cost, int) and not isinstance(cost, bool):
                    self._costs[query] = cost
            self.budget.queries += 1
            self._telemetry()
            if any(e.get("type") == "RATE_LIMITED" for e in errors):
                self._wait_for_reset(resp.headers.get("x-ratelimit-reset"))
                continue
            if any(_is_node_limit(e) for e in errors):
                raise NodeLimit(errors)
            if body is None:
                raise GraphQLError(errors or [{"message": "no data"}])
            return Answer(body, errors)
        raise RateLimited(f"{self.client.source}: GraphQL still rate limited after {self.client.policy.attempts} waits")

    def _telemetry(self) -> None:
        """The GraphQL budget beside REST's (``cycletime_api_budget_remaining{api="graphql"}``)."""
        if self.budget.remaining is not None:
            reset = self.budget.reset_at.timestamp() if self.budget.reset_at else None
            self.ctx.telemetry.note_budget("graphql", self.budget.remaining, self.budget.limit, reset)

    def _wait_for_reset(self, header: str | None) -> None:
        """``RATE_LIMITED`` comes as a 200: wait until ``resetAt`` (or the REST-style reset header)."""
        resets = [self.budget.reset_at.timestamp()] if self.budget.reset_at else []
        with contextlib.suppress(TypeError, ValueError):
            resets.append(float(header or ""))
        reset = max(resets) if resets else None  # the later one: a reset already past says nothing
        wait = max((reset or time.time() + 60.0) - time.time(), 0.0) + 1.0
        if wait > self.client.policy.max_rate_limit_wait:
            raise RateLimited(f"{self.client.source}: GraphQL rate limited for {wait:.0f}s, more than we wait")
        log.warning("source=%s GraphQL rate limited; sleeping %.1fs", self.client.source, wait)
        self.client.telemetry.slept_seconds += wait
        self.ctx.sleep(wait)

    # -- lists -----------------------------------------------------------------------------------
    def pages(
        self, owner: str, name: str, connection: str, since: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """A repository list, page by page: (nodes with their nested connections complete, errors).

        Nested connections that overflowed are completed by one follow-up query per node. A node
        whose part failed (an ``errors`` path into it) is left out and its errors returned with the
        page: the caller keeps the rest and fails the part visibly.
        """
        query = list_query(connection)
        first, after = PAGE, None
        cursors: set[str] = set()
        while True:
            variables: dict[str, Any] = {"owner": owner, "name": name, "first": first, "after": after}
            if since is not None:
                variables["since"] = since
            try:
                answer = self.query(query, variables, owner, cost=list_cost(connection, first))
            except NodeLimit:
                if first <= MIN_PAGE:
                    raise
                first = max(MIN_PAGE, first // 2)
                log.info("source=%s GraphQL node limit: %s pages of %d", self.client.source, connection, first)
                continue
            repo = answer.data.get("repository")
            if not isinstance(repo, dict):
                not_found = [e for e in answer.errors if e.get("type") == "NOT_FOUND"]
                if not_found or repo is None:
                    raise GitHubHTTPError(404, f"{owner}/{name}", "repository not found (GraphQL)")
                raise GraphQLError(answer.errors, f"{owner}/{name} {connection}")
            conn = repo.get(connection)
            if not isinstance(conn, dict):
                raise GraphQLError(answer.failed("repository", connection) or answer.errors, connection)
            raw_nodes = conn.get("nodes")
            if not isinstance(raw_nodes, list):
                raise GraphQLError(answer.failed("repository", connection) or answer.errors, connection)
            nodes: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            for i, node in enumerate(raw_nodes):
                errors = answer.failed("repository", connection, "nodes", i)
                if errors:
                    failed += errors
                    continue
                if not isinstance(node, dict):
                    # no error says why: nothing to ask again, a record that is not there (the
                    # caller counts it); the page's cursor and the position name it
                    message = f"{connection} node {i} is {type(node).__name__ if node is not None else 'null'}"
                    failed.append({"type": NOT_A_NODE, "message": message, "path": [connection, i], "cursor": after})
                    continue
                try:
                    nodes.append(self.complete(NODE_TYPE[connection], node, owner))
                except GraphQLError as exc:
                    failed += exc.errors
            yield nodes, failed
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return
            after = str(info["endCursor"])
            if after in cursors or len(cursors) >= MAX_PAGES:
                # a server repeating a cursor (or paging without end) cannot make us spin
                raise GraphQLError([{"message": f"{connection}: cursor {after[:40]!r} repeats or too many pages"}])
            cursors.add(after)

    def probe(self, repos: list[str], marks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The newest marks of ``repos`` (``owner/name``), ``PROBE_BATCH`` repositories a query, one
        owner a query (a GitHub App's installation token is per owner). Keyed by the name as asked
        (lower case); a repository that failed (not found, forbidden, a malformed answer) is left
        out. A node-limit error halves the batch; a query that fails otherwise (an HTTP error, no
        ``data``, a budget at its reserve, GraphQL rate limited longer than we wait, a transport
        failure after the retries) leaves its batch out: its repositories are read as without a
        probe."""
        out: dict[str, dict[str, Any]] = {}
        by_owner: dict[str, list[str]] = {}
        for full in repos:
            by_owner.setdefault(full.split("/", 1)[0].lower(), []).append(full)
        todo = [group[i : i + PROBE_BATCH] for group in by_owner.values() for i in range(0, len(group), PROBE_BATCH)]
        while todo:
            batch = todo.pop(0)
            variables: dict[str, Any] = {}
            for i, full in enumerate(batch):
                variables[f"o{i}"], variables[f"n{i}"] = full.split("/", 1)
            try:
                answer = self.query(
                    probe_query(len(batch), marks),
                    variables,
                    batch[0].split("/", 1)[0],
                    cost=points(len(batch) * len(marks)),  # one request per probed connection
                )
            except NodeLimit:
                if len(batch) > 1:
                    half = len(batch) // 2
                    todo[:0] = [batch[:half], batch[half:]]
                    continue
                log.warning("source=%s change probe of %s: node limit", self.client.source, batch[0])
                continue
            except SourceError as exc:  # an optimisation: failing, it leaves the lists to be asked
                log.warning("source=%s change probe of %d repositories failed: %s", self.client.source, len(batch), exc)
                continue
            for i, full in enumerate(batch):
                if answer.failed(f"r{i}"):
                    continue
                found = probe_marks(answer.data.get(f"r{i}"), marks)
                if found is not None:
                    out[full.lower()] = found
        return out

    def tag_commits(self, owner: str, name: str, tags: list[str]) -> dict[str, str]:
        """The commit each release tag points to, ``TAGS_PER_QUERY`` tags a query of 1 point (REST:
        a request per tag, two for an annotated one). A tag the answer does not resolve (no such
        release, no tag commit, an error at its path) is left out: the caller looks it up over REST."""
        out: dict[str, str] = {}
        for start in range(0, len(tags), TAGS_PER_QUERY):
            chunk = tags[start : start + TAGS_PER_QUERY]
            variables: dict[str, Any] = {"owner": owner, "name": name}
            variables.update({f"t{i}": tag for i, tag in enumerate(chunk)})
            answer = self.query(tag_commits_query(len(chunk)), variables, owner, cost=1)
            repo = answer.data.get("repository")
            for i, tag in enumerate(chunk):
                release = repo.get(f"t{i}") if isinstance(repo, dict) else None
                commit = release.get("tagCommit") if isinstance(release, dict) else None
                oid = commit.get("oid") if isinstance(commit, dict) else None
                if isinstance(oid, str) and not answer.failed("repository", f"t{i}"):
                    out[tag] = oid
        return out

    def run_jobs(self, owner: str, runs: dict[int, str]) -> dict[int, list[dict[str, Any]]]:
        """The jobs of finished workflow runs (``{run id: node id}``), as REST's ``/jobs`` lists
        them, ``RUNS_PER_QUERY`` runs a query of 1 point (REST: a request per run). A check-run list
        past ``NESTED`` is paged for that run alone; a node-limit error halves the batch. A run the
        answer does not give (a null node, an error at its path, another id or shape, its check runs
        failing to page, its query failing) is left out: the caller reads its jobs over REST."""
        out: dict[int, list[dict[str, Any]]] = {}
        items = list(runs.items())
        todo = [items[i : i + RUNS_PER_QUERY] for i in range(0, len(items), RUNS_PER_QUERY)]
        while todo:
            batch = todo.pop(0)
            try:
                # one checkRuns connection per run: the documented cost is known before sending
                answer = self.query(run_jobs_query(), {"ids": [node for _, node in batch]}, owner, points(len(batch)))
            except NodeLimit:
                if len(batch) > 1:
                    half = len(batch) // 2
                    todo[:0] = [batch[:half], batch[half:]]
                    continue
                log.warning("source=%s run %s: node limit; its jobs over REST", self.client.source, batch[0][0])
                continue
            except (GraphQLError, GitHubHTTPError) as exc:  # these runs over REST; the others are kept
                log.warning("source=%s %d runs' jobs over REST: %s", self.client.source, len(batch), exc)
                continue
            nodes = answer.data.get("nodes")
            for i, (run_id, node_id) in enumerate(batch):
                node = nodes[i] if isinstance(nodes, list) and i < len(nodes) else None
                if answer.failed("nodes", i) or not isinstance(node, dict):
                    continue
                if node.get("id") != node_id:
                    continue  # not the run asked for: REST knows which run it is
                suite = node.get("checkSuite")
                if not isinstance(suite, dict) or not isinstance(suite.get("checkRuns"), dict):
                    continue
                try:
                    suite = self.complete("CheckSuite", suite, owner)
                    jobs = [job_record(check) for check in _nodes(suite, "checkRuns")]
                except (GraphQLError, Rejected) as exc:
                    log.info("source=%s run %s: its check runs over REST (%s)", self.client.source, run_id, exc)
                    continue
                out[run_id] = jobs
        return out

    def complete(self, node_type: str, node: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
        """``node`` with every nested connection that overflowed read to its end (follow-up queries).
        A connection of the wrong shape is left as it came: converting the node rejects it."""
        for (kind, name), _ in CONNECTIONS.items():
            if kind != node_type or not isinstance(node.get(name), dict):
                continue
            conn = node[name]
            info = conn.get("pageInfo") if conn.get("pageInfo") is not None else {}
            if not isinstance(info, dict) or not isinstance(conn.get("nodes"), list):
                continue
            nodes = list(conn["nodes"])
            after = info.get("endCursor")
            while info.get("hasNextPage") and after:
                variables = {"id": node.get("id"), "first": PAGE, "after": after}
                answer = self.query(rest_query(node_type, name), variables, owner)
                rest = (answer.data.get("node") or {}).get(name)
                if not isinstance(rest, dict) or answer.failed("node"):
                    raise GraphQLError(answer.failed("node") or [{"message": f"{name} of {node.get('id')} missing"}])
                more, info = rest.get("nodes"), rest.get("pageInfo")
                if not isinstance(more, list) or not isinstance(info, dict):
                    raise GraphQLError([{"message": f"{name} of {node.get('id')}: no nodes or pageInfo"}])
                nodes += more
                after = info.get("endCursor")
            node = {**node, name: {"nodes": nodes}}
        return node


# -- GraphQL nodes as the REST records the normaliser reads -----------------------------------------
def _nodes(node: dict[str, Any], name: str) -> list[Any]:
    """A nested connection's nodes. The list queries ask for each connection: one missing, or of
    another shape, leaves the record's history unknown, so the record is rejected."""
    conn = node.get(name)
    if conn is None:
        raise Rejected("missing_field")
    nodes = conn.get("nodes") if isinstance(conn, dict) else None
    if not isinstance(nodes, list):
        raise Rejected("wrong_type")
    return nodes


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _login(actor: Any) -> dict[str, Any] | None:
    return {"login": actor.get("login")} if isinstance(actor, dict) else None


def timeline_event(item: Any) -> dict[str, Any] | None:
    """A GraphQL timeline item as the REST timeline event of the same meaning (None: not one we read)."""
    if not isinstance(item, dict):
        return None
    kind = item.get("__typename")
    at = item.get("createdAt")
    if kind in ("AssignedEvent", "UnassignedEvent"):
        event = "assigned" if kind == "AssignedEvent" else "unassigned"
        return {"event": event, "created_at": at, "assignee": _login(item.get("assignee"))}
    if kind == "ClosedEvent":
        return {"event": "closed", "created_at": at, "state_reason": _lower(item.get("stateReason"))}
    if kind == "ReopenedEvent":
        return {"event": "reopened", "created_at": at}
    if kind in ("ConnectedEvent", "DisconnectedEvent"):
        return {"event": "connected" if kind == "ConnectedEvent" else "disconnected", "created_at": at}
    if kind == "CrossReferencedEvent":
        source = item.get("source")
        if not isinstance(source, dict) or source.get("__typename") != "PullRequest":
            return {"event": "cross-referenced", "created_at": at, "source": {"issue": {}}}
        url = source.get("url")
        return {
            "event": "cross-referenced",
            "created_at": at,
            "source": {
                "type": "issue",
                "issue": {
                    "number": source.get("number"),
                    "url": url,
                    "closed_at": source.get("closedAt"),
                    "pull_request": {"url": url},
                    # GitHub's own answer to "does this pull request close the issue"
                    "will_close_target": item.get("willCloseTarget"),
                },
            },
        }
    return None


def pull_timeline_event(item: Any) -> dict[str, Any] | None:
    """A GraphQL pull request timeline item as the REST timeline event (None: not one we read).

    A review keeps when it was started (``createdAt``: a review begun with a comment was created
    when that comment was drafted) as ``_started_at``, standing for its review comments' times,
    which REST lists in ``line-commented`` events."""
    if not isinstance(item, dict):
        return None
    kind = item.get("__typename")
    if kind in ("ReadyForReviewEvent", "ConvertToDraftEvent"):
        event = "ready_for_review" if kind == "ReadyForReviewEvent" else "convert_to_draft"
        return {"event": event, "created_at": item.get("createdAt")}
    if kind == "PullRequestReview":
        return {
            "event": "reviewed",
            "user": _login(item.get("author")),
            "state": _lower(item.get("state")),
            "submitted_at": item.get("submittedAt"),
            "_started_at": item.get("createdAt"),
        }
    return None


def issue_record(node: dict[str, Any]) -> dict[str, Any]:
    """An issue node as the REST issue record, its timeline under ``_timeline``; raises Rejected
    when a nested connection is missing or of another shape."""
    issue_type = node.get("issueType")
    return {
        "number": node.get("number"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "closed_at": node.get("closedAt"),
        "state": _lower(node.get("state")),
        "body": node.get("body"),
        "labels": [{"name": lb.get("name")} for lb in _nodes(node, "labels") if isinstance(lb, dict)],
        "type": {"name": issue_type.get("name")} if isinstance(issue_type, dict) else None,
        "_timeline": [e for e in map(timeline_event, _nodes(node, "timelineItems")) if e is not None],
    }


def pull_record(node: dict[str, Any]) -> dict[str, Any]:
    """A merged pull request node as the REST pull record, its commits under ``_commits``, the
    timeline items that date its readiness and reviews under ``_timeline``."""
    merge = node.get("mergeCommit")
    commits = []
    for entry in _nodes(node, "commits"):
        commit = entry.get("commit") if isinstance(entry, dict) else None
        if not isinstance(commit, dict):
            continue
        commits.append(
            {
                "sha": commit.get("oid"),
                "commit": {
                    "author": {"date": commit.get("authoredDate")},
                    "committer": {"date": commit.get("committedDate")},
                    "message": commit.get("message"),
                },
            }
        )
    return {
        "number": node.get("number"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "merged_at": node.get("mergedAt"),
        "title": node.get("title"),
        "body": node.get("body"),
        "merge_commit_sha": merge.get("oid") if isinstance(merge, dict) else None,
        "user": _login(node.get("author")),  # None: a deleted account
        "_commits": commits,
        "_timeline": [e for e in map(pull_timeline_event, _nodes(node, "timelineItems")) if e is not None],
    }


def job_record(check: Any) -> Any:
    """A workflow run's check run as the REST job record (what is no object stays as it came: the
    normaliser skips it as it skips a REST job of that shape)."""
    if not isinstance(check, dict):
        return check
    return {
        "name": check.get("name"),
        "status": _lower(check.get("status")),
        "conclusion": _lower(check.get("conclusion")),
        "started_at": check.get("startedAt"),
        "completed_at": check.get("completedAt"),
    }


def deployment_record(node: dict[str, Any]) -> dict[str, Any]:
    """A deployment node as the REST deployment record, its statuses under ``_statuses``.

    GraphQL statuses carry no numeric id; GitHub lists them newest first (as REST does), so their
    position stands in for the id that breaks ties between statuses of the same second.
    """
    nodes = [s for s in _nodes(node, "statuses") if isinstance(s, dict)]
    statuses = [
        {"id": len(nodes) - i, "state": _lower(s.get("state")), "created_at": s.get("createdAt")}
        for i, s in enumerate(nodes)
    ]
    return {
        "id": node.get("databaseId"),
        "sha": node.get("commitOid"),
        "environment": node.get("environment"),
        "created_at": node.get("createdAt"),
        "_statuses": statuses,
    }
