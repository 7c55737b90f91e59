"""Shards (docs/sharding.md) as real processes: `cycletime sync` and `cycletime metrics` with
`--shard I --total-shards N` on one real PostgreSQL store, against the sandbox.

What one replica exports, the shards export between them: the union of their /metrics equals the
single replica's, no series appears on two shards, and the sandbox answers as many requests as for
the single replica (no scope polled twice), also when two replicas share a shard number.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import azure_source, free_port, github_source, postgres_url, sandbox_config
from harness import ROOT, wait_until

from collector.sharding import Shards
from collector.store import Store, normalise_url
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "shard-token-4242"
GRAPHQL = "github.graphql"
#: per process, not per scope: every replica exports its own (like process_* and python_*)
PER_PROCESS = ("cycletime_store_up", "cycletime_store_failures", "cycletime_shard_info")
#: self-metrics whose values are the pass's own (when, how long, the budget it left): compared by series
TIMING = (
    "cycletime_source_last_success_timestamp_seconds",
    "cycletime_source_poll_duration_seconds",
    "cycletime_api_rate_limit_remaining",
    "cycletime_api_budget_remaining",
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # 20 more repositories than the three services (empty, archived, forks, one live), all read: 23 scopes
    with Sandbox(SandboxOptions(seed=31, work_items=120, token=TOKEN, github_repos=20)) as running:
        yield running


@pytest.fixture
def databases() -> Iterator[Iterator[str]]:
    """Fresh PostgreSQL databases on the test server, one per call of ``next``."""
    url = postgres_url()
    if url is None:
        pytest.fail("shards need PostgreSQL: no initdb/pg_ctl (make system-deps) nor CYCLETIME_TEST_POSTGRES_URL")
    admin = sa.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def fresh() -> Iterator[str]:
        while True:
            name = f"shards{len(made)}_{datetime.now(UTC):%H%M%S%f}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            made.append(name)
            yield url.rsplit("/", 1)[0] + "/" + name

    yield fresh()
    with admin.connect() as conn:
        for name in made:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _config(tmp: Path, sandbox: Sandbox, store: str, name: str, **settings: object) -> Path:
    sources = [
        azure_source("azure_boards", sandbox.url, TOKEN),
        azure_source("azure_pipelines", sandbox.url, TOKEN),
        github_source(
            sandbox.url,
            TOKEN,
            ["contoso/*"],
            deployments_from="deployments",
            skip_empty=False,
            skip_archived=False,
            skip_forks=False,
            # the threshold counts each process's repositories: at 1 every shard probes as one
            # replica does, so the comparison below is like for like
            probe_min_repositories=1,
        ),
    ]
    path = tmp / f"{name}.yaml"
    path.write_text(sandbox_config(store, sources, history="400d", **settings))
    return path


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", *args, "--log-format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@dataclass(frozen=True)
class Asked:
    """The API requests of a pass, by endpoint. GitHub's GraphQL queries are apart: each process
    asks the change probe for the repositories it reads (100 a query), so N processes ask up to
    N - 1 probes more than one replica; every other request is divided exactly."""

    by_endpoint: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    def same_as(self, other: Asked, processes: int) -> bool:
        mine, theirs = dict(self.by_endpoint), dict(other.by_endpoint)
        probes, reference = mine.pop(GRAPHQL, 0), theirs.pop(GRAPHQL, 0)
        return mine == theirs and reference <= probes <= reference + processes - 1


def _sync_all(sandbox: Sandbox, config: Path, shards: list[tuple[int, int]] | None) -> Asked:
    """Run the replicas' passes at once (``shards``: (shard, total) each; None: one unsharded
    replica); returns the API requests the sandbox answered for them."""
    requests.post(f"{sandbox.url}/_sandbox/stats/reset", timeout=5)
    flags = [[]] if shards is None else [["--shard", str(i), "--total-shards", str(n)] for i, n in shards]
    procs = [_cli("sync", "--config", str(config), *f) for f in flags]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-3000:]
    by_endpoint: dict[str, int] = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_endpoint"]
    return Asked({k: v for k, v in by_endpoint.items() if v})


def _metrics(config: Path, at: str, shard: tuple[int, int] | None = None) -> str:
    flags = [] if shard is None else ["--shard", str(shard[0]), "--total-shards", str(shard[1])]
    proc = _cli("metrics", "--config", str(config), "--at", at, *flags)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def _series(text: str) -> dict[str, str]:
    """series (name and labels) → value, without comments and per-process families; the timing
    self-metrics' values are blanked (each pass has its own)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name = re.split(r"[{ ]", series, maxsplit=1)[0]
        if name.startswith(PER_PROCESS):
            continue
        out[series] = "" if name.startswith(TIMING) else value
    return out


def _union(parts: list[dict[str, str]]) -> dict[str, str]:
    union: dict[str, str] = {}
    for part in parts:
        twice = set(union) & set(part)
        assert not twice, f"series exported by two shards: {sorted(twice)[:5]}"
        union.update(part)
    return union


GITHUB_REQUESTS = 'cycletime_api_requests_total{code="200",source="github"}'


def _same_series(union: dict[str, str], reference: dict[str, str], probes: int) -> None:
    """The shards' series equal one replica's, but for the GitHub requests counter, which counts
    the change probes each process asks (up to ``probes`` more: N - 1 a pass of N; see ``Asked``)."""
    assert {k: v for k, v in union.items() if k != GITHUB_REQUESTS} == {
        k: v for k, v in reference.items() if k != GITHUB_REQUESTS
    }
    ours, theirs = float(union[GITHUB_REQUESTS]), float(reference[GITHUB_REQUESTS])
    assert theirs <= ours <= theirs + probes


def test_three_shards_export_what_one_replica_does_polling_each_scope_once(
    sandbox: Sandbox, databases: Iterator[str], tmp_path: Path
) -> None:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    single = _config(tmp_path, sandbox, next(databases), "single")
    single_requests = _sync_all(sandbox, single, None)
    reference = _series(_metrics(single, at))

    sharded = _config(tmp_path, sandbox, next(databases), "sharded")
    shard_requests = _sync_all(sandbox, sharded, [(0, 3), (1, 3), (2, 3)])
    texts = [_metrics(sharded, at, (i, 3)) for i in range(3)]
    parts = [_series(text) for text in texts]

    assert shard_requests.same_as(single_requests, 3)  # nothing polled twice, nothing left out
    assert all(parts), "every shard owns some scope of this organisation"
    union = _union(parts)
    _same_series(union, reference, 2)
    assert any(k.startswith("cycletime_request_to_release_seconds_count") for k in union)
    for i, text in enumerate(texts):
        assert f'cycletime_shard_info{{shard="{i}",total="3"}} 1.0' in text

    # two replicas started with one shard number (a misconfiguration): they share its scopes
    # through the scope locks, so the requests and the figures stay those of one replica
    twins = _config(tmp_path, sandbox, next(databases), "twins")
    twin_requests = _sync_all(sandbox, twins, [(0, 2), (0, 2), (1, 2)])
    assert twin_requests.same_as(single_requests, 3)
    _same_series(_union([_series(_metrics(twins, at, (i, 2))) for i in range(2)]), reference, 2)


def test_scaling_from_two_shards_to_three_polls_nothing_twice(
    sandbox: Sandbox, databases: Iterator[str], tmp_path: Path
) -> None:
    """After a pass of two shards, three shards on the same store take over their scopes where the
    two left them: their pass asks what an idle pass of one replica asks, and the union is whole."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    single = _config(tmp_path, sandbox, next(databases), "single")
    _sync_all(sandbox, single, None)
    idle_requests = _sync_all(sandbox, single, None)
    reference = _series(_metrics(single, at))

    store = next(databases)
    scaled = _config(tmp_path, sandbox, store, "scaled")
    _sync_all(sandbox, scaled, [(0, 2), (1, 2)])
    # within the pass window (half the 10m poll interval) three shards find every scope fresh
    assert _sync_all(sandbox, scaled, [(0, 3), (1, 3), (2, 3)]).total == 0
    # a poll interval of 2s: the next window opens a second after the pass
    time.sleep(1.5)
    next_window = _config(tmp_path, sandbox, store, "next", poll_interval="2s", allow_short_poll_interval=True)
    assert _sync_all(sandbox, next_window, [(0, 3), (1, 3), (2, 3)]).same_as(idle_requests, 3)
    # a pass of 2 shards and an idle pass of 3 against 2 passes of one replica: 1 + 2 probes more
    _same_series(_union([_series(_metrics(scaled, at, (i, 3))) for i in range(3)]), reference, 1 + 2)


def test_a_shard_killed_mid_pass_resumes_and_the_others_are_unaffected(
    databases: Iterator[str], tmp_path: Path
) -> None:
    """`cycletime serve` shards; one is killed (SIGKILL) while its pass reads a slow API, then
    started again: it resumes from the watermarks its batches committed (its scope locks ended
    with its connections), the others' passes are unaffected, and the union is whole again."""
    options = SandboxOptions(seed=31, work_items=120, token=TOKEN, github_repos=20, latency=0.05)
    with Sandbox(options) as slow:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        single = _config(tmp_path, slow, next(databases), "single")
        _sync_all(slow, single, None)
        reference = _series(_metrics(single, at))

        store = next(databases)
        ports = [free_port() for _ in range(3)]
        configs = [
            _config(tmp_path, slow, store, f"serve{i}", listen=f"127.0.0.1:{ports[i]}", poll_interval="1h")
            for i in range(3)
        ]
        logs = [tmp_path / f"serve{i}.log" for i in range(3)]
        # a shard passes GitHub (it has a repository scope or lists them) and the one-scope sources it owns
        passes = [1 + sum(Shards(i, 3).owns(name, "Fabrikam") for name in ("boards", "pipelines")) for i in range(3)]
        victim = 2
        Store(store).close()  # the schema, for the test's own reads
        engine = sa.create_engine(normalise_url(store))

        def serve(i: int) -> subprocess.Popen[bytes]:
            flags = ["--log-format", "json", "--shard", str(i), "--total-shards", "3"]
            return subprocess.Popen(
                [sys.executable, "-m", "collector", "serve", "--config", str(configs[i]), *flags],
                cwd=ROOT,
                stdout=open(logs[i], "ab"),
                stderr=subprocess.STDOUT,
            )

        def passes_ok(i: int, after: int = 0) -> int:
            return logs[i].read_text()[after:].count("pass ok")

        def victim_mid_pass() -> bool:
            with engine.connect() as conn:
                streams = conn.execute(sa.text("SELECT stream FROM watermarks WHERE source = 'github'")).scalars()
                repos = {s.split(":", 1)[1].lower() for s in streams if s.startswith("issues:")}
            mine = any(Shards(victim, 3).owns("github", r) for r in repos)
            assert "source=github pass ok" not in logs[victim].read_text(), "too late: the pass ended"
            return mine

        procs = [serve(i) for i in range(3)]
        try:
            wait_until(victim_mid_pass, 60, "the victim's first commits", interval=0.05)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(timeout=10)
            others = [i for i in range(3) if i != victim]
            wait_until(lambda: all(passes_ok(i) >= passes[i] for i in others), 120, "the other shards' passes")
            restarted_at = len(logs[victim].read_text())
            procs[victim] = serve(victim)
            wait_until(lambda: passes_ok(victim, restarted_at) >= passes[victim], 120, "the restarted shard's passes")
            for i in range(3):
                assert "pass failed" not in logs[i].read_text()[restarted_at if i == victim else 0 :]
            # the killed pass's requests were never recorded, so requests are not compared here
            union = _union([_series(_metrics(configs[i], at, (i, 3))) for i in range(3)])
            requests_counter = "cycletime_api_requests_total"
            assert sorted((k, v) for k, v in union.items() if not k.startswith(requests_counter)) == sorted(
                (k, v) for k, v in reference.items() if not k.startswith(requests_counter)
            )
            for i in range(3):  # each serving shard's /metrics says who it is
                body = requests.get(f"http://127.0.0.1:{ports[i]}/metrics", timeout=10).text
                assert f'cycletime_shard_info{{shard="{i}",total="3"}} 1.0' in body
        finally:
            engine.dispose()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)


def test_azure_repos_shards_split_the_repositories(sandbox: Sandbox, databases: Iterator[str], tmp_path: Path) -> None:
    """Azure Repos is one scope per repository too, and its project's repository list one more: the
    shard owning it reads the list and stores it, the other takes the stored list, so two shards
    ask exactly the requests one replica asks."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        sources = [
            azure_source("azure_pipelines", sandbox.url, TOKEN, production_environments=["production"]),
            azure_source("azure_repos", sandbox.url, TOKEN, name="repos"),
        ]
        path.write_text(sandbox_config(next(databases), sources, history="400d"))
        return path

    def by_endpoint() -> dict[str, int]:
        counts: dict[str, int] = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_endpoint"]
        return counts

    single = config("repos_single")
    single_total = _sync_all(sandbox, single, None)
    reference, single_requests = _series(_metrics(single, at)), by_endpoint()
    sharded = config("repos_sharded")
    assert Shards(0, 2).owns("repos", "web") != Shards(0, 2).owns("repos", "payments")  # one each
    assert _sync_all(sandbox, sharded, [(0, 2), (1, 2)]) == single_total
    assert by_endpoint() == single_requests
    assert single_requests["azure.git_repositories"] == 1  # the list, read by one shard only
    parts = [_series(_metrics(sharded, at, (i, 2))) for i in range(2)]
    assert all(any('source="repos",stage=' in k for k in part) for part in parts)
    assert sorted(_union(parts).items()) == sorted(reference.items())
