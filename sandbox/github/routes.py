"""The GitHub half of the sandbox: routing, auth and rate limits in front of the per-area handlers
(``repos``, ``issues``, ``git``, ``deliveries``, ``actions``); see the package docstring."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.github import graphql
from sandbox.github.actions import ActionsHandlers
from sandbox.github.apps import DOCS_APPS, AppsHandlers, AppState, SandboxApp, verify_jwt
from sandbox.github.common import BadRequest, user_id
from sandbox.github.data import SeededGitHubOrg
from sandbox.github.deliveries import DeliveriesHandlers
from sandbox.github.git import GitHandlers
from sandbox.github.issues import IssuesHandlers
from sandbox.github.repos import ReposHandlers
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response, Router, etag_of

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
GRAPHQL_DOCS = "https://docs.github.com/graphql"
GRAPHQL_AUTH_DOCS = "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"
SECONDARY_DOCS = "https://docs.github.com/graphql/overview/rate-limits-and-node-limits-for-the-graphql-api"
_PREFIX = r"(?P<prefix>/api/v3)?"
_REPO = _PREFIX + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


class RateBudget:
    """The primary (per token) and optional secondary rate limits, on the wall clock; ``resource``
    names the budget (``core`` for REST requests, ``graphql`` for GraphQL points)."""

    def __init__(self, limit: int = 5000, window: int = 3600, resource: str = "core") -> None:
        self.resource = resource
        self.limit = limit
        self.remaining = limit
        self.window = window
        self.reset = int(time.time()) + window
        self.secondary = 0
        self.retry_after = 1
        #: the least budget left after any request (or query's points) it counted, and the requests
        #: (REST 403s, GraphQL ``RATE_LIMITED`` answers) refused for an exhausted budget, since the
        #: last ``set_rate_limit``: tests check a client's reserve by them
        self.lowest = limit
        self.refused = 0

    def refresh(self) -> None:
        if time.time() >= self.reset:
            self.remaining = self.limit
            self.reset = int(time.time()) + self.window

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(self.limit - self.remaining),
            "x-ratelimit-resource": self.resource,
        }

    def spend(self, cost: int = 1) -> None:
        self.remaining -= cost
        self.lowest = min(self.lowest, self.remaining)

    def snapshot(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "used": self.limit - self.remaining,
            "remaining": self.remaining,
            "reset": self.reset,
        }


class GitHubRoutes(ReposHandlers, IssuesHandlers, GitHandlers, DeliveriesHandlers, ActionsHandlers, AppsHandlers):
    """The HTTP routes of the sandbox's GitHub: the seeded organisation (``data``) behind REST API v3."""

    def __init__(
        self,
        *,
        seed: int,
        work_items: int,
        now: datetime,
        token: str,
        organization: str,
        azure_items: list[tuple[int, datetime, datetime | None]],
        malformed: int = 0,
        app: SandboxApp | None = None,
        graphql_points: int = 5000,
        extra_repos: int = 0,
    ) -> None:
        self.token = token
        self.apps = AppState(app)
        self.organization = organization
        self.data = SeededGitHubOrg(
            seed=seed,
            work_items=work_items,
            now=now,
            organization=organization,
            azure_items=azure_items,
            malformed=malformed,
            extra_repos=extra_repos,
        )
        self.rate = RateBudget()
        self.graphql_rate = RateBudget(graphql_points, resource="graphql")
        self._lock = threading.RLock()
        self._request_no = 0
        self._sorted: dict[tuple[Any, ...], list[Any]] = {}
        self._sorted_version = -1

    # --- interface used by app.py -------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """What a perfect sync stores (see ``sandbox.github.data``); shared, do not mutate."""
        with self._lock:
            return dict(self.data.truth())

    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        with self._lock:
            return self.data.add_activity(rng, now)

    def push(self, repository: str, now: datetime) -> str:
        """One commit pushed to ``repository``'s main branch (by name) at ``now``; its sha."""
        with self._lock:
            return self.data.push(repository, now)

    def delete(self, repository: str) -> None:
        with self._lock:
            self.data.delete(repository)

    def archive(self, repository: str, now: datetime) -> None:
        with self._lock:
            self.data.archive(repository, now)

    def assign(self, repository: str, number: int, who: str, now: datetime) -> None:
        with self._lock:
            self.data.assign(repository, number, who, now)

    def label(self, repository: str, number: int, label: str, now: datetime) -> None:
        with self._lock:
            self.data.label(repository, number, label, now)

    def deploy(self, repository: str, environment: str, sha: str, now: datetime, result: str | None) -> int:
        with self._lock:
            return self.data.deploy(repository, environment, sha, now, result)

    def add_status(self, repository: str, deployment: int, state: str, now: datetime) -> None:
        with self._lock:
            self.data.add_status(repository, deployment, state, now)

    def release(self, repository: str, tag: str, sha: str, now: datetime) -> int:
        with self._lock:
            return self.data.release(repository, tag, sha, now)

    def review(self, repository: str, number: int, who: str, state: str, now: datetime) -> int:
        with self._lock:
            return self.data.review(repository, number, who, state, now)

    def many_jobs(self, repository: str, run_id: int, matrix: int) -> None:
        with self._lock:
            self.data.many_jobs(repository, run_id, matrix)

    def unresolvable(self, node_id: str, error: str = "NOT_FOUND") -> None:
        with self._lock:
            self.data.unresolvable(node_id, error)

    def set_rate_limit(
        self,
        limit: int | None = None,
        remaining: int | None = None,
        reset_in: float | None = None,
        secondary: int | None = None,
        retry_after: int | None = None,
        resource: str = "core",
        window: int | None = None,
    ) -> dict[str, Any]:
        """Change a budget (``resource`` ``core``: REST requests, ``graphql``: GraphQL points): ``limit``
        (a fresh window unless ``remaining`` is given), ``reset_in`` seconds, ``window`` (the length
        of every later window, seconds; GitHub's is an hour). The secondary limit is shared: the next
        ``secondary`` requests of either API are refused."""
        with self._lock:
            rate = self.graphql_rate if resource == "graphql" else self.rate
            rate.refresh()
            if window is not None:
                rate.window = max(1, int(window))
                rate.reset = int(time.time()) + rate.window
            if window is not None:
                rate.window = max(1, int(window))
                rate.reset = int(time.time()) + rate.window
            if limit is not None:
                rate.limit = int(limit)
                rate.remaining = int(limit)
            if remaining is not None:
                rate.remaining = max(0, min(int(remaining), rate.limit))
            if reset_in is not None:
                rate.reset = int(time.time() + float(reset_in))
            if secondary is not None:
                self.rate.secondary = max(0, int(secondary))
            if retry_after is not None:
                self.rate.retry_after = max(0, int(retry_after))
            rate.lowest, rate.refused = rate.remaining, 0
            return {**rate.snapshot(), "secondary": self.rate.secondary, "retry_after": self.rate.retry_after}

    def rate_stats(self, resource: str = "core") -> dict[str, Any]:
        """A budget now, with the least left after a spending request and the refused requests
        since the last ``set_rate_limit`` of it."""
        with self._lock:
            rate = self.graphql_rate if resource == "graphql" else self.rate
            return {**rate.snapshot(), "window": rate.window, "lowest": rate.lowest, "refused": rate.refused}

    def register(self, router: Router) -> None:
        r = _REPO
        n = r"(?P<number>\d+)"
        routes: list[tuple[str, str, Callable[[Shapes, Request], Response], bool]] = [
            (_PREFIX + "/rate_limit", "github.rate_limit", self._rate_limit, True),
            (_PREFIX + "/orgs/(?P<org>[^/]+)", "github.org", self._org, False),
            (_PREFIX + "/orgs/(?P<org>[^/]+)/repos", "github.repos", self._org_repos, False),
            (_PREFIX + "/users/(?P<user>[^/]+)/repos", "github.repos", self._user_repos, False),
            (r, "github.repo", self._repo_get, False),
            (r + "/issues", "github.issues", self._issues, False),
            (r + "/issues/events", "github.repo_issue_events", self._repo_issue_events, False),
            (r + f"/issues/{n}", "github.issue", self._issue, False),
            (r + f"/issues/{n}/timeline", "github.issue_timeline", self._timeline, False),
            (r + f"/issues/{n}/events", "github.issue_events", self._issue_events, False),
            (r + "/pulls", "github.pulls", self._pulls, False),
            (r + f"/pulls/{n}", "github.pull", self._pull, False),
            (r + f"/pulls/{n}/commits", "github.pull_commits", self._pull_commits, False),
            (r + f"/pulls/{n}/reviews", "github.pull_reviews", self._pull_reviews, False),
            (r + f"/pulls/{n}/comments", "github.pull_comments", self._pull_comments, False),
            (r + "/commits", "github.commits", self._commits, False),
            (r + "/commits/(?P<ref>.+)", "github.commit", self._commit, False),
            (r + "/compare/(?P<basehead>.+)", "github.compare", self._compare, False),
            (r + "/deployments", "github.deployments", self._deployments, False),
            (r + r"/deployments/(?P<id>\d+)", "github.deployment", self._deployment, False),
            (r + r"/deployments/(?P<id>\d+)/statuses", "github.deployment_statuses", self._statuses, False),
            (r + "/releases", "github.releases", self._releases, False),
            (r + "/releases/latest", "github.release", self._release_latest, False),
            (r + "/releases/tags/(?P<tag>.+)", "github.release", self._release_by_tag, False),
            (r + r"/releases/(?P<id>\d+)", "github.release", self._release_by_id, False),
            (r + "/git/refs?/(?P<ref>(?:tags|heads)/.+)", "github.git_ref", self._git_ref, False),
            (r + "/actions/workflows", "github.workflows", self._workflows, False),
            (r + "/actions/workflows/(?P<wf>[^/]+)", "github.workflow", self._workflow, False),
            (r + "/actions/workflows/(?P<wf>[^/]+)/runs", "github.workflow_runs", self._runs, False),
            (r + "/actions/runs", "github.workflow_runs", self._runs, False),
            (r + r"/actions/runs/(?P<id>\d+)", "github.workflow_run", self._run, False),
            (r + r"/actions/runs/(?P<id>\d+)/jobs", "github.workflow_run_jobs", self._run_jobs, False),
        ]
        for pattern, name, fn, free in routes:
            router.add("GET", pattern, name, self._endpoint(fn, free))
        router.add("POST", r"(?P<prefix>/api)?/graphql", "github.graphql", self._graphql)
        if self.apps.app is not None:
            apps: list[tuple[str, str, str, Callable[[Shapes, Request], Response]]] = [
                ("GET", _PREFIX + "/orgs/(?P<org>[^/]+)/installation", "github.installation", self._org_installation),
                (
                    "GET",
                    _PREFIX + "/users/(?P<user>[^/]+)/installation",
                    "github.installation",
                    self._user_installation,
                ),
                ("GET", r + "/installation", "github.installation", self._repo_installation),
                (
                    "POST",
                    _PREFIX + r"/app/installations/(?P<id>\d+)/access_tokens",
                    "github.access_token",
                    self._access_token,
                ),
            ]
            for method, pattern, name, fn in apps:
                router.add(method, pattern, name, self._app_endpoint(fn))

    def revoke_installation_tokens(self) -> int:
        """Invalidate every installation token issued so far (their next use answers 401)."""
        with self._lock:
            return self.apps.revoke()

    # --- who may call ---------------------------------------------------------------------
    def authorize(self, req: Request) -> tuple[int, str] | None:
        """None if the request's credentials may call this route, else GitHub's (status, message).

        The one token check of every REST (and GraphQL) route: the sandbox's personal token, or an
        installation token of the app that has not expired. An installation token reaches only its
        own account's repositories; GitHub answers others with 404.
        """
        token = _bearer(req.headers.get("authorization", ""))
        if token is None:
            return 401, "Requires authentication"
        if token == self.token:
            return None
        issued = self.apps.token(token)
        if issued is None or time.time() >= issued.expires_at:
            return 401, "Bad credentials"
        owner = req.params.get("owner") or req.params.get("org") or req.params.get("user")
        if owner is not None and owner.lower() != issued.account:
            return 404, "Not Found"
        return None

    # --- the shared request pipeline ------------------------------------------------------
    def _endpoint(self, fn: Callable[[Shapes, Request], Response], free: bool) -> Callable[[Request], Response]:
        def handle(req: Request) -> Response:
            with self._lock:
                return self._serve(req, fn, free)

        return handle

    def _app_endpoint(self, fn: Callable[[Shapes, Request], Response]) -> Callable[[Request], Response]:
        """Routes called as the app: a valid JWT of the app, or 401 with GitHub's message."""

        def handle(req: Request) -> Response:
            with self._lock:
                app = self.apps.app
                assert app is not None
                token = _bearer(req.headers.get("authorization", ""))
                problem = "A JSON web token could not be decoded" if token is None else verify_jwt(app, token)
                if problem is not None:
                    return _finish(_error(401, problem, DOCS_APPS), {"x-github-api-version-selected": API_VERSION})
                try:
                    resp = fn(Shapes(self, req), req)
                except BadRequest as exc:
                    resp = _error(exc.status, exc.message, DOCS_APPS)
                return _finish(resp, {"x-github-api-version-selected": API_VERSION})

        return handle

    def _serve(self, req: Request, fn: Callable[[Shapes, Request], Response], free: bool) -> Response:
        self._request_no += 1
        request_id = f"5A4D:{self._request_no:06X}"
        rate = self.rate
        rate.refresh()
        common = {
            "x-github-api-version-selected": API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": request_id,
        }
        refused = self.authorize(req)
        if refused is not None and refused[0] == 404:
            return _finish(_error(*refused), {**common, **rate.headers()})
        if refused is not None:
            status, message = refused
            unauth = {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "59",
                "x-ratelimit-used": "1",
                "x-ratelimit-reset": str(rate.reset),
                "x-ratelimit-resource": "core",
            }
            return _finish(_error(status, message), {**common, **unauth})
        if not free and rate.secondary > 0:
            rate.secondary -= 1
            msg = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                f"If you reach out to GitHub Support for help, please include the request ID {request_id}."
            )
            resp = _error(
                429,
                msg,
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            )
            return _finish(resp, {**common, **rate.headers(), "retry-after": str(rate.retry_after)})
        if not free and rate.remaining <= 0:
            rate.refused += 1
            msg = (
                f"API rate limit exceeded for user ID {user_id('sandbox')}. If you reach out to GitHub Support "
                f"for help, please include the request ID {request_id} and timestamp "
                f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC."
            )
            resp = _error(
                403,
                msg,
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
            )
            return _finish(resp, {**common, **rate.headers()})
        try:
            resp = fn(Shapes(self, req), req)
        except BadRequest as exc:
            resp = _error(exc.status, exc.message)
        payload = resp.encoded()
        not_modified = resp.etag and resp.status == 200 and req.headers.get("if-none-match") == etag_of(payload)
        if not free and not not_modified:
            rate.spend()
        resp.body = payload
        return _finish(resp, {**common, **rate.headers()})

    def _graphql(self, req: Request) -> Response:
        """``POST /graphql``: REST's auth and secondary limit, then GraphQL's own points budget."""
        with self._lock:
            self._request_no += 1
            request_id = f"5A4D:{self._request_no:06X}"
            rate = self.graphql_rate
            rate.refresh()
            common = {"x-github-request-id": request_id}
            token = _bearer(req.headers.get("authorization", ""))
            if self.authorize(req) is not None:
                if token is None:
                    message, doc = "This endpoint requires you to be authenticated.", GRAPHQL_AUTH_DOCS
                else:
                    message, doc = "Bad credentials", GRAPHQL_DOCS
                return _finish(Response(401, {"message": message, "documentation_url": doc}), common)
            issued = self.apps.token(token) if token is not None and token != self.token else None
            if self.rate.secondary > 0:
                self.rate.secondary -= 1
                msg = (
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                    f"If you reach out to GitHub Support for help, please include the request ID {request_id}."
                )
                body = {"message": msg, "documentation_url": SECONDARY_DOCS}
                headers = {**common, **rate.headers(), "retry-after": str(self.rate.retry_after)}
                return _finish(Response(403, body), headers)
            try:
                body = json.loads(req.body or b"null")
            except ValueError:
                return _finish(
                    Response(400, {"message": "Problems parsing JSON", "documentation_url": GRAPHQL_DOCS}),
                    {**common, **rate.headers()},
                )

            def charge(points: int) -> dict[str, Any]:
                rate.spend(points)
                reset = datetime.fromtimestamp(rate.reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                return {
                    "limit": rate.limit,
                    "remaining": rate.remaining,
                    "used": rate.limit - rate.remaining,
                    "resetAt": reset,
                }

            account = issued.account if issued is not None else None
            outcome = graphql.run(self, body, req.base_url, rate.remaining, charge, account)
            if any(e.get("type") == "RATE_LIMITED" for e in outcome.body.get("errors") or []):
                rate.refused += 1  # a query dearer than what is left: refused whole (a 200)
            resp = Response(200, outcome.body, points=outcome.cost)
            return _finish(resp, {**common, **rate.headers()})

    # --- endpoints ----------------------------------------------------------------------
    def _rate_limit(self, ctx: Shapes, req: Request) -> Response:
        core = self.rate.snapshot()
        reset = self.rate.reset

        def other(limit: int) -> dict[str, int]:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": reset}

        resources = {
            "core": core,
            "search": other(30),
            "graphql": self.graphql_rate.snapshot(),
            "integration_manifest": other(5000),
            "source_import": other(100),
            "code_scanning_upload": other(1000),
            "actions_runner_registration": other(10000),
            "scim": other(15000),
            "dependency_snapshots": other(100),
            "code_search": other(10),
        }
        return Response(200, {"resources": resources, "rate": core})


def _bearer(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def _error(status: int, message: str, doc: str = DOCS) -> Response:
    return Response(status, {"message": message, "documentation_url": doc, "status": str(status)})


def _finish(resp: Response, headers: dict[str, str]) -> Response:
    """Encode once (the core then reuses the bytes for the ETag) and add the GitHub headers."""
    if not isinstance(resp.body, bytes):
        resp.body = resp.encoded()
    resp.headers = {**headers, **resp.headers, "Content-Type": "application/json; charset=utf-8"}
    return resp


__all__ = ["GitHubRoutes", "RateBudget"]
