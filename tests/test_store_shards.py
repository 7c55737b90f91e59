"""The store's part in sharding (docs/sharding.md), on a real PostgreSQL server: scope locks,
watermarks written only by a scope's lock holder, the shared writer lease, and a data version that
stays exact with several writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import postgres_url

from collector.errors import StoreError, StoreInUse
from collector.figures import Loaded
from collector.model import Batch, Category, StateChange, WorkItem
from collector.sharding import lock_key
from collector.store import Store, normalise_url


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = postgres_url()
    if url is None:
        pytest.fail("shards need PostgreSQL: no initdb/pg_ctl (make system-deps) nor CYCLETIME_TEST_POSTGRES_URL")
    db = f"shardstore{abs(hash(request.node.nodeid)) % 10**9}"
    admin = sa.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    yield url.rsplit("/", 1)[0] + "/" + db
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


KEY = lock_key("github", "contoso/web")


def test_a_scope_is_polled_by_one_replica_at_a_time(pg_url: str) -> None:
    a, b = Store(pg_url), Store(pg_url)
    with a.claim_scope(KEY) as mine:
        assert mine
        with b.claim_scope(KEY) as theirs:
            assert not theirs  # held: skipped, nobody waits
        with b.claim_scope(lock_key("github", "contoso/api")) as other:
            assert other  # another scope is free
    with b.claim_scope(KEY) as theirs:
        assert theirs  # released with the block


def test_a_scope_polled_since_a_pass_started_is_not_polled_again_in_it(pg_url: str) -> None:
    a, b = Store(pg_url), Store(pg_url)
    b_started = b.now()
    with a.claim_scope(KEY, since=a.now()) as mine:
        assert mine
    with b.claim_scope(KEY, since=b_started) as theirs:
        assert not theirs  # a twin replica finished it during b's pass
    with b.claim_scope(KEY, since=b.now()) as next_pass:
        assert next_pass
    # a pass that failed does not count as polled
    with pytest.raises(RuntimeError), a.claim_scope(KEY) as mine:
        raise RuntimeError("the API failed")
    started = b.now()
    with b.claim_scope(KEY, since=started - 0.001) as theirs:
        assert theirs


def test_only_the_lock_holder_moves_a_watermark(pg_url: str) -> None:
    store, admin = Store(pg_url), Store(pg_url)
    with store.claim_scope(KEY) as mine:
        assert mine
        store.set_watermark("github", "issues:contoso/web", "1")
        # the lock's connection drops (a network blip, an administrator): the lock is gone, and a
        # replica may already poll the scope; this one must not write its older watermark over it
        with admin.engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid::bigint = :lo AND classid::bigint = :hi"
                ),
                {"lo": (KEY % 2**64) & 0xFFFFFFFF, "hi": (KEY % 2**64) >> 32},
            )
            conn.commit()
            for _ in range(100):  # the backend ends a moment later
                if not conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar():
                    break
                time.sleep(0.05)
        with pytest.raises(StoreError, match="lock was lost"):
            store.set_watermark("github", "issues:contoso/web", "2")
    assert store.watermark("github", "issues:contoso/web") == "1"
    store.set_watermark("github", "issues:contoso/web", "3")  # outside a claim (unsharded): no check


def test_shards_share_the_writer_lease_and_exclude_an_unsharded_writer(pg_url: str) -> None:
    shard0, shard1, single = Store(pg_url), Store(pg_url), Store(pg_url)
    shard0.acquire_writer("cycletime serve, shard 0 of 2", shared=True)
    shard1.acquire_writer("cycletime serve, shard 1 of 2", shared=True)
    with pytest.raises(StoreInUse, match="shard 1 of 2"):
        single.acquire_writer("cycletime sync")
    shard0.close()
    shard1.close()
    single.acquire_writer("cycletime sync")
    with pytest.raises(StoreInUse, match="cycletime sync"):
        Store(pg_url).acquire_writer("cycletime serve, shard 0 of 2", shared=True)


def _item(source: str, n: int, at: datetime) -> WorkItem:
    ref = f"{source}#{n}"
    return WorkItem(source, str(n), ref, "P", "t", "Bug", at, (StateChange(str(n), 1, at, "Done", Category.COMPLETED),))


def test_the_data_version_orders_every_writer_so_updates_miss_nothing(pg_url: str) -> None:
    """Shards commit at once; a reader updating from "changed since version v" after each of its
    reads ends with exactly what a full load reads."""
    Store(pg_url)  # the schema, before the writers race to create it
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def write(source: str) -> None:
        store = Store(pg_url)
        for n in range(60):
            store.commit(source, Batch(work_items=[_item(source, n, at + timedelta(hours=n))]))
        store.close()

    reader = Store(pg_url)
    loaded = Loaded.read(reader, reader.data_version)
    writers = [threading.Thread(target=write, args=(f"shard{i}",)) for i in range(3)]
    for w in writers:
        w.start()
    versions = []
    while True:
        finished = not any(w.is_alive() for w in writers)
        version = reader.data_version
        versions.append(version)
        assert loaded.update(reader, version)
        if finished:
            break
    assert versions == sorted(versions)
    assert reader.data_version == 180
    full = Loaded.read(reader, reader.data_version)
    assert loaded.version == full.version == 180
    assert len(loaded.table) == len(full.table) == 180
    updated, whole = loaded.compute(None).lead_time.by_labels, full.compute(None).lead_time.by_labels
    assert updated.keys() == whole.keys() and len(whole) == 3
    for labels, block in whole.items():
        assert sorted(map(tuple, updated[labels])) == sorted(map(tuple, block))


def test_a_writer_lease_lost_with_its_connection_writes_nothing_and_is_taken_again_when_free(pg_url: str) -> None:
    """The lease is a session's advisory lock: a dropped connection (a database restart, a network
    cut) ends it, and another writer may take the store meanwhile."""
    first, second = Store(pg_url), Store(pg_url)
    first.acquire_writer("first writer")
    admin = sa.create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # the lease's session ends, as in a restart
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first._lease_pid})
    second.acquire_writer("second writer")
    with pytest.raises(StoreError, match="lease was lost"):
        first.set_watermark("boards", "revisions", "lost")
    with pytest.raises(StoreInUse, match="second writer"):
        first.ensure_writer()
    assert first.watermarks("boards") == {}
    second.close()
    first.ensure_writer()  # free again: taken back, and writes go through
    first.set_watermark("boards", "revisions", "mine")
    assert first.watermarks("boards") == {"revisions": "mine"}
    with pytest.raises(StoreInUse, match="first writer"):
        Store(pg_url).acquire_writer("third writer")
    first.close()
    admin.dispose()
