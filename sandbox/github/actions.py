"""GitHub Actions: workflows, their runs and a run's jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import unquote

from sandbox.github.common import BadRequest, GitHubHandlers, parse_time
from sandbox.github.data import Repo, Workflow
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response

RUNS_SEARCH_CAP = 1000
_CONCLUSIONS = {"success", "failure", "cancelled", "skipped", "neutral", "timed_out", "action_required", "stale"}


def _created_filter(expr: str) -> Callable[[datetime], bool]:
    """GitHub search date syntax: ``>=D``, ``<=D``, ``>D``, ``<D``, ``A..B`` (``*`` open), or ``D``."""
    expr = expr.strip()

    def bound(text: str, end: bool) -> datetime:
        dt = parse_time(text)
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


class ActionsHandlers(GitHubHandlers):
    """Workflows, workflow runs (filtered like GitHub's search) and a run's jobs."""

    def _workflows(self, ctx: Shapes, req: Request) -> Response:
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
        raise BadRequest(404, "Not Found")

    def _workflow(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.workflow(repo, self._workflow_of(repo, req.params["wf"])), etag=True)

    def _runs(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        wf = self._workflow_of(repo, req.params["wf"]) if "wf" in req.params else None
        branch, event, status = req.arg("branch"), req.arg("event"), req.arg("status")
        head_sha, actor, created = req.arg("head_sha"), req.arg("actor"), req.arg("created")
        try:
            in_window = _created_filter(created) if created else None
        except ValueError:
            raise BadRequest(422, "Invalid value for `created`") from None
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

    def _run(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        return Response(200, ctx.run(repo, self._by_id(repo, "runs", req)), etag=True)

    def _run_jobs(self, ctx: Shapes, req: Request) -> Response:
        repo = self._repo_of(req)
        run = self._by_id(repo, "runs", req)
        return ctx.page(
            run.jobs(), lambda j: ctx.job(repo, run, j), wrap=lambda items, total: {"total_count": total, "jobs": items}
        )
