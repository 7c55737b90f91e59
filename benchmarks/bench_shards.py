"""Shards (docs/sharding.md): wall time of one full pass with 1, 2 and 4 shards on one PostgreSQL.

The sandbox organisation gets N more repositories beside its three services (``--github-repos``:
of every twenty, nine empty, five archived, five forks, one small live repository) and answers
every request after ``--latency`` (a network round trip). One GitHub source reads ``contoso/*``;
``--read-all`` turns the ``skip_*`` options off, so every repository is a scope with requests of
its own. Each shard is a real ``cycletime sync --shard I --total-shards N`` process; the pass's
wall time runs from starting them to the last one's exit. Then an idle pass (nothing changed) of
the same shards: its requests per repository. Requests are the sandbox's count.

Needs PostgreSQL: ``--store-url`` names a server (each run gets a fresh database), else a
throwaway server is started as the tests do (Debian's ``postgresql`` package).

Usage: ``bench_shards.py [--repos 2000] [--latency 0.05] [--read-all] [--shards 1 2 4]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import _PostgresServer, github_source, sandbox_config  # noqa: E402

from collector.store import normalise_url  # noqa: E402
from sandbox.app import Sandbox, SandboxOptions  # noqa: E402

TOKEN = "sandbox-token"


def fresh_database(server_url: str, name: str) -> str:
    admin = sa.create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def one_pass(config: Path, shards: int) -> tuple[float, list[float]]:
    """Wall time of a pass of ``shards`` processes, and each one's own time."""
    started = time.perf_counter()
    flags = [[]] if shards == 1 else [["--shard", str(i), "--total-shards", str(shards)] for i in range(shards)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "collector", "sync", "--config", str(config), "--log-format", "json", *f],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in flags
    ]
    each = []
    for proc in procs:
        _, err = proc.communicate()
        each.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"cycletime sync failed: {err.decode()[-2000:]}")
    return time.perf_counter() - started, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=2000, help="repositories beside the three services")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every API answer")
    parser.add_argument("--read-all", action="store_true", help="read empty, archived and forked repositories too")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--store-url", help="a PostgreSQL server (postgresql://user@host:port/db)")
    args = parser.parse_args()

    server = None if args.store_url else _PostgresServer()
    server_url = args.store_url or (server.url if server else "")
    options = SandboxOptions(seed=7, work_items=240, github_repos=args.repos, latency=args.latency, token=TOKEN)
    try:
        with Sandbox(options) as sandbox, tempfile.TemporaryDirectory() as tmp:
            sandbox.github.set_rate_limit(limit=10**7)  # the budget is not what is measured here
            repos = sandbox.github.data.repos
            kept = (
                len(repos)
                if args.read_all
                else sum(1 for r in repos.values() if r.main and not r.archived and not r.fork)
            )
            skip = {"skip_empty": False, "skip_archived": False, "skip_forks": False} if args.read_all else {}
            print(
                f"{len(repos):,} repositories, {kept:,} read; latency {args.latency * 1000:g} ms; "
                f"one PostgreSQL; cycletime sync processes on {len(os.sched_getaffinity(0))} CPUs"
            )
            header = ("shards", "full pass s", "speed-up", "requests", "idle requests", "per repo")
            print("{:>6} {:>11} {:>8} {:>8} {:>13} {:>8}".format(*header))
            baseline = None
            for shards in args.shards:
                source = github_source(sandbox.url, TOKEN, ["contoso/*"], deployments_from="deployments", **skip)
                store = fresh_database(server_url, f"bench_shards_{shards}")
                config, idle_config = Path(tmp) / f"shards{shards}.yaml", Path(tmp) / f"idle{shards}.yaml"
                config.write_text(sandbox_config(store, [source], history="400d"))
                # the idle pass in the next pass window: a scope polled in the last half poll
                # interval is not polled again by a shard (docs/sharding.md)
                idle_config.write_text(
                    sandbox_config(store, [source], history="400d", poll_interval="2s", allow_short_poll_interval=True)
                )
                sandbox.server.stats.reset()
                wall, _ = one_pass(config, shards)
                full = sandbox.server.stats.snapshot()["total"]
                time.sleep(1.5)
                sandbox.server.stats.reset()
                one_pass(idle_config, shards)
                idle = sandbox.server.stats.snapshot()["total"]
                baseline = baseline or wall
                print(f"{shards:>6} {wall:>11.1f} {baseline / wall:>7.2f}x {full:>8,} {idle:>13,} {idle / kept:>8.2f}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
