"""1,000 malformed records mixed into the organisation: each one counted, every valid one stored, no crash.

``SandboxOptions(malformed=500)`` corrupts 500 records in each API half: the Azure half breaks 500
work item revisions (spread over both projects; the reporting stream carries them), the GitHub
half adds 500 broken issues and pull requests (spread over the three repositories). The defects:
missing fields, wrong types, end before start, unknown states, unparsable timestamps, 100,000
character strings. The sandbox's truth lists each one under ``rejected`` with its reason.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from reliability_kit import PROJECTS, REPOSITORIES, organisation, quick_sleep, samples, start_sandbox

from collector.runner import Runner
from collector.store import Store

BOARDS = {project: names[0] for project, names in PROJECTS.items()}
PIPELINES = {project: names[1] for project, names in PROJECTS.items()}
GITHUB = {repo: names[0] for repo, names in REPOSITORIES.items()}


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def expected_store(truth: dict[str, Any]) -> dict[str, set[tuple[Any, ...]]]:
    """The sandbox truth as rows of the store, under this test's source names."""
    azure, github = truth["azure"], truth["github"]
    items: set[tuple[Any, ...]] = set()
    changes: set[tuple[Any, ...]] = set()
    deployments: set[tuple[Any, ...]] = set()
    # (half, the source storing its items, the source storing its changes and deployments)
    halves = (
        (azure, lambda w: BOARDS[w["project"]], lambda c: PIPELINES[c["project"]]),
        (github, lambda w: GITHUB[w["project"]], lambda c: GITHUB[c["service"]]),
    )
    for half, item_source, delivery_source in halves:
        items |= {
            (
                item_source(w),
                w["native_id"],
                w["ref"],
                w["project"],
                w["team"],
                w["type"],
                at(w["created_at"]),
                tuple((h["seq"], at(h["at"]), h["state"], h["category"]) for h in w["history"]),
            )
            for w in half["work_items"]
        }
        changes |= {
            (
                delivery_source(c),
                c["native_id"],
                c["ref"],
                c["service"],
                c["kind"],
                at(c["first_commit_at"]),
                at(c["merged_at"]),
                tuple(sorted(c["commits"])),
            )
            for c in half["changes"]
        }
        deployments |= {
            (
                delivery_source(d),
                d["native_id"],
                d["service"],
                d["environment"],
                d["production"],
                d["status"],
                at(d["started_at"]),
                at(d["finished_at"]),
                d["sha"],
                tuple(sorted(d["contains"])),
            )
            for d in half["deployments"]
        }
    # Boards: the artifact links of items that still exist; Pipelines: work items of deployed runs;
    # GitHub: closing references and AB# mentions, to the PR or the commit that carries them
    links = {
        (BOARDS[w["project"]], w["ref"], target)
        for w in azure["work_items"]
        if not w["deleted"]
        for target in w["links"]
    }
    links |= {(PIPELINES[x["project"]], x["work_item"], x["target"]) for x in azure["links"]}
    targets = {
        t: GITHUB[c["service"]]
        for c in github["changes"]
        for t in (c["ref"], *(f"commit:{sha}" for sha in c["commits"]))
    }
    links |= {(targets[x["target"]], x["work_item"], x["target"]) for x in github["links"]}
    return {"work_items": items, "changes": changes, "deployments": deployments, "links": links}


def skewed_changes(github: dict[str, Any]) -> list[dict[str, Any]]:
    """Changes first committed (author clock) after the production deployment that shipped them."""
    shipped: dict[str, datetime] = {}
    for d in github["deployments"]:
        if d["production"] and d["status"] == "success":
            for ref in d["contains"]:
                end = at(d["finished_at"])
                assert end is not None
                shipped[ref] = min(end, shipped.get(ref, end))
    out = []
    for c in github["changes"]:
        ends = [shipped[f"commit:{sha}"] for sha in c["commits"] if f"commit:{sha}" in shipped]
        first = at(c["first_commit_at"])
        if ends and first is not None and min(ends) < first:
            out.append(c)
    return out


def stored(store: Store) -> dict[str, set[tuple[Any, ...]]]:
    return {
        "work_items": {
            (
                w.source,
                w.native_id,
                w.ref,
                w.project,
                w.team,
                w.type,
                w.created_at,
                tuple((s.seq, s.at, s.state, s.category.value) for s in w.history),
            )
            for w in store.work_items()
        },
        "changes": {
            (c.source, c.native_id, c.ref, c.service, c.kind, c.first_commit_at, c.merged_at, tuple(sorted(c.commits)))
            for c in store.changes()
        },
        "deployments": {
            (
                d.source,
                d.native_id,
                d.service,
                d.environment,
                d.production,
                d.status,
                d.started_at,
                d.finished_at,
                d.sha,
                tuple(sorted(d.contains)),
            )
            for d in store.deployments()
        },
        "links": {(x.source, x.work_item, x.target) for x in store.links()},
    }


def test_a_thousand_malformed_records_are_counted_and_the_valid_ones_kept(tmp_path: Path) -> None:
    sandbox = start_sandbox(seed=4, work_items=300, malformed=500)
    try:
        # the sandbox breaks GitHub records in their REST form (GraphQL's typed answers cannot carry
        # a string where a time belongs): the GitHub sources read over REST here
        config = organisation(sandbox, f"sqlite:///{tmp_path}/store.db", github_api="rest")
        store = Store(config.store)
        results = Runner(config, store, sleep=quick_sleep).run_all()
        truth = sandbox.truth()
    finally:
        sandbox.stop()
    assert [(r.source, r.error) for r in results if not r.ok] == []
    assert len(results) == 7

    rejected_azure, rejected_github = truth["azure"]["rejected"], truth["github"]["rejected"]
    assert len(rejected_azure) == len(rejected_github) == 500
    expected_counts = Counter((BOARDS[r["project"]], r["reason"]) for r in rejected_azure)
    expected_counts += Counter((GITHUB[r["record_id"].split("#")[0]], r["reason"]) for r in rejected_github)
    assert len({reason for _, reason in expected_counts}) == 6  # every kind of defect is in the mix
    # the migrated item, released before it was created, and the direct pushes whose author clock ran
    # ahead of their deployment: refused by the figures, not the sources
    migrated = Counter(
        (BOARDS[w["project"]], "end_before_start") for w in truth["azure"]["work_items"] if w.get("migrated")
    )
    assert sum(migrated.values()) == 1
    expected_counts += Counter((GITHUB[c["service"]], "end_before_start") for c in skewed_changes(truth["github"]))
    exported = {
        (dict(labels)["source"], dict(labels)["reason"]): value
        for (_name, labels), value in samples(store, config, time.time(), ("cycletime_records_rejected_total",)).items()
    }
    assert exported == expected_counts + migrated
    assert sum(exported.values()) == 1000 + 1 + len(skewed_changes(truth["github"])) == 1004

    actual, expected = stored(store), expected_store(truth)
    print({part: len(rows) for part, rows in expected.items()}, sorted(exported.items()))
    for part in ("work_items", "changes", "deployments", "links"):
        assert len(actual[part]) == len(expected[part]) > 100, part
        assert actual[part] == expected[part], part
    store.close()
