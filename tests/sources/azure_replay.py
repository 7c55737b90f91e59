"""Official Azure DevOps 7.1 response shapes for a handful of records, served over real HTTP.

The shapes follow MicrosoftDocs/vsts-rest-api-specs' httpExamples (reporting revisions with
``values``/``nextLink``/``isLastBatch`` and a token only inside ``nextLink`` on the first page, as in
``POST__wit_reporting_workItemRevisions_watermark-794.json``; work item types with their states;
``workitemsbatch`` with ``relations``; ``updates`` with ``oldValue``/``newValue``). The sandbox
serves a whole organisation; this serves exactly the edge cases a test names, so each assertion can
point at its record. It reuses the sandbox's HTTP core (routing, request counting).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from collector.config import AzureBoardsConfig, AzurePipelinesConfig
from sandbox.server import FaultPlan, Request, Response, Router, SandboxHTTPServer

ORG = "fabrikam"
PROJECT = "Fabrikam"
API = f"/{ORG}/{PROJECT}/_apis"
TOKEN = "replay-token"

STATES = {
    "User Story": [
        {"name": "New", "color": "b2b2b2", "category": "Proposed"},
        {"name": "Active", "color": "007acc", "category": "InProgress"},
        # a custom state: categories come from the process, not from the name
        {"name": "Code Review", "color": "5688E0", "category": "InProgress"},
        {"name": "Closed", "color": "339933", "category": "Completed"},
        {"name": "Removed", "color": "ffffff", "category": "Removed"},
    ],
    "Bug": [
        {"name": "New", "color": "b2b2b2", "category": "Proposed"},
        {"name": "Resolved", "color": "ff9d00", "category": "Resolved"},
        {"name": "Closed", "color": "339933", "category": "Completed"},
    ],
    "Task": [{"name": "To Do", "color": "b2b2b2", "category": "Proposed"}],
}


@dataclass
class FakeBoards:
    """Revisions (as the reporting API returns them) and relations per item id."""

    revisions: list[dict[str, Any]]
    relations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 3
    reporting: bool = True
    deleted: set[int] = field(default_factory=set)
    states: dict[str, list[dict[str, str]]] = field(default_factory=lambda: json.loads(json.dumps(STATES)))
    requests: list[tuple[str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    #: recorded answers instead of the generated ones: the ``workitemtypes`` body, and reporting
    #: bodies by the continuation token asked for ("" = the first call)
    types_body: dict[str, Any] | None = None
    reporting_bodies: dict[str, dict[str, Any]] | None = None
    #: recorded WIQL answer and recorded ``updates`` answers by item id
    wiql_body: dict[str, Any] | None = None
    updates_bodies: dict[int, dict[str, Any]] = field(default_factory=dict)

    def start(self) -> SandboxHTTPServer:
        import threading

        router = Router()
        router.add("GET", rf"{API}/wit/workitemtypes", "workitemtypes", self._types)
        router.add("GET", rf"{API}/wit/workitemtypes/(?P<type>[^/]+)/states", "workitemtypestates", self._type_states)
        router.add("GET", rf"{API}/wit/reporting/workitemrevisions", "reporting", self._reporting)
        router.add("POST", rf"{API}/wit/workitemsbatch", "workitemsbatch", self._batch)
        router.add("POST", rf"{API}/wit/wiql", "wiql", self._wiql)
        router.add("GET", rf"{API}/wit/workItems/(?P<id>\d+)/updates", "updates", self._updates)
        server = SandboxHTTPServer(("127.0.0.1", 0), router, FaultPlan(), lambda req: None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _log(self, req: Request) -> None:
        body = json.loads(req.body) if req.body else None
        self.requests.append((req.method, req.path, req.query, body))

    def _types(self, req: Request) -> Response:
        self._log(req)
        if self.types_body is not None:
            return Response(200, self.types_body)
        value = [
            {"name": name, "referenceName": "Microsoft.VSTS.WorkItemTypes." + name.replace(" ", ""), "states": states}
            for name, states in self.states.items()
        ]
        return Response(200, {"count": len(value), "value": value})

    def _type_states(self, req: Request) -> Response:
        self._log(req)
        from urllib.parse import unquote

        states = self.states.get(unquote(req.params["type"]))
        if states is None:
            return Response(404, {"message": "The work item type does not exist.", "typeKey": "WorkItemTypeNotFound"})
        return Response(200, {"count": len(states), "value": states})

    def _reporting(self, req: Request) -> Response:
        self._log(req)
        if self.reporting_bodies is not None:
            token = req.arg("continuationToken") or ""
            return Response(
                200, self.reporting_bodies.get(token, {"values": [], "isLastBatch": True, "continuationToken": token})
            )
        if not self.reporting:
            return Response(
                404,
                {
                    "$id": "1",
                    "innerException": None,
                    "message": "API resource location f828fe59 is not registered",
                    "typeName": "ApiResourceNotFoundException",
                    "typeKey": "ApiResourceNotFoundException",
                    "errorCode": 0,
                    "eventId": 0,
                },
            )
        start = int((req.arg("continuationToken") or "0;0").split(";")[0])
        page = self.revisions[start : start + self.page_size]
        end = start + len(page)
        token = f"{end};{page[-1]['id']}" if page else (req.arg("continuationToken") or "0;0")
        body: dict[str, Any] = {
            "values": page,
            "nextLink": f"{req.base_url}{API}/wit/reporting/workItemRevisions?continuationToken={token}"
            "&api-version=7.1-preview.2",
            "isLastBatch": end >= len(self.revisions),
        }
        if start > 0:  # the official examples show both forms: token only in nextLink, and in the body too
            body["continuationToken"] = token
        return Response(200, body)

    def _current(self, item_id: int) -> dict[str, Any] | None:
        revs = [r for r in self.revisions if isinstance(r, dict) and r.get("id") == item_id]
        return max(revs, key=lambda r: r["rev"]) if revs and item_id not in self.deleted else None

    def _batch(self, req: Request) -> Response:
        self._log(req)
        body = req.json()
        if "fields" in body and "$expand" in body:
            return Response(400, {"message": "The expand parameter can not be used with the fields parameter."})
        value: list[Any] = []
        for item_id in body["ids"]:
            current = self._current(item_id)
            if current is None:
                value.append(None)  # errorPolicy=Omit
                continue
            item = {
                "id": item_id,
                "rev": current["rev"],
                "fields": dict(current["fields"]),
                "url": f"{req.base_url}{API}/wit/workItems/{item_id}",
            }
            if body.get("$expand", "").lower() in ("relations", "all"):
                item["relations"] = self.relations.get(item_id, [])
            value.append(item)
        return Response(200, {"count": len(value), "value": value})

    def _wiql(self, req: Request) -> Response:
        self._log(req)
        if self.wiql_body is not None:
            return Response(200, self.wiql_body)
        ids = sorted(
            {
                r["id"]
                for r in self.revisions
                if isinstance(r, dict)
                and isinstance(r.get("id"), int)
                and r["id"] not in self.deleted
                and r["fields"].get("System.WorkItemType") in ("User Story", "Bug")
            }
        )
        return Response(
            200,
            {
                "queryType": "flat",
                "queryResultType": "workItem",
                "asOf": "2026-01-01T00:00:00Z",
                "columns": [{"referenceName": "System.Id", "name": "ID"}],
                "workItems": [{"id": i, "url": f"{req.base_url}{API}/wit/workItems/{i}"} for i in ids],
            },
        )

    def _updates(self, req: Request) -> Response:
        self._log(req)
        item_id = int(req.params["id"])
        if item_id in self.updates_bodies:
            value = self.updates_bodies[item_id]["value"]
            skip, top = int(req.arg("$skip") or 0), int(req.arg("$top") or 200)
            return Response(200, {"count": len(value[skip : skip + top]), "value": value[skip : skip + top]})
        revs = sorted(
            (r for r in self.revisions if isinstance(r, dict) and r.get("id") == item_id), key=lambda r: r["rev"]
        )
        updates, before = [], {}
        for n, rev in enumerate(revs, start=1):
            delta = {
                k: ({"oldValue": before[k], "newValue": v} if k in before else {"newValue": v})
                for k, v in rev["fields"].items()
                if before.get(k) != v
            }
            updates.append(
                {
                    "id": n,
                    "workItemId": item_id,
                    "rev": rev["rev"],
                    "revisedDate": "9999-01-01T00:00:00Z",
                    "fields": delta,
                }
            )
            before = dict(rev["fields"])
        skip, top = int(req.arg("$skip") or 0), int(req.arg("$top") or 200)
        page = updates[skip : skip + top]
        return Response(200, {"count": len(page), "value": page})


def _commit(sha: str, when: str) -> dict[str, Any]:
    """A Build ``Change`` (build.json): id = sha, timestamp = commit time."""
    return {
        "id": sha,
        "message": "change " + sha[:7],
        "type": "TfsGit",
        "timestamp": when,
        "author": {"displayName": "Jamal Hartnett", "uniqueName": "fabrikamfiber4@hotmail.com"},
        "location": f"https://dev.azure.com/{ORG}/_apis/git/repositories/r/commits/{sha}",
    }


@dataclass
class FakePipelines:
    """Environments with deployment records, classic release deployments, and builds' changes/work items."""

    environments: list[dict[str, Any]]
    records: dict[int, list[dict[str, Any]]]  # environment id → records (any order; served newest first)
    deployments: list[dict[str, Any]]  # classic release deployments
    releases: dict[int, dict[str, Any]]
    build_changes: dict[int, list[dict[str, Any]]]  # build id → the commits that build brought
    build_work_items: dict[int, list[int]]
    build_versions: dict[int, str] = field(default_factory=dict)  # build id → sourceVersion
    top: int = 2
    #: the most records a page carries whatever ``top`` asks, like a service capping its pages
    records_cap: int | None = None
    #: record ids in the order they are served (default: newest first; no order is documented)
    record_order: list[int] | None = None
    #: Azure DevOps Server without Release Management answers 404 on release/deployments
    release_management: bool = True
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)

    def start(self) -> SandboxHTTPServer:
        import threading

        router = Router()
        router.add("GET", rf"{API}/distributedtask/environments", "environments", self._environments)
        router.add(
            "GET",
            rf"{API}/distributedtask/environments/(?P<env>\d+)/environmentdeploymentrecords",
            "records",
            self._records,
        )
        router.add("GET", rf"{API}/release/deployments", "release_deployments", self._release_deployments)
        router.add("GET", rf"{API}/release/releases/(?P<id>\d+)", "release", self._release)
        # builds of a release artifact are addressed by project id, like Azure DevOps allows
        builds = rf"/{ORG}/(?:{PROJECT}|[0-9a-f-]{{36}})/_apis/build"
        router.add("GET", rf"{builds}/builds", "builds", self._builds_list)
        router.add("GET", rf"{builds}/builds/(?P<id>\d+)/changes", "build_changes", self._changes)
        router.add("GET", rf"{builds}/builds/(?P<id>\d+)/workitems", "build_workitems", self._workitems)
        router.add("GET", rf"{builds}/changes", "changes_between", self._changes)
        router.add("GET", rf"{builds}/workitems", "workitems_between", self._workitems)
        server = SandboxHTTPServer(("127.0.0.1", 0), router, FaultPlan(), lambda req: None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _log(self, req: Request) -> None:
        self.requests.append((req.method, req.path, req.query))

    def _page(self, items: list[Any], req: Request, top_param: str, cap: int | None = None) -> Response:
        top = min(int(req.arg(top_param) or self.top), cap or 10**9)
        start = int(req.arg("continuationToken") or 0)
        page = items[start : start + top]
        headers = {"x-ms-continuationtoken": str(start + top)} if start + top < len(items) else {}
        return Response(200, {"count": len(page), "value": page}, headers)

    def _environments(self, req: Request) -> Response:
        self._log(req)
        return self._page(self.environments, req, "$top")

    def _records(self, req: Request) -> Response:
        self._log(req)
        records = self.records.get(int(req.params["env"]), [])
        if self.record_order is None:
            served = sorted(records, key=lambda r: -r["id"])
        else:
            served = sorted(
                (r for r in records if r["id"] in self.record_order), key=lambda r: self.record_order.index(r["id"])
            )
        return self._page(served, req, "top", cap=self.records_cap)

    def _release_deployments(self, req: Request) -> Response:
        self._log(req)
        if not self.release_management:
            return Response(
                404,
                {
                    "$id": "1",
                    "innerException": None,
                    "message": "The resource cannot be found.",
                    "typeName": "System.Web.HttpException",
                    "typeKey": "HttpException",
                    "errorCode": 0,
                    "eventId": 0,
                },
            )
        since = req.arg("minStartedTime") or ""
        rows = sorted((d for d in self.deployments if d["startedOn"] >= since), key=lambda d: d["startedOn"])
        return self._page(rows, req, "$top")

    def _release(self, req: Request) -> Response:
        self._log(req)
        return Response(200, self.releases[int(req.params["id"])])

    def _builds_list(self, req: Request) -> Response:
        """``builds?buildIds=`` (the deployed commits) and ``builds?definitions=&minTime=&maxTime=`` (the
        pipeline's builds between two, to split a between-builds read); one pipeline, id 7."""
        self._log(req)
        known = sorted(set(self.build_versions) | set(self.build_changes) | set(self.build_work_items))
        ids = [int(i) for i in (req.arg("buildIds") or "").split(",") if i]
        if not ids and req.arg("definitions") == "7":
            low, high = req.arg("minTime") or "", req.arg("maxTime") or "~"
            ids = [b for b in known if low <= _queued(b) <= high]
        value = [
            {
                "id": i,
                "buildNumber": f"2026.{i}",
                "status": "completed",
                "result": "succeeded",
                "definition": {"id": 7, "name": "web-ci"},
                "queueTime": _queued(i),
                "sourceVersion": self.build_versions.get(i, f"{i:040x}"),
                "sourceBranch": "refs/heads/main",
                "uri": f"vstfs:///Build/Build/{i}",
            }
            for i in ids
            if i in known
        ]
        return Response(200, {"count": len(value), "value": value})

    def _builds(self, req: Request) -> list[int]:
        if "id" in req.params:
            return [int(req.params["id"])]
        low, high = int(req.arg("fromBuildId") or 0), int(req.arg("toBuildId") or 0)
        return [b for b in sorted(self.build_changes) if low < b <= high]

    def _changes(self, req: Request) -> Response:
        """Newest first, cut at ``$top`` without a continuation token, as the real endpoints do."""
        self._log(req)
        value = [c for b in reversed(self._builds(req)) for c in self.build_changes.get(b, [])]
        if "id" not in req.params:  # one build's changes page with a token instead (never needed here)
            value = value[: int(req.arg("$top") or 50)]
        return Response(200, {"count": len(value), "value": value})

    def _workitems(self, req: Request) -> Response:
        self._log(req)
        ids = sorted({w for b in self._builds(req) for w in self.build_work_items.get(b, [])})
        value = [{"id": str(i), "url": f"{req.base_url}{API}/wit/workItems/{i}"} for i in ids]
        value = value[: int(req.arg("$top") or 50)]
        return Response(200, {"count": len(value), "value": value})


def _queued(build: int) -> str:
    """Replay builds are queued in id order, one hour apart."""
    return f"2026-01-{1 + (build % 100) // 24:02d}T{build % 24:02d}:00:00.000Z"


@contextmanager
def serving(fake: FakeBoards | FakePipelines) -> Iterator[str]:
    """Serve ``fake`` on a free port; yields the ``organization_url`` a source is configured with."""
    server = fake.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}/{ORG}"
    finally:
        server.shutdown()
        server.server_close()


def _replayed(name: str, url: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": f"azure_{name}",
        "organization_url": url,
        "project": PROJECT,
        "token": TOKEN,
        **settings,
    }


def replay_boards_config(url: str, **overrides: Any) -> AzureBoardsConfig:
    """An Azure Boards source for the replayed project (User Stories and Bugs unless told otherwise)."""
    return AzureBoardsConfig(**_replayed("boards", url, **{"work_item_types": ["User Story", "Bug"], **overrides}))


def replay_pipelines_config(url: str, **overrides: Any) -> AzurePipelinesConfig:
    """An Azure Pipelines source for the replayed project."""
    production = {"production_environments": ["production", "/^prod$/"]}
    return AzurePipelinesConfig(**_replayed("pipelines", url, **{**production, **overrides}))
