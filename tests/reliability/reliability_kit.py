"""What the reliability tests share: the whole sandbox organisation as one config, passes that are
retried until they succeed, and the exported figures in comparable form."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from conftest import azure_source, github_source, sandbox_config
from prometheus_client.parser import text_string_to_metric_families

from collector.config import Config, parse_config
from collector.figures import FigureCache, Settings
from collector.runner import PassResult, Runner
from collector.store import Store
from exporters.prometheus import MetricsCache
from sandbox.app import Sandbox, SandboxOptions, default_now

TOKEN = "rel-Secret-Token-7c41f0e2"
#: project → (boards source, pipelines source)
PROJECTS = {"Fabrikam": ("boards", "pipelines"), "Tailspin": ("boards_tailspin", "pipelines_tailspin")}
#: repository → (github source, deployments_from): each sandbox repository delivers one way
REPOSITORIES = {
    "contoso/web": ("gh_web", "deployments"),
    "contoso/api": ("gh_api", "releases"),
    "contoso/mobile-app": ("gh_mobile_app", "workflow_runs:deploy.yml"),
}
#: the sandbox's production environments: YAML pipelines' ``production``, the classic release's ``Prod``
PRODUCTION = ["production", "Prod"]
#: the families derived from the data (CONTRACT §5), not the collector's own health
DATA_FAMILIES = (
    "cycletime_work_item",
    "cycletime_request_to_release",
    "cycletime_change_lead_time",
    "cycletime_failed_deployment_recovery",
    "cycletime_deployments",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def tomorrow() -> datetime:
    """A sandbox "now" ahead of the wall clock.

    ``Sandbox.add_activity`` moves its clock to max(previous + 1 h, wall clock); from a future "now"
    it is always the former, so two sandboxes stepped milliseconds apart generate identical activity.
    """
    return default_now() + timedelta(days=1)


def start_sandbox(**options: Any) -> Sandbox:
    """A sandbox serving ``TOKEN``; injected slow answers take 50 ms instead of 300 ms (same code path)."""
    sandbox = Sandbox(SandboxOptions(token=options.pop("token", TOKEN), **options))
    sandbox.server.faults.slow_seconds = 0.05
    return sandbox.start()


def config_yaml(
    sandbox_url: str,
    store_url: str,
    token: str = TOKEN,
    *,
    listen: str = "127.0.0.1:0",
    extra_repositories: Iterable[str] = (),
    only: Iterable[str] | None = None,
    azure: dict[str, Any] | None = None,
    github_api: str = "auto",
) -> str:
    """Both Azure DevOps projects (Boards + Pipelines each) and one GitHub source per repository
    (or only the sources named in ``only``); ``azure`` settings go to every Azure source,
    ``github_api`` is the GitHub sources' ``api`` plan."""
    sources = []
    extra = azure or {}
    for project, (boards, pipelines) in PROJECTS.items():
        sources += [
            azure_source("azure_boards", sandbox_url, token, project, name=boards, **extra),
            azure_source(
                "azure_pipelines",
                sandbox_url,
                token,
                project,
                name=pipelines,
                production_environments=PRODUCTION,
                **extra,
            ),
        ]
    for i, (repo, (name, mode)) in enumerate(REPOSITORIES.items()):
        repos = [repo, *extra_repositories] if i == 0 else [repo]
        sources.append(github_source(sandbox_url, token, repos, name=name, deployments_from=mode, api=github_api))
    if only is not None:
        by_name = {source["name"]: source for source in sources}
        sources = [by_name[name] for name in only]
    return sandbox_config(store_url, sources, listen=listen, history="365d", poll_interval="1h")


def organisation(sandbox: Sandbox, store_url: str, github_api: str = "auto", **azure: Any) -> Config:
    return parse_config(config_yaml(sandbox.url, store_url, azure=azure, github_api=github_api), {})


def quick_sleep(seconds: float) -> None:
    """Backoffs and Retry-After waits still happen, capped at 10 ms, so a fault-heavy test stays fast."""
    time.sleep(min(seconds, 0.01))


def sync_until_ok(runner: Runner, attempts: int = 8) -> list[PassResult]:
    """Every source once; a pass that still fails after its retries is run again (it resumes)."""
    failed: list[PassResult] = []
    for name in runner.sources:
        for _ in range(attempts):
            result = runner.run(name)
            if result.ok:
                break
            failed.append(result)
        else:
            raise AssertionError(f"{name} kept failing: {failed[-1].error}")
    return failed


def sync_measured(sandbox: Sandbox, runner: Runner) -> dict[str, tuple[int, int]]:
    """One clean pass over every source, in order: the span of the sandbox's requests each one made.

    ``cycletime sync`` runs the sources in the same order, so the spans tell where in a sync each
    source's pass is, and a fault or a kill can be aimed at the middle of any one of them.
    """
    spans = {}
    start = first = int(sandbox.server.stats.snapshot()["total"])
    for name in runner.sources:
        result = runner.run(name)
        assert result.ok, result.error
        end = int(sandbox.server.stats.snapshot()["total"])
        spans[name] = (start - first, end - first)
        start = end
    return spans


def samples(store: Store, config: Config, clock: float, prefixes: tuple[str, ...] = DATA_FAMILIES) -> Samples:
    """The exposition at a fixed clock, as {(sample name, labels): value} for the families named."""
    text = MetricsCache(FigureCache(store, Settings.from_config(config), clock=lambda: clock)).exposition().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(prefixes):
                assert not math.isnan(s.value), s
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def data_tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The store's domain rows (work items, histories, changes, deployments, links, rejections)."""
    return {k: v for k, v in store.content_digest().items() if k != "watermarks"}
