"""The Azure DevOps half of the sandbox: a local Azure DevOps Services REST API (7.1) server.

Routing, auth, api-version, throttling and discovery; the handlers are per API area in
``boards``, ``pipelines``, ``environments``, ``releases`` and ``repos`` (see the package docstring).
"""

from __future__ import annotations

import base64
import random
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from sandbox.azure.boards import BoardsHandlers
from sandbox.azure.common import ApiError, Ctx, Throttle, error_body
from sandbox.azure.data import Build, Project, SeededAzureOrg, iso
from sandbox.azure.environments import EnvironmentsHandlers
from sandbox.azure.pipelines import PipelinesHandlers
from sandbox.azure.releases import ReleasesHandlers
from sandbox.azure.repos import ReposHandlers
from sandbox.server import Request, Response, Router

LATEST_API_VERSION = (7, 2)

#: (location id, area, resourceName, routeTemplate, resourceVersion) for SDK discovery; the ids
#: and preview versions are the ones the azure-devops 7.1 SDK asks for
LOCATIONS = [
    ("e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}", 1),
    ("603fe2ac-9723-48b9-88ad-09305aa6c6e1", "core", "projects", "_apis/{resource}/{*projectId}", 4),
    ("7c8d7a76-4a09-43e8-b5df-bd792f4ac6aa", "wit", "workItemTypes", "{project}/_apis/{area}/{resource}/{type}", 2),
    (
        "7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa",
        "wit",
        "workItemTypeStates",
        "{project}/_apis/{area}/workitemtypes/{type}/states",
        1,
    ),
    (
        "f828fe59-dd87-495d-a17c-7a8d6211ca6c",
        "wit",
        "workItemRevisions",
        "{project}/_apis/{area}/reporting/{resource}",
        2,
    ),
    ("1a9c53f7-f243-4447-b110-35ef023636e4", "wit", "wiql", "{project}/{team}/_apis/{area}/{resource}/{id}", 2),
    ("908509b6-4248-4475-a1cd-829139ba419f", "wit", "workItemsBatch", "{project}/_apis/{area}/{resource}", 1),
    ("72c7ddf8-2cdc-4f60-90cd-ab71c14a399b", "wit", "workItems", "{project}/_apis/{area}/{resource}/{id}", 3),
    (
        "6570bf97-d02c-4a91-8d93-3abe9895b1a9",
        "wit",
        "updates",
        "{project}/_apis/{area}/workItems/{id}/{resource}/{updateNumber}",
        3,
    ),
    (
        "a00c85a5-80fa-4565-99c3-bcd2181434bb",
        "wit",
        "revisions",
        "{project}/_apis/{area}/workItems/{id}/{resource}/{revisionNumber}",
        3,
    ),
    ("a9a9aa7a-8c09-44d3-ad1b-46e855c1e3d3", "wit", "artifactUriQuery", "{project}/_apis/{area}/{resource}", 1),
    (
        "dbeaf647-6167-421a-bda9-c9327b25e2e6",
        "build",
        "definitions",
        "{project}/_apis/{area}/{resource}/{definitionId}",
        7,
    ),
    ("0cd358e1-9217-4d94-8269-1c1ee6f93dcf", "build", "builds", "{project}/_apis/{area}/{resource}/{buildId}", 7),
    (
        "54572c7b-bbd3-45d4-80dc-28be08941620",
        "build",
        "changes",
        "{project}/_apis/{area}/builds/{buildId}/{resource}",
        2,
    ),
    (
        "5a21f5d2-5642-47e4-a0bd-1356e6731bee",
        "build",
        "workitems",
        "{project}/_apis/{area}/builds/{buildId}/{resource}",
        2,
    ),
    ("f10f0ea5-18a1-43ec-a8fb-2042c7be9b43", "build", "changes", "{project}/_apis/{area}/{resource}", 2),
    ("52ba8915-5518-42e3-a4bb-b0182d159e2d", "build", "workitems", "{project}/_apis/{area}/{resource}", 2),
    (
        "8572b1fc-2482-47fa-8f74-7e3ed53ee54b",
        "distributedtask",
        "environments",
        "{project}/_apis/{area}/{resource}/{environmentId}",
        1,
    ),
    (
        "51bb5d21-4305-4ea6-9dbb-b7488af73334",
        "distributedtask",
        "environmentdeploymentRecords",
        "{project}/_apis/{area}/environments/{environmentId}/{resource}",
        1,
    ),
    (
        "d8f96f24-8ea7-4cb6-baab-2df8fc515665",
        "Release",
        "definitions",
        "{project}/_apis/{area}/{resource}/{definitionId}",
        4,
    ),
    ("b005ef73-cddc-448e-9ba2-5193bf36b19f", "Release", "deployments", "{project}/_apis/{area}/{resource}", 2),
    ("a166fde7-27ad-408e-ba75-703c2cc9d500", "Release", "releases", "{project}/_apis/{area}/{resource}/{releaseId}", 8),
]

#: TSTU charged per endpoint (work item queries are the expensive ones on the real service)
COSTS = {"azure.wiql": 10.0, "azure.workitemsbatch": 2.0, "azure.workitems": 2.0, "azure.reporting_revisions": 1.0}

SIGN_IN_PAGE = """<!DOCTYPE html>
<html><head><title>Azure DevOps Services | Sign In</title></head>
<body><p>Sign in to your account to continue to Azure DevOps.</p>
<form method="post" action="https://login.microsoftonline.com/common/oauth2/authorize"></form></body></html>
"""


class AzureRoutes(BoardsHandlers, PipelinesHandlers, EnvironmentsHandlers, ReleasesHandlers, ReposHandlers):
    """The HTTP routes of the sandbox's Azure DevOps: a seeded organisation (``data``) served over the
    REST API 7.1 shapes. Auth, api-version, throttling, project lookup and discovery live here; each
    API area's handlers live in their own module (boards, pipelines, environments, releases, repos)."""

    def __init__(
        self,
        *,
        seed: int,
        work_items: int,
        now: datetime,
        token: str,
        organization: str,
        malformed: int = 0,
        page_size: int = 200,
        tstu_budget: float | None = None,
    ) -> None:
        self.organization = organization
        self.token = token
        self.page_size = page_size
        self.data = SeededAzureOrg(
            seed=seed, work_items=work_items, now=now, malformed=malformed, organization=organization
        )
        self.throttle = Throttle(tstu_budget)
        self.lock = threading.RLock()
        self._build_orders: dict[tuple[str, str], tuple[list[int], list[Build]]] = {}
        self._index_builds()

    # -- interface used by app.py --------------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        with self.lock:
            return self.data.truth()

    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        with self.lock:
            summary = self.data.add_activity(rng, now)
            self._index_builds()
            return summary

    def work_item_anchors(self) -> list[tuple[int, datetime, datetime | None]]:
        with self.lock:
            return self.data.anchors()

    def set_throttle(self, budget: float | None, window_seconds: float = 300.0) -> dict[str, Any]:
        """Turn the TSTU budget on (``budget``) or off (``None``); forgets what was spent."""
        self.throttle = Throttle(budget, window_seconds)
        return {"budget": budget, "window_seconds": window_seconds}

    # -- routing --------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        org = "/" + re.escape(self.organization)
        proj = r"(?:/(?P<project>(?!_apis)[^/]+))?"
        need = r"/(?P<project>(?!_apis)[^/]+)"
        wit = org + proj + "/_apis/wit"
        add = router.add
        add("OPTIONS", org + r"/_apis(?:/(?P<area>[^/]+))?/?", "azure.options", self._guard(self.options, "options"))
        add(
            "GET",
            org + r"/_apis/resourceareas(?:/(?P<area_id>[^/]+))?",
            "azure.resource_areas",
            self._guard(self.resource_areas, "resource_areas"),
        )
        add(
            "GET",
            org + r"/_apis/projects(?:/(?P<project_id>[^/]+))?",
            "azure.projects",
            self._guard(self.projects, "projects"),
        )
        add(
            "GET",
            org + need + r"/_apis/wit/workitemtypes/(?P<type>[^/]+)/states",
            "azure.workitemtype_states",
            self._guard(self.work_item_type_states, "workitemtype_states", project=True),
        )
        add(
            "GET",
            org + need + r"/_apis/wit/workitemtypes(?:/(?P<type>[^/]+))?",
            "azure.workitemtypes",
            self._guard(self.work_item_types, "workitemtypes", project=True),
        )
        for method in ("GET", "POST"):
            add(
                method,
                wit + r"/reporting/workitemrevisions",
                "azure.reporting_revisions",
                self._guard(self.reporting_revisions, "reporting_revisions"),
            )
        add(
            "POST",
            org + r"(?:/(?P<project>(?!_apis)[^/]+)(?:/(?P<team>(?!_apis)[^/]+))?)?/_apis/wit/wiql",
            "azure.wiql",
            self._guard(self.wiql, "wiql"),
        )
        add(
            "POST",
            wit + r"/workitemsbatch",
            "azure.workitemsbatch",
            self._guard(self.work_items_batch, "workitemsbatch"),
        )
        add("GET", wit + r"/workitems", "azure.workitems", self._guard(self.work_items_list, "workitems"))
        add("GET", wit + r"/workitems/(?P<id>\d+)", "azure.workitem", self._guard(self.work_item, "workitem"))
        add(
            "GET",
            wit + r"/workitems/(?P<id>\d+)/updates(?:/(?P<number>\d+))?",
            "azure.updates",
            self._guard(self.updates, "updates"),
        )
        add(
            "GET",
            wit + r"/workitems/(?P<id>\d+)/revisions(?:/(?P<number>\d+))?",
            "azure.revisions",
            self._guard(self.revisions, "revisions"),
        )
        add(
            "POST",
            wit + r"/artifacturiquery",
            "azure.artifacturiquery",
            self._guard(self.artifact_uri_query, "artifacturiquery"),
        )
        build = org + need + "/_apis/build"
        add(
            "GET",
            build + r"/definitions(?:/(?P<definition_id>\d+))?",
            "azure.build_definitions",
            self._guard(self.build_definitions, "build_definitions", project=True),
        )
        add("GET", build + r"/builds", "azure.builds", self._guard(self.builds, "builds", project=True))
        add("GET", build + r"/builds/(?P<build_id>\d+)", "azure.build", self._guard(self.build, "build", project=True))
        add(
            "GET",
            build + r"/builds/(?P<build_id>\d+)/changes",
            "azure.build_changes",
            self._guard(self.build_changes, "build_changes", project=True),
        )
        add(
            "GET",
            build + r"/builds/(?P<build_id>\d+)/workitems",
            "azure.build_workitems",
            self._guard(self.build_work_items, "build_workitems", project=True),
        )
        add(
            "GET",
            build + r"/changes",
            "azure.changes_between_builds",
            self._guard(self.changes_between_builds, "changes_between_builds", project=True),
        )
        add(
            "GET",
            build + r"/workitems",
            "azure.workitems_between_builds",
            self._guard(self.work_items_between_builds, "workitems_between_builds", project=True),
        )
        envs = org + need + r"/_apis/(?:distributedtask|pipelines)/environments"
        add(
            "GET",
            envs + r"(?:/(?P<environment_id>\d+))?",
            "azure.environments",
            self._guard(self.environments, "environments", project=True),
        )
        add(
            "GET",
            envs + r"/(?P<environment_id>\d+)/environmentdeploymentrecords",
            "azure.environment_records",
            self._guard(self.environment_records, "environment_records", project=True),
        )
        git = org + need + "/_apis/git/repositories"
        add("GET", git, "azure.git_repositories", self._guard(self.git_repositories, "git_repositories", project=True))
        pulls = git + r"/(?P<repository>[^/]+)/pullrequests"
        add("GET", pulls, "azure.pull_requests", self._guard(self.pull_requests, "pull_requests", project=True))
        for resource, handler in (
            ("commits", self.pull_request_commits),
            ("threads", self.pull_request_threads),
            ("workitems", self.pull_request_work_items),
        ):
            add(
                "GET",
                pulls + r"/(?P<pull_request_id>\d+)/" + resource,
                f"azure.pull_request_{resource}",
                self._guard(handler, f"pull_request_{resource}", project=True),
            )
        release = org + need + "/_apis/release"
        add(
            "GET",
            release + r"/definitions(?:/(?P<definition_id>\d+))?",
            "azure.release_definitions",
            self._guard(self.release_definitions, "release_definitions", project=True),
        )
        add(
            "GET",
            release + r"/deployments",
            "azure.release_deployments",
            self._guard(self.release_deployments, "release_deployments", project=True),
        )
        add(
            "GET",
            release + r"/releases/(?P<release_id>\d+)",
            "azure.release",
            self._guard(self.release, "release", project=True),
        )

    def _guard(
        self, handler: Callable[[Ctx], Response], name: str, project: bool = False
    ) -> Callable[[Request], Response]:
        """Auth, api-version, throttling, project lookup and error bodies around a handler."""

        def run(req: Request) -> Response:
            if not self._authorized(req):
                return self._unauthorized(req)
            allowed, limit_headers = self.throttle.charge(COSTS.get("azure." + name, 1.0))
            if not allowed:
                message = (
                    "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
                    "resource 'Core' in namespace 'User'. For more information on why your request was "
                    'blocked, see the topic "Rate limits" on the Microsoft Web site '
                    "(https://go.microsoft.com/fwlink/?LinkId=823950)."
                )
                return Response(429, error_body(message, "RequestBlockedException"), limit_headers)
            try:
                version = self._api_version(req)
                ctx = Ctx(req, f"{req.base_url}/{self.organization}", None, version)
                key = req.params.get("project")
                if key is not None:
                    ctx.project = self.data.project(unquote(key))
                    if ctx.project is None:
                        raise ApiError(
                            404,
                            f"TF200016: The following project does not exist: {unquote(key)}. "
                            f"Verify that the name of the project is correct and that the project "
                            f"exists on the specified Azure DevOps Server.",
                            "ProjectDoesNotExistException",
                        )
                elif project:
                    raise ApiError(404, "The project is missing from the request URL.", "ProjectDoesNotExistException")
                with self.lock:
                    resp = handler(ctx)
            except ApiError as err:
                resp = err.response()
            resp.headers.update(limit_headers)
            return resp

        return run

    def _authorized(self, req: Request) -> bool:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            return decoded.partition(":")[2] == self.token
        if scheme.lower() == "bearer":
            return value.strip() == self.token
        return False

    def _unauthorized(self, req: Request) -> Response:
        if req.headers.get("x-tfs-fedauthredirect", "").lower() == "suppress":
            body = error_body(
                "TF400813: The user '' is not authorized to access this resource.", "UnauthorizedRequestException"
            )
            return Response(
                401,
                body,
                {
                    "WWW-Authenticate": "Bearer authorization_uri=https://login.microsoftonline.com/"
                    'common, Basic realm="https://dev.azure.com/"',
                    "X-TFS-ProcessId": "00000000-0000-0000-0000-000000000000",
                },
            )
        # what a browser-style client gets from the real service: a sign-in page with a 2xx code
        return Response(203, SIGN_IN_PAGE, {"Content-Type": "text/html; charset=utf-8"})

    @staticmethod
    def _api_version(req: Request) -> str:
        version = req.arg("api-version")
        if version is None:
            m = re.search(r"api-version\s*=\s*([\w.\-]+)", req.headers.get("accept", ""))
            version = m.group(1) if m else None
        if version is None:
            return "7.1"
        m = re.fullmatch(r"(\d+)\.(\d+)(?:-preview(?:\.\d+)?)?", version.strip())
        if not m:
            raise ApiError(400, f"The requested api-version '{version}' is not valid.", "VssInvalidApiVersionException")
        if (int(m.group(1)), int(m.group(2))) > LATEST_API_VERSION:
            raise ApiError(
                400,
                f"The requested REST API version of {version} is out of range for this server. The "
                f"latest REST API version this server supports is 7.2.",
                "VssVersionOutOfRangeException",
            )
        return version.strip()

    # -- discovery ------------------------------------------------------------------------------

    def options(self, ctx: Ctx) -> Response:
        area = (ctx.req.params.get("area") or "").lower()
        value = [
            {
                "id": lid,
                "area": a,
                "resourceName": res,
                "routeTemplate": route,
                "resourceVersion": rv,
                "minVersion": 1.0,
                "maxVersion": 7.2,
                "releasedVersion": "7.1",
            }
            for lid, a, res, route, rv in LOCATIONS
            if not area or a.lower() == area
        ]
        return Response(200, {"count": len(value), "value": value})

    def resource_areas(self, ctx: Ctx) -> Response:
        return Response(200, {"count": 0, "value": []})

    def projects(self, ctx: Ctx) -> Response:
        def body(p: Project) -> dict[str, Any]:
            return {
                "id": p.id,
                "name": p.name,
                "description": f"The {p.name} team project",
                "url": f"{ctx.org_url}/_apis/projects/{p.id}",
                "state": "wellFormed",
                "revision": 11,
                "visibility": "private",
                "lastUpdateTime": iso(self.data.start),
            }

        key = ctx.req.params.get("project_id")
        if key:
            project = self.data.project(unquote(key))
            if project is None:
                raise ApiError(
                    404,
                    f"TF200016: The following project does not exist: {unquote(key)}.",
                    "ProjectDoesNotExistException",
                )
            return Response(200, body(project))
        return Response(200, {"count": len(self.data.projects), "value": [body(p) for p in self.data.projects]})

    # -- boards: process ------------------------------------------------------------------------
