"""An Azure DevOps collector written as a user would, with the ``azure-devops`` SDK (7.1.0b4).

Per project: work item revisions through the reporting API (its batches carry their own
continuation token) and the items' relations (``get_work_items_batch``, 200 ids, ``Relations``);
every environment's deployment records; the deployed runs' builds (their commit); for each
successful production deployment its build's changes and work items; classic release deployments
and each release (its build artifact).

What the SDK cannot do: its v7.x list calls (``get_environment_deployment_execution_records``,
``get_builds``, ``get_deployments``) return bare lists and drop the ``x-ms-continuationtoken``
header, so

- environment records: one call with the largest ``top`` the service takes (1000); an environment
  with more records is read incompletely (no time filter to window by);
- classic deployments: windowed by ``min_started_time`` (ascending, deduplicated by id) instead;
- and it does not retry 429 or expose ``Retry-After``. ``get_build_changes`` gives the commits
  since the definition's previous run, not since the previous production deployment.

It keeps everything in memory and stores nothing.

Usage: ``ado_sdk_peer.py ORGANIZATION_URL TOKEN PROJECT ...`` with ``AZURE_DEVOPS_CACHE_DIR`` set (the
SDK reads it at import); prints the records it read as JSON (the native ids of the sandbox's truth).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

from azure.devops.connection import Connection
from azure.devops.v7_1.work_item_tracking.models import WorkItemBatchGetRequest
from msrest.authentication import BasicAuthentication

FIELDS = [
    "System.Id",
    "System.Rev",
    "System.WorkItemType",
    "System.State",
    "System.CreatedDate",
    "System.ChangedDate",
    "System.AreaPath",
    "System.TeamProject",
    "System.IsDeleted",
]
PRODUCTION = {"production", "Prod"}
RECORDS_TOP = 1000


def boards(connection: Connection, project: str, out: dict[str, list[str]]) -> None:
    wit = connection.clients_v7_1.get_work_item_tracking_client()
    token = None
    deleted: dict[int, bool] = {}
    while True:
        batch = wit.read_reporting_revisions_get(
            project=project, fields=FIELDS, include_deleted=True, continuation_token=token, max_page_size=200
        )
        page = batch.additional_properties  # the SDK's model maps none of the batch's keys
        for revision in page.get("values") or []:
            fields = revision.get("fields", {})
            out["state_changes"].append(f"{revision['id']}:{revision['rev']}")
            deleted[revision["id"]] = bool(fields.get("System.IsDeleted"))
        token = page.get("continuationToken")
        if page.get("isLastBatch") or not token:
            break
    out["work_items"] += [str(i) for i in deleted]
    alive = [i for i, gone in deleted.items() if not gone]
    for start in range(0, len(alive), 200):
        wit.get_work_items_batch(
            WorkItemBatchGetRequest(ids=alive[start : start + 200], expand="Relations"), project=project
        )


def _outcome(results: list[str]) -> str | None:
    if any(r == "failed" for r in results):
        return "failure"
    if results and all(r in ("succeeded", "succeededWithIssues") for r in results):
        return "success"
    return None  # canceled, skipped: not a deployment


def pipelines(connection: Connection, project: str, out: dict[str, list[str]]) -> None:
    agent = connection.clients_v7_1.get_task_agent_client()
    build = connection.clients_v7_1.get_build_client()
    stages: dict[tuple[int, int, str, int], list[str]] = defaultdict(list)
    production_builds: set[int] = set()
    for env in agent.get_environments(project):
        for r in agent.get_environment_deployment_execution_records(project, env.id, top=RECORDS_TOP):
            stages[(env.id, r.owner.id, r.stage_name, r.stage_attempt)].append(r.result)
        for (env_id, run, _, _), results in stages.items():
            if env_id == env.id and _outcome(results) == "success" and env.name in PRODUCTION:
                production_builds.add(run)
    runs = sorted({run for (_, run, _, _), results in stages.items() if _outcome(results)})
    for start in range(0, len(runs), 100):  # the deployed commit: not in the record
        build.get_builds(project, build_ids=runs[start : start + 100])
    out["deployments"] += [f"env:{e}:{run}:{s}:{a}" for (e, run, s, a), results in stages.items() if _outcome(results)]

    release = connection.clients_v7_1.get_release_client()
    seen: dict[int, Any] = {}
    since = None
    while True:  # no continuation token: window by start time
        page = release.get_deployments(project, query_order="ascending", top=100, min_started_time=since)
        fresh = [d for d in page if d.id not in seen]
        if not fresh:
            break
        for d in fresh:
            seen[d.id] = d
        since = max(d.started_on for d in fresh)
    releases: dict[int, int] = {}
    for d in seen.values():
        failed = d.deployment_status == "failed" or (
            d.deployment_status == "notDeployed" and d.operation_status == "PhaseFailed"
        )
        if d.deployment_status != "succeeded" and not failed:
            continue
        out["deployments"].append(f"release:{d.id}")
        if d.release.id not in releases:
            artifacts = release.get_release(project, d.release.id).artifacts or []
            releases[d.release.id] = next(
                int(a.definition_reference["version"].id) for a in artifacts if a.type == "Build"
            )
        if d.deployment_status == "succeeded" and d.release_environment.name in PRODUCTION:
            production_builds.add(releases[d.release.id])
    for build_id in sorted(production_builds):
        out["changes"] += [c.id for c in build.get_build_changes(project, build_id, top=1000)]
        build.get_build_work_items_refs(project, build_id, top=1000)


def sync(organization_url: str, token: str, projects: list[str]) -> dict[str, list[str]]:
    connection = Connection(base_url=organization_url, creds=BasicAuthentication("", token))
    out: dict[str, list[str]] = {"work_items": [], "state_changes": [], "deployments": [], "changes": []}
    for project in projects:
        boards(connection, project, out)
        pipelines(connection, project, out)
    out["changes"] = sorted(set(out["changes"]))
    return out


if __name__ == "__main__":
    json.dump(sync(sys.argv[1], sys.argv[2], sys.argv[3:]), sys.stdout)
