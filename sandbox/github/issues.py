"""Issues, pull requests and their events."""

from __future__ import annotations

from sandbox.github.common import BadRequest, GitHubHandlers, time_arg
from sandbox.github.data import DEFAULT_BRANCH, Issue, IssueEvent, PullRequest, Repo, ReviewComment
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response


class IssuesHandlers(GitHubHandlers):
    """Issues and pull requests, one or listed, their timelines and events, a pull request's commits."""

    def _issues(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        sort = req.arg("sort", "created")
        field = "updated_at" if sort == "updated" else "created_at"
        items = self._sorted_items(
            ("issues", repo.name, field),
            lambda: sorted(repo.items.values(), key=lambda i: (getattr(i, field), i.number)),
        )
        state = req.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise BadRequest(422, "Validation Failed")
        since = time_arg(req, "since")
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
            raise BadRequest(404, "Not Found")
        return item

    def _issue(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.issue(repo, self._item(repo, req), single=True), etag=True)

    def _timeline(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        item = self._item(repo, req)
        events = self.data.pr_timeline(item) if isinstance(item, PullRequest) else item.events
        return ctx.page(events, lambda e: ctx.event(repo, item, e))

    def _issue_events(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        item = self._item(repo, req)
        # cross-references, reviews and review comments are timeline-only
        events = [e for e in item.events if e.kind != "cross-referenced"]
        if isinstance(item, PullRequest):
            events = [
                e for e in self.data.pr_timeline(item) if isinstance(e, IssueEvent) and e.kind != "cross-referenced"
            ]
        return ctx.page(events, lambda e: ctx.event(repo, item, e))

    def _repo_issue_events(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)

        def make() -> list[tuple[IssueEvent, Issue | PullRequest]]:
            pairs = [(e, i) for i in repo.items.values() for e in i.events if e.kind != "cross-referenced"]
            return sorted(pairs, key=lambda p: p[0].id, reverse=True)

        pairs = self._sorted_items(("repo_events", repo.name), make)
        return ctx.page(pairs, lambda p: ctx.event(repo, p[1], p[0], with_issue=True))

    def _pulls(self, ctx: Shapes, req: Request) -> Response:
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
            raise BadRequest(422, "Validation Failed")
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
            raise BadRequest(404, "Not Found")
        return item

    def _pull(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.pull(repo, self._pr(repo, req), full=True), etag=True)

    def _pull_commits(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        pr = self._pr(repo, req)
        commits = [repo.commits[s] for s in pr.commits[:250]]  # GitHub lists at most 250
        return ctx.page(commits, lambda c: ctx.commit(repo, c))

    def _pull_reviews(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        pr = self._pr(repo, req)
        return ctx.page(self.data.reviews_of(pr), lambda r: ctx.review(repo, r))

    def _pull_comments(self, ctx: Shapes, req: Request) -> Response:
        """Review comments, oldest first (``sort=created``, ``direction=asc``: GitHub's defaults)."""
        repo = self._repo_of(req)
        pr = self._pr(repo, req)
        comments = sorted((ReviewComment(r) for r in self.data.reviews_of(pr) if r.commented), key=lambda c: c.at)
        if req.arg("direction", "asc") == "desc":
            comments.reverse()
        return ctx.page(comments, lambda c: ctx.review_comment(repo, c))
