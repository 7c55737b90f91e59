"""Comparing what the Azure sources stored with the sandbox's ground truth, in the same terms.

The truth (``sandbox/azure/data.py``) covers both projects of the seeded organisation; a
source reads one project, so every expectation here is filtered by ``project``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import serving_half

from collector.config import AzureBoardsConfig, AzurePipelinesConfig
from collector.sources.base import SourceContext
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.azure.routes import AzureRoutes
from sandbox.server import SandboxHTTPServer

NOW = datetime(2026, 3, 1, tzinfo=UTC)
TOKEN = "sandbox-token"
TYPES = ["User Story", "Bug", "Feature"]


def context(history: timedelta = timedelta(days=365)) -> SourceContext:
    """The sandbox's clock (the replays' too); retries and rate-limit waits do not really sleep."""
    return SourceContext(history=history, now=lambda: NOW, sleep=lambda seconds: None)


def boards_config(url: str, project: str = "Fabrikam") -> AzureBoardsConfig:
    return AzureBoardsConfig(
        name="boards", kind="azure_boards", organization_url=url, project=project, token=TOKEN, work_item_types=TYPES
    )


def pipelines_config(url: str, project: str = "Tailspin") -> AzurePipelinesConfig:
    return AzurePipelinesConfig(
        name="pipelines",
        kind="azure_pipelines",
        organization_url=url,
        project=project,
        token=TOKEN,
        production_environments=["production", "Prod"],
    )


def start_sandbox(work_items: int = 200, seed: int = 11, fault_rate: float = 0.0, malformed: int = 0) -> Sandbox:
    return Sandbox(
        SandboxOptions(
            seed=seed,
            work_items=work_items,
            now=NOW,
            fault_rate=fault_rate,
            fault_kinds=("429", "500", "503", "reset", "truncate"),
            malformed=malformed,
        )
    ).start()


@contextmanager
def azure_only(work_items: int, seed: int = 11) -> Iterator[tuple[str, AzureRoutes, SandboxHTTPServer]]:
    """The sandbox's Azure half alone, so a test can swap its throttle's clock."""
    routes = AzureRoutes(seed=seed, work_items=work_items, now=NOW, token=TOKEN, organization="contoso")
    with serving_half(routes) as (root, server):
        yield f"{root}/contoso", routes, server


def requests_made(sandbox_server: SandboxHTTPServer) -> int:
    return int(sandbox_server.stats.snapshot()["total"])


# -- boards ---------------------------------------------------------------------------------------


def expected_work_items(truth: dict[str, Any], project: str) -> dict[str, tuple[Any, ...]]:
    return {
        w["native_id"]: (
            w["ref"],
            w["project"],
            w["team"],
            w["type"],
            w["created_at"],
            [(h["seq"], h["at"], h["state"], h["category"]) for h in w["history"]],
        )
        for w in truth["work_items"]
        if w["project"] == project and w["type"] in TYPES
    }


def stored_work_items(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        w.native_id: (
            w.ref,
            w.project,
            w.team,
            w.type,
            w.created_at.isoformat(),
            [(s.seq, s.at.isoformat(), s.state, s.category.value) for s in w.history],
        )
        for w in store.work_items("boards")
    }


def expected_item_links(truth: dict[str, Any], project: str) -> set[tuple[str, str]]:
    """ArtifactLinks of the items that still exist (a deleted item's relations cannot be read)."""
    return {
        (w["ref"], target)
        for w in truth["work_items"]
        if w["project"] == project and not w["deleted"]
        for target in w["links"]
    }


def expected_rejections(truth: dict[str, Any], project: str) -> Counter[tuple[str, str]]:
    return Counter(("boards", r["reason"]) for r in truth["rejected"] if r["project"] == project)


def boards_minimum_requests(truth: dict[str, Any], project: str, page_size: int) -> int:
    """The fewest requests a full Boards sync can make.

    1 ``workitemtypes`` (every type's states with their categories)
    + P = ⌈R / page⌉ reporting pages, R = every revision of the project's items (valid ones, the
      deletion revisions and the malformed ones: the stream carries them all)
    + ⌈items / 200⌉ ``workitemsbatch`` for the relations, each item that still exists read once
      (200 ids a request, the batch limit).
    """
    revisions = sum(len(w["history"]) for w in truth["work_items"] if w["project"] == project)
    revisions += sum(1 for r in truth["rejected"] if r["project"] == project)
    pages = max(1, math.ceil(revisions / page_size))
    live = sum(1 for w in truth["work_items"] if w["project"] == project and not w["deleted"])
    return 1 + pages + math.ceil(live / 200)


# -- pipelines ----------------------------------------------------------------------------------------


def expected_deployments(truth: dict[str, Any], project: str) -> dict[str, tuple[Any, ...]]:
    return {
        d["native_id"]: (
            d["service"],
            d["environment"],
            d["production"],
            d["status"],
            d["started_at"],
            d["finished_at"],
            d["sha"],
            sorted(d["contains"]),
        )
        for d in truth["deployments"]
        if d["project"] == project
    }


def stored_deployments(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        d.native_id: (
            d.service,
            d.environment,
            d.production,
            d.status,
            d.started_at.isoformat() if d.started_at else None,
            d.finished_at.isoformat(),
            d.sha,
            sorted(d.contains),
        )
        for d in store.deployments("pipelines")
    }


def expected_changes(truth: dict[str, Any], project: str) -> dict[str, tuple[Any, ...]]:
    return {
        c["native_id"]: (c["ref"], c["service"], c["kind"], c["first_commit_at"], c["merged_at"], tuple(c["commits"]))
        for c in truth["changes"]
        if c["project"] == project
    }


def stored_changes(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        c.native_id: (
            c.ref,
            c.service,
            c.kind,
            c.first_commit_at.isoformat(),
            c.merged_at.isoformat() if c.merged_at else None,
            c.commits,
        )
        for c in store.changes("pipelines")
    }


def expected_build_links(truth: dict[str, Any], project: str) -> set[tuple[str, str]]:
    return {(link["work_item"], link["target"]) for link in truth["links"] if link["project"] == project}


def pipelines_minimum_requests(truth: dict[str, Any], project: str) -> int:
    """The fewest requests a full Pipelines sync can make, from what the truth shows.

    1 environments list (one page of up to 1000)
    + per environment ⌈deployments / 1000⌉ record pages (``top=1000``; at least 1, even when empty)
    + ⌈distinct YAML runs / 100⌉ ``builds?buildIds=`` reads of the deployed commits
    + 2 per distinct (previous successful build, deployed build) pair of a successful production
      deployment (the only ones whose contents a figure uses): ``build/changes`` +
      ``build/workitems`` between them (the first deployment of a service to an environment reads
      ``builds/{id}/changes`` + ``/workitems``)
    + ⌈classic deployments / 100⌉ pages + 1 ``release/releases/{id}`` per distinct release.
    Canceled records and not-deployed releases are not in the truth, so this is a lower bound.
    """
    deployments = [d for d in truth["deployments"] if d["project"] == project]
    environments = _environments(truth, project)
    total = 1
    per_env = Counter(d["native_id"].split(":")[1] for d in deployments if d["native_id"].startswith("env:"))
    total += sum(max(1, math.ceil(per_env.get(env, 0) / 1000)) for env in environments)
    runs = {_build(d) for d in deployments if d["native_id"].startswith("env:")}
    total += math.ceil(len(runs) / 100)
    pairs: set[tuple[int | None, int]] = set()
    last_good: dict[tuple[str, str], int] = {}
    for d in sorted(deployments, key=lambda d: (d["finished_at"], d["native_id"])):
        key, build = (d["service"], d["environment"]), _build(d)
        if d["status"] == "success" and d["production"]:  # the others are not opened
            pairs.add((last_good.get(key), build))
        if d["status"] == "success":
            last_good[key] = build
    total += 2 * len({p for p in pairs if p[0] != p[1]})
    releases = [d for d in deployments if d["native_id"].startswith("release:")]
    total += max(1, math.ceil(len(releases) / 100)) + len({_build(d) for d in releases})
    return total


def _build(deployment: dict[str, Any]) -> int:
    return next(int(ref[6:]) for ref in deployment["contains"] if ref.startswith("build:"))


def _environments(truth: dict[str, Any], project: str) -> list[str]:
    """Environment ids of the project (dev, staging, production): those its deployments name."""
    return sorted(
        {
            d["native_id"].split(":")[1]
            for d in truth["deployments"]
            if d["project"] == project and d["native_id"].startswith("env:")
        }
    )


def store_killed_at_commit(url: str, n: int) -> Store:
    """A real store whose ``n``-th commit dies inside its transaction, just before committing
    (``Store.commit``'s ``before_commit`` hook): a process killed between two batches."""

    class Killed(Store):
        commits = 0

        def commit(self, *args: Any, **kwargs: Any) -> None:
            Killed.commits += 1
            if Killed.commits == n:

                def die() -> None:
                    raise SystemExit("killed")

                kwargs["before_commit"] = die
            super().commit(*args, **kwargs)

    return Killed(url)
