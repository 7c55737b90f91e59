"""Concurrent writers, a full disk, a database outage, a deleted file: refused or visible, never silent.

Real processes, a real sandbox over HTTP, real SQLite files (on a real tmpfs for the full disk)
and a real PostgreSQL server.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import azure_source, github_source, record_pass, sandbox_config

from collector.config import parse_config
from collector.errors import StoreInUse
from collector.figures import FigureCache, Settings
from collector.model import Batch, Rejection
from collector.runner import Runner
from collector.store import Store
from exporters.prometheus import MetricsCache
from exporters.web import ExporterApp
from sandbox.app import Sandbox, SandboxOptions

TOKEN = "store-failure-token"
ROOT = Path(__file__).resolve().parents[2]


def _config_text(sandbox: Sandbox, store: str) -> str:
    sources = [
        azure_source("azure_boards", sandbox.url, TOKEN),
        azure_source("azure_pipelines", sandbox.url, TOKEN),
        github_source(sandbox.url, TOKEN),
    ]
    return sandbox_config(store, sources, history="400d")


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "collector", *args, "--log-format", "json"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_a_second_writer_is_refused_with_who_holds_the_store(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(seed=3, work_items=200, token=TOKEN)) as sandbox:
        sandbox.server.faults.rate, sandbox.server.faults.kinds = 0.1, ("slow",)  # a pass that lasts a while
        config = tmp_path / "c.yaml"
        config.write_text(_config_text(sandbox, f"sqlite:///{tmp_path}/s.db"))
        first = _cli("sync", "--config", str(config))
        deadline = time.monotonic() + 30
        while not (tmp_path / "s.db.lock").exists() or not (tmp_path / "s.db.lock").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = _cli("sync", "--config", str(config))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert f"store in use by PID {first.pid}" in err and "cycletime sync" in err
        assert "Traceback" not in err
        waiting = _cli("sync", "--config", str(config), "--wait")
        _out1, err1 = first.communicate(timeout=300)
        _, err3 = waiting.communicate(timeout=300)
        assert first.returncode == 0, err1[-2000:]
        assert waiting.returncode == 0, err3[-2000:]
        sandbox.server.faults.rate = 0.0
        # the store equals one written by a single uninterrupted writer
        alone = parse_config(_config_text(sandbox, f"sqlite:///{tmp_path}/alone.db"), {})
        reference = Store(alone.store)
        assert all(r.ok for r in Runner(alone, reference, sleep=lambda s: None).run_all())
    shared = Store(f"sqlite:///{tmp_path}/s.db")
    got, want = shared.content_digest(), reference.content_digest()
    for table in ("work_items", "state_changes", "changes", "deployments", "links"):
        assert got[table] == want[table], table
    assert got["deployments"] and got["links"]


def _open(url: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        Store(url).close()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/race{attempt}.db"
        results = ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sorted(results.get(timeout=5) for _ in procs) == ["ok"] * 6


def test_the_lease_is_per_store_and_released_on_close(store_url: str) -> None:
    first, second = Store(store_url), Store(store_url)
    first.acquire_writer("test one")
    with pytest.raises(StoreInUse, match="test one"):
        second.acquire_writer("test two")
    first.close()
    second.acquire_writer("test two", wait=True, timeout=10)
    second.close()


def test_the_exporter_sees_another_process_writes_and_only_data_moves_the_version(store_url: str) -> None:
    reader, writer = Store(store_url), Store(store_url)
    before = reader.data_version
    record_pass(writer, "boards", started_at=time.time())
    writer.set_watermark("boards", "revisions", "token-1")
    assert reader.data_version == before, "a status or watermark alone changes no figure"
    writer.commit("boards", Batch(rejections=[Rejection("boards", "9", "missing_field")]))
    assert reader.data_version == before + 1
    reader.close()
    writer.close()


def _exporter(store: Store, url: str) -> tuple[MetricsCache, ExporterApp]:
    config = parse_config(
        f"""
store: "{url}"
sources:
  - {{name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}}
""",
        {},
    )
    cache = MetricsCache(FigureCache(store, Settings.from_config(config)))
    return cache, ExporterApp(cache, store, config)


def _can_mount_tmpfs(path: Path) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_reported_not_hidden(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    mounted = _can_mount_tmpfs(disk)
    try:
        url = f"sqlite:///{disk}/s.db"
        store = Store(url)
        if not mounted:  # no mount permission: SQLite's own size cap gives the same SQLITE_FULL error
            sa.event.listen(store.engine, "connect", lambda c, _r: c.execute("PRAGMA max_page_count=40"))
            store.engine.dispose()
        with Sandbox(SandboxOptions(seed=3, work_items=300, token=TOKEN)) as sandbox:
            config = parse_config(_config_text(sandbox, url), {})
            cache, app = _exporter(store, url)
            cache.refresh()
            if mounted:  # fill what is left of the disk
                with open(disk / "filler", "wb") as filler:
                    try:
                        while True:
                            filler.write(b"\0" * 65536)
                            filler.flush()
                    except OSError:
                        pass
            results = Runner(config, store, sleep=lambda s: None).run_all()
        assert not all(r.ok for r in results)
        failed = [r for r in results if not r.ok]
        assert any("store unavailable" in (r.error or "") and "full" in (r.error or "") for r in failed), failed
        assert store.failures >= 1 and not store.healthy
        cache.refresh(force=True)
        text = cache.exposition().decode()
        assert "cycletime_store_up 0.0" in text
        assert "cycletime_store_failures_total" in text
        ready, why = app.ready()
        assert not ready and "store unavailable" in why
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For a child process: files it writes stop growing at ``limit`` bytes (EFBIG, which SQLite
    reports as a disk I/O error) instead of the process being killed by SIGXFSZ."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_sync_on_a_full_disk_ends_with_one_line_per_source_not_a_traceback(tmp_path: Path) -> None:
    """A real full tmpfs where the test may mount one, else a file size limit on the process."""
    disk = tmp_path / "disk"
    mounted = _can_mount_tmpfs(disk)
    config = tmp_path / "config.yaml"
    try:
        if mounted:  # leave ~300 kB: the schema fits, the first pages do not
            with open(disk / "filler", "wb") as filler:
                filler.write(b"\0" * (2 * 2**20 - 300_000))
        with Sandbox(SandboxOptions(seed=3, work_items=300, token=TOKEN)) as sandbox:
            config.write_text(_config_text(sandbox, f"sqlite:///{disk}/s.db"))
            done = subprocess.run(
                [sys.executable, "-m", "collector", "sync", "--config", str(config), "--log-format", "json"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                preexec_fn=None if mounted else _file_size_limit(400_000),
            )
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    final = [line for line in done.stderr.splitlines() if line.startswith("cycletime sync: source ")]
    cause = "store unavailable: database or disk is full" if mounted else "store unavailable: disk I/O error"
    assert final and all(line.endswith(cause) for line in final), final


def test_a_deleted_store_file_makes_the_collector_unready(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    record_pass(store, "boards", started_at=time.time())
    cache, app = _exporter(store, url)
    cache.refresh()
    assert app.ready() == (True, "ready")
    (tmp_path / "s.db").unlink()
    ready, why = app.ready()
    assert not ready and "was deleted" in why


def test_a_postgresql_outage_is_reported_and_survived() -> None:
    from conftest import _pg_bin, _PostgresServer

    if not _pg_bin("initdb"):
        pytest.fail("PostgreSQL binaries are missing: scripts/system-deps.sh installs them")
    server = _PostgresServer()
    try:
        store = Store(server.url)
        record_pass(store, "boards", started_at=time.time())
        cache, app = _exporter(store, server.url)
        cache.refresh()
        assert "cycletime_store_up 1.0" in cache.exposition().decode()
        subprocess.run(
            [*server.prefix, _pg_bin("pg_ctl"), "-D", server.data, "-m", "immediate", "stop"],
            capture_output=True,
            check=True,
        )
        cache.refresh(force=True)
        text = cache.exposition().decode()
        assert "cycletime_store_up 0.0" in text
        assert "cycletime_source_up" in text, "the last figures stay published"
        ready, why = app.ready()
        assert not ready and why.startswith("store unavailable")
    finally:
        server.stop()
