"""Azure Pipelines handlers: build definitions, builds, their changes and work items."""

from __future__ import annotations

import bisect
import re
from typing import Any

from sandbox.azure.common import ApiError, AzureHandlers, Ctx, csv_arg, int_arg, parse_time
from sandbox.azure.data import Build, Commit, Pipeline, iso
from sandbox.server import Response


class PipelinesHandlers(AzureHandlers):
    """Azure Pipelines: definitions and builds, and the commits and work items of a build."""

    _build_orders: dict[tuple[str, str], tuple[list[int], list[Build]]]

    # -- pipelines ------------------------------------------------------------------------------

    def _index_builds(self) -> None:
        """Per project and sort key, builds in key order: list queries bisect, never sort."""
        orders: dict[tuple[str, str], tuple[list[int], list[Build]]] = {}
        for project in self.data.projects:
            builds = [b for b in self.data.builds if b.pipeline.project is project]
            for key in ("queue", "start", "finish"):
                chosen = [b for b in builds if key != "finish" or b.finished is not None]
                chosen.sort(key=lambda b, k=key: (_build_time(b, k), b.id))
                orders[(project.name, key)] = ([_build_time(b, key) for b in chosen], chosen)
        self._build_orders = orders

    def _definition_ref(self, ctx: Ctx, pipeline: Pipeline) -> dict[str, Any]:
        return {
            "drafts": [],
            "id": pipeline.id,
            "name": pipeline.name,
            "url": f"{ctx.org_url}/{pipeline.project.id}/_apis/build/Definitions/{pipeline.id}?revision=3",
            "uri": f"vstfs:///Build/Definition/{pipeline.id}",
            "path": "\\",
            "type": "build",
            "queueStatus": "enabled",
            "revision": 3,
            "project": self._project_ref(pipeline.project),
        }

    def _build_json(self, ctx: Ctx, b: Build) -> dict[str, Any]:
        p = b.pipeline
        url = f"{ctx.org_url}/{p.project.id}/_apis/build/Builds/{b.id}"
        person = self._identity(ctx, self.data.people[b.requested_for])
        body: dict[str, Any] = {
            "_links": {
                "self": {"href": url},
                "web": {"href": f"{ctx.org_url}/{p.project.id}/_build/results?buildId={b.id}"},
                "sourceVersionDisplayUri": {"href": f"{url}/sources"},
                "timeline": {"href": f"{url}/Timeline"},
            },
            "properties": {},
            "tags": [],
            "validationResults": [],
            "plans": [{"planId": b.plan_id}],
            "triggerInfo": {
                "ci.sourceBranch": "refs/heads/main",
                "ci.sourceSha": b.sha,
                "ci.message": p.repo.commits[b.commit].message,
                "ci.triggerRepository": p.repo.id,
            },
            "id": b.id,
            "buildNumber": b.number,
            "status": b.status,
            "queueTime": iso(b.queued),
            "startTime": iso(b.started),
            "url": url,
            "definition": self._definition_ref(ctx, p),
            "buildNumberRevision": 1,
            "project": self._project_ref(p.project),
            "uri": f"vstfs:///Build/Build/{b.id}",
            "sourceBranch": "refs/heads/main",
            "sourceVersion": b.sha,
            "queue": {
                "id": 9,
                "name": "Azure Pipelines",
                "pool": {"id": 9, "name": "Azure Pipelines", "isHosted": True},
            },
            "priority": "normal",
            "reason": b.reason,
            "requestedFor": person,
            "requestedBy": person,
            "lastChangedDate": iso(b.finished if b.finished is not None else b.started),
            "lastChangedBy": person,
            "orchestrationPlan": {"planId": b.plan_id},
            "logs": {"id": 0, "type": "Container", "url": f"{url}/logs"},
            "repository": {
                "id": p.repo.id,
                "type": "TfsGit",
                "name": p.repo.name,
                "url": f"{ctx.org_url}/{p.project.id}/_git/{p.repo.name}",
                "clean": None,
                "checkoutSubmodules": False,
            },
            "retainedByRelease": False,
            "triggeredByBuild": None,
            "appendCommitMessageToRunName": True,
        }
        if b.finished is not None:
            body["finishTime"] = iso(b.finished)
            body["result"] = b.result
        return body

    def _find_build(self, ctx: Ctx, key: str | None, what: str = "buildId") -> Build:
        build_id = int_arg(key, what)
        build = self.data.build(build_id) if build_id is not None else None
        if build is None or build.pipeline.project is not ctx.project:
            raise ApiError(404, f"The requested build {build_id} could not be found.", "BuildNotFoundException")
        return build

    def build_definitions(self, ctx: Ctx) -> Response:
        pipelines = [p for p in self.data.pipelines if p.project is ctx.project]
        wanted = ctx.req.params.get("definition_id")
        if wanted is not None:
            match = [p for p in pipelines if p.id == int(wanted)]
            if not match:
                raise ApiError(404, f"The definition {wanted} could not be found.", "DefinitionNotExistsException")
            return Response(200, self._definition_ref(ctx, match[0]))
        value = [self._definition_ref(ctx, p) for p in pipelines]
        return Response(200, {"count": len(value), "value": value})

    def builds(self, ctx: Ctx) -> Response:
        req = ctx.req
        project = ctx.project
        assert project is not None
        order = (req.arg("queryOrder") or "queueTimeDescending").strip()
        m = re.fullmatch(r"(queue|start|finish)Time(Ascending|Descending)", order, re.IGNORECASE)
        if not m:
            raise ApiError(
                400, f"The value '{order}' is not valid for parameter queryOrder.", "InvalidArgumentValueException"
            )
        key, ascending = m.group(1).lower(), m.group(2).lower() == "ascending"
        keys, ordered = self._build_orders[(project.name, key)]
        lo, hi = 0, len(ordered)
        for name, bound in (("minTime", "lo"), ("maxTime", "hi")):
            value = req.arg(name)
            if value:
                t = parse_time(value, name)
                if bound == "lo":
                    lo = max(lo, bisect.bisect_left(keys, t))
                else:
                    hi = min(hi, bisect.bisect_right(keys, t))
        token = req.arg("continuationToken")
        if token:
            t = parse_time(token, "continuationToken")
            if ascending:
                lo = max(lo, bisect.bisect_left(keys, t))
            else:
                hi = min(hi, bisect.bisect_right(keys, t))
        top = int_arg(req.arg("$top"), "$top", 1000) or 1000
        top = min(max(top, 1), 5000)
        definitions = {int(d) for d in csv_arg(req.arg("definitions")) if d.isdigit()}
        build_ids = {int(d) for d in csv_arg(req.arg("buildIds")) if d.isdigit()}
        status = (req.arg("statusFilter") or "all").lower()
        results = {r.lower() for r in csv_arg(req.arg("resultFilter"))}
        branch = req.arg("branchName")
        repository = (req.arg("repositoryId") or "").lower()
        reasons = {r.lower() for r in csv_arg(req.arg("reasonFilter"))}
        per_definition = int_arg(req.arg("maxBuildsPerDefinition"), "maxBuildsPerDefinition")
        seen_per_definition: dict[int, int] = {}

        def wanted(b: Build) -> bool:
            if definitions and b.pipeline.id not in definitions:
                return False
            if build_ids and b.id not in build_ids:
                return False
            if status not in ("all", "") and b.status.lower() not in status.split(","):
                return False
            if results and (b.result or "").lower() not in results:
                return False
            if branch and branch not in ("refs/heads/main", "main"):
                return False
            if repository and b.pipeline.repo.id.lower() != repository:
                return False
            if reasons and "all" not in reasons and b.reason.lower() not in reasons:
                return False
            if per_definition is not None:
                count = seen_per_definition.get(b.pipeline.id, 0)
                if count >= per_definition:
                    return False
                seen_per_definition[b.pipeline.id] = count + 1
            return True

        indexes = range(lo, hi) if ascending else range(hi - 1, lo - 1, -1)
        value: list[dict[str, Any]] = []
        headers: dict[str, str] = {}
        for i in indexes:
            b = ordered[i]
            if not wanted(b):
                continue
            if len(value) == top:
                headers["x-ms-continuationtoken"] = iso(keys[i])
                break
            value.append(self._build_json(ctx, b))
        return Response(200, {"count": len(value), "value": value}, headers)

    def build(self, ctx: Ctx) -> Response:
        return Response(200, self._build_json(ctx, self._find_build(ctx, ctx.req.params["build_id"])))

    def _change_json(self, ctx: Ctx, commit: Commit) -> dict[str, Any]:
        repo = commit.repo
        author = self.data.people[commit.author]
        return {
            "id": commit.sha,
            "message": commit.message,
            "type": "TfsGit",
            "author": self._identity(ctx, author),
            "timestamp": iso(commit.at),
            "location": f"{ctx.org_url}/{repo.project.id}/_apis/git/repositories/{repo.id}/commits/{commit.sha}",
            "displayUri": f"{ctx.org_url}/{repo.project.id}/_git/{repo.name}/commit/{commit.sha}",
            "messageTruncated": False,
            "pusher": author.email,
        }

    def build_changes(self, ctx: Ctx) -> Response:
        b = self._find_build(ctx, ctx.req.params["build_id"])
        commits = self.data.commits_between(b.pipeline, b.prev_commit, b.commit)[::-1]
        chunk, headers = self._page(commits, ctx.req, 50)
        value = [self._change_json(ctx, c) for c in chunk]
        return Response(200, {"count": len(value), "value": value}, headers)

    def _refs(self, ctx: Ctx, ids: list[int], top: int) -> Response:
        value = [{"id": str(i), "url": f"{ctx.org_url}/_apis/wit/workItems/{i}"} for i in ids[:top]]
        return Response(200, {"count": len(value), "value": value})

    def build_work_items(self, ctx: Ctx) -> Response:
        b = self._find_build(ctx, ctx.req.params["build_id"])
        ids = self._live(self.data.build_work_items(self.data.commits_between(b.pipeline, b.prev_commit, b.commit)))
        return self._refs(ctx, ids, min(max(int_arg(ctx.req.arg("$top"), "$top", 50) or 50, 1), 10_000))

    def _live(self, ids: list[int]) -> list[int]:
        return [i for i in ids if (item := self.data.item(i)) is not None and not item.deleted]

    def _between(self, ctx: Ctx) -> list[Commit]:
        req = ctx.req
        if not req.arg("toBuildId"):
            raise ApiError(400, "The toBuildId parameter is required.", "ArgumentNullException")
        to = self._find_build(ctx, req.arg("toBuildId"), "toBuildId")
        after = -1
        if req.arg("fromBuildId"):
            frm = self._find_build(ctx, req.arg("fromBuildId"), "fromBuildId")
            if frm.pipeline.repo is not to.pipeline.repo:
                raise ApiError(
                    400,
                    "The builds must be of definitions that use the same repository.",
                    "InvalidArgumentValueException",
                )
            after = frm.commit
        return self.data.commits_between(to.pipeline, after, to.commit)

    def changes_between_builds(self, ctx: Ctx) -> Response:
        commits = self._between(ctx)[::-1]
        top = min(max(int_arg(ctx.req.arg("$top"), "$top", 50) or 50, 1), 10_000)
        value = [self._change_json(ctx, c) for c in commits[:top]]
        return Response(200, {"count": len(value), "value": value})

    def work_items_between_builds(self, ctx: Ctx) -> Response:
        ids = self._live(self.data.build_work_items(self._between(ctx)))
        return self._refs(ctx, ids, min(max(int_arg(ctx.req.arg("$top"), "$top", 50) or 50, 1), 10_000))


def _build_time(b: Build, key: str) -> int:
    if key == "queue":
        return b.queued
    if key == "start":
        return b.started
    return b.finished if b.finished is not None else 0
