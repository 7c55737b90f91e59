"""Synthetic stores and tables for the compute, scrape and memory benchmarks (no API involved)."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from collector.model import Batch, Category, Change, Deployment, Link
from collector.store import Store
from collector.table import TableBuilder, WorkItemTable

STATES = (
    ("New", Category.PROPOSED),
    ("Active", Category.IN_PROGRESS),
    ("Resolved", Category.RESOLVED),
    ("Closed", Category.COMPLETED),
)
YEAR = 365 * 86400.0


def _times(n: int, seed: int) -> np.ndarray:
    """created, active, resolved, closed per item over the last year (cycle times of days to weeks)."""
    rng = np.random.default_rng(seed)
    created = time.time() - YEAR + rng.random(n) * (YEAR - 40 * 86400)
    steps = rng.exponential([5 * 86400, 8 * 86400, 2 * 86400], size=(n, 3))
    return np.column_stack([created, created[:, None] + np.cumsum(steps, axis=1)])


def table(n: int, label_sets: int = 20, seed: int = 1) -> WorkItemTable:
    """n completed items, four revisions each, spread over ``label_sets`` (team, type) pairs."""
    t = _times(n, seed)
    b = TableBuilder()
    for i in range(n):
        j = b.item("boards", "Fabrikam", f"team-{i % label_sets}", "User Story", f"ado:{i}", float(t[i, 0]))
        for k, (state, cat) in enumerate(STATES):
            b.observe(j, float(t[i, k]), state, cat)
    return b.build()


def sqlite_store(path: Path, n: int, label_sets: int = 20, seed: int = 1, released_every: int = 0) -> str:
    """A real store file with n completed items, written with bulk inserts (fast to build);
    ``released_every``: every so many items also released (``released``), stored as the sources would."""
    url = f"sqlite:///{path}"
    Store(url).close()  # creates the schema
    t = _times(n, seed)
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO work_items (source, native_id, ref, project, team, type, created_at, item_no) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (
            ("boards", str(i), f"ado:{i}", "Fabrikam", f"team-{i % label_sets}", "User Story", float(t[i, 0]), i + 1)
            for i in range(n)
        ),
    )
    con.executemany(
        "INSERT INTO state_changes (source, work_item_id, seq, at, state, category) VALUES (?,?,?,?,?,?)",
        (
            ("boards", str(i), k + 1, float(t[i, k]), STATES[k][0], STATES[k][1].value)
            for i in range(n)
            for k in range(4)
        ),
    )
    con.commit()
    con.close()
    if released_every:
        changes, deployments, links = released(n, released_every, seed, t)
        store = Store(url)
        store.commit("github", Batch(changes=changes, links=links))
        store.commit("p", Batch(deployments=deployments))
        store.close()
    return url


def released(
    n: int, every: int = 10, seed: int = 1, times: np.ndarray | None = None
) -> tuple[list[Change], list[Deployment], list[Link]]:
    """Every ``every``-th item of ``table(n)`` linked to a PR opened when it started, reviewed an hour
    later, merged when it resolved; deployments of 50 PRs each at the latest merge among them.
    ``times``: the items' (``_times``), when the caller made them already."""
    t = _times(n, seed) if times is None else times

    def at(x: float) -> datetime:
        return datetime.fromtimestamp(x, UTC)

    changes, links = [], []
    for i in range(0, n, every):
        started = float(t[i, 1])
        changes.append(
            Change(
                "github",
                str(i),
                f"ghpr:o/r#{i}",
                "o/r",
                "pull_request",
                at(started - 3600),
                at(float(t[i, 2])),
                (f"{i:040x}",),
                at(started),
                at(started + 3600),
            )
        )
        links.append(Link("github", f"ado:{i}", f"ghpr:o/r#{i}"))
    deployments = []
    for k in range(0, len(changes), 50):
        chunk = changes[k : k + 50]
        end = max(c.merged_at for c in chunk if c.merged_at is not None)
        contains = tuple(f"commit:{c.commits[0]}" for c in chunk)
        deployments.append(Deployment("p", f"d{k}", "web", "production", True, "success", None, end, None, contains))
    return changes, deployments, links
