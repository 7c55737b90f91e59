"""The organisation and its repositories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sandbox.github.common import BadRequest, GitHubHandlers
from sandbox.github.data import USERS, Repo
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response

_NEVER = datetime.min.replace(tzinfo=UTC)
_SORT_KEYS: dict[str, Callable[[Repo], Any]] = {
    "created": lambda r: (r.created_at, r.id),
    "updated": lambda r: (r.updated_at, r.id),
    "pushed": lambda r: (r.pushed_at or _NEVER, r.id),
    "full_name": lambda r: r.full_name.lower(),
}


class ReposHandlers(GitHubHandlers):
    """``/orgs/{org}``, the organisation's and a user's repository lists, ``/repos/{o}/{r}``."""

    def _org(self, ctx: Shapes, req: Request) -> Response:
        if unquote(req.params["org"]).lower() != self.organization.lower():
            raise BadRequest(404, "Not Found")
        return Response(200, ctx.organization(), etag=True)

    def _org_repos(self, ctx: Shapes, req: Request) -> Response:
        if unquote(req.params["org"]).lower() != self.organization.lower():
            raise BadRequest(404, "Not Found")
        return self._repo_list(ctx, req)

    def _user_repos(self, ctx: Shapes, req: Request) -> Response:
        user = unquote(req.params["user"]).lower()
        if user == self.organization.lower():
            return self._repo_list(ctx, req)
        if user not in USERS:
            raise BadRequest(404, "Not Found")
        return ctx.page([], lambda x: x)

    def _repo_list(self, ctx: Shapes, req: Request) -> Response:
        """``sort``: created (default), updated, pushed, full_name; ``direction`` asc for full_name,
        else desc by default. Never-pushed repositories sort as the oldest pushes."""
        sort = req.arg("sort", "created")
        direction = req.arg("direction", "asc" if sort == "full_name" else "desc")
        if sort not in _SORT_KEYS or direction not in ("asc", "desc"):
            raise BadRequest(422, f"Invalid value for sort or direction: {sort!r}, {direction!r}")
        repos = self._sorted_items(
            ("repo_list", sort, direction),
            lambda: sorted(self.data.repos.values(), key=_SORT_KEYS[sort], reverse=direction == "desc"),
        )
        return ctx.page(repos, lambda r: ctx.repository(r))

    def _repo_get(self, ctx: Shapes, req: Request) -> Response:
        return Response(200, ctx.repository(self._repo_of(req), full=True), etag=True)
