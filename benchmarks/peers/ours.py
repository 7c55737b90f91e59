"""Ours as the peers are measured: ``cycletime sync`` of one half of the sandbox organisation, in its own process.

The command line's own entry point (``collector.cli.main``) runs the Azure DevOps sources (Boards +
Pipelines of both projects) or the GitHub sources (three repositories) into a fresh SQLite store,
with nothing imported that ``cycletime sync`` would not import; then the stored records are printed
as JSON in the peers' format (the native ids of the sandbox's truth), so the benchmark compares what
each client ends up with.

Usage: ``ours.py SANDBOX_URL azure|github STORE_DIR``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from organisation import organisation_yaml

from collector.cli import main


def sync(sandbox_url: str, part: str, store_dir: str) -> dict[str, list[str]]:
    path = f"{store_dir}/ours.db"
    config = Path(store_dir) / "ours.yaml"
    config.write_text(organisation_yaml(sandbox_url, f"sqlite:///{path}", part=part))
    code = main(["sync", "--config", str(config), "--log-format", "json"])
    assert code == 0, f"cycletime sync exited with {code}"
    with sqlite3.connect(path) as db:

        def ids(sql: str) -> list[str]:
            return [row[0] for row in db.execute(sql)]

        return {
            "work_items": ids("SELECT native_id FROM work_items"),
            "state_changes": ids("SELECT work_item_id || ':' || seq FROM state_changes"),
            "deployments": ids("SELECT native_id FROM deployments"),
            "changes": ids("SELECT native_id FROM changes"),
        }


if __name__ == "__main__":
    json.dump(sync(sys.argv[1], sys.argv[2], sys.argv[3]), sys.stdout)
