"""Azure Pipelines environments and their deployment records (YAML deployments)."""

from __future__ import annotations

import bisect
from typing import Any

from sandbox.azure.common import ApiError, AzureHandlers, Ctx, int_arg
from sandbox.azure.data import DeploymentRecord, Environment, iso
from sandbox.server import Response


class EnvironmentsHandlers(AzureHandlers):
    """YAML deployments: environments and their deployment records."""

    def _environment_json(self, ctx: Ctx, env: Environment) -> dict[str, Any]:
        person = self._identity(ctx, self.data.people[0])
        return {
            "id": env.id,
            "name": env.name,
            "description": "",
            "createdBy": person,
            "createdOn": iso(env.created),
            "lastModifiedBy": person,
            "lastModifiedOn": iso(env.created),
            "project": {"id": env.project.id, "name": env.project.name},
            "resources": [],
        }

    def environments(self, ctx: Ctx) -> Response:
        envs = [e for e in self.data.environments if e.project is ctx.project]
        wanted = ctx.req.params.get("environment_id")
        if wanted is not None:
            env = next((e for e in envs if e.id == int(wanted)), None)
            if env is None:
                raise ApiError(404, f"Environment {wanted} not found.", "EnvironmentNotFoundException")
            return Response(200, self._environment_json(ctx, env))
        name = ctx.req.arg("name")
        if name:
            envs = [e for e in envs if e.name.lower() == name.lower()]
        chunk, headers = self._page(envs, ctx.req, 50)
        value = [self._environment_json(ctx, e) for e in chunk]
        return Response(200, {"count": len(value), "value": value}, headers)

    def _record_json(self, ctx: Ctx, r: DeploymentRecord) -> dict[str, Any]:
        b = r.build
        p = b.pipeline
        project_url = f"{ctx.org_url}/{p.project.id}"
        return {
            "id": r.id,
            "requestIdentifier": r.request_id,
            "environmentId": r.environment.id,
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "scopeId": p.project.id,
            "planType": "Build",
            "planId": b.plan_id,
            "stageName": r.stage,
            "jobName": r.job,
            "stageAttempt": r.stage_attempt,
            "jobAttempt": r.job_attempt,
            "definition": {
                "_links": {
                    "web": {"href": f"{project_url}/_build/definition?definitionId={p.id}"},
                    "self": {"href": f"{project_url}/_apis/build/Definitions/{p.id}"},
                },
                "id": p.id,
                "name": p.name,
            },
            "owner": {
                "_links": {
                    "web": {"href": f"{project_url}/_build/results?buildId={b.id}"},
                    "self": {"href": f"{project_url}/_apis/build/Builds/{b.id}"},
                },
                "id": b.id,
                "name": b.number,
            },
            "result": r.result,
            "queueTime": iso(r.queued),
            "startTime": iso(r.started),
            "finishTime": iso(r.finished),
        }

    def environment_records(self, ctx: Ctx) -> Response:
        env_id = int(ctx.req.params["environment_id"])
        env = next((e for e in self.data.environments if e.id == env_id and e.project is ctx.project), None)
        if env is None:
            raise ApiError(404, f"Environment {env_id} not found.", "EnvironmentNotFoundException")
        top = min(max(int_arg(ctx.req.arg("top"), "top", 25) or 25, 1), 1000)
        records = env.records
        hi = len(records)
        token = int_arg(ctx.req.arg("continuationToken"), "continuationToken")
        if token is not None:  # records with id <= token, newest first
            hi = bisect.bisect_right(records, token, key=_record_id)
        chunk = records[max(hi - top, 0) : hi][::-1]
        headers = {"x-ms-continuationtoken": str(records[hi - top - 1].id)} if hi - top > 0 else {}
        value = [self._record_json(ctx, r) for r in chunk]
        return Response(200, {"count": len(value), "value": value}, headers)


def _record_id(record: DeploymentRecord) -> int:
    return record.id
