"""GitHub's GraphQL API over the seeded organisation: ``POST /graphql`` (GHES: ``/api/graphql``).

The schema is ``schema.graphql`` beside this module (a subset of GitHub's public schema);
graphql-core parses, validates and executes against it, and this module adds what GitHub adds
around the spec, with GitHub's error types and wording:

- before execution, per the documented resource limits: every connection needs ``first`` or
  ``last`` (not both), at most 100 (``MISSING_PAGINATION_BOUNDARIES`` / ``EXCESSIVE_PAGINATION``),
  and a query at most 500,000 nodes (``MAX_NODE_LIMIT_EXCEEDED``); these answers carry no ``data``
  and cost nothing;
- the documented cost: the requests each connection needs if every page were full (one per parent
  node), summed, divided by 100, rounded, at least 1; charged to a points budget of its own
  (``x-ratelimit-resource: graphql``), ``RATE_LIMITED`` in a 200 once it cannot pay;
- resolver errors (``NOT_FOUND``, ``FORBIDDEN``) null their field and leave the rest of ``data``;
- opaque cursors (``cursor:v2:`` + the position's sort key, base64), so a page boundary survives
  items added elsewhere in the list, and ``pageInfo`` as the Relay spec has it.

Objects resolve from the same ``SeededGitHubOrg`` the REST routes serve, in their order: issue and
pull-request timelines oldest first, a pull request's commits oldest first (at most 250, as REST),
deployment statuses newest first, a workflow run's check runs (its jobs) in REST's ``/jobs`` order.
``repository.issue(number:)``, ``repository.pullRequest(number:)`` and ``node(id:)`` (repositories,
issues, pull requests, deployments, workflow runs and their check suites) reach one object, to
page a nested connection that overflowed; ``nodes(ids:)`` up to 100 of them (``ARGUMENT_LIMIT``
beyond; its ids multiply the nodes and cost of what is below, as a connection's page does), an id
that does not resolve null with its error at ``["nodes", i]`` (``unresolvable`` makes one so);
``repository.release(tagName:)`` a release, with the commit its tag points to (``tagCommit``; none
for a draft, whose tag is made when it is published);
``Repository.pushedAt`` is REST's ``pushed_at``, so many aliased ``repository`` fields in one query
answer a change probe. Lists default to ``CREATED_AT ASC``. The sandbox's ``connected`` events name
no pull request (its REST events neither), so ``ConnectedEvent.source`` is the issue.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLInt,
    GraphQLNamedType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    build_schema,
    execute,
    get_named_type,
    get_operation_ast,
    parse,
    validate,
    value_from_ast,
)
from graphql.execution.values import get_variable_values

from sandbox.github.common import parse_time, user_id
from sandbox.github.data import (
    DEFAULT_BRANCH,
    GHOST,
    PRIVATE_REPO,
    Deployment,
    GitCommit,
    Issue,
    IssueEvent,
    PullRequest,
    Release,
    Repo,
    Review,
    ReviewComment,
    Run,
    Status,
    iso,
)
from sandbox.github.shapes import event_node_id, label_color, label_id

if TYPE_CHECKING:
    from sandbox.github.routes import GitHubRoutes

SCHEMA: GraphQLSchema = build_schema(Path(__file__).with_name("schema.graphql").read_text())
MAX_PAGE = 100
MAX_NODES = 500_000
MAX_IDS = 100  # ``nodes(ids:)`` takes at most 100 ids (``ARGUMENT_LIMIT``)
PR_COMMITS = 250  # GitHub lists at most 250 commits of a pull request
_CURSOR = "cursor:v2:"
Connection = dict[str, Any]  # edges, nodes, pageInfo, totalCount

#: REST timeline event → GraphQL timeline item type
EVENT_TYPES = {
    "assigned": "AssignedEvent",
    "unassigned": "UnassignedEvent",
    "closed": "ClosedEvent",
    "reopened": "ReopenedEvent",
    "labeled": "LabeledEvent",
    "unlabeled": "UnlabeledEvent",
    "connected": "ConnectedEvent",
    "disconnected": "DisconnectedEvent",
    "cross-referenced": "CrossReferencedEvent",
    "merged": "MergedEvent",
    "ready_for_review": "ReadyForReviewEvent",
    "convert_to_draft": "ConvertToDraftEvent",
    "review_requested": "ReviewRequestedEvent",
}


def _enum_name(type_name: str) -> str:
    return "".join("_" + ch if ch.isupper() and i else ch for i, ch in enumerate(type_name)).upper()


class QueryError(Exception):
    """An error GitHub answers before executing: ``errors`` only, no ``data``."""

    def __init__(self, message: str, type_: str, path: list[str] | None = None) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if path:
            self.body["path"] = path


# --- the objects resolvers hand around -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Actor:
    login: str


@dataclass(frozen=True, slots=True)
class LabelRef:
    repo: Repo
    name: str


@dataclass(frozen=True, slots=True)
class TimelineItem:
    item: Issue | PullRequest
    event: IssueEvent


@dataclass(frozen=True, slots=True)
class PullRequestCommit:
    pr: PullRequest
    commit: GitCommit


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    deployment: Deployment
    status: Status


@dataclass(frozen=True, slots=True)
class CheckSuiteRef:
    """A workflow run's check suite (REST's ``check_suite_id``: the run's id + 10,000,000,000)."""

    run: Run

    @property
    def id(self) -> int:
        return self.run.id + 10_000_000_000


@dataclass(frozen=True, slots=True)
class CheckRunRef:
    """A job of a workflow run, as a check run of its check suite."""

    run: Run
    job: tuple[int, str, datetime, datetime | None]


@dataclass
class Context:
    routes: GitHubRoutes
    web: str  # scheme://host:port for html URLs
    account: str | None = None  # an installation token's account: it sees only that account's repositories


# --- pagination -------------------------------------------------------------------------------
def encode_cursor(key: Sequence[Any]) -> str:
    return base64.b64encode((_CURSOR + json.dumps(list(key), separators=(",", ":"))).encode()).decode()


def decode_cursor(value: str, positional: bool = False) -> list[Any]:
    try:
        text = base64.b64decode(value.encode(), validate=True).decode()
        if not text.startswith(_CURSOR):
            raise ValueError(value)
        key = json.loads(text[len(_CURSOR) :])
        if not isinstance(key, list) or not all(isinstance(k, int) for k in key):
            raise ValueError(value)
        if positional and len(key) != 1:
            raise ValueError(value)
        return key
    except ValueError:
        raise GraphQLError(
            f"`{value}` does not appear to be a valid cursor.", extensions={"type": "INVALID_CURSOR_ARGUMENTS"}
        ) from None


def connection(items: Sequence[Any], args: dict[str, Any], key: Callable[[Any], list[Any]] | None = None) -> Connection:
    """A Relay connection over ``items`` (already in served order; ``key`` ascending in that order).

    Without ``key`` the cursor is the position: for lists that only grow at their end."""
    keyf: Callable[[Any], list[Any]] = key or (lambda x: [])
    positional = key is None
    start, end = 0, len(items)
    if args.get("after") is not None:
        ck = decode_cursor(args["after"], positional)
        start = int(ck[0]) + 1 if positional else bisect.bisect_right(items, ck, key=keyf)
    if args.get("before") is not None:
        ck = decode_cursor(args["before"], positional)
        end = int(ck[0]) if positional else bisect.bisect_left(items, ck, key=keyf)
    start, end = max(0, min(start, len(items))), max(0, min(end, len(items)))
    end = max(start, end)
    if args.get("first") is not None:
        end = min(end, start + args["first"])
    if args.get("last") is not None:
        start = max(start, end - args["last"])
    window = range(start, end)

    def cursor(i: int) -> str:
        return encode_cursor([i] if positional else keyf(items[i]))

    edges = [{"cursor": cursor(i), "node": items[i]} for i in window]
    return {
        "edges": edges,
        "nodes": [e["node"] for e in edges],
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --- static analysis: pagination bounds, nodes, cost -----------------------------------------
@dataclass
class Analysis:
    nodes: int = 0
    requests: int = 0
    dry_run: bool = False

    @property
    def cost(self) -> int:
        return max(1, int(self.requests / 100 + 0.5))


def analyse(doc: Any, op: OperationDefinitionNode, variables: dict[str, Any]) -> Analysis:
    """Walk the operation as GitHub's limits do: a connection's page size multiplies everything below it."""
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    out = Analysis()
    root = SCHEMA.query_type
    assert root is not None

    def walk(sel_set: SelectionSetNode | None, parent: GraphQLNamedType, mult: int, path: list[str]) -> None:
        if sel_set is None:
            return
        for sel in sel_set.selections:
            if isinstance(sel, InlineFragmentNode):
                cond = SCHEMA.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                walk(sel.selection_set, cond or parent, mult, path)
                continue
            if not isinstance(sel, FieldNode):
                frag = fragments[sel.name.value]
                walk(frag.selection_set, SCHEMA.get_type(frag.type_condition.name.value) or parent, mult, path)
                continue
            name = sel.name.value
            field = getattr(parent, "fields", {}).get(name)
            if field is None:
                continue  # __typename
            target = get_named_type(field.type)
            args = {a.name.value: a.value for a in sel.arguments}
            here = [*path, sel.alias.value if sel.alias else name]
            if name == "rateLimit" and "dryRun" in args:
                out.dry_run = bool(value_from_ast(args["dryRun"], field.args["dryRun"].type, variables))
            if name == "nodes" and parent is root and "ids" in args:
                ids = value_from_ast(args["ids"], field.args["ids"].type, variables)
                count = len(ids) if isinstance(ids, list) else 1
                if count > MAX_IDS:
                    message = f"You may not provide more than {MAX_IDS} node ids; you provided {count}."
                    raise QueryError(message, "ARGUMENT_LIMIT", here)
                out.nodes += mult * count
                walk(sel.selection_set, target, mult * count, here)
            elif target.name.endswith("Connection"):
                size = _page_size(name, args, variables, here)
                out.requests += mult
                out.nodes += mult * size
                walk(sel.selection_set, target, mult * size, here)
            else:
                walk(sel.selection_set, target, mult, here)

    walk(op.selection_set, root, 1, [])
    if out.nodes > MAX_NODES:
        raise QueryError(
            f"This query requests up to {out.nodes:,} possible nodes which exceeds the maximum limit of {MAX_NODES:,}.",
            "MAX_NODE_LIMIT_EXCEEDED",
        )
    return out


def _page_size(name: str, args: dict[str, Any], variables: dict[str, Any], path: list[str]) -> int:
    values = {k: value_from_ast(args[k], GraphQLInt, variables) for k in ("first", "last") if k in args}
    values = {k: v for k, v in values.items() if v is not None and v is not Undefined}
    if len(values) == 2:
        raise QueryError(
            f"Passing both `first` and `last` to paginate the `{name}` connection is not supported.",
            "INVALID_PAGINATION",
            path,
        )
    if not values:
        raise QueryError(
            f"You must provide a `first` or `last` value to properly paginate the `{name}` connection.",
            "MISSING_PAGINATION_BOUNDARIES",
            path,
        )
    for arg, n in values.items():
        if n > MAX_PAGE:
            raise QueryError(
                f"Requesting {n} records on the `{name}` connection exceeds the `{arg}` limit of {MAX_PAGE} records.",
                "EXCESSIVE_PAGINATION",
                path,
            )
        if n < 0:
            raise QueryError(f"`{arg}` on the `{name}` connection cannot be less than zero.", "INVALID_ARGUMENTS", path)
    return max(values.values())


# --- resolvers ---------------------------------------------------------------------------------
def _ts(dt: datetime | None) -> int:
    return int(dt.timestamp()) if dt else 0


def _order(args: dict[str, Any]) -> tuple[str, bool]:
    order = args.get("orderBy") or {}
    return str(order.get("field") or "CREATED_AT"), order.get("direction") == "DESC"


def _sort_key(field: str, desc: bool) -> Callable[[Any], list[Any]]:
    sign = -1 if desc else 1

    def key(x: Any) -> list[Any]:
        if field == "UPDATED_AT":
            return [sign * _ts(x.updated_at), sign * x.number]
        if field == "COMMENTS":  # no comments in the sandbox: creation order breaks the tie
            return [0, sign * _ts(x.created_at), sign * x.number]
        return [sign * _ts(x.created_at), sign * getattr(x, "number", getattr(x, "id", 0))]

    return key


class Resolvers:
    """``(type, field) → resolver``; anything else reads the attribute or dict key of its name."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Callable[..., Any]] = {}
        for name in dir(self):
            if "__" in name and not name.startswith("_"):
                type_name, field = name.split("__", 1)
                self.table[(type_name, field)] = getattr(self, name)

    def resolve(self, obj: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        fn = self.table.get((info.parent_type.name, info.field_name))
        if fn is not None:
            return fn(obj, info, **args)
        if isinstance(obj, dict):
            return obj.get(info.field_name)
        return getattr(obj, info.field_name, None)

    @staticmethod
    def resolve_type(value: Any, info: GraphQLResolveInfo, abstract: Any) -> str:
        if isinstance(value, TimelineItem):
            return EVENT_TYPES[value.event.kind]
        if isinstance(value, Actor):
            return "Bot" if value.login.endswith("[bot]") else "User"
        if isinstance(value, (Issue, PullRequest)):
            return "PullRequest" if value.is_pr else "Issue"
        if isinstance(value, GitCommit):
            return "Commit"
        named = {
            Repo: "Repository",
            Deployment: "Deployment",
            DeploymentStatus: "DeploymentStatus",
            LabelRef: "Label",
            PullRequestCommit: "PullRequestCommit",
            Review: "PullRequestReview",
            Release: "Release",
            Run: "WorkflowRun",
            CheckSuiteRef: "CheckSuite",
            CheckRunRef: "CheckRun",
        }
        if type(value) in named:
            return named[type(value)]
        raise TypeError(f"no GraphQL type for {type(value).__name__}")

    # Query
    def Query__repository(self, obj: Any, info: GraphQLResolveInfo, owner: str, name: str, **_: Any) -> Repo:
        ctx: Context = info.context
        routes = ctx.routes
        if owner.lower() == routes.organization.lower() and name.lower() == PRIVATE_REPO:
            raise GraphQLError("Resource not accessible by personal access token", extensions={"type": "FORBIDDEN"})
        mine = owner.lower() == routes.organization.lower() and ctx.account in (None, owner.lower())
        repo = routes.data.repos.get(name.lower()) if mine else None
        if repo is None:
            raise GraphQLError(
                f"Could not resolve to a Repository with the name '{owner}/{name}'.", extensions={"type": "NOT_FOUND"}
            )
        return repo

    def Query__rateLimit(self, obj: Any, info: GraphQLResolveInfo, **_: Any) -> dict[str, Any]:
        return info.root_value["rateLimit"]

    def Query__id(self, obj: Any, info: GraphQLResolveInfo) -> str:
        return "MDU6UXVlcnk="

    def Query__node(self, obj: Any, info: GraphQLResolveInfo, id: str) -> Any:
        found = _node(info.context.routes, id)
        if isinstance(found, GraphQLError):
            raise found
        return found

    def Query__nodes(self, obj: Any, info: GraphQLResolveInfo, ids: list[str]) -> list[Any]:
        # an id that does not resolve is null with its error at ``["nodes", i]``; the rest are kept
        return [_node(info.context.routes, i) for i in ids]

    # Repository
    def Repository__issue(self, repo: Repo, info: GraphQLResolveInfo, number: int) -> Issue:
        item = repo.items.get(number)
        if not isinstance(item, Issue):
            raise GraphQLError(
                f"Could not resolve to an Issue with the number of {number}.", extensions={"type": "NOT_FOUND"}
            )
        return item

    def Repository__pullRequest(self, repo: Repo, info: GraphQLResolveInfo, number: int) -> PullRequest:
        item = repo.items.get(number)
        if not isinstance(item, PullRequest):
            raise GraphQLError(
                f"Could not resolve to a PullRequest with the number of {number}.", extensions={"type": "NOT_FOUND"}
            )
        return item

    def Repository__release(self, repo: Repo, info: GraphQLResolveInfo, tagName: str) -> Release | None:
        return next((r for r in repo.releases if r.tag == tagName), None)  # none: null, no error

    def Repository__id(self, repo: Repo, info: GraphQLResolveInfo) -> str:
        return f"R_kgDO{repo.id:08d}"

    def Repository__databaseId(self, repo: Repo, info: GraphQLResolveInfo) -> int:
        return repo.id

    def Repository__nameWithOwner(self, repo: Repo, info: GraphQLResolveInfo) -> str:
        return repo.full_name

    def Repository__pushedAt(self, repo: Repo, info: GraphQLResolveInfo) -> str | None:
        return iso(repo.pushed_at)  # REST's ``pushed_at``: main's head (the sandbox pushes nowhere else)

    def Repository__issues(self, repo: Repo, info: GraphQLResolveInfo, **args: Any) -> Connection:
        field, desc = _order(args)
        key = _sort_key(field, desc)
        routes = info.context.routes
        items = routes._sorted_items(
            ("gql_issues", repo.name, field, desc),
            lambda: sorted((i for i in repo.items.values() if isinstance(i, Issue)), key=key),
        )
        filters = args.get("filterBy") or {}
        states = frozenset(args.get("states") or []) | frozenset(filters.get("states") or [])
        since = _time_arg(filters.get("since"), "since")
        if states or since:
            everything = items
            # a filtered view is cached like the sorted one: a sync pages through it many times
            items = routes._sorted_items(
                ("gql_issues", repo.name, field, desc, states, since),
                lambda: [
                    i
                    for i in everything
                    if (not states or i.state.upper() in states) and (since is None or i.updated_at >= since)
                ],
            )
        return connection(items, args, key)

    def Repository__pullRequests(self, repo: Repo, info: GraphQLResolveInfo, **args: Any) -> Connection:
        field, desc = _order(args)
        key = _sort_key(field, desc)
        items = info.context.routes._sorted_items(
            ("gql_pulls", repo.name, field, desc),
            lambda: sorted((i for i in repo.items.values() if isinstance(i, PullRequest)), key=key),
        )
        states = frozenset(args.get("states") or [])
        base = args.get("baseRefName")
        if states or base is not None:
            everything = items
            items = info.context.routes._sorted_items(
                ("gql_pulls", repo.name, field, desc, states, base),
                lambda: [
                    p for p in everything if (not states or _pr_state(p) in states) and base in (None, DEFAULT_BRANCH)
                ],
            )
        return connection(items, args, key)

    def Repository__deployments(self, repo: Repo, info: GraphQLResolveInfo, **args: Any) -> Connection:
        _, desc = _order(args)
        sign = -1 if desc else 1

        def key(d: Deployment) -> list[Any]:
            return [sign * _ts(d.created_at), sign * d.id]

        items = info.context.routes._sorted_items(
            ("gql_deployments", repo.name, desc), lambda: sorted(repo.deployments, key=key)
        )
        envs = args.get("environments")
        if envs:
            items = [d for d in items if d.environment in envs]
        return connection(items, args, key)

    # Issue and PullRequest share most fields
    def Issue__id(self, i: Issue, info: GraphQLResolveInfo) -> str:
        return f"I_kwDO{i.id}"

    def Issue__databaseId(self, i: Issue, info: GraphQLResolveInfo) -> int:
        return i.id

    def Issue__url(self, i: Issue, info: GraphQLResolveInfo) -> str:
        return f"{info.context.web}/{info.context.routes.organization}/{i.repo}/issues/{i.number}"

    def Issue__repository(self, i: Issue, info: GraphQLResolveInfo) -> Repo:
        return info.context.routes.data.repos[i.repo]

    def Issue__author(self, i: Issue, info: GraphQLResolveInfo) -> Actor:
        return Actor(i.author)

    def Issue__createdAt(self, i: Issue, info: GraphQLResolveInfo) -> str | None:
        return iso(i.created_at)

    def Issue__updatedAt(self, i: Issue, info: GraphQLResolveInfo) -> str | None:
        return iso(i.updated_at)

    def Issue__closedAt(self, i: Issue, info: GraphQLResolveInfo) -> str | None:
        return iso(i.closed_at)

    def Issue__state(self, i: Issue, info: GraphQLResolveInfo) -> str:
        return i.state.upper()

    def Issue__stateReason(self, i: Issue, info: GraphQLResolveInfo) -> str | None:
        return i.state_reason.upper() if i.state_reason else None

    def Issue__issueType(self, i: Issue, info: GraphQLResolveInfo) -> dict[str, Any] | None:
        if not i.native_type:
            return None
        tid = 3_000_000 + sum((n + 1) * ord(ch) for n, ch in enumerate(i.native_type))
        return {"id": f"IT_kwDO{tid}", "name": i.native_type}

    def Issue__labels(self, i: Issue, info: GraphQLResolveInfo, **args: Any) -> Connection:
        repo = info.context.routes.data.repos[i.repo]
        return connection([LabelRef(repo, name) for name in i.labels], args)

    def Issue__timelineItems(self, i: Issue, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return connection(_timeline(i, i.events, args), args)

    def Issue__closedByPullRequestsReferences(self, i: Issue, info: GraphQLResolveInfo, **args: Any) -> Connection:
        closers = info.context.routes._sorted_items(("gql_closers",), lambda: [_closers(info.context.routes)])[0]
        prs = closers.get(id(i), [])
        if not args.get("includeClosedPrs"):
            prs = [p for p in prs if p.state == "open"]
        return connection(prs, args)

    def PullRequest__id(self, p: PullRequest, info: GraphQLResolveInfo) -> str:
        return f"PR_kwDO{p.id}"

    def PullRequest__databaseId(self, p: PullRequest, info: GraphQLResolveInfo) -> int:
        return p.id

    def PullRequest__url(self, p: PullRequest, info: GraphQLResolveInfo) -> str:
        return f"{info.context.web}/{info.context.routes.organization}/{p.repo}/pull/{p.number}"

    def PullRequest__repository(self, p: PullRequest, info: GraphQLResolveInfo) -> Repo:
        return info.context.routes.data.repos[p.repo]

    def PullRequest__author(self, p: PullRequest, info: GraphQLResolveInfo) -> Actor | None:
        shown = info.context.routes.data.author_shown(p)
        return None if shown == GHOST else Actor(shown)  # a deleted account: GraphQL has no author

    def PullRequest__createdAt(self, p: PullRequest, info: GraphQLResolveInfo) -> str | None:
        return iso(p.created_at)

    def PullRequest__updatedAt(self, p: PullRequest, info: GraphQLResolveInfo) -> str | None:
        return iso(p.updated_at)

    def PullRequest__closedAt(self, p: PullRequest, info: GraphQLResolveInfo) -> str | None:
        return iso(p.closed_at)

    def PullRequest__mergedAt(self, p: PullRequest, info: GraphQLResolveInfo) -> str | None:
        return iso(p.merged_at)

    def PullRequest__merged(self, p: PullRequest, info: GraphQLResolveInfo) -> bool:
        return p.merged_at is not None

    def PullRequest__state(self, p: PullRequest, info: GraphQLResolveInfo) -> str:
        return _pr_state(p)

    def PullRequest__isDraft(self, p: PullRequest, info: GraphQLResolveInfo) -> bool:
        return False

    def PullRequest__baseRefName(self, p: PullRequest, info: GraphQLResolveInfo) -> str:
        return DEFAULT_BRANCH

    def PullRequest__headRefName(self, p: PullRequest, info: GraphQLResolveInfo) -> str:
        return p.head_ref

    def PullRequest__mergeCommit(self, p: PullRequest, info: GraphQLResolveInfo) -> GitCommit | None:
        if not p.merged_at or not p.merge_commit_sha:
            return None
        return info.context.routes.data.repos[p.repo].commits.get(p.merge_commit_sha)

    def PullRequest__labels(self, p: PullRequest, info: GraphQLResolveInfo, **args: Any) -> Connection:
        repo = info.context.routes.data.repos[p.repo]
        return connection([LabelRef(repo, name) for name in p.labels], args)

    def PullRequest__commits(self, p: PullRequest, info: GraphQLResolveInfo, **args: Any) -> Connection:
        repo = info.context.routes.data.repos[p.repo]
        return connection([PullRequestCommit(p, repo.commits[s]) for s in p.commits[:PR_COMMITS]], args)

    def PullRequest__reviews(self, p: PullRequest, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return connection(info.context.routes.data.reviews_of(p), args)

    def PullRequest__timelineItems(self, p: PullRequest, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return connection(_timeline(p, info.context.routes.data.pr_timeline(p), args), args)

    def PullRequest__closingIssuesReferences(self, p: PullRequest, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return connection(list(p.closes), args)

    # small objects
    def User__id(self, a: Actor, info: GraphQLResolveInfo) -> str:
        return f"U_kgDO{user_id(a.login):08d}"

    def User__databaseId(self, a: Actor, info: GraphQLResolveInfo) -> int:
        return user_id(a.login)

    def Bot__id(self, a: Actor, info: GraphQLResolveInfo) -> str:
        return f"BOT_kgDO{user_id(a.login):08d}"

    def Bot__databaseId(self, a: Actor, info: GraphQLResolveInfo) -> int:
        return user_id(a.login)

    def Bot__login(self, a: Actor, info: GraphQLResolveInfo) -> str:
        return a.login.removesuffix("[bot]")  # GraphQL names a bot without REST's ``[bot]`` suffix

    def Label__id(self, lb: LabelRef, info: GraphQLResolveInfo) -> str:
        return f"LA_kwDO{label_id(lb.name)}"

    def Label__color(self, lb: LabelRef, info: GraphQLResolveInfo) -> str:
        return label_color(lb.name)

    def Commit__id(self, c: GitCommit, info: GraphQLResolveInfo) -> str:
        return f"C_kwDO{c.sha[:20]}"

    def Commit__oid(self, c: GitCommit, info: GraphQLResolveInfo) -> str:
        return c.sha

    def Commit__authoredDate(self, c: GitCommit, info: GraphQLResolveInfo) -> str | None:
        return iso(c.authored)

    def Commit__committedDate(self, c: GitCommit, info: GraphQLResolveInfo) -> str | None:
        return iso(c.at)

    def PullRequestCommit__id(self, pc: PullRequestCommit, info: GraphQLResolveInfo) -> str:
        return f"PURC_kwDO{pc.pr.id}{pc.commit.sha[:12]}"

    def PullRequestReview__id(self, r: Review, info: GraphQLResolveInfo) -> str:
        return f"PRR_kwDO{r.id}"

    def PullRequestReview__databaseId(self, r: Review, info: GraphQLResolveInfo) -> int:
        return r.id

    def PullRequestReview__author(self, r: Review, info: GraphQLResolveInfo) -> Actor:
        return Actor(r.author)

    def PullRequestReview__createdAt(self, r: Review, info: GraphQLResolveInfo) -> str | None:
        return iso(r.created_at)  # started: its first comment's draft, else its submission

    def PullRequestReview__submittedAt(self, r: Review, info: GraphQLResolveInfo) -> str | None:
        return iso(r.submitted_at)

    def Deployment__id(self, d: Deployment, info: GraphQLResolveInfo) -> str:
        return f"DE_kwDO{d.id}"

    def Deployment__databaseId(self, d: Deployment, info: GraphQLResolveInfo) -> int:
        return d.id

    def Deployment__createdAt(self, d: Deployment, info: GraphQLResolveInfo) -> str | None:
        return iso(d.created_at)

    def Deployment__commitOid(self, d: Deployment, info: GraphQLResolveInfo) -> str:
        return d.sha

    def Deployment__commit(self, d: Deployment, info: GraphQLResolveInfo) -> GitCommit | None:
        return info.context.routes.data.repos[d.repo].commits.get(d.sha)  # None once force-pushed away

    def Deployment__latestStatus(self, d: Deployment, info: GraphQLResolveInfo) -> DeploymentStatus | None:
        return DeploymentStatus(d, d.statuses[-1]) if d.statuses else None

    def Deployment__statuses(self, d: Deployment, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return connection([DeploymentStatus(d, s) for s in reversed(d.statuses)], args)

    def Release__id(self, r: Release, info: GraphQLResolveInfo) -> str:
        return f"RE_kwDO{r.id}"

    def Release__databaseId(self, r: Release, info: GraphQLResolveInfo) -> int:
        return r.id

    def Release__tagName(self, r: Release, info: GraphQLResolveInfo) -> str:
        return r.tag

    def Release__isDraft(self, r: Release, info: GraphQLResolveInfo) -> bool:
        return r.draft

    def Release__isPrerelease(self, r: Release, info: GraphQLResolveInfo) -> bool:
        return r.prerelease

    def Release__createdAt(self, r: Release, info: GraphQLResolveInfo) -> str | None:
        return iso(r.created_at)

    def Release__publishedAt(self, r: Release, info: GraphQLResolveInfo) -> str | None:
        return iso(r.published_at)

    def Release__tagCommit(self, r: Release, info: GraphQLResolveInfo) -> GitCommit | None:
        # a draft's tag is made when it is published (REST's tag lookup 404s until then)
        return None if r.draft else info.context.routes.data.repos[r.repo].commits.get(r.sha)

    def WorkflowRun__id(self, r: Run, info: GraphQLResolveInfo) -> str:
        return f"WFR_kwLO{r.id}"

    def WorkflowRun__databaseId(self, r: Run, info: GraphQLResolveInfo) -> int:
        return r.id

    def WorkflowRun__createdAt(self, r: Run, info: GraphQLResolveInfo) -> str | None:
        return iso(r.created_at)

    def WorkflowRun__updatedAt(self, r: Run, info: GraphQLResolveInfo) -> str | None:
        return iso(r.updated_at)

    def WorkflowRun__runNumber(self, r: Run, info: GraphQLResolveInfo) -> int:
        return r.run_number

    def WorkflowRun__checkSuite(self, r: Run, info: GraphQLResolveInfo) -> CheckSuiteRef:
        return CheckSuiteRef(r)

    def CheckSuite__id(self, cs: CheckSuiteRef, info: GraphQLResolveInfo) -> str:
        return f"CS_kwDO{cs.id}"

    def CheckSuite__databaseId(self, cs: CheckSuiteRef, info: GraphQLResolveInfo) -> int:
        return cs.id

    def CheckSuite__status(self, cs: CheckSuiteRef, info: GraphQLResolveInfo) -> str:
        return _check_status(cs.run.status)

    def CheckSuite__conclusion(self, cs: CheckSuiteRef, info: GraphQLResolveInfo) -> str | None:
        return cs.run.conclusion.upper() if cs.run.conclusion else None

    def CheckSuite__workflowRun(self, cs: CheckSuiteRef, info: GraphQLResolveInfo) -> Run:
        return cs.run

    def CheckSuite__checkRuns(self, cs: CheckSuiteRef, info: GraphQLResolveInfo, **args: Any) -> Connection:
        # REST's ``/jobs`` order; one attempt a run in the sandbox, so LATEST and ALL list the same
        jobs = [CheckRunRef(cs.run, job) for job in cs.run.jobs()]
        filters = args.get("filterBy") or {}
        if filters.get("checkName") is not None:
            jobs = [j for j in jobs if j.job[1] == filters["checkName"]]
        statuses = set(filters.get("statuses") or ([filters["status"]] if filters.get("status") else []))
        if statuses:
            jobs = [j for j in jobs if _check_status("completed" if j.job[3] else "in_progress") in statuses]
        return connection(jobs, args)

    def CheckRun__id(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str:
        return f"CR_kwDO{c.job[0]}"

    def CheckRun__databaseId(self, c: CheckRunRef, info: GraphQLResolveInfo) -> int:
        return c.job[0]

    def CheckRun__name(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str:
        return c.job[1]

    def CheckRun__checkSuite(self, c: CheckRunRef, info: GraphQLResolveInfo) -> CheckSuiteRef:
        return CheckSuiteRef(c.run)

    def CheckRun__startedAt(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str | None:
        return iso(c.job[2])

    def CheckRun__completedAt(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str | None:
        return iso(c.job[3])

    def CheckRun__status(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str:
        return _check_status("completed" if c.job[3] else "in_progress")

    def CheckRun__conclusion(self, c: CheckRunRef, info: GraphQLResolveInfo) -> str | None:
        if c.job[3] is None:
            return None
        return (c.run.conclusion or "success").upper() if c.job[1] == "deploy" else "SUCCESS"  # as REST's job

    def DeploymentStatus__id(self, s: DeploymentStatus, info: GraphQLResolveInfo) -> str:
        return f"DES_kwDO{s.status.id}"

    def DeploymentStatus__state(self, s: DeploymentStatus, info: GraphQLResolveInfo) -> str:
        return s.status.state.upper()

    def DeploymentStatus__createdAt(self, s: DeploymentStatus, info: GraphQLResolveInfo) -> str | None:
        return iso(s.status.at)


def _event_resolvers(table: dict[tuple[str, str], Callable[..., Any]]) -> None:
    """The timeline events' fields, shared across their types."""

    def created(t: TimelineItem, info: GraphQLResolveInfo) -> str | None:
        return iso(t.event.at)

    def actor(t: TimelineItem, info: GraphQLResolveInfo) -> Actor:
        return Actor(t.event.actor)

    def ident(t: TimelineItem, info: GraphQLResolveInfo) -> str:
        ev = t.event
        if ev.id:
            return event_node_id(ev)
        return f"CRE_lADO{t.item.id}{_ts(ev.at)}"  # cross-references have no REST id

    def assignee(t: TimelineItem, info: GraphQLResolveInfo) -> Actor | None:
        return Actor(t.event.assignee) if t.event.assignee else None

    def label(t: TimelineItem, info: GraphQLResolveInfo) -> LabelRef:
        return LabelRef(info.context.routes.data.repos[t.item.repo], t.event.label or "")

    def closed_reason(t: TimelineItem, info: GraphQLResolveInfo) -> str | None:
        return t.event.state_reason.upper() if t.event.state_reason else None

    def closer(t: TimelineItem, info: GraphQLResolveInfo) -> Any:
        ev = t.event
        if ev.source is not None:
            return ev.source
        if ev.commit_id and not t.item.is_pr:
            return info.context.routes.data.repos[t.item.repo].commits.get(ev.commit_id)
        return None

    def source(t: TimelineItem, info: GraphQLResolveInfo) -> Any:
        return t.event.source or t.item

    def cross_repo(t: TimelineItem, info: GraphQLResolveInfo) -> bool:
        return t.event.source is not None and t.event.source.repo != t.item.repo

    def will_close(t: TimelineItem, info: GraphQLResolveInfo) -> bool:
        return t.event.source is not None and any(i is t.item for i in t.event.source.closes)

    def merge_commit(t: TimelineItem, info: GraphQLResolveInfo) -> GitCommit | None:
        return info.context.routes.data.repos[t.item.repo].commits.get(t.event.commit_id or "")

    def reviewer(t: TimelineItem, info: GraphQLResolveInfo) -> Actor | None:
        return Actor(t.event.assignee) if t.event.assignee else None

    for type_name in EVENT_TYPES.values():
        table[(type_name, "createdAt")] = created
        table[(type_name, "actor")] = actor
        table[(type_name, "id")] = ident
    for type_name in ("AssignedEvent", "UnassignedEvent"):
        table[(type_name, "assignee")] = assignee
    for type_name in ("LabeledEvent", "UnlabeledEvent"):
        table[(type_name, "label")] = label
    table[("ClosedEvent", "stateReason")] = closed_reason
    table[("ClosedEvent", "closer")] = closer
    table[("ReopenedEvent", "stateReason")] = lambda t, info: "REOPENED"
    for type_name in ("ConnectedEvent", "DisconnectedEvent", "CrossReferencedEvent"):
        table[(type_name, "source")] = source
        table[(type_name, "isCrossRepository")] = cross_repo
    for type_name in ("ConnectedEvent", "DisconnectedEvent"):
        table[(type_name, "subject")] = lambda t, info: t.item
    table[("CrossReferencedEvent", "target")] = lambda t, info: t.item
    table[("CrossReferencedEvent", "referencedAt")] = created
    table[("CrossReferencedEvent", "willCloseTarget")] = will_close
    table[("MergedEvent", "commit")] = merge_commit
    table[("MergedEvent", "mergeRefName")] = lambda t, info: DEFAULT_BRANCH
    table[("ReviewRequestedEvent", "requestedReviewer")] = reviewer


def _pr_state(p: PullRequest) -> str:
    return "MERGED" if p.merged_at else "CLOSED" if p.closed_at else "OPEN"


def _time_arg(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        raise GraphQLError(
            f"Argument '{name}' has an invalid value ({value}). Expected type 'DateTime'.",
            extensions={"type": "INVALID_ARGUMENTS"},
        ) from None


def _timeline(
    item: Issue | PullRequest, events: Sequence[IssueEvent | Review | ReviewComment], args: dict[str, Any]
) -> list[TimelineItem | Review]:
    wanted = set(args.get("itemTypes") or [])
    since = _time_arg(args.get("since"), "since")
    out: list[TimelineItem | Review] = []
    for ev in events:
        if isinstance(ev, ReviewComment):
            continue  # inside its review (and its PullRequestReviewThread, which the sandbox does not serve)
        type_name = "PullRequestReview" if isinstance(ev, Review) else EVENT_TYPES.get(ev.kind)
        if type_name is None or (not item.is_pr and type_name not in _ISSUE_ITEMS):
            continue
        if wanted and _enum_name(type_name) not in wanted:
            continue
        if since is not None and ev.at < since:
            continue
        out.append(ev if isinstance(ev, Review) else TimelineItem(item, ev))
    return out


def _nodes(routes: GitHubRoutes) -> dict[str, Any]:
    """Global node id → repository, issue, pull request, deployment, workflow run or its check
    suite (what ``node(id:)`` finds)."""

    def make() -> list[dict[str, Any]]:
        index: dict[str, Any] = {}
        for repo in routes.data.repos.values():
            index[f"R_kgDO{repo.id:08d}"] = repo
            for item in repo.items.values():
                index[f"PR_kwDO{item.id}" if isinstance(item, PullRequest) else f"I_kwDO{item.id}"] = item
            for d in repo.deployments:
                index[f"DE_kwDO{d.id}"] = d
            for r in repo.runs:
                index[f"WFR_kwLO{r.id}"] = r
                index[f"CS_kwDO{CheckSuiteRef(r).id}"] = CheckSuiteRef(r)
        return [index]

    return routes._sorted_items(("gql_nodes",), make)[0]


def _node(routes: GitHubRoutes, node_id: str) -> Any:
    """The object of a global id, or the error GitHub answers for it (not found, or made unresolvable)."""
    found = _nodes(routes).get(node_id)
    error = routes.data.node_errors.get(node_id, "NOT_FOUND" if found is None else None)
    if error == "FORBIDDEN":
        return GraphQLError("Resource not accessible by integration", extensions={"type": "FORBIDDEN"})
    if error is not None:
        message = f"Could not resolve to a node with the global id of '{node_id}'"
        return GraphQLError(message, extensions={"type": "NOT_FOUND"})
    return found


def _check_status(status: str) -> str:
    """A REST run or job status as ``CheckStatusState``."""
    return status.upper() if status in ("queued", "in_progress", "completed", "waiting", "pending") else "QUEUED"


def _closers(routes: GitHubRoutes) -> dict[int, list[PullRequest]]:
    """Issue (by identity) → the pull requests whose closing keywords name it, in number order."""
    out: dict[int, list[PullRequest]] = {}
    for repo in routes.data.repos.values():
        for item in sorted(repo.items.values(), key=lambda i: i.number):
            if isinstance(item, PullRequest):
                for issue in item.closes:
                    out.setdefault(id(issue), []).append(item)
    return out


_ISSUE_ITEMS = {t.name for t in SCHEMA.get_type("IssueTimelineItems").types}  # type: ignore[union-attr]
RESOLVERS = Resolvers()
_event_resolvers(RESOLVERS.table)


# --- one request ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the HTTP layer needs: the JSON body and the points charged."""

    body: dict[str, Any]
    cost: int = 0


def run(
    routes: GitHubRoutes,
    body: Any,
    web: str,
    remaining: int,
    charge: Callable[[int], dict[str, Any]],
    account: str | None = None,
) -> Outcome:
    """Parse, validate, check limits, charge ``charge(cost)`` (returns the ``rateLimit`` object), execute."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return Outcome({"errors": [{"message": "A query attribute must be specified and must be a string."}]})
    try:
        doc = parse(body["query"])
    except GraphQLError as exc:
        return Outcome({"errors": [_format(exc)]})
    errors = validate(SCHEMA, doc)
    if errors:
        return Outcome({"errors": [_validation_error(e) for e in errors]})
    op = get_operation_ast(doc, body.get("operationName"))
    if op is None:
        return Outcome({"errors": [{"message": "An operation name is required when a query has several."}]})
    if op.operation.value != "query":
        return Outcome({"errors": [{"message": f"The sandbox serves queries only, not {op.operation.value}s."}]})
    variables = body.get("variables") or {}
    coerced = get_variable_values(SCHEMA, op.variable_definitions or [], variables)
    if isinstance(coerced, list):
        return Outcome({"errors": [_format(e) for e in coerced]})
    try:
        analysis = analyse(doc, op, coerced)
    except QueryError as exc:
        return Outcome({"errors": [exc.body]})
    cost = 0 if analysis.dry_run else analysis.cost
    if cost > remaining:
        message = f"API rate limit exceeded for user ID {user_id('sandbox')}."
        return Outcome({"errors": [{"type": "RATE_LIMITED", "message": message}]})
    rate = {**charge(cost), "cost": analysis.cost, "nodeCount": analysis.nodes}
    result = execute(
        SCHEMA,
        doc,
        root_value={"rateLimit": rate},
        context_value=Context(routes, web, account),
        variable_values=variables,
        operation_name=body.get("operationName"),
        field_resolver=RESOLVERS.resolve,
        type_resolver=RESOLVERS.resolve_type,
    )
    out: dict[str, Any] = {}
    if result.errors:
        out["errors"] = [_format(e) for e in result.errors]
    out["data"] = result.data
    return Outcome(out, cost)


_UNDEFINED_FIELD = re.compile(r"Cannot query field '(?P<field>\w+)' on type '(?P<type>\w+)'\.")


def _validation_error(error: GraphQLError) -> dict[str, Any]:
    """graphql-core's validation message, in GitHub's (graphql-ruby's) words where clients match on them."""
    d = _format(error)
    m = _UNDEFINED_FIELD.match(error.message)
    if m:
        d["message"] = f"Field '{m['field']}' doesn't exist on type '{m['type']}'"
        d["extensions"] = {"code": "undefinedField", "typeName": m["type"], "fieldName": m["field"]}
    return d


def _format(error: GraphQLError) -> dict[str, Any]:
    """GitHub's error objects: ``type`` beside ``message``, ``path`` and ``locations``."""
    d: dict[str, Any] = {}
    ext = dict(error.extensions or {})
    if "type" in ext:
        d["type"] = ext.pop("type")
    if error.path:
        d["path"] = list(error.path)
    if error.locations:
        d["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    d["message"] = error.message
    if ext:
        d["extensions"] = ext
    return d


__all__ = ["MAX_NODES", "MAX_PAGE", "SCHEMA", "Outcome", "run"]
