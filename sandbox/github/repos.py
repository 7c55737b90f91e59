"""The organisation and its repositories."""

from __future__ import annotations

from urllib.parse import unquote

from sandbox.github.common import BadRequest, GitHubHandlers
from sandbox.github.data import USERS
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response


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

    def _repo_get(self, ctx: Shapes, req: Request) -> Response:
        return Response(200, ctx.repository(self._repo_of(req), full=True), etag=True)
