"""A client written the obvious way, as the baseline of the API-request benchmark.

What a first exporter typically does (and what Microsoft's "don't use queries for reporting" advice
is about), reading the same data our sources read, with the same page sizes where a list is paged,
so the difference is design, not tuning:

- Azure Boards: ``workitemtypes`` for the state categories, a WIQL query for the ids changed since
  the last sync (chunked by id below WIQL's 20,000 cap), then ``GET workItems/{id}/updates`` per
  item: its revisions and the artifact links they added.
- Azure Pipelines: every environment's deployment records, and for each record the changes and
  work items of the run it deployed (``builds/{id}/changes`` and ``/workitems``; no caching of a
  run deployed to several stages); classic release deployments since the last sync, then
  ``release/releases/{id}`` for each.
- GitHub: ``/issues?since=`` then each issue's timeline; every closed pull request page (the list
  has no ``since``), then each newly merged one's commits; deliveries (deployments + statuses each,
  releases + the tag's commit each, or workflow runs), then a ``compare`` per delivery. No
  ``If-None-Match``: every answer is a 200 that costs rate-limit budget.

Re-syncs remember only the time of the previous sync (no watermarks, ETags or caches): lists with a
time filter ask for what changed since; the others are read again in full, and per-record requests
are made for records newer than the previous sync. It decodes every answer and keeps nothing:
only its requests are measured.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from collector.sources.azure_common import API_VERSIONS

WIQL_TOP = 19_999
PER_PAGE = 100


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class NaiveClient:
    """Full sync and re-sync of Azure DevOps projects and GitHub repositories, the obvious way."""

    def __init__(
        self,
        azure_url: str,
        github_url: str,
        token: str,
        projects: list[str],
        repositories: dict[str, str],
        history: timedelta = timedelta(days=365),
    ) -> None:
        self.azure_url = azure_url.rstrip("/")
        self.github_url = github_url.rstrip("/")
        self.projects = projects
        self.repositories = repositories  # owner/repo -> deployments | releases | workflow_runs:<file>
        self.since = datetime.now(UTC) - history
        self.azure = requests.Session()
        self.azure.headers["Authorization"] = "Basic " + base64.b64encode(f":{token}".encode()).decode()
        self.github = requests.Session()
        self.github.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"})

    def sync(self) -> None:
        """One pass; the next pass asks for what changed since this one started."""
        started = datetime.now(UTC)
        for project in self.projects:
            self._boards(project)
            self._pipelines(project)
        for repo, mode in self.repositories.items():
            self._github(repo, mode)
        self.since = started

    # -- Azure DevOps ----------------------------------------------------------------------------
    def _ado(
        self, method: str, path: str, endpoint: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> requests.Response:
        params = {**(params or {}), "api-version": API_VERSIONS[endpoint]}
        url = path if path.startswith("http") else f"{self.azure_url}/{path}"
        resp = self.azure.request(method, url, params=params, json=body, timeout=60)
        resp.raise_for_status()
        resp.json()
        return resp

    def _ado_pages(self, path: str, endpoint: str, params: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        params = dict(params)
        while True:
            resp = self._ado("GET", path, endpoint, params)
            out += resp.json().get("value") or []
            token = resp.headers.get("x-ms-continuationtoken")
            if not token:
                return out
            params["continuationToken"] = token

    def _boards(self, project: str) -> None:
        p = quote(project)
        self._ado("GET", f"{p}/_apis/wit/workitemtypes", "workitemtypes")
        last_id = 0
        while True:
            query = (
                "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
                f"AND [System.ChangedDate] >= '{_iso(self.since)}' AND [System.Id] > {last_id} "
                "ORDER BY [System.Id]"
            )
            ids = [
                w["id"]
                for w in self._ado(
                    "POST", f"{p}/_apis/wit/wiql", "wiql", {"timePrecision": "true", "$top": WIQL_TOP}, {"query": query}
                ).json()["workItems"]
            ]
            for item_id in ids:
                skip = 0
                while True:
                    updates = self._ado(
                        "GET", f"{p}/_apis/wit/workItems/{item_id}/updates", "updates", {"$top": 200, "$skip": skip}
                    ).json()["value"]
                    if len(updates) < 200:
                        break
                    skip += 200
            if len(ids) < WIQL_TOP:
                return
            last_id = ids[-1]

    def _pipelines(self, project: str) -> None:
        p = quote(project)
        envs = f"{p}/_apis/distributedtask/environments"
        for env in self._ado_pages(envs, "environments", {"$top": 1000}):
            records = self._ado_pages(
                f"{envs}/{env['id']}/environmentdeploymentrecords", "environmentdeploymentrecords", {"top": PER_PAGE}
            )
            for record in records:
                finished = _time(record.get("finishTime"))
                if record.get("result") not in ("succeeded", "failed") or finished is None or finished < self.since:
                    continue
                build = record["owner"]["id"]
                self._ado("GET", f"{p}/_apis/build/builds/{build}/changes", "build_changes", {"$top": 1000})
                self._ado("GET", f"{p}/_apis/build/builds/{build}/workitems", "build_workitems", {"$top": 1000})
        deployments = self._ado_pages(
            f"{p}/_apis/release/deployments",
            "release_deployments",
            {"minStartedTime": _iso(self.since), "queryOrder": "ascending", "$top": PER_PAGE},
        )
        for deployment in deployments:
            if deployment.get("deploymentStatus") in ("succeeded", "failed", "partiallySucceeded"):
                self._ado("GET", f"{p}/_apis/release/releases/{deployment['release']['id']}", "release")

    # -- GitHub ------------------------------------------------------------------------------------
    def _gh(self, path_or_url: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else f"{self.github_url}{path_or_url}"
        resp = self.github.get(url, params=params, timeout=60)
        resp.json()
        return resp

    def _gh_all(self, path: str, params: dict[str, Any] | None = None, key: str | None = None) -> list[Any]:
        out: list[Any] = []
        resp = self._gh(path, {**(params or {}), "per_page": PER_PAGE})
        while True:
            data = resp.json()
            out += (data.get(key) or []) if key else data if isinstance(data, list) else []
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return out
            resp = self._gh(nxt)

    def _github(self, repo: str, mode: str) -> None:
        base = f"/repos/{repo}"
        for issue in self._gh_all(f"{base}/issues", {"state": "all", "since": _iso(self.since)}):
            if "pull_request" not in issue:
                self._gh(f"{base}/issues/{issue['number']}/timeline", {"per_page": PER_PAGE})
        for pull in self._gh_all(f"{base}/pulls", {"state": "closed"}):
            merged = _time(pull.get("merged_at"))
            if merged is not None and merged >= self.since:
                self._gh(f"{base}/pulls/{pull['number']}/commits", {"per_page": PER_PAGE})
        if mode == "deployments":
            deliveries = self._gh_all(f"{base}/deployments")
            for d in deliveries:
                if (_time(d.get("created_at")) or self.since) >= self.since:
                    self._gh(f"{base}/deployments/{d['id']}/statuses", {"per_page": PER_PAGE})
            shas = [(d["environment"], d["sha"], _time(d.get("created_at"))) for d in reversed(deliveries)]
        elif mode == "releases":
            releases = [r for r in self._gh_all(f"{base}/releases") if not r.get("draft")]
            shas = []
            for r in reversed(releases):
                when = _time(r.get("published_at"))
                if when is not None and when >= self.since:
                    ref = self._gh(f"{base}/git/ref/tags/{quote(r['tag_name'], safe='')}").json()
                    shas.append(("production", (ref.get("object") or {}).get("sha"), when))
        else:
            runs = self._gh_all(f"{base}/actions/workflows/{mode.split(':', 1)[1]}/runs", key="workflow_runs")
            shas = [
                ("production", r["head_sha"], _time(r.get("updated_at")))
                for r in reversed(runs)
                if r.get("status") == "completed"
            ]
        previous: dict[str, str] = {}
        for env, sha, when in shas:
            if when is not None and when >= self.since and sha:
                if env in previous:
                    self._gh(f"{base}/compare/{previous[env]}...{sha}")
                else:
                    self._gh(f"{base}/commits", {"sha": sha, "per_page": PER_PAGE})
            if sha:
                previous[env] = sha
