"""Request-to-release across systems: an Azure Boards item delivered by a GitHub deployment.

The real sources sync the sandbox over HTTP into a real store; compute's figure for each linked
item must equal what the sandbox's ground truth says by definition (CONTRACT §4).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from conftest import azure_source, github_source, sandbox_config

from collector.compute import compute
from collector.config import parse_config
from collector.runner import Runner
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "r2r-token-0000"


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_azure_boards_item_released_by_a_github_deployment(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(seed=5, work_items=300, token=TOKEN)) as sandbox:
        sources = [azure_source("azure_boards", sandbox.url, TOKEN), github_source(sandbox.url, TOKEN)]
        config = parse_config(sandbox_config(f"sqlite:///{tmp_path}/s.db", sources, history="400d"), {})
        store = Store(config.store)
        results = Runner(config, store, sleep=lambda s: None).run_all()
        assert all(r.ok for r in results), [r.error for r in results]
        truth = sandbox.truth()

    gh = truth["github"]
    items = {w["ref"]: w for w in truth["azure"]["work_items"] if w["project"] == "Fabrikam"}
    commits_of = {
        c["ref"]: {f"commit:{sha}" for sha in c["commits"]} | {c["ref"]}
        for c in gh["changes"]
        if c["service"] == "contoso/web"
    }
    production = sorted(
        (
            d
            for d in gh["deployments"]
            if d["service"] == "contoso/web" and d["production"] and d["status"] == "success"
        ),
        key=lambda d: ts(d["finished_at"]),
    )
    expected: dict[str, float] = {}
    for link in gh["links"]:
        item = items.get(link["work_item"])
        if item is None or (item["history"] and item["history"][-1]["category"] == "Removed"):
            continue
        refs = commits_of.get(link["target"], {link["target"]})
        first = next((d for d in production if refs & (set(d["contains"]) | {f"commit:{d['sha']}"})), None)
        if first is not None:
            value = ts(first["finished_at"]) - ts(item["created_at"])
            expected[item["ref"]] = min(expected.get(item["ref"], value), value)
    assert len(expected) >= 5, "the sandbox should deliver several Boards items through GitHub"

    figures = compute(store.work_items(), store.changes(), store.deployments(), store.links())
    observed = sorted(
        v
        for (source, *_rest, env), pairs in figures.request_to_release.by_labels.items()
        if source == "boards" and env == "production"
        for v in pairs[:, 1]
    )
    assert observed == sorted(expected.values())
