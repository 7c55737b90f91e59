"""The GitHub half of the sandbox: a REST API v3 server over the seeded organisation.

The data and the ground truth (and the exact rules a source must follow to reproduce it) live in
:mod:`sandbox.github.data`; this module is the HTTP surface, shaped like
``github/rest-api-description`` (api.github.com 2022-11-28) and PyGithub's recorded responses.

Served both at ``/`` and under ``/api/v3`` (GitHub Enterprise Server). Every absolute URL in a body
or a ``Link`` header is the request's own ``http://host:port`` plus the prefix it came in on:
PyGithub asserts that every URL it follows shares ``base_url``'s host, port and path prefix.

Behaviour shared by every endpoint (endpoint names for ``/_sandbox/stats`` are ``github.<name>``):

- Auth: ``Authorization: Bearer <token>`` or ``token <token>``. None → 401 ``Requires
  authentication``; another token → 401 ``Bad credentials``.
- Primary rate limit per token (default 5000 an hour, wall-clock reset): ``x-ratelimit-limit``,
  ``-remaining``, ``-reset`` (epoch seconds), ``-used``, ``-resource: core`` on every answer. Each
  request costs 1 except ``GET /rate_limit`` and 304s. Exhausted → 403 ``API rate limit exceeded
  for user ID …`` with ``x-ratelimit-remaining: 0`` until the reset. ``set_rate_limit`` changes the
  budget; ``set_rate_limit(secondary=N, retry_after=S)`` answers the next N requests with 429 +
  ``retry-after: S`` and the secondary-limit message.
- Lists: ``per_page`` (default 30, max 100) and ``page``, with RFC 5988 ``Link`` (prev, next, last,
  first). ``ETag`` on every 200 GET; ``If-None-Match`` with it → 304 (free).
- Unknown repository → 404; ``contoso/private-infra`` → 403 ``Resource not accessible by personal
  access token`` (for fault tests; not listed in the organisation).

Endpoints: ``/rate_limit``; ``/orgs/{org}``; ``/orgs/{org}/repos``; ``/users/{u}/repos``; under
``/repos/{o}/{r}``: ``''``, ``/issues`` (state, since, sort=created|updated, direction, labels,
assignee, creator), ``/issues/{n}``, ``/issues/{n}/timeline``, ``/issues/{n}/events``,
``/issues/events`` (newest first), ``/pulls`` (state, sort, direction, base, head), ``/pulls/{n}``,
``/pulls/{n}/commits``, ``/commits`` (sha, since, until; newest first), ``/commits/{ref}`` (422 for
an unknown sha), ``/compare/{base}...{head}`` (oldest first; at most 250 commits unless ``page``
or ``per_page`` is given, then paginated, default 250 a page; 404 for an unknown sha),
``/deployments`` (sha, ref, task, environment; newest first), ``/deployments/{id}``,
``/deployments/{id}/statuses`` (newest first), ``/releases`` (newest first), ``/releases/latest``,
``/releases/tags/{tag}``, ``/releases/{id}``, ``/git/ref/{ref}`` and ``/git/refs/{ref}``
(``tags/<tag>``, ``heads/main``), ``/actions/workflows``, ``/actions/workflows/{id|file}``,
``/actions/workflows/{id|file}/runs`` and ``/actions/runs`` (branch, event, status, created,
head_sha; ``{total_count, workflow_runs}``; like GitHub, a filtered query yields at most 1,000
runs: window by ``created``), ``/actions/runs/{id}``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

from sandbox.github.data import (
    BOT,
    DEFAULT_BRANCH,
    LABEL_COLORS,
    MAX_BODY,
    PRIVATE_REPO,
    USERS,
    Deployment,
    GitCommit,
    Issue,
    IssueEvent,
    PullRequest,
    Release,
    Repo,
    Run,
    SeededGitHubOrg,
    Workflow,
    iso,
)
from sandbox.server import Request, Response, Router, etag_of

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
RUNS_SEARCH_CAP = 1000
COMPARE_PAGE = 250
_PREFIX = r"(?P<prefix>/api/v3)?"
_REPO = _PREFIX + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
_CONCLUSIONS = {"success", "failure", "cancelled", "skipped", "neutral", "timed_out", "action_required", "stale"}
_LANGUAGE = {"web": "TypeScript", "api": "Python", "mobile-app": "Kotlin"}


def _user_id(login: str) -> int:
    if login == BOT:
        return 41898282
    if login == "web-flow":
        return 19864447
    return 5_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(login))


def _parse_time(value: str) -> datetime:
    """ISO-8601 as GitHub accepts it (``Z`` or an offset; a bare date is midnight UTC)."""
    text = value.strip().replace("Z", "+00:00").replace(" ", "+")
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _created_filter(expr: str) -> Callable[[datetime], bool]:
    """GitHub search date syntax: ``>=D``, ``<=D``, ``>D``, ``<D``, ``A..B`` (``*`` open), or ``D``."""
    expr = expr.strip()

    def bound(text: str, end: bool) -> datetime:
        dt = _parse_time(text)
        if end and "T" not in text:
            dt += timedelta(days=1) - timedelta(seconds=1)  # a bare end date includes that whole day
        return dt

    if ".." in expr:
        lo, hi = expr.split("..", 1)
        lo_dt = None if lo in ("", "*") else bound(lo, False)
        hi_dt = None if hi in ("", "*") else bound(hi, True)
        return lambda t: (lo_dt is None or t >= lo_dt) and (hi_dt is None or t <= hi_dt)
    for op in (">=", "<=", ">", "<"):
        if expr.startswith(op):
            rest = expr[len(op) :]
            if op == ">=":
                b = bound(rest, False)
                return lambda t: t >= b
            if op == ">":
                b = bound(rest, True)
                return lambda t: t > b
            if op == "<=":
                b = bound(rest, True)
                return lambda t: t <= b
            b = bound(rest, False)
            return lambda t: t < b
    lo_dt, hi_dt = bound(expr, False), bound(expr, True)
    return lambda t: lo_dt <= t <= hi_dt


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RateBudget:
    """The primary (per token) and optional secondary rate limits, on the wall clock."""

    def __init__(self, limit: int = 5000, window: int = 3600) -> None:
        self.limit = limit
        self.remaining = limit
        self.window = window
        self.reset = int(time.time()) + window
        self.secondary = 0
        self.retry_after = 1

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
            "x-ratelimit-resource": "core",
        }

    def snapshot(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "used": self.limit - self.remaining,
            "remaining": self.remaining,
            "reset": self.reset,
        }


class GitHubRoutes:
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
    ) -> None:
        self.token = token
        self.organization = organization
        self.data = SeededGitHubOrg(
            seed=seed,
            work_items=work_items,
            now=now,
            organization=organization,
            azure_items=azure_items,
            malformed=malformed,
        )
        self.rate = RateBudget()
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

    def set_rate_limit(
        self,
        limit: int | None = None,
        remaining: int | None = None,
        reset_in: float | None = None,
        secondary: int | None = None,
        retry_after: int | None = None,
    ) -> dict[str, Any]:
        """Change the budget: ``limit`` (a fresh window unless ``remaining`` is given), ``reset_in`` seconds."""
        with self._lock:
            rate = self.rate
            rate.refresh()
            if limit is not None:
                rate.limit = int(limit)
                rate.remaining = int(limit)
            if remaining is not None:
                rate.remaining = max(0, min(int(remaining), rate.limit))
            if reset_in is not None:
                rate.reset = int(time.time() + float(reset_in))
            if secondary is not None:
                rate.secondary = max(0, int(secondary))
            if retry_after is not None:
                rate.retry_after = max(0, int(retry_after))
            return {**rate.snapshot(), "secondary": rate.secondary, "retry_after": rate.retry_after}

    def register(self, router: Router) -> None:
        r = _REPO
        n = r"(?P<number>\d+)"
        routes: list[tuple[str, str, Callable[[_Ctx, Request], Response], bool]] = [
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

    # --- the shared request pipeline ------------------------------------------------------
    def _endpoint(self, fn: Callable[[_Ctx, Request], Response], free: bool) -> Callable[[Request], Response]:
        def handle(req: Request) -> Response:
            with self._lock:
                return self._serve(req, fn, free)

        return handle

    def _serve(self, req: Request, fn: Callable[[_Ctx, Request], Response], free: bool) -> Response:
        self._request_no += 1
        request_id = f"5A4D:{self._request_no:06X}"
        rate = self.rate
        rate.refresh()
        common = {
            "x-github-api-version-selected": API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": request_id,
        }
        token = _bearer(req.headers.get("authorization", ""))
        if token != self.token:
            message = "Requires authentication" if token is None else "Bad credentials"
            unauth = {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "59",
                "x-ratelimit-used": "1",
                "x-ratelimit-reset": str(rate.reset),
                "x-ratelimit-resource": "core",
            }
            return _finish(_error(401, message), {**common, **unauth})
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
            msg = (
                f"API rate limit exceeded for user ID {_user_id('sandbox')}. If you reach out to GitHub Support "
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
            resp = fn(_Ctx(self, req), req)
        except _BadRequest as exc:
            resp = _error(exc.status, exc.message)
        payload = resp.encoded()
        not_modified = resp.etag and resp.status == 200 and req.headers.get("if-none-match") == etag_of(payload)
        if not free and not not_modified:
            rate.remaining -= 1
        resp.body = payload
        return _finish(resp, {**common, **rate.headers()})

    def _sorted_items(self, key: tuple[Any, ...], make: Callable[[], list[Any]]) -> list[Any]:
        """Sorted views, cached until the data change (sort once, slice per request)."""
        if self._sorted_version != self.data.version:
            self._sorted.clear()
            self._sorted_version = self.data.version
        if key not in self._sorted:
            self._sorted[key] = make()
        return self._sorted[key]

    def _repo_of(self, req: Request) -> Repo:
        owner, name = unquote(req.params["owner"]).lower(), unquote(req.params["repo"]).lower()
        if owner != self.organization.lower():
            raise _BadRequest(404, "Not Found")
        if name == PRIVATE_REPO:
            raise _BadRequest(403, "Resource not accessible by personal access token")
        repo = self.data.repos.get(name)
        if repo is None:
            raise _BadRequest(404, "Not Found")
        return repo

    # --- endpoints ----------------------------------------------------------------------
    def _rate_limit(self, ctx: _Ctx, req: Request) -> Response:
        core = self.rate.snapshot()
        reset = self.rate.reset

        def other(limit: int) -> dict[str, int]:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": reset}

        resources = {
            "core": core,
            "search": other(30),
            "graphql": other(5000),
            "integration_manifest": other(5000),
            "source_import": other(100),
            "code_scanning_upload": other(1000),
            "actions_runner_registration": other(10000),
            "scim": other(15000),
            "dependency_snapshots": other(100),
            "code_search": other(10),
        }
        return Response(200, {"resources": resources, "rate": core})

    def _org(self, ctx: _Ctx, req: Request) -> Response:
        if unquote(req.params["org"]).lower() != self.organization.lower():
            raise _BadRequest(404, "Not Found")
        return Response(200, ctx.organization(), etag=True)

    def _org_repos(self, ctx: _Ctx, req: Request) -> Response:
        if unquote(req.params["org"]).lower() != self.organization.lower():
            raise _BadRequest(404, "Not Found")
        return self._repo_list(ctx, req)

    def _user_repos(self, ctx: _Ctx, req: Request) -> Response:
        user = unquote(req.params["user"]).lower()
        if user == self.organization.lower():
            return self._repo_list(ctx, req)
        if user not in USERS:
            raise _BadRequest(404, "Not Found")
        return ctx.page([], lambda x: x)

    def _repo_list(self, ctx: _Ctx, req: Request) -> Response:
        sort = req.arg("sort", "created")
        repos = list(self.data.repos.values())
        if sort == "full_name":
            repos.sort(key=lambda r: r.full_name)
            default_dir = "asc"
        else:
            repos.sort(key=lambda r: (r.created_at, r.id))
            default_dir = "desc"
        if req.arg("direction", default_dir) == "desc":
            repos.reverse()
        return ctx.page(repos, lambda r: ctx.repository(r))

    def _repo_get(self, ctx: _Ctx, req: Request) -> Response:
        return Response(200, ctx.repository(self._repo_of(req), full=True), etag=True)

    def _issues(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        sort = req.arg("sort", "created")
        field = "updated_at" if sort == "updated" else "created_at"
        items = self._sorted_items(
            ("issues", repo.name, field),
            lambda: sorted(repo.items.values(), key=lambda i: (getattr(i, field), i.number)),
        )
        state = req.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise _BadRequest(422, "Validation Failed")
        since = _time_arg(req, "since")
        labels = [x.strip() for x in (req.arg("labels") or "").split(",") if x.strip()]
        assignee, creator = req.arg("assignee"), req.arg("creator")
        out: list[Issue | PullRequest] = []
        for item in items:
            if state != "all" and item.state != state:
                continue
            if since is not None and item.updated_at < since:
                continue
            if labels and not all(lb in item.labels for lb in labels):
                continue
            if assignee is not None:
                who = item.assignees if isinstance(item, Issue) else []
                if (
                    (assignee == "none" and who)
                    or (assignee == "*" and not who)
                    or (assignee not in ("none", "*") and assignee not in who)
                ):
                    continue
            if creator is not None and item.author != creator:
                continue
            out.append(item)
        if req.arg("direction", "desc") == "desc":
            out.reverse()
        return ctx.page(out, lambda i: ctx.issue(repo, i))

    def _item(self, repo: Repo, req: Request) -> Issue | PullRequest:
        item = repo.items.get(int(req.params["number"]))
        if item is None:
            raise _BadRequest(404, "Not Found")
        return item

    def _issue(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.issue(repo, self._item(repo, req), single=True), etag=True)

    def _timeline(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        item = self._item(repo, req)
        return ctx.page(item.events, lambda e: ctx.event(repo, item, e))

    def _issue_events(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        item = self._item(repo, req)
        events = [e for e in item.events if e.kind != "cross-referenced"]  # a timeline-only event
        return ctx.page(events, lambda e: ctx.event(repo, item, e))

    def _repo_issue_events(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)

        def make() -> list[tuple[IssueEvent, Issue | PullRequest]]:
            pairs = [(e, i) for i in repo.items.values() for e in i.events if e.kind != "cross-referenced"]
            return sorted(pairs, key=lambda p: p[0].id, reverse=True)

        pairs = self._sorted_items(("repo_events", repo.name), make)
        return ctx.page(pairs, lambda p: ctx.event(repo, p[1], p[0], with_issue=True))

    def _pulls(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        sort = req.arg("sort", "created")
        field = "updated_at" if sort == "updated" else "created_at"
        pulls = self._sorted_items(
            ("pulls", repo.name, field),
            lambda: sorted(
                (i for i in repo.items.values() if isinstance(i, PullRequest)),
                key=lambda p: (getattr(p, field), p.number),
            ),
        )
        state = req.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise _BadRequest(422, "Validation Failed")
        base, head = req.arg("base"), req.arg("head")
        out = [
            p
            for p in pulls
            if (state == "all" or p.state == state)
            and (base is None or base == DEFAULT_BRANCH)
            and (head is None or head in (p.head_ref, f"{self.organization}:{p.head_ref}"))
        ]
        default_dir = "desc" if sort in ("created", None) else "asc"
        if req.arg("direction", default_dir) == "desc":
            out.reverse()
        return ctx.page(out, lambda p: ctx.pull(repo, p))

    def _pr(self, repo: Repo, req: Request) -> PullRequest:
        item = repo.items.get(int(req.params["number"]))
        if not isinstance(item, PullRequest):
            raise _BadRequest(404, "Not Found")
        return item

    def _pull(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.pull(repo, self._pr(repo, req), full=True), etag=True)

    def _pull_commits(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        pr = self._pr(repo, req)
        commits = [repo.commits[s] for s in pr.commits[:250]]  # GitHub lists at most 250
        return ctx.page(commits, lambda c: ctx.commit(repo, c))

    def _commits(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = req.arg("sha") or DEFAULT_BRANCH
        sha = repo.resolve(ref)
        if sha is None:
            raise _BadRequest(404, f"No commit found for SHA: {ref}")
        since, until = _time_arg(req, "since"), _time_arg(req, "until")
        cut, extra = repo.locate(sha)

        def by_date() -> list[GitCommit]:
            return sorted((repo.commits[s] for s in repo.delivered), key=lambda c: (c.at, c.pos or 0), reverse=True)

        newest_first = self._sorted_items(("commits", repo.name), by_date)
        picked = [c for c in newest_first if c.pos is not None and c.pos < cut]
        if extra:
            mine = {id(c) for c in picked}
            picked += [repo.commits[s] for s in extra if id(repo.commits[s]) not in mine]
            picked.sort(key=lambda c: c.at, reverse=True)
        picked = [c for c in picked if (since is None or c.at >= since) and (until is None or c.at <= until)]
        return ctx.page(picked, lambda c: ctx.commit(repo, c))

    def _commit(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = unquote(req.params["ref"])
        sha = repo.resolve(ref)
        if sha is None:
            raise _BadRequest(422, f"No commit found for SHA: {ref}")
        return Response(200, ctx.commit(repo, repo.commits[sha], detail=True), etag=True)

    def _compare(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        basehead = unquote(req.params["basehead"])
        if "..." not in basehead:
            raise _BadRequest(404, "Not Found")
        base_ref, head_ref = basehead.split("...", 1)
        base, head = repo.resolve(base_ref), repo.resolve(head_ref)
        if base is None or head is None:
            raise _BadRequest(404, "Not Found")
        ahead = sorted((repo.commits[s] for s in repo.ahead(head, base)), key=lambda c: (c.at, c.pos or 0))
        behind = len(repo.ahead(base, head))
        status = (
            "identical"
            if not ahead and not behind
            else "ahead"
            if not behind
            else "behind"
            if not ahead
            else "diverged"
        )
        paginated = req.arg("page") is not None or req.arg("per_page") is not None
        if paginated:
            per_page = _int_arg(req, "per_page", COMPARE_PAGE, 1, 1000)
            page = _int_arg(req, "page", 1, 1, 10**9)
            shown = ahead[(page - 1) * per_page : page * per_page]
            links = ctx.links(page, max(1, -(-len(ahead) // per_page)))
        else:
            shown, links = ahead[:COMPARE_PAGE], None
        body = ctx.comparison(
            repo,
            basehead,
            repo.commits[base],
            repo.commits[head],
            self._merge_base(repo, base, head, behind, len(ahead)),
            status,
            len(ahead),
            behind,
            shown,
        )
        return Response(200, body, {"Link": links} if links else {}, etag=True)

    @staticmethod
    def _merge_base(repo: Repo, base: str, head: str, behind: int, ahead: int) -> GitCommit:
        if behind == 0:
            return repo.commits[base]
        if ahead == 0:
            return repo.commits[head]

        def anchor(sha: str) -> int:
            c = repo.commits[sha]
            if c.main_index is not None:
                return c.main_index
            return c.pr.base_index if c.pr else 0

        return repo.commits[repo.main[min(anchor(base), anchor(head))]]

    def _deployments(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        sha, ref, task, env = req.arg("sha"), req.arg("ref"), req.arg("task"), req.arg("environment")
        out = [
            d
            for d in reversed(repo.deployments)
            if (sha is None or d.sha == sha)
            and (ref is None or ref in (DEFAULT_BRANCH, d.sha))
            and (task is None or task == "deploy")
            and (env is None or d.environment == env)
        ]
        return ctx.page(out, lambda d: ctx.deployment(repo, d))

    def _by_id(self, repo: Repo, kind: str, req: Request) -> Any:
        """Deployments, releases and runs by id (an index, so per-object calls stay O(1) at scale)."""
        index = self._sorted_items((kind, repo.name), lambda: [{x.id: x for x in getattr(repo, kind)}])[0]
        found = index.get(int(req.params["id"]))
        if found is None:
            raise _BadRequest(404, "Not Found")
        return found

    def _deployment_of(self, repo: Repo, req: Request) -> Deployment:
        return self._by_id(repo, "deployments", req)

    def _deployment(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.deployment(repo, self._deployment_of(repo, req)), etag=True)

    def _statuses(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        d = self._deployment_of(repo, req)
        newest_first = sorted(d.statuses, key=lambda s: s.id, reverse=True)
        return ctx.page(newest_first, lambda s: ctx.status(repo, d, s))

    def _releases(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        newest_first = sorted(repo.releases, key=lambda r: r.id, reverse=True)
        return ctx.page(newest_first, lambda r: ctx.release(repo, r))

    def _release_latest(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        published = [r for r in repo.releases if not r.draft and not r.prerelease]
        if not published:
            raise _BadRequest(404, "Not Found")
        return Response(200, ctx.release(repo, max(published, key=lambda r: r.id)), etag=True)

    def _release_by_tag(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        tag = unquote(req.params["tag"])
        for rel in repo.releases:
            if rel.tag == tag and not rel.draft:
                return Response(200, ctx.release(repo, rel), etag=True)
        raise _BadRequest(404, "Not Found")

    def _release_by_id(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.release(repo, self._by_id(repo, "releases", req)), etag=True)

    def _git_ref(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = unquote(req.params["ref"])
        kind, name = ref.split("/", 1)
        sha = None
        if kind == "heads" and name == DEFAULT_BRANCH:
            sha = repo.main[-1]
        elif kind == "tags":
            sha = next((r.sha for r in repo.releases if r.tag == name and not r.draft), None)
        if sha is None:
            raise _BadRequest(404, "Not Found")
        return Response(200, ctx.git_ref(repo, ref, sha), etag=True)

    def _workflows(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return ctx.page(
            repo.workflows,
            lambda w: ctx.workflow(repo, w),
            wrap=lambda items, total: {"total_count": total, "workflows": items},
        )

    def _workflow_of(self, repo: Repo, key: str) -> Workflow:
        key = unquote(key)
        for wf in repo.workflows:
            if key == str(wf.id) or key == wf.path.rsplit("/", 1)[-1]:
                return wf
        raise _BadRequest(404, "Not Found")

    def _workflow(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.workflow(repo, self._workflow_of(repo, req.params["wf"])), etag=True)

    def _runs(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        wf = self._workflow_of(repo, req.params["wf"]) if "wf" in req.params else None
        branch, event, status = req.arg("branch"), req.arg("event"), req.arg("status")
        head_sha, actor, created = req.arg("head_sha"), req.arg("actor"), req.arg("created")
        try:
            in_window = _created_filter(created) if created else None
        except ValueError:
            raise _BadRequest(422, "Invalid value for `created`") from None
        out = []
        for run in reversed(repo.runs):  # newest first
            if wf is not None and run.workflow is not wf:
                continue
            if branch is not None and run.head_branch != branch:
                continue
            if event is not None and run.event != event:
                continue
            if status is not None:
                if status in _CONCLUSIONS and run.conclusion != status:
                    continue
                if status not in _CONCLUSIONS and run.status != status:
                    continue
            if head_sha is not None and run.head_sha != head_sha:
                continue
            if actor is not None and run.actor != actor:
                continue
            if in_window is not None and not in_window(run.created_at):
                continue
            out.append(run)
        total = len(out)
        if any(x is not None for x in (branch, event, status, head_sha, actor, created, req.arg("check_suite_id"))):
            out = out[:RUNS_SEARCH_CAP]  # GitHub: a filtered search yields at most 1,000 results
        return ctx.page(
            out, lambda r: ctx.run(repo, r), wrap=lambda items, _shown: {"total_count": total, "workflow_runs": items}
        )

    def _run(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.run(repo, self._by_id(repo, "runs", req)), etag=True)

    def _run_jobs(self, ctx: _Ctx, req: Request) -> Response:
        repo = self._repo_of(req)
        run = self._by_id(repo, "runs", req)
        return ctx.page(
            run.jobs(), lambda j: ctx.job(repo, run, j), wrap=lambda items, total: {"total_count": total, "jobs": items}
        )


class _Ctx:
    """Renders one request's objects with absolute URLs on the request's own base and prefix."""

    def __init__(self, world: GitHubRoutes, req: Request) -> None:
        self.world = world
        self.data = world.data
        self.org = world.organization
        self.req = req
        self.web = req.base_url
        self.host = req.base_url.split("://", 1)[-1]
        self.api = req.base_url + (req.params.get("prefix") or "")
        self._users: dict[str, dict[str, Any]] = {}
        self._repos: dict[tuple[str, bool], dict[str, Any]] = {}

    # --- pagination ---------------------------------------------------------------------
    def page(
        self, items: Sequence[Any], render: Callable[[Any], Any], wrap: Callable[[list[Any], int], Any] | None = None
    ) -> Response:
        per_page = _int_arg(self.req, "per_page", 30, 1, 100)
        page = _int_arg(self.req, "page", 1, 1, 10**9)
        chunk = [render(x) for x in items[(page - 1) * per_page : page * per_page]]
        body = wrap(chunk, len(items)) if wrap else chunk
        links = self.links(page, max(1, -(-len(items) // per_page)))
        return Response(200, body, {"Link": links} if links else {}, etag=True)

    def links(self, page: int, last: int) -> str | None:
        """RFC 5988 ``Link`` in GitHub's order (prev, next, last, first), on the request's own URL."""
        if page == 1 and last == 1:
            return None

        def url(n: int) -> str:
            query = [(k, v) for k, vs in self.req.query.items() if k.lower() != "page" for v in vs]
            query.append(("page", str(n)))
            return f"<{self.web}{self.req.path}?{urlencode(query)}>"

        parts = []
        if page > 1:
            parts.append(f'{url(min(page - 1, last))}; rel="prev"')
        if page < last:
            parts += [f'{url(page + 1)}; rel="next"', f'{url(last)}; rel="last"']
        if page > 1:
            parts.append(f'{url(1)}; rel="first"')
        return ", ".join(parts)

    # --- objects ------------------------------------------------------------------------
    def user(self, login: str) -> dict[str, Any]:
        if login not in self._users:
            uid = _user_id(login)
            kind = "Bot" if login.endswith("[bot]") else "Organization" if login == self.org else "User"
            u = f"{self.api}/users/{quote(login)}"
            self._users[login] = {
                "login": login,
                "id": uid,
                "node_id": f"{'O' if kind == 'Organization' else 'U'}_kgDO{uid:08d}",
                "avatar_url": f"{self.web}/avatars/u/{uid}?v=4",
                "gravatar_id": "",
                "url": u,
                "html_url": f"{self.web}/{quote(login)}",
                "followers_url": f"{u}/followers",
                "following_url": f"{u}/following{{/other_user}}",
                "gists_url": f"{u}/gists{{/gist_id}}",
                "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{u}/subscriptions",
                "organizations_url": f"{u}/orgs",
                "repos_url": f"{u}/repos",
                "events_url": f"{u}/events{{/privacy}}",
                "received_events_url": f"{u}/received_events",
                "type": kind,
                "user_view_type": "public",
                "site_admin": False,
            }
        return self._users[login]

    def organization(self) -> dict[str, Any]:
        o = f"{self.api}/orgs/{self.org}"
        count = len(self.data.repos)
        return {
            "login": self.org,
            "id": _user_id(self.org),
            "node_id": f"O_kgDO{_user_id(self.org):08d}",
            "url": o,
            "repos_url": f"{o}/repos",
            "events_url": f"{o}/events",
            "hooks_url": f"{o}/hooks",
            "issues_url": f"{o}/issues",
            "members_url": f"{o}/members{{/member}}",
            "public_members_url": f"{o}/public_members{{/member}}",
            "avatar_url": f"{self.web}/avatars/u/{_user_id(self.org)}?v=4",
            "description": "Sandbox organisation",
            "name": self.org.title(),
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "twitter_username": None,
            "is_verified": False,
            "has_organization_projects": True,
            "has_repository_projects": True,
            "public_repos": count,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "html_url": f"{self.web}/{self.org}",
            "created_at": iso(min(r.created_at for r in self.data.repos.values()) - timedelta(days=100)),
            "updated_at": iso(self.data.now),
            "archived_at": None,
            "type": "Organization",
        }

    def repository(self, repo: Repo, full: bool = False) -> dict[str, Any]:
        key = (repo.name, full)
        if key in self._repos:
            return self._repos[key]
        b = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}"
        open_count = self.world._sorted_items(
            ("open_count", repo.name), lambda: [sum(1 for i in repo.items.values() if i.state == "open")]
        )[0]
        pushed = repo.main_times[-1]
        d: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_kgDO{repo.id:08d}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": False,
            "owner": self.user(self.org),
            "html_url": html,
            "description": f"The {repo.name} service",
            "fork": False,
            "url": b,
            "forks_url": f"{b}/forks",
            "keys_url": f"{b}/keys{{/key_id}}",
            "collaborators_url": f"{b}/collaborators{{/collaborator}}",
            "teams_url": f"{b}/teams",
            "hooks_url": f"{b}/hooks",
            "issue_events_url": f"{b}/issues/events{{/number}}",
            "events_url": f"{b}/events",
            "assignees_url": f"{b}/assignees{{/user}}",
            "branches_url": f"{b}/branches{{/branch}}",
            "tags_url": f"{b}/tags",
            "blobs_url": f"{b}/git/blobs{{/sha}}",
            "git_tags_url": f"{b}/git/tags{{/sha}}",
            "git_refs_url": f"{b}/git/refs{{/sha}}",
            "trees_url": f"{b}/git/trees{{/sha}}",
            "statuses_url": f"{b}/statuses/{{sha}}",
            "languages_url": f"{b}/languages",
            "stargazers_url": f"{b}/stargazers",
            "contributors_url": f"{b}/contributors",
            "subscribers_url": f"{b}/subscribers",
            "subscription_url": f"{b}/subscription",
            "commits_url": f"{b}/commits{{/sha}}",
            "git_commits_url": f"{b}/git/commits{{/sha}}",
            "comments_url": f"{b}/comments{{/number}}",
            "issue_comment_url": f"{b}/issues/comments{{/number}}",
            "contents_url": f"{b}/contents/{{+path}}",
            "compare_url": f"{b}/compare/{{base}}...{{head}}",
            "merges_url": f"{b}/merges",
            "archive_url": f"{b}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{b}/downloads",
            "issues_url": f"{b}/issues{{/number}}",
            "pulls_url": f"{b}/pulls{{/number}}",
            "milestones_url": f"{b}/milestones{{/number}}",
            "notifications_url": f"{b}/notifications{{?since,all,participating}}",
            "labels_url": f"{b}/labels{{/name}}",
            "releases_url": f"{b}/releases{{/id}}",
            "deployments_url": f"{b}/deployments",
            "created_at": iso(repo.created_at),
            "updated_at": iso(pushed),
            "pushed_at": iso(pushed),
            "git_url": f"git://{self.host}/{repo.full_name}.git",
            "ssh_url": f"git@{self.host}:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": 100 + len(repo.commits) // 10,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": _LANGUAGE.get(repo.name),
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": DEFAULT_BRANCH,
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        }
        if full:
            d.update(
                {
                    "allow_squash_merge": True,
                    "allow_merge_commit": True,
                    "allow_rebase_merge": True,
                    "allow_auto_merge": False,
                    "delete_branch_on_merge": True,
                    "allow_update_branch": False,
                    "use_squash_pr_title_as_default": False,
                    "squash_merge_commit_message": "COMMIT_MESSAGES",
                    "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
                    "merge_commit_message": "PR_TITLE",
                    "merge_commit_title": "MERGE_MESSAGE",
                    "temp_clone_token": "",
                    "organization": self.user(self.org),
                    "network_count": 0,
                    "subscribers_count": 0,
                }
            )
        self._repos[key] = d
        return d

    def label(self, repo: Repo, name: str) -> dict[str, Any]:
        lid = 4_000_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(name))
        color = LABEL_COLORS.get(name, "0e8a16" if name.startswith("team/") else "ededed")
        return {
            "id": lid,
            "node_id": f"LA_kwDO{lid}",
            "url": f"{self.api}/repos/{repo.full_name}/labels/{quote(name)}",
            "name": name,
            "color": color,
            "default": name == "bug",
            "description": f"Team {name[5:]}" if name.startswith("team/") else None,
        }

    def issue(self, repo: Repo, item: Issue | PullRequest, *, single: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        n = item.number
        is_pr = isinstance(item, PullRequest)
        html = f"{self.web}/{repo.full_name}/{'pull' if is_pr else 'issues'}/{n}"
        assignees = item.assignees if isinstance(item, Issue) else []
        issue_id = item.issue_id if isinstance(item, PullRequest) else item.id
        d: dict[str, Any] = {
            "url": f"{b}/issues/{n}",
            "repository_url": b,
            "labels_url": f"{b}/issues/{n}/labels{{/name}}",
            "comments_url": f"{b}/issues/{n}/comments",
            "events_url": f"{b}/issues/{n}/events",
            "html_url": html,
            "id": issue_id,
            "node_id": f"{'PR' if is_pr else 'I'}_kwDO{issue_id}",
            "number": n,
            "title": item.title,
            "user": self.user(item.author),
            "labels": [self.label(repo, lb) for lb in item.labels],
            "state": item.state,
            "locked": False,
            "assignee": self.user(assignees[0]) if assignees else None,
            "assignees": [self.user(a) for a in assignees],
            "milestone": None,
            "comments": 0,
            "created_at": iso(item.created_at),
            "updated_at": iso(item.updated_at),
            "closed_at": iso(item.closed_at),
            "author_association": "MEMBER",
            "active_lock_reason": None,
            "body": item.body,
            "reactions": {
                "url": f"{b}/issues/{n}/reactions",
                "total_count": 0,
                "+1": 0,
                "-1": 0,
                "laugh": 0,
                "hooray": 0,
                "confused": 0,
                "heart": 0,
                "rocket": 0,
                "eyes": 0,
            },
            "timeline_url": f"{b}/issues/{n}/timeline",
            "performed_via_github_app": None,
            "state_reason": item.state_reason if isinstance(item, Issue) else None,
        }
        if isinstance(item, PullRequest):
            d["draft"] = False
            d["pull_request"] = {
                "url": f"{b}/pulls/{n}",
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": iso(item.merged_at),
            }
        else:
            d["type"] = self.issue_type(item.native_type) if item.native_type else None
            if item.legacy_pr_stub:  # as early GitHub issues still carry it
                d["pull_request"] = {"html_url": None, "diff_url": None, "patch_url": None}
        if single:
            closer = item.closed_by if isinstance(item, Issue) else item.merged_by
            d["closed_by"] = self.user(closer) if closer and item.closed_at else None
        if isinstance(item, Issue) and item.malformed:
            _break(d, item.malformed, item.created_at, "closed_at")
        return d

    def pull(self, repo: Repo, pr: PullRequest, *, full: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        n = pr.number
        html = f"{self.web}/{repo.full_name}/pull/{n}"
        links = {
            "self": f"{b}/pulls/{n}",
            "html": html,
            "issue": f"{b}/issues/{n}",
            "comments": f"{b}/issues/{n}/comments",
            "review_comments": f"{b}/pulls/{n}/comments",
            "review_comment": f"{b}/pulls/comments{{/number}}",
            "commits": f"{b}/pulls/{n}/commits",
            "statuses": f"{b}/statuses/{pr.head_sha}",
        }
        owner = self.user(self.org)
        repo_json = self.repository(repo)
        d: dict[str, Any] = {
            "url": links["self"],
            "id": pr.id,
            "node_id": f"PR_kwDO{pr.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": n,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user(pr.author),
            "body": pr.body,
            "labels": [self.label(repo, lb) for lb in pr.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at),
            "merged_at": iso(pr.merged_at),
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{self.org}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": owner,
                "repo": repo_json,
            },
            "base": {
                "label": f"{self.org}:{DEFAULT_BRANCH}",
                "ref": DEFAULT_BRANCH,
                "sha": pr.base_sha,
                "user": owner,
                "repo": repo_json,
            },
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": "MEMBER",
            "auto_merge": None,
            "draft": False,
        }
        if full:
            size = len(pr.commits)
            d.update(
                {
                    "merged": pr.merged_at is not None,
                    "mergeable": None if pr.closed_at else True,
                    "rebaseable": None if pr.closed_at else True,
                    "mergeable_state": "unknown" if pr.closed_at else "clean",
                    "merged_by": self.user(pr.merged_by) if pr.merged_by and pr.merged_at else None,
                    "comments": 0,
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": size,
                    "additions": 12 * size,
                    "deletions": 3 * size,
                    "changed_files": size,
                }
            )
        if pr.malformed:
            _break(d, pr.malformed, pr.created_at, "merged_at")
        return d

    def commit(self, repo: Repo, c: GitCommit, *, detail: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}/commit"
        merge = len(c.parents) > 1
        author = {"name": c.author.title(), "email": f"{c.author}@{self.org}.example", "date": iso(c.authored)}
        committer = (
            {"name": "GitHub", "email": "noreply@github.com", "date": iso(c.at)}
            if merge
            else {**author, "date": iso(c.at)}
        )
        tree = f"{int(c.sha, 16) ^ 0x5A5A:040x}"[-40:]
        d: dict[str, Any] = {
            "sha": c.sha,
            "node_id": f"C_kwDO{c.sha[:20]}",
            "commit": {
                "author": author,
                "committer": committer,
                "message": c.message,
                "tree": {"sha": tree, "url": f"{b}/git/trees/{tree}"},
                "url": f"{b}/git/commits/{c.sha}",
                "comment_count": 0,
                "verification": {
                    "verified": merge,
                    "reason": "valid" if merge else "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "url": f"{b}/commits/{c.sha}",
            "html_url": f"{html}/{c.sha}",
            "comments_url": f"{b}/commits/{c.sha}/comments",
            "author": self.user(c.author),
            "committer": self.user("web-flow" if merge else c.author),
            "parents": [{"sha": p, "url": f"{b}/commits/{p}", "html_url": f"{html}/{p}"} for p in c.parents],
        }
        if detail:
            d["stats"] = {"total": 15, "additions": 12, "deletions": 3}
            web = f"{self.web}/{repo.full_name}"
            d["files"] = [
                {
                    "sha": tree,
                    "filename": "src/app.txt",
                    "status": "modified",
                    "additions": 12,
                    "deletions": 3,
                    "changes": 15,
                    "blob_url": f"{web}/blob/{c.sha}/src/app.txt",
                    "raw_url": f"{web}/raw/{c.sha}/src/app.txt",
                    "contents_url": f"{b}/contents/src/app.txt?ref={c.sha}",
                    "patch": "@@ -1 +1 @@",
                }
            ]
        return d

    def comparison(
        self,
        repo: Repo,
        basehead: str,
        base: GitCommit,
        head: GitCommit,
        merge_base: GitCommit,
        status: str,
        ahead: int,
        behind: int,
        commits: list[GitCommit],
    ) -> dict[str, Any]:
        html = f"{self.web}/{repo.full_name}/compare/{basehead}"
        return {
            "url": f"{self.api}/repos/{repo.full_name}/compare/{basehead}",
            "html_url": html,
            "permalink_url": (
                f"{self.web}/{repo.full_name}/compare/{self.org}:{base.sha[:7]}...{self.org}:{head.sha[:7]}"
            ),
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "base_commit": self.commit(repo, base),
            "merge_base_commit": self.commit(repo, merge_base),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": [self.commit(repo, c) for c in commits],
            "files": [],
        }

    def event(
        self, repo: Repo, item: Issue | PullRequest, ev: IssueEvent, *, with_issue: bool = False
    ) -> dict[str, Any]:
        if ev.kind == "cross-referenced":
            pr = ev.source
            assert pr is not None
            src = self.data.repos[pr.repo]
            return {
                "actor": self.user(ev.actor),
                "created_at": iso(ev.at),
                "updated_at": iso(ev.at),
                "source": {"type": "issue", "issue": {**self.issue(src, pr), "repository": self.repository(src)}},
                "event": "cross-referenced",
            }
        b = f"{self.api}/repos/{repo.full_name}"
        d: dict[str, Any] = {
            "id": ev.id,
            "node_id": f"{_EVENT_NODE.get(ev.kind, 'IE')}_lADO{ev.id}",
            "url": f"{b}/issues/events/{ev.id}",
            "actor": self.user(ev.actor),
            "event": ev.kind,
            "commit_id": None,
            "commit_url": None,
            "created_at": iso(ev.at),
            "performed_via_github_app": None,
        }
        commit = ev.commit_id or (ev.source.merge_commit_sha if ev.kind == "closed" and ev.source else None)
        if commit:
            where = ev.source.repo if ev.source else repo.name
            d["commit_id"] = commit
            d["commit_url"] = f"{self.api}/repos/{self.org}/{where}/commits/{commit}"
        if ev.kind in ("labeled", "unlabeled"):
            d["label"] = {"name": ev.label, "color": self.label(repo, ev.label or "")["color"]}
        elif ev.kind in ("assigned", "unassigned"):
            d["assignee"] = self.user(ev.assignee or "")
            d["assigner"] = self.user(ev.actor)
        elif ev.kind == "closed":
            d["state_reason"] = ev.state_reason
        elif ev.kind == "reopened":
            d["state_reason"] = "reopened"
        if with_issue:
            d["issue"] = self.issue(repo, item)
        return d

    def deployment(self, repo: Repo, d: Deployment) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "url": f"{b}/deployments/{d.id}",
            "id": d.id,
            "node_id": f"DE_kwDO{d.id}",
            "task": "deploy",
            "original_environment": d.environment,
            "environment": d.environment,
            "description": f"Deploy {d.sha[:7]} to {d.environment}",
            "created_at": iso(d.created_at),
            "updated_at": iso(d.statuses[-1].at if d.statuses else d.created_at),
            "statuses_url": f"{b}/deployments/{d.id}/statuses",
            "repository_url": b,
            "creator": self.user(BOT),
            "sha": d.sha,
            "ref": DEFAULT_BRANCH,
            "payload": {},
            "transient_environment": False,
            "production_environment": d.environment == "production",
            "performed_via_github_app": None,
        }

    def status(self, repo: Repo, d: Deployment, s: Any) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        target = f"{self.web}/{repo.full_name}/actions/runs/{d.id}"
        return {
            "url": f"{b}/deployments/{d.id}/statuses/{s.id}",
            "id": s.id,
            "node_id": f"DES_kwDO{s.id}",
            "state": s.state,
            "creator": self.user(BOT),
            "description": "",
            "environment": d.environment,
            "target_url": target,
            "created_at": iso(s.at),
            "updated_at": iso(s.at),
            "deployment_url": f"{b}/deployments/{d.id}",
            "repository_url": b,
            "environment_url": f"https://{d.environment}.{repo.name}.{self.org}.example"
            if s.state == "success"
            else "",
            "log_url": target,
            "performed_via_github_app": None,
        }

    def release(self, repo: Repo, r: Release) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        tag_path = r.tag if not r.draft else f"untagged-{r.id:x}"
        return {
            "url": f"{b}/releases/{r.id}",
            "assets_url": f"{b}/releases/{r.id}/assets",
            "upload_url": f"{self.api}/repos/{repo.full_name}/releases/{r.id}/assets{{?name,label}}",
            "html_url": f"{self.web}/{repo.full_name}/releases/tag/{tag_path}",
            "id": r.id,
            "author": self.user(r.author),
            "node_id": f"RE_kwDO{r.id}",
            "tag_name": r.tag,
            "target_commitish": DEFAULT_BRANCH,
            "name": r.tag,
            "draft": r.draft,
            "immutable": False,
            "prerelease": r.prerelease,
            "created_at": iso(r.created_at),
            "updated_at": iso(r.published_at or r.created_at),
            "published_at": iso(r.published_at),
            "assets": [],
            "tarball_url": None if r.draft else f"{b}/tarball/{r.tag}",
            "zipball_url": None if r.draft else f"{b}/zipball/{r.tag}",
            "body": f"Release {r.tag}",
            "mentions_count": 0,
        }

    def git_ref(self, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "ref": f"refs/{ref}",
            "node_id": f"REF_kwDO{sha[:16]}",
            "url": f"{b}/git/refs/{ref}",
            "object": {"sha": sha, "type": "commit", "url": f"{b}/git/commits/{sha}"},
        }

    def workflow(self, repo: Repo, w: Workflow) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "id": w.id,
            "node_id": f"W_kwDO{w.id}",
            "name": w.name,
            "path": w.path,
            "state": "active",
            "created_at": iso(w.created_at),
            "updated_at": iso(w.created_at),
            "url": f"{b}/actions/workflows/{w.id}",
            "html_url": f"{self.web}/{repo.full_name}/blob/{DEFAULT_BRANCH}/{w.path}",
            "badge_url": f"{self.web}/{repo.full_name}/workflows/{quote(w.name)}/badge.svg",
        }

    def issue_type(self, name: str) -> dict[str, Any]:
        tid = 3_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(name))
        return {
            "id": tid,
            "node_id": f"IT_kwDO{tid}",
            "name": name,
            "description": f"A {name.lower()}",
            "color": {"Bug": "red", "Feature": "blue"}.get(name, "gray"),
            "created_at": "2024-01-10T09:00:00Z",
            "updated_at": "2024-01-10T09:00:00Z",
            "is_enabled": True,
        }

    def job(self, repo: Repo, r: Run, job: tuple[int, str, datetime, datetime | None]) -> dict[str, Any]:
        job_id, name, started, completed = job
        b = f"{self.api}/repos/{repo.full_name}"
        done = completed is not None
        conclusion = (r.conclusion if name == "deploy" else "success") if done else None
        step = {
            "name": f"Run {name}",
            "status": "completed" if done else "in_progress",
            "conclusion": conclusion,
            "number": 1,
            "started_at": iso(started),
            "completed_at": iso(completed),
        }
        return {
            "id": job_id,
            "run_id": r.id,
            "run_url": f"{b}/actions/runs/{r.id}",
            "run_attempt": 1,
            "node_id": f"CR_kwDO{job_id}",
            "head_sha": r.head_sha,
            "head_branch": r.head_branch,
            "url": f"{b}/actions/jobs/{job_id}",
            "html_url": f"{self.web}/{repo.full_name}/actions/runs/{r.id}/job/{job_id}",
            "status": "completed" if done else "in_progress",
            "conclusion": conclusion,
            "created_at": iso(r.created_at),
            "started_at": iso(started),
            "completed_at": iso(completed),
            "name": name,
            "steps": [step],
            "check_run_url": f"{b}/check-runs/{job_id}",
            "labels": ["ubuntu-latest"],
            "runner_id": 1,
            "runner_name": "GitHub Actions 1",
            "runner_group_id": 2,
            "runner_group_name": "GitHub Actions",
            "workflow_name": r.workflow.name,
        }

    def run(self, repo: Repo, r: Run) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        u = f"{b}/actions/runs/{r.id}"
        c = repo.commits[r.head_sha]
        person = {"name": c.author.title(), "email": f"{c.author}@{self.org}.example"}
        suite = r.id + 10_000_000_000
        return {
            "id": r.id,
            "name": r.workflow.name,
            "node_id": f"WFR_kwLO{r.id}",
            "head_branch": r.head_branch,
            "head_sha": r.head_sha,
            "path": r.workflow.path,
            "display_title": r.title,
            "run_number": r.run_number,
            "event": r.event,
            "status": r.status,
            "conclusion": r.conclusion,
            "workflow_id": r.workflow.id,
            "check_suite_id": suite,
            "check_suite_node_id": f"CS_kwDO{suite}",
            "url": u,
            "html_url": f"{self.web}/{repo.full_name}/actions/runs/{r.id}",
            "pull_requests": [],
            "created_at": iso(r.created_at),
            "updated_at": iso(r.updated_at),
            "actor": self.user(r.actor),
            "run_attempt": 1,
            "referenced_workflows": [],
            "run_started_at": iso(r.run_started_at),
            "triggering_actor": self.user(r.actor),
            "jobs_url": f"{u}/jobs",
            "logs_url": f"{u}/logs",
            "check_suite_url": f"{b}/check-suites/{suite}",
            "artifacts_url": f"{u}/artifacts",
            "cancel_url": f"{u}/cancel",
            "rerun_url": f"{u}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{b}/actions/workflows/{r.workflow.id}",
            "head_commit": {
                "id": c.sha,
                "tree_id": f"{int(c.sha, 16) ^ 0x5A5A:040x}"[-40:],
                "message": c.message,
                "timestamp": iso(c.at),
                "author": person,
                "committer": person,
            },
            "repository": self.repository(repo),
            "head_repository": self.repository(repo),
        }


_EVENT_NODE = {
    "labeled": "LE",
    "unlabeled": "UNLE",
    "assigned": "AE",
    "unassigned": "UAE",
    "closed": "CE",
    "reopened": "REE",
    "merged": "ME",
}


def _break(d: dict[str, Any], fault: str, created: datetime, end_field: str) -> None:
    """Make a record malformed the way real data goes wrong (see sandbox.github.data for the reasons)."""
    if fault == "missing_field":
        del d["created_at"]
    elif fault == "bad_timestamp":
        d["created_at"] = "not-a-timestamp"
    elif fault == "wrong_type":
        d["created_at"] = int(created.timestamp())
    elif fault == "end_before_start":
        d["state"] = "closed"
        d["closed_at"] = d[end_field] = iso(created - timedelta(days=3))
    elif fault == "unknown_state":
        d["state"] = "archived"
    elif fault == "too_large":
        d["body"] = _HUGE


_HUGE = "lorem ipsum " * (MAX_BODY // 12 + 400)


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


def _int_arg(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(req.arg(name) or default)
    except ValueError:
        value = default
    return max(lo, min(hi, value))


def _time_arg(req: Request, name: str) -> datetime | None:
    value = req.arg(name)
    if not value:
        return None
    try:
        return _parse_time(value)
    except ValueError:
        raise _BadRequest(422, f"Invalid value for `{name}`: {value!r} is not an ISO 8601 timestamp") from None


__all__ = ["GitHubRoutes", "RateBudget"]
