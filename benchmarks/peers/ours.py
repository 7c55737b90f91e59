"""Ours as the peers are measured: a full sync of one half of the sandbox organisation, in its own process.

``collector.runner.Runner`` runs the Azure DevOps sources (Boards + Pipelines of both projects) or
the GitHub sources (three repositories) into a fresh SQLite store, as ``cycletime serve`` would;
then the stored records are printed as JSON in the peers' format (the native ids of the sandbox's
truth), so the benchmark compares what each client ends up with.

Usage: ``ours.py SANDBOX_URL azure|github STORE_DIR``.
"""

from __future__ import annotations

import json
import sqlite3
import sys

from bench_api import organisation_config

from collector.runner import Runner
from collector.store import Store


def sync(sandbox_url: str, part: str, store_dir: str) -> dict[str, list[str]]:
    path = f"{store_dir}/ours.db"
    config = organisation_config(sandbox_url, f"sqlite:///{path}")
    store = Store(config.store)
    runner = Runner(config, store)
    names = [n for n in runner.sources if n.startswith("gh_") == (part == "github")]
    for name in names:
        result = runner.run(name)
        assert result.ok, f"{name}: {result.error}"
    store.close()
    marks = ",".join("?" * len(names))
    with sqlite3.connect(path) as db:

        def ids(sql: str) -> list[str]:
            return [row[0] for row in db.execute(sql.format(marks), names)]

        return {
            "work_items": ids("SELECT native_id FROM work_items WHERE source IN ({})"),
            "state_changes": ids("SELECT work_item_id || ':' || seq FROM state_changes WHERE source IN ({})"),
            "deployments": ids("SELECT native_id FROM deployments WHERE source IN ({})"),
            "changes": ids("SELECT native_id FROM changes WHERE source IN ({})"),
        }


if __name__ == "__main__":
    json.dump(sync(sys.argv[1], sys.argv[2], sys.argv[3]), sys.stdout)
