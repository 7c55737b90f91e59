"""Contract tests of the sandbox's Azure DevOps half, with plain ``requests`` and the azure-devops SDK.

Shapes are checked against the official examples in ``MicrosoftDocs/vsts-rest-api-specs``
(``specification/<area>/<version>/httpExamples/…``, named at each key list) and against the
attribute maps of the SDK's models; behaviour (paging, tokens, limits, auth) against the
documented service behaviour; the data against their own ground truth.
"""

from __future__ import annotations

import importlib
import random
import re
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import ADO_ORG_NOW, ADO_ORG_TOKEN, serving_half

from sandbox.app import Sandbox, SandboxOptions
from sandbox.azure.data import SeededAzureOrg
from sandbox.azure.routes import AzureRoutes
from sandbox.server import SandboxHTTPServer

NOW, TOKEN = ADO_ORG_NOW, ADO_ORG_TOKEN


@contextmanager
def serve(routes: AzureRoutes) -> Iterator[tuple[str, SandboxHTTPServer]]:
    """Serve one Azure half on its own port (for options the Sandbox does not expose)."""
    with serving_half(routes) as (root, server):
        yield f"{root}/contoso", server


def walk(ado_api: requests.Session, url: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Follow a reporting revisions stream to its last batch, yielding each page."""
    page = ado_api.get(url, params=params).json()
    yield page
    while not page["isLastBatch"]:
        page = ado_api.get(page["nextLink"], params={}).json()
        yield page


def revisions_url(sb: Sandbox, project: str | None = "Fabrikam") -> str:
    return f"{sb.azure_url}/{project + '/' if project else ''}_apis/wit/reporting/workitemrevisions"


def azure_truth(sb: Sandbox) -> dict[str, Any]:
    return sb.truth()["azure"]


# -- envelopes and field names --------------------------------------------------------------------


def test_reporting_batch_has_the_documented_envelope_and_fields(ado_org: Sandbox, ado_api: requests.Session) -> None:
    body = ado_api.get(revisions_url(ado_org), params={"includeIdentityRef": "true"}).json()
    # wit/5.0/httpExamples/workItemRevisions/GET__wit_reporting_workItemRevisions_includeIdentityRef-true_watermark-794
    assert set(body) == {"values", "nextLink", "continuationToken", "isLastBatch"}
    assert all(set(value) == {"id", "rev", "fields"} for value in body["values"])
    example_fields = {
        "System.Id",
        "System.AreaPath",
        "System.TeamProject",
        "System.Rev",
        "System.RevisedDate",
        "System.IterationPath",
        "System.WorkItemType",
        "System.State",
        "System.Reason",
        "System.CreatedDate",
        "System.CreatedBy",
        "System.ChangedDate",
        "System.ChangedBy",
        "System.Title",
        "System.BoardColumn",
        "Microsoft.VSTS.Common.Priority",
    }
    first = body["values"][0]["fields"]
    assert example_fields <= set(first)
    assert any(name.startswith("WEF_") and name.endswith("_Kanban.Column") for name in first)
    assert set(first["System.CreatedBy"]) == {"id", "uniqueName"}  # includeIdentityRef=true
    plain = ado_api.get(revisions_url(ado_org)).json()["values"][0]["fields"]
    assert isinstance(plain["System.CreatedBy"], str) and "<" in plain["System.CreatedBy"]


def test_fields_parameter_limits_the_fields_returned(ado_org: Sandbox, ado_api: requests.Session) -> None:
    body = ado_api.get(revisions_url(ado_org), params={"fields": "System.State,System.ChangedDate"}).json()
    assert body["values"] and all(set(v["fields"]) == {"System.State", "System.ChangedDate"} for v in body["values"])
    # the POST form (wit/5.0/httpExamples/workItemRevisions/POST__wit_reporting_workItemRevisions_watermark-794)
    posted = ado_api.post(revisions_url(ado_org), json={"fields": ["System.WorkItemType"], "types": ["Bug"]}).json()
    assert posted["values"] and all(v["fields"] == {"System.WorkItemType": "Bug"} for v in posted["values"])


def test_work_item_type_states_read_categories_including_a_custom_state(
    ado_org: Sandbox, ado_api: requests.Session
) -> None:
    url = f"{ado_org.azure_url}/{{}}/_apis/wit/workitemtypes/User%20Story/states"
    fabrikam = ado_api.get(url.format("Fabrikam")).json()
    # wit/4.1/httpExamples/workItemTypeStates/GET__workitem_type_states.json
    assert set(fabrikam) == {"count", "value"} and fabrikam["count"] == len(fabrikam["value"])
    assert all(set(s) == {"name", "color", "category"} for s in fabrikam["value"])
    categories = {s["name"]: s["category"] for s in fabrikam["value"]}
    assert categories["In Review"] == "InProgress" and categories["Closed"] == "Completed"
    tailspin = {s["name"] for s in ado_api.get(url.format("Tailspin")).json()["value"]}
    assert "In Review" not in tailspin
    types = ado_api.get(f"{ado_org.azure_url}/Fabrikam/_apis/wit/workitemtypes").json()["value"]
    assert {t["name"] for t in types} == {"User Story", "Bug", "Feature"}
    assert {s["name"] for t in types if t["name"] == "User Story" for s in t["states"]} == set(categories)


def test_work_items_with_relations_have_the_documented_shape(ado_org: Sandbox, ado_api: requests.Session) -> None:
    linked = [
        w for w in azure_truth(ado_org)["work_items"] if w["project"] == "Fabrikam" and w["links"] and not w["deleted"]
    ][:3]
    ids = ",".join(w["native_id"] for w in linked)
    body = ado_api.get(
        f"{ado_org.azure_url}/Fabrikam/_apis/wit/workitems", params={"ids": ids, "$expand": "all"}
    ).json()
    # wit/5.1/httpExamples/workItems/GET__wit_WorkItems_ids-_ids___expand-all.json
    assert set(body) == {"count", "value"}
    for item, expected in zip(body["value"], linked, strict=True):
        assert set(item) == {"id", "rev", "fields", "relations", "_links", "url"}
        for relation in item["relations"]:
            assert set(relation) == {"rel", "url", "attributes"} and relation["rel"] == "ArtifactLink"
            assert {
                "authorizedDate",
                "id",
                "resourceCreatedDate",
                "resourceModifiedDate",
                "revisedDate",
                "name",
            } == set(relation["attributes"])
            assert relation["url"].startswith(
                ("vstfs:///Git/Commit/", "vstfs:///Git/PullRequestId/", "vstfs:///Build/Build/")
            )
        assert len(item["relations"]) == len(expected["links"])


def test_updates_carry_the_time_each_artifact_link_was_added(ado_org: Sandbox, ado_api: requests.Session) -> None:
    item = next(
        w
        for w in azure_truth(ado_org)["work_items"]
        if w["project"] == "Fabrikam" and len(w["links"]) >= 2 and not w["deleted"]
    )
    updates = ado_api.get(f"{ado_org.azure_url}/Fabrikam/_apis/wit/workItems/{item['native_id']}/updates").json()
    # wit/4.1/httpExamples/updates/GET__list_of_workitem_updates.json
    assert set(updates) == {"count", "value"}
    added = []
    for update in updates["value"]:
        assert {"id", "workItemId", "rev", "revisedBy", "revisedDate", "fields", "url"} <= set(update)
        for relation in update.get("relations", {}).get("added", []):
            assert update["fields"]["System.ChangedDate"]["newValue"] == relation["attributes"]["authorizedDate"]
            added.append(relation["url"])
    assert len(added) == len(item["links"])
    paged = ado_api.get(
        f"{ado_org.azure_url}/Fabrikam/_apis/wit/workItems/{item['native_id']}/revisions",
        params={"$top": 2, "$skip": 1},
    ).json()
    assert [r["rev"] for r in paged["value"]] == [2, 3]


def test_artifact_uri_query_finds_the_items_linking_a_commit(ado_org: Sandbox, ado_api: requests.Session) -> None:
    item = next(
        w
        for w in azure_truth(ado_org)["work_items"]
        if w["project"] == "Fabrikam" and any(t.startswith("commit:") for t in w["links"])
    )
    relations = ado_api.get(
        f"{ado_org.azure_url}/Fabrikam/_apis/wit/workitems/{item['native_id']}", params={"$expand": "relations"}
    ).json()["relations"]
    uri = next(r["url"] for r in relations if "/Git/Commit/" in r["url"])
    body = ado_api.post(f"{ado_org.azure_url}/_apis/wit/artifacturiquery", json={"artifactUris": [uri]}).json()
    # wit/5.1/httpExamples/artifacturiquery/POST__wit_artifacturiquery.json
    assert list(body) == ["artifactUrisQueryResult"]
    assert int(item["native_id"]) in {ref["id"] for ref in body["artifactUrisQueryResult"][uri]}


# -- the reporting stream as an incremental feed ------------------------------------------------------


def test_token_walk_returns_every_revision_once_in_watermark_order(ado_org: Sandbox, ado_api: requests.Session) -> None:
    seen: list[tuple[int, int]] = []
    changed: list[str] = []
    pages = list(walk(ado_api, revisions_url(ado_org), **{"$maxPageSize": 37, "includeDeleted": "true"}))
    for page in pages:
        assert len(page["values"]) <= 37
        assert page["nextLink"].startswith(ado_org.azure_url + "/Fabrikam/_apis/wit/reporting/")
        for value in page["values"]:
            seen.append((value["id"], value["rev"]))
            changed.append(value["fields"]["System.ChangedDate"])
    assert len(pages) > 3 and len(seen) == len(set(seen))
    other_host = revisions_url(ado_org).replace("127.0.0.1", "localhost")
    assert ado_api.get(other_host).json()["nextLink"].startswith(other_host)
    truth = [w for w in azure_truth(ado_org)["work_items"] if w["project"] == "Fabrikam"]
    assert set(seen) >= {(int(w["native_id"]), h["seq"]) for w in truth for h in w["history"]}
    last_rev: dict[int, int] = {}
    for item_id, rev in seen:  # each item's revisions arrive in order
        assert rev > last_rev.get(item_id, 0)
        last_rev[item_id] = rev
    stamps = [datetime.fromisoformat(c) for c in changed]
    assert stamps == sorted(stamps)


def test_repoll_is_one_empty_last_batch_and_new_activity_follows_the_old_token(ado_api: requests.Session) -> None:
    with Sandbox(SandboxOptions(seed=5, work_items=120, token=TOKEN, now=NOW)) as sb:
        url = revisions_url(sb, project=None)
        last = list(walk(ado_api, url))[-1]
        again = ado_api.get(last["nextLink"], params={}).json()
        assert again["values"] == [] and again["isLastBatch"] is True
        assert again["continuationToken"] == last["continuationToken"]
        added = sb.add_activity(1)["azure"][0]
        fresh = list(walk(ado_api, last["nextLink"]))
        got = [f"{v['id']}:{v['rev']}" for page in fresh for v in page["values"]]
        assert got == added["revisions"]  # exactly the new revisions, in watermark order
        assert ado_api.get(fresh[-1]["nextLink"], params={}).json()["values"] == []


def test_start_date_time_bounds_the_backfill(ado_org: Sandbox, ado_api: requests.Session) -> None:
    start = NOW - timedelta(days=30)
    values = [
        v
        for page in walk(ado_api, revisions_url(ado_org), startDateTime=start.isoformat().replace("+00:00", "Z"))
        for v in page["values"]
    ]
    assert values and all(datetime.fromisoformat(v["fields"]["System.ChangedDate"]) >= start for v in values)
    expected = sum(
        1
        for w in azure_truth(ado_org)["work_items"]
        if w["project"] == "Fabrikam" and not w["deleted"]
        for h in w["history"]
        if datetime.fromisoformat(h["at"]) >= start
    )
    assert len(values) == expected


def test_deleted_items_only_appear_with_include_deleted(ado_api: requests.Session) -> None:
    routes = AzureRoutes(seed=3, work_items=1500, now=NOW, token=TOKEN, organization="contoso")
    deleted = {int(w["native_id"]) for w in routes.truth()["work_items"] if w["deleted"]}
    assert deleted
    with serve(routes) as (url, _server):
        stream = f"{url}/_apis/wit/reporting/workitemrevisions"
        plain = {v["id"] for page in walk(ado_api, stream) for v in page["values"]}
        full = [v for page in walk(ado_api, stream, includeDeleted="true") for v in page["values"]]
    assert not plain & deleted
    last = {v["id"]: v for v in full}
    assert all(last[i]["fields"]["System.IsDeleted"] is True for i in deleted)


# -- queries, batches, limits ------------------------------------------------------------------------------


def test_wiql_returns_ids_and_refuses_more_than_20000(ado_api: requests.Session) -> None:
    routes = AzureRoutes(seed=2, work_items=20_050, now=NOW, token=TOKEN, organization="contoso")
    with serve(routes) as (url, _server):
        query = {"query": "Select [System.Id] From WorkItems Where [System.ChangedDate] >= '2024-01-01'"}
        too_many = ado_api.post(f"{url}/_apis/wit/wiql", json=query)
        assert too_many.status_code == 400
        error = too_many.json()
        # the service's error body (API-NOTES §H)
        assert set(error) == {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}
        assert error["message"].startswith("VS402337")
        capped = ado_api.post(f"{url}/_apis/wit/wiql", params={"$top": 19_999}, json=query).json()
        # wit/7.1/httpExamples/wiql/GET__wit_get_id_workitems.json
        assert {"queryType", "asOf", "columns", "sortColumns", "workItems"} <= set(capped)
        assert len(capped["workItems"]) == 19_999 and set(capped["workItems"][0]) == {"id", "url"}
        scoped = ado_api.post(
            f"{url}/Tailspin/_apis/wit/wiql",
            json={
                "query": "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
                "AND [System.WorkItemType] IN ('Bug') AND [System.State] = 'Active' ORDER BY [System.Id]"
            },
        ).json()
    expected = [
        w.id
        for w in routes.data.items
        if w.project.name == "Tailspin" and w.type == "Bug" and w.latest.state == "Active" and not w.deleted
    ]
    assert [r["id"] for r in scoped["workItems"]] == expected


def test_batch_refuses_fields_with_expand_and_more_than_200_ids(ado_org: Sandbox, ado_api: requests.Session) -> None:
    url = f"{ado_org.azure_url}/Fabrikam/_apis/wit/workitemsbatch"
    ids = [
        int(w["native_id"])
        for w in azure_truth(ado_org)["work_items"]
        if w["project"] == "Fabrikam" and not w["deleted"]
    ][:3]
    both = ado_api.post(url, json={"ids": ids, "fields": ["System.State"], "$expand": "Relations"})
    assert both.status_code == 400 and "expand parameter can not be used with the fields" in both.json()["message"]
    assert ado_api.post(url, json={"ids": list(range(1, 202))}).status_code == 400
    fields = ado_api.post(url, json={"ids": ids, "fields": ["System.State"]}).json()
    assert [set(v["fields"]) for v in fields["value"]] == [{"System.State"}] * 3
    omitted = ado_api.post(url, json={"ids": [*ids, 999_999], "errorPolicy": "Omit"}).json()
    assert omitted["value"][-1] is None and omitted["count"] == 4
    assert ado_api.post(url, json={"ids": [999_999]}).status_code == 404


# -- pipelines ---------------------------------------------------------------------------------------------


def _sdk_keys(area: str, model: str) -> set[str]:
    """JSON keys of an azure-devops 7.1 SDK model (generated from the service's own metadata)."""
    module = importlib.import_module(f"azure.devops.v7_1.{area}.models")
    return {spec["key"] for spec in getattr(module, model)._attribute_map.values()}


def test_builds_page_with_the_continuation_header(ado_org: Sandbox, ado_api: requests.Session) -> None:
    url = f"{ado_org.azure_url}/Fabrikam/_apis/build/builds"
    params: dict[str, Any] = {"queryOrder": "finishTimeAscending", "statusFilter": "completed", "$top": 25}
    builds: list[dict[str, Any]] = []
    pages = 0
    while True:
        resp = ado_api.get(url, params=params)
        body = resp.json()
        assert body["count"] == len(body["value"])
        builds += body["value"]
        pages += 1
        token = resp.headers.get("x-ms-continuationtoken")
        if not token:
            break
        params["continuationToken"] = token
    expected = [b for b in azure_truth(ado_org)["builds"] if b["project"] == "Fabrikam" and b["status"] == "completed"]
    assert pages > 2 and sorted(b["id"] for b in builds) == sorted(b["id"] for b in expected)
    finishes = [b["finishTime"] for b in builds]
    assert [datetime.fromisoformat(f) for f in finishes] == sorted(datetime.fromisoformat(f) for f in finishes)
    assert set(builds[0]) <= _sdk_keys("build", "Build")  # build/7.1/build.json has no example: the SDK model
    later = ado_api.get(url, params={"queryOrder": "finishTimeAscending", "minTime": finishes[-5]}).json()["value"]
    assert [b["id"] for b in later] == [b["id"] for b in builds[-5:]]


def test_build_changes_work_items_and_changes_between_builds(ado_org: Sandbox, ado_api: requests.Session) -> None:
    truth = [b for b in azure_truth(ado_org)["builds"] if b["definition"] == "web-ci"]
    build = next(b for b in truth if b["work_items"])
    base = f"{ado_org.azure_url}/Fabrikam/_apis/build"
    changes = ado_api.get(f"{base}/builds/{build['id']}/changes", params={"$top": 1000}).json()["value"]
    assert [c["id"] for c in changes] == build["commits"][::-1]  # newest first
    assert set(changes[0]) <= _sdk_keys("build", "Change")
    refs = ado_api.get(f"{base}/builds/{build['id']}/workitems", params={"$top": 1000}).json()["value"]
    assert [f"ado:{r['id']}" for r in refs] == build["work_items"]
    first, last = truth[3], truth[9]
    between = ado_api.get(
        f"{base}/changes", params={"fromBuildId": first["id"], "toBuildId": last["id"], "$top": 1000}
    ).json()["value"]
    assert {c["id"] for c in between} == {sha for b in truth[4:10] for sha in b["commits"]}
    paged = ado_api.get(f"{base}/builds/{build['id']}/changes", params={"$top": 1})
    assert len(build["commits"]) == 1 or paged.headers["x-ms-continuationtoken"] == "1"


def test_environment_records_newest_first_through_every_page(ado_org: Sandbox, ado_api: requests.Session) -> None:
    envs = ado_api.get(f"{ado_org.azure_url}/Fabrikam/_apis/distributedtask/environments").json()["value"]
    assert {e["name"] for e in envs} == {"dev", "staging", "production"}
    assert set(envs[0]) <= _sdk_keys("task_agent", "EnvironmentInstance")
    production = next(e for e in envs if e["name"] == "production")
    url = f"{ado_org.azure_url}/Fabrikam/_apis/pipelines/environments/{production['id']}/environmentdeploymentrecords"
    records: list[dict[str, Any]] = []
    params: dict[str, Any] = {"top": 10}
    while True:
        resp = ado_api.get(url, params=params)
        records += resp.json()["value"]
        if "x-ms-continuationtoken" not in resp.headers:
            break
        params["continuationToken"] = resp.headers["x-ms-continuationtoken"]
    ids = [r["id"] for r in records]
    assert len(ids) > 10 and ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert set(records[0]) <= _sdk_keys("task_agent", "EnvironmentDeploymentExecutionRecord")
    assert {r["result"] for r in records} >= {"succeeded", "failed"}
    truth = {
        d["native_id"]
        for d in azure_truth(ado_org)["deployments"]
        if d["environment"] == "production" and d["project"] == "Fabrikam"
    }
    # one record per job: the jobs of one (run, stage, stage attempt) are one deployment
    served = {
        f"env:{production['id']}:{r['owner']['id']}:{r['stageName']}:{r['stageAttempt']}"
        for r in records
        if r["result"] in ("succeeded", "failed")
    }
    assert served == truth
    assert len(served) < len(records)  # some stages have several jobs
    assert any(r["stageAttempt"] > 1 for r in records)  # a failed stage retried in the same run


def test_classic_release_deployments_come_as_the_official_example_shows_them(
    ado_org: Sandbox, ado_api: requests.Session
) -> None:
    url = f"{ado_org.azure_url}/Tailspin/_apis/release/deployments"
    served: list[dict[str, Any]] = []
    params: dict[str, Any] = {"queryOrder": "ascending", "$top": 100}
    while True:
        resp = ado_api.get(url, params=params)
        served += resp.json()["value"]
        if "x-ms-continuationtoken" not in resp.headers:
            break
        params["continuationToken"] = resp.headers["x-ms-continuationtoken"]
    # release/7.1/httpExamples/deployments/GET__ListDeployments.json: finished, no completedOn
    assert any("completedOn" not in d and d["deploymentStatus"] == "succeeded" for d in served)
    assert any((d["deploymentStatus"], d["operationStatus"]) == ("notDeployed", "PhaseFailed") for d in served)
    # .NET's seven fraction digits on some times, as real answers have them
    assert any(re.search(r"\.\d{7}Z$", d[key]) for d in served for key in ("queuedOn", "startedOn"))
    failures = {d["native_id"] for d in azure_truth(ado_org)["deployments"] if d["status"] == "failure"}
    assert {
        f"release:{d['id']}"
        for d in served
        if d["deploymentStatus"] == "notDeployed" and d["operationStatus"] == "PhaseFailed"
    } <= failures


def test_classic_release_deployments_and_their_build_artifact(ado_org: Sandbox, ado_api: requests.Session) -> None:
    url = f"{ado_org.azure_url}/Tailspin/_apis/release/deployments"
    resp = ado_api.get(url, params={"queryOrder": "ascending", "$top": 20})
    page = resp.json()["value"]
    assert resp.headers["x-ms-continuationtoken"] and [d["id"] for d in page] == sorted(d["id"] for d in page)
    # release/5.1/httpExamples/deployments/GET__ListDeployments.json
    example_keys = {
        "id",
        "release",
        "releaseDefinition",
        "releaseEnvironment",
        "definitionEnvironmentId",
        "attempt",
        "reason",
        "deploymentStatus",
        "operationStatus",
        "requestedBy",
        "requestedFor",
        "queuedOn",
        "startedOn",
        "lastModifiedOn",
        "lastModifiedBy",
        "conditions",
        "preDeployApprovals",
        "postDeployApprovals",
        "_links",
    }
    assert example_keys <= set(page[0]) <= _sdk_keys("release", "Deployment")
    assert page[0]["release"]["artifacts"] == []  # lists leave artifacts out, as the service does
    release = ado_api.get(f"{ado_org.azure_url}/Tailspin/_apis/release/releases/{page[0]['release']['id']}").json()
    version = release["artifacts"][0]["definitionReference"]["version"]["id"]
    build = next(b for b in azure_truth(ado_org)["builds"] if str(b["id"]) == version)
    assert build["definition"] == "legacy-api-build"
    assert release["artifacts"][0]["definitionReference"]["sourceVersion"]["id"] == build["sha"]
    succeeded = ado_api.get(url, params={"deploymentStatus": "succeeded", "$top": 100}).json()["value"]
    assert succeeded and {d["deploymentStatus"] for d in succeeded} == {"succeeded"}


# -- auth, versions, throttling, counting --------------------------------------------------------------------


def test_auth_failures_answer_401_or_the_sign_in_page(ado_org: Sandbox) -> None:
    url = f"{ado_org.azure_url}/_apis/projects"
    suppressed = requests.get(url, headers={"X-TFS-FedAuthRedirect": "Suppress"}, auth=("", "wrong"))
    assert suppressed.status_code == 401 and suppressed.json()["typeKey"] == "UnauthorizedRequestException"
    browser = requests.get(url)
    assert browser.status_code == 203 and browser.headers["Content-Type"].startswith("text/html")
    assert requests.get(url, auth=("anyone", TOKEN)).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_api_version_from_the_accept_header_and_out_of_range(ado_org: Sandbox) -> None:
    url = f"{ado_org.azure_url}/_apis/projects"
    ok = requests.get(url, auth=("", TOKEN), headers={"Accept": "application/json;api-version=7.1-preview.4"})
    assert ok.status_code == 200 and ok.json()["count"] == 2
    future = requests.get(url, auth=("", TOKEN), params={"api-version": "9.0"})
    assert future.status_code == 400 and future.json()["typeKey"] == "VssVersionOutOfRangeException"


def test_throttling_warns_then_blocks_with_tf400733(ado_api: requests.Session) -> None:
    routes = AzureRoutes(seed=1, work_items=50, now=NOW, token=TOKEN, organization="contoso", tstu_budget=8)
    with serve(routes) as (url, _server):
        responses = [ado_api.get(f"{url}/_apis/projects") for _ in range(10)]
    statuses = [r.status_code for r in responses]
    assert statuses[:8] == [200] * 8 and statuses[8:] == [429, 429]
    assert "X-RateLimit-Remaining" not in responses[0].headers
    assert responses[6].headers["X-RateLimit-Limit"] == "8" and responses[6].headers["X-RateLimit-Remaining"] == "1"
    blocked = responses[8]
    assert int(blocked.headers["Retry-After"]) >= 1 and blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.json()["message"].startswith("TF400733")


def test_requests_are_counted_per_endpoint(ado_org: Sandbox, ado_api: requests.Session) -> None:
    requests.post(f"{ado_org.url}/_sandbox/stats/reset")
    for _ in range(3):
        ado_api.get(revisions_url(ado_org), params={"$maxPageSize": 1})
    ado_api.get(f"{ado_org.azure_url}/Fabrikam/_apis/build/builds", params={"$top": 1})
    requests.get(f"{ado_org.azure_url}/_apis/projects")  # unauthenticated: counted under its endpoint too
    stats = requests.get(f"{ado_org.url}/_sandbox/stats").json()
    assert stats["by_endpoint"] == {"azure.reporting_revisions": 3, "azure.builds": 1, "azure.projects": 1}
    assert stats["by_status"] == {"200": 4, "203": 1}


# -- the data ---------------------------------------------------------------------------------------------------


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = SeededAzureOrg(seed=21, work_items=150, now=NOW, malformed=3).truth()
    b = SeededAzureOrg(seed=21, work_items=150, now=NOW, malformed=3).truth()
    c = SeededAzureOrg(seed=22, work_items=150, now=NOW, malformed=3).truth()
    assert a == b
    assert a["work_items"] != c["work_items"] and a["deployments"] != c["deployments"]


def test_truth_history_is_what_the_revisions_say(ado_org: Sandbox, ado_api: requests.Session) -> None:
    served: dict[tuple[int, int], dict[str, Any]] = {}
    for page in walk(ado_api, revisions_url(ado_org, project=None), includeDeleted="true"):
        for value in page["values"]:
            served[(value["id"], value["rev"])] = value["fields"]
    categories: dict[tuple[str, str, str], str] = {}
    for project in ("Fabrikam", "Tailspin"):
        for t in ado_api.get(f"{ado_org.azure_url}/{project}/_apis/wit/workitemtypes").json()["value"]:
            categories.update({(project, t["name"], s["name"]): s["category"] for s in t["states"]})
    truth = azure_truth(ado_org)["work_items"]
    assert sum(len(w["history"]) for w in truth) == len(served)
    for item in truth:
        for entry in item["history"]:
            fields = served[(int(item["native_id"]), entry["seq"])]
            assert datetime.fromisoformat(fields["System.ChangedDate"]) == datetime.fromisoformat(entry["at"])
            assert fields["System.State"] == entry["state"]
            expected = (
                "Removed" if fields["System.IsDeleted"] else categories[(item["project"], item["type"], entry["state"])]
            )
            assert entry["category"] == expected
        first = served[(int(item["native_id"]), 1)]
        assert datetime.fromisoformat(first["System.CreatedDate"]) == datetime.fromisoformat(item["created_at"])
        assert item["team"] == first["System.AreaPath"]


def test_the_world_has_the_promised_story(ado_org: Sandbox) -> None:
    truth = azure_truth(ado_org)
    items = truth["work_items"]
    paths = [[h["state"] for h in w["history"]] for w in items]
    assert any(_collapse(p)[-3:] == ["Closed", "Active", "Closed"] for p in paths)  # reopened
    assert any(_collapse(p)[:2] == ["New", "Closed"] for p in paths)  # skipped states
    assert any(p[-1] == "Removed" for p in paths) and any(w["deleted"] for w in items)
    assert any(p[-1] in ("New", "Active") for p in paths)  # work in progress
    assert {w["team"] for w in items} == {
        "Fabrikam",
        "Fabrikam\\Web",
        "Fabrikam\\Payments",
        "Tailspin",
        "Tailspin\\Mobile",
    }
    cycle = _cycle_days_by_half(items)
    assert cycle[0] > 2.5 * cycle[1]  # the improvement trend
    production = [d for d in truth["deployments"] if d["production"]]
    assert {d["status"] for d in production} == {"success", "failure"}
    assert {d["service"] for d in production} == {"web-ci", "payments-ci", "mobile-ci", "Tailspin-classic"}
    for failure in (d for d in production if d["status"] == "failure"):  # each failure is recovered from
        assert any(
            d["service"] == failure["service"]
            and d["environment"] == failure["environment"]
            and d["status"] == "success"
            and d["finished_at"] > failure["finished_at"]
            for d in production
        )
    earliest = min(datetime.fromisoformat(d["started_at"]) for d in truth["deployments"])
    assert earliest > NOW - timedelta(days=365)  # inside a default history window
    # the awkward real shapes: stages with several jobs, stage retries, phase-failed classic releases
    assert any(d["jobs"] > 1 for d in truth["deployments"])
    assert any(d["native_id"].startswith("env:") and d["native_id"].endswith(":2") for d in truth["deployments"])
    # one item migrated from elsewhere: created after what it asked for shipped
    migrated = [w for w in items if w["migrated"]]
    assert len(migrated) == 1 and migrated[0]["links"]
    shipped = {link["target"] for link in truth["links"] if link["work_item"] == migrated[0]["ref"]}
    released = min(d["finished_at"] for d in production if d["status"] == "success" and shipped & set(d["contains"]))
    assert datetime.fromisoformat(released) < datetime.fromisoformat(migrated[0]["created_at"])


def _collapse(states: list[str]) -> list[str]:
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def _cycle_days_by_half(items: list[dict[str, Any]]) -> tuple[float, float]:
    halves: tuple[list[float], list[float]] = ([], [])
    middle = NOW - timedelta(days=178)
    for item in items:
        history = item["history"]
        if item["deleted"] or not history or history[-1]["category"] != "Completed":
            continue
        starts = [h["at"] for h in history if h["category"] in ("InProgress", "Resolved")]
        if not starts:
            continue
        done = max(h["at"] for h in history if h["category"] == "Completed")
        days = (datetime.fromisoformat(done) - datetime.fromisoformat(starts[0])).total_seconds() / 86400
        halves[datetime.fromisoformat(item["created_at"]) >= middle].append(days)
    return statistics.median(halves[0]), statistics.median(halves[1])


def test_malformed_revisions_are_served_corrupt_and_listed_as_rejected(ado_api: requests.Session) -> None:
    routes = AzureRoutes(seed=4, work_items=300, now=NOW, token=TOKEN, organization="contoso", malformed=6)
    truth = routes.truth()
    rejected = {r["record_id"]: r["reason"] for r in truth["rejected"]}
    assert sorted(rejected.values()) == sorted(
        ["missing_field", "wrong_type", "unknown_state", "end_before_start", "bad_timestamp", "too_large"]
    )
    with serve(routes) as (url, _server):
        served = {
            f"{v['id']}:{v['rev']}": v["fields"]
            for page in walk(ado_api, f"{url}/_apis/wit/reporting/workitemrevisions")
            for v in page["values"]
        }
    by_reason = {reason: served[record] for record, reason in rejected.items()}
    assert "System.CreatedDate" not in by_reason["missing_field"]
    assert not isinstance(by_reason["wrong_type"]["System.State"], str)
    assert by_reason["unknown_state"]["System.State"] == "Limbo"
    assert by_reason["end_before_start"]["System.ChangedDate"] < by_reason["end_before_start"]["System.CreatedDate"]
    with pytest.raises(ValueError):
        datetime.fromisoformat(by_reason["bad_timestamp"]["System.ChangedDate"])
    assert len(by_reason["too_large"]["System.AreaPath"]) >= 100_000
    history = {(w["native_id"], h["seq"]) for w in truth["work_items"] for h in w["history"]}
    assert not {tuple(r.split(":")) for r in rejected} & history


def test_activity_appends_a_production_deployment_and_anchors_point_at_fabrikam(ado_api: requests.Session) -> None:
    with Sandbox(SandboxOptions(seed=9, work_items=150, token=TOKEN, now=NOW)) as sb:
        before = {d["native_id"] for d in azure_truth(sb)["deployments"]}
        sb.add_activity(1)
        truth = azure_truth(sb)
        new = [d for d in truth["deployments"] if d["native_id"] not in before]
        assert [d["environment"] for d in new] == ["dev", "staging", "production"]
        assert all(d["status"] == "success" for d in new)
        env_id = int(new[-1]["native_id"].split(":")[1])
        project = new[-1]["project"]
        newest = ado_api.get(
            f"{sb.azure_url}/{project}/_apis/distributedtask/environments/{env_id}/environmentdeploymentrecords",
            params={"top": 1},
        ).json()["value"][0]
        newest_id = f"env:{env_id}:{newest['owner']['id']}:{newest['stageName']}:{newest['stageAttempt']}"
        assert newest_id == new[-1]["native_id"]
        anchors = sb.azure.work_item_anchors()
        items = {w["native_id"]: w for w in truth["work_items"]}
        assert anchors and all(items[str(i)]["project"] == "Fabrikam" for i, _, _ in anchors)
        completed = [(i, done) for i, _, done in anchors if done is not None]
        assert completed and all(items[str(i)]["history"][-1]["category"] == "Completed" for i, _ in completed)


def test_the_azure_devops_sdk_works_against_the_sandbox(
    ado_org: Sandbox, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.devops import _file_cache
    from azure.devops.connection import Connection
    from azure.devops.v7_1.work_item_tracking.models import WorkItemBatchGetRequest
    from msrest.authentication import BasicAuthentication

    # the SDK caches discovery on disk: keep it in tmp_path
    monkeypatch.setattr(_file_cache.OPTIONS_CACHE, "file_name", str(tmp_path / "options.json"))
    monkeypatch.setattr(_file_cache.RESOURCE_CACHE, "file_name", str(tmp_path / "resources.json"))
    requests.post(f"{ado_org.url}/_sandbox/stats/reset")
    connection = Connection(base_url=ado_org.azure_url, creds=BasicAuthentication("", TOKEN))
    wit = connection.clients_v7_1.get_work_item_tracking_client()
    states = wit.get_work_item_type_states("Fabrikam", "User Story")
    assert ("In Review", "InProgress") in {(s.name, s.category) for s in states}
    batch = wit.read_reporting_revisions_get(project="Fabrikam", fields=["System.State"], max_page_size=5)
    # the SDK's ReportingWorkItemRevisionsBatch has an empty attribute map: all lands in additional_properties
    assert len(batch.additional_properties["values"]) == 5
    ids = [
        int(w["native_id"])
        for w in azure_truth(ado_org)["work_items"]
        if w["project"] == "Fabrikam" and w["links"] and not w["deleted"]
    ][:2]
    items = wit.get_work_items_batch(WorkItemBatchGetRequest(ids=ids, expand="Relations"), project="Fabrikam")
    assert [i.id for i in items] == ids and all(i.relations for i in items)
    builds = connection.clients_v7_1.get_build_client().get_builds("Fabrikam", top=3, status_filter="completed")
    assert len(builds) == 3 and all(b.definition.name in ("web-ci", "payments-ci") for b in builds)
    agent = connection.clients_v7_1.get_task_agent_client()
    env = next(e for e in agent.get_environments("Fabrikam") if e.name == "production")
    records = agent.get_environment_deployment_execution_records("Fabrikam", env.id, top=3)
    assert len(records) == 3 and records[0].owner.id > 0
    deployments = connection.clients_v7_1.get_release_client().get_deployments("Tailspin", top=2)
    assert {d.release_environment.name for d in deployments} <= {"QA", "Prod"}
    stats = requests.get(f"{ado_org.url}/_sandbox/stats").json()["by_endpoint"]
    assert stats["azure.options"] == 1 and stats["azure.resource_areas"] == 1  # discovery once per connection


def test_generation_is_deterministic_under_activity() -> None:
    orgs = [SeededAzureOrg(seed=8, work_items=100, now=NOW) for _ in range(2)]
    for org in orgs:
        rng = random.Random(1)
        for hours in (1, 2):
            org.add_activity(rng, NOW + timedelta(hours=hours))
    assert orgs[0].truth() == orgs[1].truth()
