"""Commits, comparisons and git refs."""

from __future__ import annotations

from urllib.parse import unquote

from sandbox.github.common import BadRequest, GitHubHandlers, int_arg, time_arg
from sandbox.github.data import DEFAULT_BRANCH, GitCommit, Repo
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response

COMPARE_PAGE = 250


class GitHandlers(GitHubHandlers):
    """Commits (one or listed), ``compare/{base}...{head}`` and ``git/ref(s)``."""

    def _commits(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = req.arg("sha") or DEFAULT_BRANCH
        sha = repo.resolve(ref)
        if sha is None:
            raise BadRequest(404, f"No commit found for SHA: {ref}")
        since, until = time_arg(req, "since"), time_arg(req, "until")
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

    def _commit(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = unquote(req.params["ref"])
        sha = repo.resolve(ref)
        if sha is None:
            raise BadRequest(422, f"No commit found for SHA: {ref}")
        return Response(200, ctx.commit(repo, repo.commits[sha], detail=True), etag=True)

    def _compare(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        basehead = unquote(req.params["basehead"])
        if "..." not in basehead:
            raise BadRequest(404, "Not Found")
        base_ref, head_ref = basehead.split("...", 1)
        base, head = repo.resolve(base_ref), repo.resolve(head_ref)
        if base is None or head is None:
            raise BadRequest(404, "Not Found")
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
            per_page = int_arg(req, "per_page", COMPARE_PAGE, 1, 1000)
            page = int_arg(req, "page", 1, 1, 10**9)
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

    def _git_ref(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        ref = unquote(req.params["ref"])
        kind, name = ref.split("/", 1)
        sha = None
        if kind == "heads" and name == DEFAULT_BRANCH:
            sha = repo.main[-1]
        elif kind == "tags":
            sha = next((r.sha for r in repo.releases if r.tag == name and not r.draft), None)
        if sha is None:
            raise BadRequest(404, "Not Found")
        return Response(200, ctx.git_ref(repo, ref, sha), etag=True)
