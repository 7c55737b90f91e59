"""Classic release handlers: release definitions, deployments and releases."""

from __future__ import annotations

from typing import Any

from sandbox.azure.common import ApiError, AzureHandlers, Ctx, csv_arg, int_arg, parse_time
from sandbox.azure.data import Release, ReleaseDeployment, iso
from sandbox.server import Response


class ReleasesHandlers(AzureHandlers):
    """Classic releases: release definitions, deployments and releases."""

    # -- classic releases ------------------------------------------------------------------------

    def _release_definition_ref(self, ctx: Ctx, definition: Any) -> dict[str, Any]:
        url = f"{ctx.org_url}/{definition.project.id}/_apis/Release/definitions/{definition.id}"
        return {
            "id": definition.id,
            "name": definition.name,
            "path": "\\",
            "projectReference": {"id": definition.project.id, "name": None},
            "url": url,
            "_links": {
                "self": {"href": url},
                "web": {"href": f"{ctx.org_url}/{definition.project.id}/_release?definitionId={definition.id}"},
            },
        }

    def release_definitions(self, ctx: Ctx) -> Response:
        defs = [d for d in self.data.release_definitions if d.project is ctx.project]
        wanted = ctx.req.params.get("definition_id")
        if wanted is not None:
            match = [d for d in defs if d.id == int(wanted)]
            if not match:
                raise ApiError(
                    404,
                    f"VS402856: Release definition with id {wanted} does not exist.",
                    "ReleaseDefinitionNotFoundException",
                )
            return Response(200, self._release_definition_ref(ctx, match[0]))
        value = [self._release_definition_ref(ctx, d) for d in defs]
        return Response(200, {"count": len(value), "value": value})

    def _release_ref(self, ctx: Ctx, release: Release) -> dict[str, Any]:
        url = f"{ctx.org_url}/{release.definition.project.id}/_apis/Release/releases/{release.id}"
        web = f"{ctx.org_url}/{release.definition.project.id}/_release?releaseId={release.id}&_a=release-summary"
        return {
            "id": release.id,
            "name": release.name,
            "url": url,
            "artifacts": [],
            "webAccessUri": web,
            "_links": {"self": {"href": url}, "web": {"href": web}},
        }

    def _deployment_json(self, ctx: Ctx, d: ReleaseDeployment) -> dict[str, Any]:
        release = d.release
        person = self._identity(ctx, self.data.people[d.requested_for])
        env_id = release.environment_ids[d.environment]
        body = {
            "id": d.id,
            "release": self._release_ref(ctx, release),
            "releaseDefinition": self._release_definition_ref(ctx, release.definition),
            "releaseEnvironment": {
                "id": env_id,
                "name": d.environment,
                "url": f"{ctx.org_url}/{release.definition.project.id}/_apis/Release/releases/"
                f"{release.id}/environments/{env_id}",
                "_links": {},
            },
            "projectReference": {"id": release.definition.project.id, "name": None},
            "definitionEnvironmentId": d.definition_environment_id,
            "attempt": 1,
            "reason": "automated" if d.environment == "QA" else "manual",
            "deploymentStatus": d.status,
            "operationStatus": d.operation,
            "requestedBy": person,
            "requestedFor": person,
            "queuedOn": iso(d.queued),
            "startedOn": iso(d.started),
            "completedOn": iso(d.completed),
            "lastModifiedOn": iso(d.completed),
            "lastModifiedBy": person,
            "conditions": [],
            "preDeployApprovals": [],
            "postDeployApprovals": [],
            "_links": {},
        }
        if d.id % 3 == 0:
            # as in the official "Deployments - List" example: finished, but no completedOn
            del body["completedOn"]
        return body

    def release_deployments(self, ctx: Ctx) -> Response:
        req = ctx.req
        deployments = [d for d in self.data.release_deployments if d.release.definition.project is ctx.project]
        ascending = (req.arg("queryOrder") or "descending").lower() == "ascending"
        definition = int_arg(req.arg("definitionId"), "definitionId")
        env_def = int_arg(req.arg("definitionEnvironmentId"), "definitionEnvironmentId")
        statuses = {s.lower() for s in csv_arg(req.arg("deploymentStatus"))} - {"all", "undefined"}
        operations = {s.lower() for s in csv_arg(req.arg("operationStatus"))} - {"all", "undefined"}
        bounds = {
            name: parse_time(req.arg(name) or "", name)
            for name in ("minStartedTime", "maxStartedTime", "minModifiedTime", "maxModifiedTime")
            if req.arg(name)
        }
        token = int_arg(req.arg("continuationToken"), "continuationToken")
        top = min(max(int_arg(req.arg("$top"), "$top", 50) or 50, 1), 100)

        def wanted(d: ReleaseDeployment) -> bool:
            if definition is not None and d.release.definition.id != definition:
                return False
            if env_def is not None and d.definition_environment_id != env_def:
                return False
            if statuses and d.status.lower() not in statuses:
                return False
            if operations and d.operation.lower() not in operations:
                return False
            checks = (
                ("minStartedTime", d.started, 1),
                ("maxStartedTime", d.started, -1),
                ("minModifiedTime", d.completed, 1),
                ("maxModifiedTime", d.completed, -1),
            )
            return all(name not in bounds or (t - bounds[name]) * sign >= 0 for name, t, sign in checks)

        ordered = deployments if ascending else deployments[::-1]
        if token is not None:
            ordered = [d for d in ordered if (d.id >= token if ascending else d.id <= token)]
        value: list[dict[str, Any]] = []
        headers: dict[str, str] = {}
        for d in ordered:
            if not wanted(d):
                continue
            if len(value) == top:
                headers["x-ms-continuationtoken"] = str(d.id)
                break
            value.append(self._deployment_json(ctx, d))
        return Response(200, {"count": len(value), "value": value}, headers)

    def release(self, ctx: Ctx) -> Response:
        release_id = int(ctx.req.params["release_id"])
        release = next(
            (r for r in self.data.releases if r.id == release_id and r.definition.project is ctx.project), None
        )
        if release is None:
            raise ApiError(
                404, f"VS402881: No release found for the given release ID: {release_id}.", "ReleaseNotFoundException"
            )
        return Response(200, self._release_json(ctx, release))

    def _release_json(self, ctx: Ctx, release: Release) -> dict[str, Any]:
        definition = release.definition
        project = definition.project
        build = release.build
        person = self._identity(ctx, self.data.people[release.created_by])
        latest = {d.environment: d for d in release.deployments}
        environment_status = {"succeeded": "succeeded", "failed": "rejected", "notDeployed": "canceled"}
        environments = [
            {
                "id": release.environment_ids[name],
                "releaseId": release.id,
                "name": name,
                "status": environment_status[latest[name].status] if name in latest else "notStarted",
                "variables": {},
                "preDeployApprovals": [],
                "postDeployApprovals": [],
                "deploySteps": [],
                "rank": rank,
                "definitionEnvironmentId": env_id,
                "conditions": [],
                "workflowTasks": [],
                "release": self._release_ref(ctx, release),
                "releaseDefinition": self._release_definition_ref(ctx, definition),
            }
            for rank, (env_id, name) in enumerate(definition.environments, start=1)
        ]
        base = self._release_ref(ctx, release)
        return {
            "id": release.id,
            "name": release.name,
            "status": "active",
            "createdOn": iso(release.created),
            "modifiedOn": iso(release.deployments[-1].completed if release.deployments else release.created),
            "modifiedBy": person,
            "createdBy": person,
            "createdFor": person,
            "environments": environments,
            "variables": {},
            "variableGroups": [],
            "artifacts": [
                {
                    "sourceId": f"{project.id}:{build.pipeline.id}",
                    "type": "Build",
                    "alias": f"_{build.pipeline.name}",
                    "definitionReference": {
                        "definition": {"id": str(build.pipeline.id), "name": build.pipeline.name},
                        "project": {"id": project.id, "name": project.name},
                        "version": {"id": str(build.id), "name": build.number},
                        "branch": {"id": "refs/heads/main", "name": "refs/heads/main"},
                        "buildUri": {"id": f"vstfs:///Build/Build/{build.id}", "name": None},
                        "repository": {"id": build.pipeline.repo.id, "name": build.pipeline.repo.name},
                        "repository.provider": {"id": "TfsGit", "name": None},
                        "sourceVersion": {"id": build.sha, "name": build.sha},
                        "artifactSourceDefinitionUrl": {
                            "id": f"{ctx.org_url}/_permalink/_build/index?projectId={project.id}&definitionId="
                            f"{build.pipeline.id}",
                            "name": "",
                        },
                        "artifactSourceVersionUrl": {
                            "id": f"{ctx.org_url}/_permalink/_build/index?projectId={project.id}&buildId={build.id}",
                            "name": "",
                        },
                    },
                    "isPrimary": True,
                    "isRetained": False,
                }
            ],
            "releaseDefinition": self._release_definition_ref(ctx, definition),
            "releaseDefinitionRevision": 1,
            "description": "Triggered by " + build.number,
            "reason": "continuousIntegration",
            "releaseNameFormat": "Release-$(rev:r)",
            "keepForever": False,
            "definitionSnapshotRevision": 1,
            "logsContainerUrl": base["url"] + "/logs",
            "url": base["url"],
            "_links": base["_links"],
            "tags": [],
            "projectReference": {"id": project.id, "name": None},
            "properties": {},
        }
