"""The store on real SQLite files and a real PostgreSQL server: round trips, idempotence, crashes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from collector.errors import StoreError
from collector.model import (
    Batch,
    Category,
    Change,
    Deployment,
    Link,
    Rejection,
    StateChange,
    WorkItem,
    ado_ref,
    build_ref,
    commit_ref,
    gh_pr_ref,
)
from collector.runner import POLL_BUCKETS
from collector.store import SCHEMA_VERSION, ApiBudget, Store, meta

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def item(n: int, states: list[tuple[int, str, Category]], team: str = "Web") -> WorkItem:
    wid = str(n)
    return WorkItem(
        "boards",
        wid,
        ado_ref(n),
        "Fabrikam",
        team,
        "User Story",
        T0,
        tuple(
            StateChange(wid, seq, T0 + timedelta(days=day), state, cat)
            for seq, (day, state, cat) in enumerate(states, start=1)
        ),
    )


def sample_batch(offset: int = 0) -> Batch:
    return Batch(
        work_items=[
            item(offset + 1, [(0, "New", Category.PROPOSED), (2, "Active", Category.IN_PROGRESS)]),
            item(offset + 2, [(0, "New", Category.PROPOSED)], team="Payments"),
        ],
        changes=[
            Change(
                "github",
                f"contoso/web#{offset + 5}",
                gh_pr_ref("contoso/web", offset + 5),
                "contoso/web",
                "pull_request",
                T0,
                T0 + timedelta(days=1),
                ("a" * 40, "b" * 40),
            )
        ],
        deployments=[
            Deployment(
                "github",
                f"deployment:{offset + 9}",
                "contoso/web",
                "production",
                True,
                "success",
                T0,
                T0 + timedelta(days=3),
                "b" * 40,
                (commit_ref("a" * 40), commit_ref("b" * 40)),
            )
        ],
        links=[Link("github", ado_ref(offset + 1), gh_pr_ref("contoso/web", offset + 5))],
        rejections=[Rejection("boards", f"{offset + 99}", "missing_field")],
    )


def test_round_trip_keeps_every_field(store_url: str) -> None:
    store = Store(store_url)
    batch = sample_batch()
    store.commit(
        "boards",
        Batch(work_items=batch.work_items, rejections=batch.rejections),
        stream="revisions",
        watermark="813;350;1",
    )
    store.commit("github", Batch(changes=batch.changes, deployments=batch.deployments, links=batch.links))
    items = sorted(store.work_items("boards"), key=lambda w: w.native_id)
    assert items == sorted(batch.work_items, key=lambda w: w.native_id)
    assert store.changes() == batch.changes
    assert store.deployments() == batch.deployments
    assert store.links() == batch.links
    assert store.watermark("boards", "revisions") == "813;350;1"
    assert store.watermark("boards", "other") is None
    assert store.rejection_counts() == Counter({("boards", "missing_field"): 1})
    assert store.schema_version() == SCHEMA_VERSION


def test_same_batch_twice_leaves_identical_contents(store_url: str) -> None:
    store = Store(store_url)
    store.commit("boards", sample_batch(), stream="revisions", watermark="t1")
    first = store.content_digest()
    store.commit("boards", sample_batch(), stream="revisions", watermark="t1")
    assert store.content_digest() == first
    assert len(first["work_items"]) == 2 and len(first["state_changes"]) == 3


def test_partial_history_merges_and_replace_history_replaces(store_url: str) -> None:
    store = Store(store_url)
    store.commit("boards", Batch(work_items=[item(1, [(0, "New", Category.PROPOSED)])]))
    later = WorkItem(
        "boards",
        "1",
        ado_ref(1),
        "Fabrikam",
        "Web",
        "User Story",
        T0,
        (StateChange("1", 2, T0 + timedelta(days=4), "Closed", Category.COMPLETED),),
    )
    store.commit("boards", Batch(work_items=[later]))
    (merged,) = store.work_items("boards")
    assert [s.state for s in merged.history] == ["New", "Closed"]
    store.commit("boards", Batch(work_items=[later], replace_history=True))
    (replaced,) = store.work_items("boards")
    assert [s.state for s in replaced.history] == ["Closed"]


def test_crash_inside_transaction_keeps_previous_watermark_and_data(store_url: str) -> None:
    store = Store(store_url)
    store.commit("boards", sample_batch(), stream="revisions", watermark="batch-1")
    before = store.content_digest()

    def crash() -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.commit("boards", sample_batch(offset=100), stream="revisions", watermark="batch-2", before_commit=crash)
    assert store.watermark("boards", "revisions") == "batch-1"
    assert store.content_digest() == before
    # the resumed sync re-reads batch 2 and ends where an uninterrupted one would
    store.commit("boards", sample_batch(offset=100), stream="revisions", watermark="batch-2")
    reference = Store(store_url.replace("store.db", "reference.db")) if store_url.startswith("sqlite") else None
    if reference is not None:
        reference.commit("boards", sample_batch(), stream="revisions", watermark="batch-1")
        reference.commit("boards", sample_batch(offset=100), stream="revisions", watermark="batch-2")
        assert store.content_digest() == reference.content_digest()
    assert store.watermark("boards", "revisions") == "batch-2"
    assert len(store.work_items("boards")) == 4


def test_a_queue_moves_with_its_watermark_or_not_at_all(store_url: str) -> None:
    store = Store(store_url)
    store.commit(
        "boards", sample_batch(), stream="revisions", watermark="page-1", queue="relations", enqueue=["1", "2"]
    )

    def crash() -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.commit(
            "boards",
            Batch(),
            stream="revisions",
            watermark="page-2",
            queue="relations",
            enqueue=["3"],
            dequeue=["1"],
            before_commit=crash,
        )
    assert (store.watermark("boards", "revisions"), store.queued("boards", "relations")) == ("page-1", ["1", "2"])
    # 1 done, 2 queued again by a later page: queued once
    store.commit("boards", Batch(), queue="relations", enqueue=["2"], dequeue=["1"])
    assert store.queued("boards", "relations") == ["2"]
    assert store.queued("other", "relations") == [] and store.queued("boards", "other") == []


def test_a_version_1_store_gains_the_queues_table(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/v1.db"
    Store(url).close()
    with sa.create_engine(url).begin() as conn:
        conn.exec_driver_sql("DROP TABLE queues")
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="1"))
    store = Store(url)
    assert store.schema_version() == SCHEMA_VERSION
    store.commit("boards", Batch(), queue="relations", enqueue=["7"])
    assert store.queued("boards", "relations") == ["7"]


def test_counters_accumulate_and_survive_reopen(store_url: str) -> None:
    store = Store(store_url)
    store.add_api_requests("github", Counter({"200": 3, "304": 2}))
    store.add_api_requests("github", Counter({"200": 1}))
    store.record_poll(
        "github",
        ok=True,
        started_at=1000.0,
        duration=2.0,
        bounds=POLL_BUCKETS,
        items=5,
        error=None,
        rate_limit_remaining=4990,
    )
    store.record_poll(
        "github",
        ok=False,
        started_at=2000.0,
        duration=40.0,
        bounds=POLL_BUCKETS,
        items=0,
        error="HTTP 503",
        rate_limit_remaining=None,
    )
    store.close()
    reopened = Store(store_url)
    assert reopened.api_request_counts() == {("github", "200"): 4, ("github", "304"): 2}
    counts, total = reopened.poll_histograms()["github"]
    assert counts == {POLL_BUCKETS.index(2.5): 1, POLL_BUCKETS.index(60): 1} and total == pytest.approx(42.0)
    status = reopened.statuses()["github"]
    assert not status.ok and status.last_error == "HTTP 503"
    assert status.last_success == datetime.fromtimestamp(1002.0, UTC)  # kept from the successful poll
    assert status.rate_limit_remaining == 4990  # a poll that saw no header keeps the last budget


def test_budgets_and_backlog_per_pass(store_url: str) -> None:
    """Each pass overwrites the APIs it heard from; an expired budget and an unknown backlog vanish."""
    store = Store(store_url)
    store.record_budgets(
        "github", [ApiBudget("rest", 300, 5000, 1e9), ApiBudget("graphql", 4000, 5000, 1e9 + 60)], backlog=7
    )
    store.record_budgets("github", [ApiBudget("rest", 120, 5000, 1e9)], backlog=0)
    store.record_budgets("boards", [ApiBudget("rest", 10, 200, None)], backlog=None)
    assert store.budgets() == {
        ("github", "rest"): ApiBudget("rest", 120, 5000, 1e9),
        ("github", "graphql"): ApiBudget("graphql", 4000, 5000, 1e9 + 60),  # not heard from: kept
        ("boards", "rest"): ApiBudget("rest", 10, 200, None),
    }
    assert store.backlogs() == {"github": 0}
    store.record_budgets("boards", [], backlog=None, expired=["rest"])
    store.record_budgets("github", [], backlog=None)
    assert set(store.budgets()) == {("github", "rest"), ("github", "graphql")}
    assert store.backlogs() == {}


def test_a_version_3_store_gains_the_budget_tables(store_url: str) -> None:
    store = Store(store_url)
    store.commit("boards", sample_batch())
    before = store.content_digest()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE api_budgets"))
        conn.execute(sa.text("DROP TABLE sync_backlog"))
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="3"))
    store.close()
    upgraded = Store(store_url)
    assert upgraded.schema_version() == SCHEMA_VERSION and upgraded.content_digest() == before
    upgraded.record_budgets("github", [ApiBudget("rest", 1, 2, None)], backlog=3)
    assert upgraded.backlogs() == {"github": 3}


def test_a_version_4_store_gains_the_review_times(store_url: str) -> None:
    """Older changes keep their rows and read back with unknown stage times; new ones keep theirs."""
    store = Store(store_url)
    store.commit("gh", sample_batch())
    old = store.changes()
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE changes DROP COLUMN ready_at"))
        conn.execute(sa.text("ALTER TABLE changes DROP COLUMN first_review_at"))
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="4"))
    store.close()
    upgraded = Store(store_url)
    assert upgraded.schema_version() == SCHEMA_VERSION
    assert [(c.native_id, c.ready_at, c.first_review_at) for c in upgraded.changes()] == [
        (c.native_id, None, None) for c in old
    ]
    ready, review = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    pr = Change("gh", "pr-9", "ghpr:o/r#9", "o/r", "pull_request", ready, review, ("a" * 40,), ready, review)
    upgraded.commit("gh", Batch(changes=[pr]))
    assert [c for c in upgraded.changes() if c.native_id == "pr-9"] == [pr]


def test_newer_schema_is_refused(store_url: str) -> None:
    store = Store(store_url)
    with store.engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1)))
    store.close()
    with pytest.raises(StoreError, match="newer"):
        Store(store_url)


def test_sqlite_uses_wal(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/sub/dir/x.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "sub" / "dir" / "x.db").exists()


def test_build_refs_are_stable_strings() -> None:
    assert build_ref(42) == "build:42" and commit_ref("ABC") == "commit:abc"


def test_columnar_read_matches_the_object_read(store_url: str) -> None:
    """The exporter reads work items as columns (work_item_table); it must see what work_items() sees."""
    from collector.compute import compute

    store = Store(store_url)
    store.commit("boards", sample_batch())
    store.commit("boards", sample_batch(offset=10))
    store.commit(
        "github",
        Batch(
            work_items=[
                WorkItem("github", "contoso/web#3", "gh:contoso/web#3", "contoso/web", "unassigned", "Issue", T0)
            ]
        ),
    )  # no history at all
    table = store.work_item_table()
    assert sorted(table.ref_index) == sorted(w.ref for w in store.work_items())
    assert list(store.work_item_table(linked={"ado:1"}).ref_index) == ["ado:1"]
    from_objects, from_table = compute(store.work_items(), [], [], []), compute(table, [], [], [])
    assert from_table.wip == from_objects.wip and from_table.wip
    assert from_table.state_seconds == from_objects.state_seconds


def test_a_label_too_long_for_the_column_is_rejected_alike_on_every_backend(store_url: str) -> None:
    store = Store(store_url)
    batch = sample_batch()
    batch.work_items.append(item(99, [(0, "New", Category.PROPOSED)], team="T" * 256))
    store.commit("boards", batch)
    stored = {w.native_id for w in store.work_items()}
    assert "99" not in stored and {w.native_id for w in sample_batch().work_items} <= stored
    assert store.rejection_counts()[("boards", "value_too_long")] == 1


def test_a_version_1_store_gains_change_sequences_and_item_numbers(store_url: str) -> None:
    """Upgrading keeps every row; rows written after it are found as changed, the old ones not."""
    store = Store(store_url)
    store.commit("boards", sample_batch())
    store.commit("github", Batch(changes=sample_batch().changes, deployments=sample_batch().deployments))
    before = store.content_digest()
    with store.engine.begin() as conn:  # back to the version 1 tables
        for table in ("work_items", "state_changes", "changes", "deployments", "links"):
            conn.execute(sa.text(f"DROP INDEX ix_{table}_change_seq"))
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN change_seq"))
        conn.execute(sa.text("ALTER TABLE work_items DROP COLUMN item_no"))
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="1"))
    store.close()

    upgraded = Store(store_url)
    assert upgraded.schema_version() == SCHEMA_VERSION == 6
    assert upgraded.content_digest() == before
    numbers = sorted(upgraded.work_item_table().item_no.tolist())
    assert len(set(numbers)) == 2 and numbers[0] > 0 and numbers[-1] < 2**32
    version = upgraded.data_version
    assert upgraded.changed_work_items(0, upgraded.work_item_table())[1] == []
    upgraded.commit("boards", Batch(work_items=[item(7, [(0, "New", Category.PROPOSED)])]))
    delta, refs = upgraded.changed_work_items(version, upgraded.work_item_table())
    assert refs == [ado_ref(7)] and int(delta.item_no[0]) > numbers[-1]
    assert upgraded.changes(since=0) == [] and len(upgraded.changes(since=-1)) == len(before["changes"]) > 0


def _poll(store: Store, ok: bool, at: float, shard: int, total: int, rate_limit_remaining: float | None = None) -> None:
    """A pass of the github source by shard ``shard`` of ``total``, failing with an HTTP 503 unless ``ok``."""
    store.record_poll(
        "github",
        ok=ok,
        started_at=at,
        duration=2.0,
        bounds=POLL_BUCKETS,
        items=5,
        error=None if ok else f"HTTP 503 on shard {shard}",
        rate_limit_remaining=rate_limit_remaining,
        shard=shard,
        total_shards=total,
    )


def test_each_shard_keeps_its_own_health_and_any_failing_one_makes_the_source_down(store_url: str) -> None:
    """Shards of one source (docs/sharding.md): a shard's failed pass is not overwritten by another
    shard's later success; the last success is the oldest shard's, budgets the lowest, backlogs summed."""
    store = Store(store_url)
    _poll(store, True, 1000.0, 0, 3, rate_limit_remaining=4000)
    _poll(store, True, 1100.0, 1, 3, rate_limit_remaining=3500)
    _poll(store, False, 1200.0, 1, 3)  # shard 1 fails after its success …
    _poll(store, True, 1300.0, 2, 3, rate_limit_remaining=3900)  # … and shard 2 succeeds later
    status = store.statuses(3)["github"]
    assert not status.ok
    assert status.last_error == "shard 1 of 3: HTTP 503 on shard 1"
    assert status.last_success == datetime.fromtimestamp(1002.0, UTC)  # shard 0's, the oldest
    assert status.last_attempt == datetime.fromtimestamp(1300.0, UTC)
    assert status.items == 15 and status.rate_limit_remaining == 3500  # shard 1 kept its budget
    store.record_budgets("github", [ApiBudget("rest", 300, 5000, 1e9)], backlog=2, shard=0, total_shards=3)
    store.record_budgets(
        "github", [ApiBudget("rest", 120, 5000, 1e9), ApiBudget("graphql", 10, 5000, 2e9)], 4, shard=2, total_shards=3
    )
    store.record_budgets("github", [], backlog=None, shard=1, total_shards=3)  # cannot tell: left out
    assert store.budgets() == {
        ("github", "rest"): ApiBudget("rest", 120, 5000, 1e9),  # one window: the lowest is the newest
        ("github", "graphql"): ApiBudget("graphql", 10, 5000, 2e9),
    }
    assert store.statuses(3)["github"].rate_limit_remaining == 120  # the rest budget's newest sight
    assert store.backlogs(3) == {"github": 6}
    _poll(store, True, 1400.0, 1, 3)
    healthy = store.statuses(3)["github"]
    assert healthy.ok and healthy.last_error is None
    assert healthy.last_success == datetime.fromtimestamp(1002.0, UTC)  # shard 0 has not passed since


def test_health_rows_of_an_earlier_number_of_shards_count_only_until_the_new_shards_passed(store_url: str) -> None:
    store = Store(store_url)
    _poll(store, True, 1000.0, 0, 2)
    _poll(store, False, 1010.0, 1, 2)
    store.record_budgets("github", [ApiBudget("rest", 7, 5000, None)], backlog=9, shard=1, total_shards=2)
    # scaled to 3: until a shard of 3 has passed, the 2 shards' health is the latest there is
    assert not store.statuses(3)["github"].ok
    assert store.backlogs(3) == {"github": 9}
    _poll(store, True, 2000.0, 2, 3)
    assert store.statuses(3)["github"].ok  # shard 1 of 2 failing no longer keeps it down
    assert store.backlogs(3) == {}
    # a budget is the credential's: the 2 shards' sight stays the newest until a later window's
    assert store.budgets()[("github", "rest")] == ApiBudget("rest", 7, 5000, None)
    store.record_budgets("github", [ApiBudget("rest", 4000, 5000, 5e9)], backlog=0, shard=2, total_shards=3)
    assert store.budgets()[("github", "rest")] == ApiBudget("rest", 4000, 5000, 5e9)
    store.record_budgets("github", [ApiBudget("rest", 3000, 5000, 4e9)], backlog=0, shard=0, total_shards=3)
    assert store.budgets()[("github", "rest")].remaining == 4000  # an earlier window: older
    store.record_budgets("github", [], backlog=0, expired=["rest"], shard=0, total_shards=3)
    assert store.budgets() == {}  # the API said the budget no longer applies: to every shard
    assert store.statuses(3)["github"].last_success == datetime.fromtimestamp(2002.0, UTC)
    # … nor does an earlier number keep it up: a failing shard of 3 takes it down at once
    _poll(store, False, 2100.0, 0, 3)
    assert not store.statuses(3)["github"].ok
    # a single replica again (1 shard): its own passes, once it made one
    assert not store.statuses(1)["github"].ok
    _poll(store, True, 3000.0, 0, 1)
    assert store.statuses(1)["github"].ok


#: the health tables as schema 5 made them: keyed by the source alone
_V5 = sa.MetaData()
sa.Table(
    "source_status",
    _V5,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("last_attempt", sa.Float, nullable=False),
    sa.Column("last_success", sa.Float),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("items", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("rate_limit_remaining", sa.Float),
)
sa.Table(
    "api_budgets",
    _V5,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("api", sa.String(32), primary_key=True),
    sa.Column("remaining", sa.Float, nullable=False),
    sa.Column("limit", sa.Float),
    sa.Column("reset_at", sa.Float),
)
sa.Table(
    "sync_backlog",
    _V5,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("backlog", sa.BigInteger, nullable=False),
)


def test_a_version_5_store_keeps_its_health_as_a_single_replicas(store_url: str) -> None:
    """Upgrading to per-shard health keeps each source's rows as shard 0 of 1's; shards read them
    until their own first pass."""
    store = Store(store_url)
    store.commit("boards", sample_batch())
    before = store.content_digest()
    with store.engine.begin() as conn:
        for name in ("source_status", "api_budgets", "sync_backlog"):
            conn.execute(sa.text(f"DROP TABLE {name}"))
        _V5.create_all(conn)
        conn.execute(
            _V5.tables["source_status"].insert(),
            [
                {"source": "github", "ok": False, "last_attempt": 900.0, "last_success": 800.0, "duration": 3.0}
                | {"items": 4, "last_error": "HTTP 502", "rate_limit_remaining": 4321.0},
                {"source": "boards", "ok": True, "last_attempt": 950.0, "last_success": 960.0, "duration": 10.0}
                | {"items": 40, "last_error": None, "rate_limit_remaining": None},
            ],
        )
        conn.execute(
            _V5.tables["api_budgets"].insert(),
            [{"source": "github", "api": "graphql", "remaining": 4000.0, "limit": 5000.0, "reset_at": 1e9}],
        )
        conn.execute(_V5.tables["sync_backlog"].insert(), [{"source": "github", "backlog": 12}])
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="5"))
    store.close()

    upgraded = Store(store_url)
    assert upgraded.schema_version() == SCHEMA_VERSION == 6
    assert upgraded.content_digest() == before
    for total in (1, 3):  # a single replica's own rows; shards of 3 read them until their first pass
        statuses = upgraded.statuses(total)
        assert set(statuses) == {"github", "boards"}
        github = statuses["github"]
        assert (github.ok, github.last_error, github.rate_limit_remaining, github.items) == (False, "HTTP 502", 4321, 4)
        assert github.last_success == datetime.fromtimestamp(800.0, UTC)
        assert statuses["boards"].ok and statuses["boards"].duration == 10.0
        assert upgraded.budgets() == {("github", "graphql"): ApiBudget("graphql", 4000, 5000, 1e9)}
        assert upgraded.backlogs(total) == {"github": 12}
    _poll(upgraded, True, 1000.0, 1, 3)
    assert upgraded.statuses(3)["github"].ok and upgraded.backlogs(3) == {}
    _poll(upgraded, True, 1000.0, 0, 1)  # the single replica's row is the migrated one
    assert upgraded.statuses(1)["github"].last_success == datetime.fromtimestamp(1002.0, UTC)
    assert upgraded.statuses(1)["github"].rate_limit_remaining == 4321  # kept: that pass saw no budget
