"""The sandbox as a whole: both API halves on one server, control endpoints, thread or foreground.

Control endpoints (never counted, never faulted):

- ``GET  /_sandbox/stats``     requests per endpoint name and status, 304s, injected faults
- ``POST /_sandbox/stats/reset``
- ``GET  /_sandbox/truth``     the ground truth in domain terms (what a perfect sync must store)
- ``POST /_sandbox/activity``  add new activity now (body ``{"steps": N}``); returns what was added
- ``POST /_sandbox/faults``    change fault injection (body ``{"rate": 0.2, "kinds": [...]}``)
- ``POST /_sandbox/throttle``  Azure DevOps: TSTU budget (body ``{"budget": 200, "window_seconds": 300}``)
- ``POST /_sandbox/ratelimit`` GitHub: set the budget (body ``{"limit":…, "remaining":…, "reset_in":…, "window":…}``;
  ``"resource": "graphql"`` for the GraphQL points budget; ``secondary``/``retry_after`` for both APIs)
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.azure.routes import AzureRoutes
from sandbox.github.apps import SandboxApp
from sandbox.github.routes import GitHubRoutes
from sandbox.server import FaultPlan, Latency, Request, Response, Router, SandboxHTTPServer

DEFAULT_TOKEN = "sandbox-token"


@dataclass
class SandboxOptions:
    seed: int = 7
    work_items: int = 600
    token: str = DEFAULT_TOKEN
    #: the sandbox's "today": history is generated over the year before it
    now: datetime | None = None
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "502", "503", "reset", "truncate", "slow")
    organization: str = "contoso"
    #: malformed records mixed into each half's data (Azure revisions, GitHub issues/PRs)
    malformed: int = 0
    #: GitHub: repositories beside the three services (mostly empty, archived or forks), for ``owner/*``
    github_repos: int = 0
    #: Azure DevOps TSTU budget per 5 minutes (None: no throttling), as the real service throttles
    tstu_budget: float | None = None
    #: a GitHub App the GitHub half accepts (its JWT, then its installation tokens), beside ``token``
    github_app: SandboxApp | None = None
    #: GitHub GraphQL points an hour (GitHub: 5,000; Enterprise Cloud: 10,000)
    github_graphql_points: int = 5000
    #: seconds added to every API answer (a network's round trip), jittered uniformly by
    #: ``latency_jitter`` of it and seeded; 0: answer at once
    latency: float = 0.0
    latency_jitter: float = 0.2


def default_now() -> datetime:
    """Midnight UTC today: stable across restarts within a day, so the demo's data do not move."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Sandbox:
    """Owns the worlds and the server. ``start()`` serves in a background thread (tests)."""

    def __init__(self, options: SandboxOptions | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.options = options or SandboxOptions()
        now = self.options.now or default_now()
        self.azure = AzureRoutes(
            seed=self.options.seed,
            work_items=self.options.work_items,
            now=now,
            token=self.options.token,
            organization=self.options.organization,
            malformed=self.options.malformed,
            tstu_budget=self.options.tstu_budget,
        )
        self.github = GitHubRoutes(
            seed=self.options.seed,
            work_items=self.options.work_items,
            now=now,
            token=self.options.token,
            organization=self.options.organization,
            azure_items=self.azure.work_item_anchors(),
            malformed=self.options.malformed,
            app=self.options.github_app,
            graphql_points=self.options.github_graphql_points,
            extra_repos=self.options.github_repos,
        )
        self._activity_rng = random.Random(self.options.seed * 7919 + 1)
        self._clock = now
        router = Router()
        self.azure.register(router)
        self.github.register(router)
        faults = FaultPlan(rate=self.options.fault_rate, kinds=self.options.fault_kinds, seed=self.options.seed)
        latency = Latency(self.options.latency, self.options.latency_jitter, seed=self.options.seed)
        self.server = SandboxHTTPServer((host, port), router, faults, self._control, latency)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def azure_url(self) -> str:
        """``organization_url`` for the Azure DevOps sources."""
        return f"{self.url}/{self.options.organization}"

    @property
    def github_url(self) -> str:
        """``base_url`` for the GitHub source (GitHub Enterprise Server style)."""
        return f"{self.url}/api/v3"

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self.server.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def truth(self) -> dict[str, Any]:
        with self._lock:
            return {"azure": self.azure.truth(), "github": self.github.truth()}

    def add_activity(self, steps: int = 1) -> dict[str, Any]:
        """New work, changes and deployments "now"; the clock moves on an hour per step."""
        added: dict[str, Any] = {"azure": [], "github": []}
        with self._lock:
            for _ in range(steps):
                self._clock = max(self._clock + timedelta(hours=1), datetime.now(UTC))
                added["azure"].append(self.azure.add_activity(self._activity_rng, self._clock))
                added["github"].append(self.github.add_activity(self._activity_rng, self._clock))
        return added

    def write_truth(self, path: Path) -> None:
        path.write_text(json.dumps(self.truth(), indent=1, sort_keys=True, default=str))

    def _control(self, req: Request) -> Response | None:
        path = req.path.rstrip("/")
        if path == "/_sandbox/stats" and req.method == "GET":
            return Response(200, self.server.stats.snapshot())
        if path == "/_sandbox/stats/reset" and req.method == "POST":
            self.server.stats.reset()
            return Response(200, {"ok": True})
        if path == "/_sandbox/truth" and req.method == "GET":
            return Response(200, json.loads(json.dumps(self.truth(), default=str)))
        if path == "/_sandbox/activity" and req.method == "POST":
            steps = int((req.json() or {}).get("steps", 1))
            return Response(200, json.loads(json.dumps(self.add_activity(steps), default=str)))
        if path == "/_sandbox/faults" and req.method == "POST":
            body = req.json() or {}
            plan = self.server.faults
            plan.rate = float(body.get("rate", plan.rate))
            plan.kinds = tuple(body.get("kinds", plan.kinds))
            return Response(200, {"rate": plan.rate, "kinds": list(plan.kinds)})
        if path == "/_sandbox/throttle" and req.method == "POST":
            body = req.json() or {}
            return Response(200, self.azure.set_throttle(body.get("budget"), float(body.get("window_seconds", 300))))
        if path == "/_sandbox/ratelimit" and req.method == "POST":
            return Response(200, self.github.set_rate_limit(**(req.json() or {})))
        return None
