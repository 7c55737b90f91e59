"""Deployments (with their statuses) and releases."""

from __future__ import annotations

from urllib.parse import unquote

from sandbox.github.common import BadRequest, GitHubHandlers
from sandbox.github.data import DEFAULT_BRANCH, Deployment, Repo
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response


class DeliveriesHandlers(GitHubHandlers):
    """The Deployments API with statuses, and releases (list, latest, by tag, by id)."""

    def _deployments(self, ctx: Shapes, req: Request) -> Response:
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

    def _deployment_of(self, repo: Repo, req: Request) -> Deployment:
        return self._by_id(repo, "deployments", req)

    def _deployment(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.deployment(repo, self._deployment_of(repo, req)), etag=True)

    def _statuses(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        d = self._deployment_of(repo, req)
        newest_first = sorted(d.statuses, key=lambda s: s.id, reverse=True)
        return ctx.page(newest_first, lambda s: ctx.status(repo, d, s))

    def _releases(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        newest_first = sorted(repo.releases, key=lambda r: r.id, reverse=True)
        return ctx.page(newest_first, lambda r: ctx.release(repo, r))

    def _release_latest(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        published = [r for r in repo.releases if not r.draft and not r.prerelease]
        if not published:
            raise BadRequest(404, "Not Found")
        return Response(200, ctx.release(repo, max(published, key=lambda r: r.id)), etag=True)

    def _release_by_tag(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        tag = unquote(req.params["tag"])
        for rel in repo.releases:
            if rel.tag == tag and not rel.draft:
                return Response(200, ctx.release(repo, rel), etag=True)
        raise BadRequest(404, "Not Found")

    def _release_by_id(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.release(repo, self._by_id(repo, "releases", req)), etag=True)
