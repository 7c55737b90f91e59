"""Persistence and watermarks: SQLite by default, PostgreSQL through the same SQLAlchemy Core code.

Every write is an idempotent upsert keyed by (source, native id), and a batch's watermark is
written in the same transaction as the batch, so a crash between batches loses nothing and a
re-read page changes nothing. The collector's own counters (API requests, poll durations,
rejections) live here too, so a restart re-exports the same values.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from collector.errors import StoreError, StoreInUse
from collector.model import Batch, Category, Change, Deployment, Link, Rejection, StateChange, WorkItem

if TYPE_CHECKING:
    # NumPy (through collector.table) is for the figures' reads only: ``cycletime sync`` never loads it
    from collector.linking import ChangeTable
    from collector.table import WorkItemTable

SCHEMA_VERSION = 6
#: rows fetched at a time where the figures read a whole table through a raw cursor
_BATCH = 10_000
#: the longest label or id the store keeps (the columns' size on PostgreSQL)
MAX_TEXT = 255

metadata = sa.MetaData()

meta = sa.Table(
    "meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False)
)

work_items = sa.Table(
    "work_items",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("native_id", sa.String(255), primary_key=True),
    sa.Column("ref", sa.String(255), nullable=False, index=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("team", sa.String(255), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # set on insert only: the item's place in the figures' table, so new items append to it
    sa.Column("item_no", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default=sa.text("0"), index=True),
)

state_changes = sa.Table(
    "state_changes",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("work_item_id", sa.String(255), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("state", sa.String(255), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default=sa.text("0"), index=True),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("native_id", sa.String(255), primary_key=True),
    sa.Column("ref", sa.String(255), nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("first_commit_at", sa.Float, nullable=False),
    sa.Column("merged_at", sa.Float),
    sa.Column("commits", sa.Text, nullable=False),  # JSON list of shas
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default=sa.text("0"), index=True),
    # schema 5: the pull request's stage boundaries (cycletime_change_stage_seconds)
    sa.Column("ready_at", sa.Float),
    sa.Column("first_review_at", sa.Float),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("native_id", sa.String(255), primary_key=True),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("environment", sa.String(255), nullable=False),
    sa.Column("production", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("sha", sa.String(64)),
    sa.Column("contains", sa.Text, nullable=False),  # JSON list of refs
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default=sa.text("0"), index=True),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("work_item", sa.String(255), primary_key=True),
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("change_seq", sa.BigInteger, nullable=False, server_default=sa.text("0"), index=True),
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("record_id", sa.String(255), primary_key=True),
    sa.Column("reason", sa.String(64), primary_key=True),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("stream", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: work a source committed to doing later (e.g. the relations of the items a revisions page touched):
#: queued in the transaction that moves the watermark past it, removed in the one that does it
queues = sa.Table(
    "queues",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
)

api_requests = sa.Table(
    "api_requests",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

poll_durations = sa.Table(
    "poll_durations",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    # index into the bounds the pass was recorded with (record_poll); -1 holds the count and the sum
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
)

#: the health of each shard's passes of a source (schema 6): keyed by the shard and the number of
#: shards it was one of, so a shard's failed pass is not overwritten by another shard's success;
#: a single replica is shard 0 of 1. Readers combine the rows of the current number of shards
#: (see ``_health_totals``)
source_status = sa.Table(
    "source_status",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("total_shards", sa.Integer, primary_key=True),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("last_attempt", sa.Float, nullable=False),
    sa.Column("last_success", sa.Float),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("items", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("rate_limit_remaining", sa.Float),
)

#: each API's rate budget as each shard's last pass of the source left it (``cycletime_api_budget_remaining``)
api_budgets = sa.Table(
    "api_budgets",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("total_shards", sa.Integer, primary_key=True),
    sa.Column("api", sa.String(32), primary_key=True),
    sa.Column("remaining", sa.Float, nullable=False),
    sa.Column("limit", sa.Float),
    sa.Column("reset_at", sa.Float),
)

#: work each shard's last pass of the source knew to remain (``cycletime_sync_backlog``)
sync_backlog = sa.Table(
    "sync_backlog",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("total_shards", sa.Integer, primary_key=True),
    sa.Column("backlog", sa.BigInteger, nullable=False),
)

#: the tables of per-shard health, with what a row was keyed by before schema 6 (the source alone)
_SHARD_HEALTH = (source_status, api_budgets, sync_backlog)


#: (dialect, table, conflict keys, added columns, kept columns) → its upsert statement (see ``Store._upsert``)
_UPSERTS: dict[tuple[str, str, tuple[str, ...], frozenset[str], frozenset[str]], Any] = {}
#: (dialect, table, columns, conflict keys, kept columns) → (SQL, parameter order) (see ``Store._upsert_rows``)
_DRIVER_PLANS: dict[
    tuple[str, str, tuple[str, ...], tuple[str, ...], frozenset[str]], tuple[str, tuple[str, ...] | None] | None
] = {}
#: the columns ``Store._write_batch`` writes as tuples, in their order
_ITEM_COLUMNS = ("source", "native_id", "ref", "project", "team", "type", "created_at", "item_no", "change_seq")
_STATE_COLUMNS = ("source", "work_item_id", "seq", "at", "state", "category", "change_seq")
_LINK_COLUMNS = ("source", "work_item", "target", "change_seq")
_CHANGE_COLUMNS = (
    "source",
    "native_id",
    "ref",
    "service",
    "kind",
    "first_commit_at",
    "merged_at",
    "commits",
    "change_seq",
    "ready_at",
    "first_review_at",
)
_DEPLOYMENT_COLUMNS = (
    "source",
    "native_id",
    "service",
    "environment",
    "production",
    "status",
    "started_at",
    "finished_at",
    "sha",
    "contains",
    "change_seq",
)
#: column types whose Python values (str, int, float, bool, None) every driver binds as SQLAlchemy would
_PLAIN_TYPES = (sa.String, sa.Integer, sa.Float, sa.Boolean)


def _insert_of(dialect: str) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT (with ON CONFLICT), imported on first use: a SQLite process never loads
    the PostgreSQL dialect."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _at(ts: float) -> datetime:
    """A NOT NULL time column."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class SourceStatus:
    source: str
    ok: bool
    last_attempt: datetime
    last_success: datetime | None
    duration: float
    items: int
    last_error: str | None
    rate_limit_remaining: float | None


@dataclass(frozen=True)
class ApiBudget:
    """One API's rate budget (``rest``, ``graphql``) as a source's pass last saw it."""

    api: str
    remaining: float
    limit: float | None
    reset_at: float | None  # Unix time


def normalise_url(url: str) -> str:
    """``postgresql://`` uses psycopg 3 (the maintained driver); SQLite paths get their folder."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


#: what a failing database raises (disk full, server gone, file removed); callers catch these at
#: the job boundary and report the store as down instead of crashing
log = logging.getLogger(__name__)

STORE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError,)
#: the PostgreSQL advisory lock key of the writer lease
_WRITER_KEY = zlib.crc32(b"cycletime-writer")


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other backends and in-memory stores)."""
    url = normalise_url(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def _holder() -> str:
    return f"PID {os.getpid()} on {socket.gethostname()}"


class Store:
    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.path = sqlite_path(self.url)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store's folder {self.path.parent}: {exc.strerror}") from None
        try:
            self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        except ImportError:
            raise StoreError("PostgreSQL needs its driver: pip install 'cycletime-collector[postgres]'") from None
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"invalid store URL: {exc}") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._writer: Any = None  # the lock file (SQLite) or connection (PostgreSQL) holding the lease
        self._lease: tuple[str, bool] | None = None  # (purpose, shared) of the lease taken
        self._lease_pid: int | None = None  # PostgreSQL: the backend holding the lease
        self._lease_lock = threading.Lock()
        #: per thread: the scope claim (its lock's backend pid and key) a source is polling under
        self._claims = threading.local()
        #: the store's health as this process saw it last (exported beside the figures, and /readyz)
        self.healthy = True
        self.failures = 0
        self.last_error: str | None = None
        self.migrate()
        self._inode = self.path.stat().st_ino if self.path is not None and self.path.exists() else None

    # -- schema -----------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema; refuses a store written by a newer version.

        Two processes opening a new store at once race between "does the table exist" and
        "create it"; the loser sees "already exists" and simply checks again.
        """
        for attempt in range(5):
            try:
                return self._migrate()
            except StoreError as exc:
                if "already exists" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _migrate(self) -> None:
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, tables=[meta])
                row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store has schema version {current}, newer than this "
                        f"collector's {SCHEMA_VERSION}; upgrade the collector"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[version](conn)
                if current != SCHEMA_VERSION:
                    self._upsert(conn, meta, [{"key": "schema_version", "value": str(SCHEMA_VERSION)}], ["key"])
                insert = _insert_of(self.dialect)
                conn.execute(
                    insert(meta)
                    .values(key="store_id", value=uuid.uuid4().hex)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            raise StoreError(f"cannot open the store: {exc.orig}") from None

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())

    def close(self) -> None:
        self.release_writer()
        self.engine.dispose()

    # -- one writer at a time ---------------------------------------------------------------
    def acquire_writer(
        self, purpose: str, wait: bool = False, timeout: float | None = None, shared: bool = False
    ) -> None:
        """Take the store's writer lease, or raise StoreInUse naming who holds it.

        Two writers on one store interleave watermarks and lose data, so ``sync`` and ``serve``
        take this lease first. SQLite: an ``flock`` on ``<db>.lock`` beside the file; PostgreSQL:
        a session-level advisory lock. Both vanish with the holding process, even on kill -9.
        ``shared`` (PostgreSQL, shards): many shards hold it at once, each writing only the scopes
        it claims (:meth:`claim_scope`); an unsharded writer and the shards still exclude each other.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            holder = self._try_acquire(purpose, shared)
            if holder is None:
                return
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise StoreInUse(f"store in use by {holder}; wait for it to finish, stop it, or pass --wait")
            time.sleep(0.5)

    def _try_acquire(self, purpose: str, shared: bool = False) -> str | None:
        """None when the lease is ours now, else a description of its holder."""
        me = f"{_holder()} ({purpose}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)"
        if self._writer is not None:
            return None
        if shared and self.dialect != "postgresql":
            raise StoreError("shards need a PostgreSQL store: only it locks scopes across processes")
        if self.path is not None:
            handle = open(f"{self.path}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                return holder
            handle.seek(0)
            handle.truncate()
            handle.write(me + "\n")
            handle.flush()
            self._writer = handle
            return None
        if self.dialect == "postgresql":
            conn = self.engine.connect()
            lock = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            if not conn.execute(sa.text(f"SELECT {lock}(:k)"), {"k": _WRITER_KEY}).scalar():
                found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "writer")).scalar()
                conn.close()
                return str(found or "another process")
            self._lease_pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            conn.commit()
            with self.engine.begin() as tx:
                self._upsert(tx, meta, [{"key": "writer", "value": me}], ["key"])
            self._writer, self._lease = conn, (purpose, shared)
            return None
        self._writer = True  # in-memory SQLite: one process by definition
        return None

    def ensure_writer(self) -> None:
        """Before a pass: the lease taken at start is still ours, or taken again.

        A PostgreSQL lease lives in a database session; a database restart or a dropped connection
        ends it, and another writer may start meanwhile. Re-taken when free; when another process
        took it, StoreInUse (the pass writes nothing). SQLite's ``flock`` cannot be lost this way."""
        if self._lease is None or self.dialect != "postgresql":
            return
        with self._lease_lock:  # passes of several sources start at once
            if self._writer is not None:
                try:
                    self._writer.execute(sa.text("SELECT 1")).scalar()
                    self._writer.commit()
                    return
                except sa.exc.SQLAlchemyError:
                    log.warning("store writer lease lost with its database connection; taking it again")
                    self._drop_writer()
            holder = self._try_acquire(*self._lease)
            if holder is not None:
                raise StoreInUse(f"the store's writer lease was lost and {holder} holds it now; nothing written")

    def _check_writer(self, conn: Connection) -> None:
        """Inside a write's transaction (PostgreSQL): this process still holds the writer lease."""
        if self._lease_pid is None:
            return
        still = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
                "AND classid::bigint = 0 AND objid::bigint = :key AND objsubid = 1"
            ),
            {"pid": self._lease_pid, "key": _WRITER_KEY},
        ).scalar_one()
        if not still:
            raise StoreError("the store's writer lease was lost (its database connection dropped); nothing written")

    def release_writer(self) -> None:
        self._lease = None
        self._drop_writer()

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        self._lease_pid = None
        if writer is None or writer is True:
            return
        try:
            if hasattr(writer, "fileno"):
                fcntl.flock(writer, fcntl.LOCK_UN)
            else:
                # a pooled connection outlives close(): the session's lock would stay held until
                # the pool drops it, and a process taking the lease right after would find it taken
                try:
                    writer.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                    writer.commit()
                except sa.exc.SQLAlchemyError:
                    pass  # a dropped connection holds no lock any more
            writer.close()
        except (OSError, sa.exc.SQLAlchemyError):
            pass  # the lease ends with the process anyway

    # -- scopes (shards) --------------------------------------------------------------------
    @contextmanager
    def claim_scope(self, key: int, since: float | None = None) -> Iterator[bool]:
        """Hold the scope's advisory lock (session level, on a connection of its own) while the
        block polls it: True when taken, False when another process holds it, or when the scope
        was polled to the end after ``since`` (by :meth:`now`'s clock): a twin replica polls
        nothing twice. Nothing waits.

        While held, :meth:`commit` writes a watermark only if the lock still is (its connection
        may have dropped), so only the scope's lock holder moves its watermarks. A block left
        without an exception stamps the scope as polled. SQLite has one writer: always True."""
        if self.dialect != "postgresql":
            yield True
            return
        polled_key = f"polled:{key % (1 << 64):016x}"
        conn = self.engine.connect()
        try:
            if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                yield False
                return
            try:
                polled = conn.execute(sa.select(meta.c.value).where(meta.c.key == polled_key)).scalar()
                pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                conn.commit()
                if since is not None and polled is not None and float(polled) > since:
                    yield False
                    return
                previous = getattr(self._claims, "held", None)
                self._claims.held = (pid, key)
                try:
                    yield True
                finally:
                    self._claims.held = previous
                try:
                    self._upsert(conn, meta, [{"key": polled_key, "value": repr(self._db_now(conn))}], ["key"])
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    pass  # the lock's connection dropped: not stamped, a twin may poll the scope again
            finally:
                try:
                    conn.rollback()
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    pass  # the connection is gone, and the lock with it
        finally:
            conn.close()

    def now(self) -> float:
        """The database's clock (PostgreSQL), so shards on several machines compare times of one clock."""
        if self.dialect != "postgresql":
            return time.time()
        with self.engine.connect() as conn:
            return self._db_now(conn)

    @staticmethod
    def _db_now(conn: Connection) -> float:
        return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())

    def _check_claim(self, conn: Connection) -> None:
        """Inside a watermark's transaction: the scope lock this thread polls under is still held."""
        held = getattr(self._claims, "held", None)
        if held is None:
            return
        pid, key = held
        unsigned = key % (1 << 64)
        still = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
                "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
            ),
            {"pid": pid, "hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
        ).scalar_one()
        if not still:
            raise StoreError("the scope's lock was lost (its database connection dropped); the watermark stays")

    # -- health -----------------------------------------------------------------------------
    def note_failure(self, exc: BaseException) -> str:
        """Record a store failure (disk full, database down); returns the one-line reason."""
        reason = store_error_reason(exc)
        self.healthy, self.last_error = False, reason
        self.failures += 1
        return reason

    def note_success(self) -> None:
        self.healthy, self.last_error = True, None

    def file_replaced(self) -> str | None:
        """For /readyz: the SQLite file was deleted or replaced under us (all writes would be lost)."""
        if self.path is None or self._inode is None:
            return None
        try:
            if self.path.stat().st_ino == self._inode:
                return None
        except FileNotFoundError:
            return f"store file {self.path} was deleted; restart to recreate it"
        return f"store file {self.path} was replaced by another file; restart to open it"

    @property
    def data_version(self) -> int:
        """A store-wide counter bumped by every commit that carried data, whichever process made it,
        so an exporter sees another process's writes and recomputes only when data changed."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "data_version")).scalar()
        return int(value or 0)

    @property
    def identity(self) -> str:
        """Which store this is, and at which schema: it changes when the file or database was
        replaced (a restore, another store at the same URL) or upgraded, and then change
        sequences read earlier say nothing about it."""
        with self.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(meta.c.key, meta.c.value).where(meta.c.key.in_(_IDENTITY))).all())
        return "/".join(str(rows.get(key)) for key in _IDENTITY)

    # -- writes -----------------------------------------------------------------------------
    def commit(
        self,
        source: str,
        batch: Batch,
        *,
        stream: str | None = None,
        watermark: str | None = None,
        queue: str | None = None,
        enqueue: Iterable[str] = (),
        dequeue: Iterable[str] = (),
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Write a batch and (optionally) the watermark it reaches, atomically.

        ``enqueue``/``dequeue``: keys added to / removed from the source's ``queue`` in the same
        transaction, so work deferred past a watermark is never lost to a crash (see ``queues``).
        ``before_commit`` runs inside the transaction just before it commits; tests use it to
        simulate a crash between writing the data and committing.
        """
        with self.engine.begin() as conn:
            self._check_writer(conn)
            if batch.work_items or batch.changes or batch.deployments or batch.links or batch.rejections:
                self._write_batch(conn, source, batch, self._bump_data_version(conn))
            if queue is not None:
                self._update_queue(conn, source, queue, enqueue, dequeue)
            if stream is not None and watermark is not None:
                self._check_claim(conn)
                self._upsert(
                    conn,
                    watermarks,
                    [{"source": source, "stream": stream, "value": watermark, "updated_at": time.time()}],
                    ["source", "stream"],
                )
            if before_commit is not None:
                before_commit()

    def _update_queue(
        self, conn: Connection, source: str, queue: str, enqueue: Iterable[str], dequeue: Iterable[str]
    ) -> None:
        done = sorted(set(dequeue))
        for chunk in _chunks(done, 500):
            conn.execute(
                queues.delete()
                .where(queues.c.source == source)
                .where(queues.c.queue == queue)
                .where(queues.c.key.in_(chunk))
            )
        self._upsert_rows(
            conn,
            queues,
            ("source", "queue", "key"),
            [(source, queue, key) for key in sorted(set(enqueue) - set(done))],
            ["source", "queue", "key"],
        )

    def _bump_data_version(self, conn: Connection) -> int:
        """The new data version, which is also the change sequence of every row this commit writes.

        Bumped before the rows are written: on PostgreSQL the counter's row lock then orders
        writers, so rows become visible in sequence order and "changed since version v" is exact.
        """
        stmt = _UPSERTS.get((self.dialect, "data_version", (), frozenset(), frozenset()))
        if stmt is None:
            insert = _insert_of(self.dialect)
            bumped = sa.cast(sa.cast(meta.c.value, sa.BigInteger) + 1, sa.Text)
            stmt = (
                insert(meta)
                .values(key="data_version", value="1")
                .on_conflict_do_update(index_elements=["key"], set_={"value": bumped})
                .returning(meta.c.value)  # one statement, not a second to read it back (SQLite >= 3.35)
            )
            _UPSERTS[(self.dialect, "data_version", (), frozenset(), frozenset())] = stmt
        return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def _within_limits(source: str, batch: Batch) -> Batch:
        """Records whose text would not fit the columns become rejections, on every backend alike.

        PostgreSQL refuses a 256-character team label (and with it the whole batch); SQLite would
        store it silently. Either way the record is not trustworthy, so it is counted instead.
        """

        def fits(*values: str | None) -> bool:
            return all(v is None or len(v) <= MAX_TEXT for v in values)

        def history_fits(history: Sequence[StateChange]) -> bool:
            # one generator per item, not a fits() call and a generator per state change
            return all(len(h.work_item_id) <= MAX_TEXT and len(h.state) <= MAX_TEXT for h in history)

        too_long: list[Rejection] = []

        def keep(native_id: str, ok: bool) -> bool:
            if not ok:
                too_long.append(Rejection(source, native_id[:MAX_TEXT], "value_too_long"))
            return ok

        items = [
            w
            for w in batch.work_items
            if keep(
                w.native_id,
                fits(w.native_id, w.ref, w.project, w.team, w.type) and history_fits(w.history),
            )
        ]
        kept_changes = [c for c in batch.changes if keep(c.native_id, fits(c.native_id, c.ref, c.service))]
        kept_deployments = [
            d for d in batch.deployments if keep(d.native_id, fits(d.native_id, d.service, d.environment, d.sha))
        ]
        kept_links = [link for link in batch.links if keep(link.work_item, fits(link.work_item, link.target))]
        if not too_long:
            return batch
        return Batch(
            items, kept_changes, kept_deployments, kept_links, [*batch.rejections, *too_long], batch.replace_history
        )

    def _write_batch(self, conn: Connection, source: str, batch: Batch, seq: int) -> None:
        """``seq``: this commit's change sequence, stamped on every row it writes, so the figures
        read only rows changed since they last read (see ``changed_work_items``)."""
        batch = self._within_limits(source, batch)
        # unique and above every earlier item's (migrated rows are numbered below 2**32)
        first_no = seq << 32
        items = [
            (source, w.native_id, w.ref, w.project, w.team, w.type, w.created_at.timestamp(), first_no + i, seq)
            for i, w in enumerate(batch.work_items)
        ]
        self._upsert_rows(conn, work_items, _ITEM_COLUMNS, items, ["source", "native_id"], keep=["item_no"])
        if batch.replace_history and batch.work_items:
            ids = [w.native_id for w in batch.work_items]
            for chunk in _chunks(ids, 500):
                conn.execute(
                    state_changes.delete()
                    .where(state_changes.c.source == source)
                    .where(state_changes.c.work_item_id.in_(chunk))
                )
        # str(), not .value: the enum's value is a Python-level property, called once per state change
        history = [
            (source, s.work_item_id, s.seq, s.at.timestamp(), s.state, str(s.category), seq)
            for w in batch.work_items
            for s in w.history
        ]
        self._upsert_rows(conn, state_changes, _STATE_COLUMNS, history, ["source", "work_item_id", "seq"])
        self._upsert_rows(
            conn,
            changes,
            _CHANGE_COLUMNS,
            [
                (
                    source,
                    c.native_id,
                    c.ref,
                    c.service,
                    c.kind,
                    _ts(c.first_commit_at),
                    _ts(c.merged_at),
                    json.dumps(sorted(set(c.commits))),
                    seq,
                    _ts(c.ready_at),
                    _ts(c.first_review_at),
                )
                for c in batch.changes
            ],
            ["source", "native_id"],
        )
        self._upsert_rows(
            conn,
            deployments,
            _DEPLOYMENT_COLUMNS,
            [
                (
                    source,
                    d.native_id,
                    d.service,
                    d.environment,
                    d.production,
                    d.status,
                    _ts(d.started_at),
                    _ts(d.finished_at),
                    d.sha,
                    json.dumps(sorted(set(d.contains))),
                    seq,
                )
                for d in batch.deployments
            ],
            ["source", "native_id"],
        )
        self._upsert_rows(
            conn,
            links,
            _LINK_COLUMNS,
            [(source, link.work_item, link.target, seq) for link in batch.links],
            ["source", "work_item", "target"],
        )
        self._upsert(
            conn,
            rejections,
            [{"source": source, "record_id": r.record_id[:255], "reason": r.reason} for r in batch.rejections],
            ["source", "record_id", "reason"],
        )

    def set_watermark(self, source: str, stream: str, value: str) -> None:
        self.commit(source, Batch(), stream=stream, watermark=value)

    def add_api_requests(self, source: str, counts: Counter[str]) -> None:
        rows = [{"source": source, "code": code, "count": n} for code, n in counts.items() if n]
        if not rows:
            return
        with self.engine.begin() as conn:
            self._upsert(conn, api_requests, rows, ["source", "code"], add=["count"])

    def record_budgets(
        self,
        source: str,
        budgets: Iterable[ApiBudget],
        backlog: int | None,
        expired: Iterable[str] = (),
        *,
        shard: int = 0,
        total_shards: int = 1,
    ) -> None:
        """A pass's view of its budgets (each API it heard from) and of the work it left behind,
        as shard ``shard`` of ``total_shards`` (a single replica: 0 of 1).

        An API not heard from keeps its last row unless it is ``expired`` (it said its budget no
        longer applies); ``backlog`` None (a source that cannot tell) removes the shard's row
        rather than export a stale count.
        """
        key = {"source": source, "shard": shard, "total_shards": total_shards}
        rows = [
            {**key, "api": b.api, "remaining": b.remaining, "limit": b.limit, "reset_at": b.reset_at} for b in budgets
        ]
        with self.engine.begin() as conn:
            for api in expired:  # the credential's budget: no shard's last sight of it holds any more
                conn.execute(sa.delete(api_budgets).where(api_budgets.c.source == source, api_budgets.c.api == api))
            self._upsert(conn, api_budgets, rows, ["source", "shard", "total_shards", "api"])
            if backlog is None:
                conn.execute(sa.delete(sync_backlog).where(*_shard_row(sync_backlog, key)))
            else:
                self._upsert(conn, sync_backlog, [{**key, "backlog": backlog}], ["source", "shard", "total_shards"])

    def budgets(self) -> dict[tuple[str, str], ApiBudget]:
        """(source, api) → the budget the last passes reported. With shards, the shards spend one
        credential's budget and each row is one shard's last sight of it: the latest window any
        shard saw wins, and in it the lowest remaining (a window's budget only goes down), so this
        is the newest sight, whichever shard (or number of shards) had it."""
        with self.engine.connect() as conn:
            return _latest_budgets(conn)

    def backlogs(self, total_shards: int = 1) -> dict[str, int]:
        """source → the work its last passes left: with shards, the sum over the shards of the
        current number (each counts its own scopes' streams)."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            status = sa.select(source_status.c.source, source_status.c.total_shards, source_status.c.last_attempt)
            current = _health_totals(conn.execute(status), total_shards)
            for s, _shard, n, backlog in conn.execute(sa.select(sync_backlog)):
                if n == current.get(s, total_shards):
                    out[s] = out.get(s, 0) + int(backlog)
        return out

    def record_poll(
        self,
        source: str,
        *,
        ok: bool,
        started_at: float,
        duration: float,
        bounds: Sequence[float],
        items: int,
        error: str | None,
        rate_limit_remaining: float | None,
        rate_limit_expired: bool = False,
        shard: int = 0,
        total_shards: int = 1,
    ) -> None:
        """One pass's outcome, as shard ``shard`` of ``total_shards`` (a single replica: 0 of 1).
        Without a budget the last one is kept (a pass may make no request), unless the API said it
        no longer applies (``rate_limit_expired``).

        The duration is counted in the first of ``bounds`` (ascending, ending with infinity) that
        holds it; the caller owns the bounds, the store only keeps a count per bucket index. The
        durations are the source's (every shard's passes counted), the outcome the shard's own.
        """
        bucket = bisect.bisect_left(bounds, duration)
        key = {"source": source, "shard": shard, "total_shards": total_shards}
        with self.engine.begin() as conn:
            self._upsert(
                conn,
                poll_durations,
                [
                    {"source": source, "bucket": bucket, "count": 1, "sum": 0.0},
                    {"source": source, "bucket": -1, "count": 1, "sum": duration},
                ],
                ["source", "bucket"],
                add=["count", "sum"],
            )
            previous = conn.execute(
                sa.select(source_status.c.last_success, source_status.c.rate_limit_remaining).where(
                    *_shard_row(source_status, key)
                )
            ).first()
            last_success = started_at + duration if ok else (previous[0] if previous else None)
            if rate_limit_remaining is None and previous is not None and not rate_limit_expired:
                rate_limit_remaining = previous[1]
            self._upsert(
                conn,
                source_status,
                [
                    {
                        **key,
                        "ok": ok,
                        "last_attempt": started_at,
                        "last_success": last_success,
                        "duration": duration,
                        "items": items,
                        "last_error": error,
                        "rate_limit_remaining": rate_limit_remaining,
                    }
                ],
                ["source", "shard", "total_shards"],
            )

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        keys: list[str],
        add: Iterable[str] = (),
        keep: Iterable[str] = (),
    ) -> None:
        """INSERT … ON CONFLICT DO UPDATE: the same statement on SQLite and PostgreSQL.

        ``add``: columns summed with the stored value; ``keep``: columns written on insert only.
        Built once per table and conflict rule: building it (``excluded`` copies every column) cost
        more than executing it for the small batches a sync writes.
        """
        if not rows:
            return
        stmt = self._upsert_statement(table, keys, add, keep)
        for chunk in _chunks(list(rows), 2000):
            conn.execute(stmt, chunk)

    def _upsert_rows(
        self,
        conn: Connection,
        table: sa.Table,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        keys: list[str],
        keep: Iterable[str] = (),
    ) -> None:
        """``_upsert`` of plain tuples (values in ``columns`` order), handed to the driver as they are.

        For the rows a sync writes by the ten thousand (items, state changes, links, changes, deployments): SQLAlchemy's
        per-row work (a parameter dict, its processing) cost more CPU than the driver's execution.
        The statement is ``_upsert``'s, compiled once per dialect; the values are what the columns'
        types would bind anyway (str, int, float, bool or None: each driver adapts them as
        SQLAlchemy's processors would), and a column of any other type takes ``_upsert`` instead.
        """
        if not rows:
            return
        plan = self._driver_plan(conn, table, columns, keys, keep)
        if plan is None:
            self._upsert(conn, table, [dict(zip(columns, row, strict=True)) for row in rows], keys, keep=keep)
            return
        sql, order = plan
        if order is None:  # a named paramstyle (psycopg): one dict per row, keyed by column
            params: list[Any] = [dict(zip(columns, row, strict=True)) for row in rows]
        elif order == columns:
            params = rows
        else:
            at = [columns.index(name) for name in order]
            params = [tuple(row[i] for i in at) for row in rows]
        for chunk in _chunks(params, 2000):
            conn.exec_driver_sql(sql, chunk)

    def _driver_plan(
        self, conn: Connection, table: sa.Table, columns: tuple[str, ...], keys: list[str], keep: Iterable[str]
    ) -> tuple[str, tuple[str, ...] | None] | None:
        """(SQL, parameter order or None for named parameters) of an upsert of ``columns``; None
        when a column's type is not one whose values drivers adapt alike (see ``_upsert_rows``)."""
        cache_key = (self.dialect, table.name, columns, tuple(keys), frozenset(keep))
        if cache_key in _DRIVER_PLANS:
            return _DRIVER_PLANS[cache_key]
        plan: tuple[str, tuple[str, ...] | None] | None = None
        if all(isinstance(table.c[name].type, _PLAIN_TYPES) for name in columns):
            compiled = self._upsert_statement(table, keys, (), keep).compile(
                dialect=conn.dialect, column_keys=list(columns)
            )
            plan = (compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None)
        _DRIVER_PLANS[cache_key] = plan
        return plan

    def _upsert_statement(self, table: sa.Table, keys: list[str], add: Iterable[str], keep: Iterable[str]) -> Any:
        added, kept = frozenset(add), frozenset(keep)
        cache_key = (self.dialect, table.name, tuple(keys), added, kept)
        stmt = _UPSERTS.get(cache_key)
        if stmt is None:
            insert = _insert_of(self.dialect)
            stmt = insert(table)
            skip = {*keys, *kept}
            updates = {
                c.name: (table.c[c.name] + stmt.excluded[c.name]) if c.name in added else stmt.excluded[c.name]
                for c in table.columns
                if c.name not in skip
            }
            stmt = (
                stmt.on_conflict_do_update(index_elements=keys, set_=updates)
                if updates
                else stmt.on_conflict_do_nothing(index_elements=keys)
            )
            _UPSERTS[cache_key] = stmt
        return stmt

    # -- reads ------------------------------------------------------------------------------
    def watermark(self, source: str, stream: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(watermarks.c.value).where(watermarks.c.source == source).where(watermarks.c.stream == stream)
            ).scalar_one_or_none()

    def queued(self, source: str, queue: str) -> list[str]:
        """The keys waiting in a source's queue, in key order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(queues.c.key)
                .where(queues.c.source == source)
                .where(queues.c.queue == queue)
                .order_by(queues.c.key)
            )
            return [key for (key,) in rows]

    def watermarks(self, source: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(watermarks.c.stream, watermarks.c.value).where(watermarks.c.source == source))
            return {s: v for s, v in rows}

    def work_items(self, source: str | None = None) -> list[WorkItem]:
        with self.engine.connect() as conn:
            return self._work_items(conn, source)

    def _work_items(self, conn: Connection, source: str | None) -> list[WorkItem]:
        q = sa.select(*_columns(work_items, 7))
        h = sa.select(*_columns(state_changes, 6)).order_by(
            state_changes.c.source, state_changes.c.work_item_id, state_changes.c.seq
        )
        if source is not None:
            q = q.where(work_items.c.source == source)
            h = h.where(state_changes.c.source == source)
        histories: dict[tuple[str, str], list[StateChange]] = {}
        categories = {c.value: c for c in Category}
        for src, wid, seq, at, state, cat in conn.execute(h):
            histories.setdefault((src, wid), []).append(
                StateChange(wid, seq, datetime.fromtimestamp(at, UTC), state, categories[cat])
            )
        return [
            WorkItem(
                src,
                nid,
                ref,
                project,
                team,
                type_,
                datetime.fromtimestamp(created, UTC),
                tuple(histories.get((src, nid), ())),
            )
            for src, nid, ref, project, team, type_, created in conn.execute(q)
        ]

    def changes(self, source: str | None = None, since: int | None = None, service: str | None = None) -> list[Change]:
        """``since``: only the changes written after that data version; ``service``: of that
        service (repository) only."""
        q = sa.select(*_columns(changes, 8), changes.c.ready_at, changes.c.first_review_at)
        if source is not None:
            q = q.where(changes.c.source == source)
        if service is not None:
            q = q.where(changes.c.service == service)
        if since is not None:
            q = q.where(changes.c.change_seq > since)
        with self.engine.connect() as conn:
            return [
                Change(src, nid, ref, svc, kind, _at(first), _dt(merged), tuple(json.loads(shas)), _dt(ready), _dt(rev))
                for src, nid, ref, svc, kind, first, merged, shas, ready, rev in conn.execute(q)
            ]

    def deployments(
        self, source: str | None = None, since: int | None = None, service: str | None = None
    ) -> list[Deployment]:
        """``since``: only the deployments written after that data version; ``service``: of that
        service (repository) only."""
        q = sa.select(*_columns(deployments, 10))
        if source is not None:
            q = q.where(deployments.c.source == source)
        if service is not None:
            q = q.where(deployments.c.service == service)
        if since is not None:
            q = q.where(deployments.c.change_seq > since)
        with self.engine.connect() as conn:
            return [
                Deployment(
                    src,
                    nid,
                    service,
                    env,
                    bool(prod),
                    status,
                    _dt(started),
                    _at(finished),
                    sha,
                    tuple(json.loads(contains)),
                )
                for src, nid, service, env, prod, status, started, finished, sha, contains in conn.execute(q)
            ]

    def links(self, source: str | None = None, since: int | None = None) -> list[Link]:
        """``since``: only the links written after that data version."""
        q = sa.select(*_columns(links, 3))
        if source is not None:
            q = q.where(links.c.source == source)
        if since is not None:
            q = q.where(links.c.change_seq > since)
        with self.engine.connect() as conn:
            return [Link(*row) for row in conn.execute(q)]

    def rejection_counts(self) -> Counter[tuple[str, str]]:
        q = sa.select(rejections.c.source, rejections.c.reason, sa.func.count()).group_by(
            rejections.c.source, rejections.c.reason
        )
        with self.engine.connect() as conn:
            return Counter({(s, r): n for s, r, n in conn.execute(q)})

    def change_table(self, since: int | None = None, extends: ChangeTable | None = None) -> ChangeTable:
        """Changes, deployments and links as columns for compute, never as objects (raw cursors in
        batches, as ``work_item_table``). ``since``: only the rows written after that data version,
        taken into ``extends`` (the table read before)."""
        from collector.linking import ChangeTable

        table = extends if extends is not None else ChangeTable()
        where = "" if since is None else f" WHERE change_seq > {int(since)}"
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None, "a connection from the pool always has its driver connection"
            cur = driver.cursor()
            cur.execute(
                "SELECT source, native_id, ref, service, kind, first_commit_at, merged_at, commits, ready_at, "
                f"first_review_at FROM changes{where}"
            )
            while rows := cur.fetchmany(_BATCH):
                table = table.updated(changes=rows)
            cur.execute(
                "SELECT source, native_id, service, environment, production, status, finished_at, sha, contains "
                f"FROM deployments{where}"
            )
            found = [(src, nid, svc, env, bool(prod), *rest) for src, nid, svc, env, prod, *rest in cur.fetchall()]
            table = table.updated(deployments=found)
            cur.execute(f"SELECT work_item, target FROM links{where}")
            while rows := cur.fetchmany(_BATCH):
                table = table.updated(links=rows)
            cur.close()
        finally:
            raw.close()
        return table

    def work_item_table(self, linked: set[str] | None = None) -> WorkItemTable:
        """Work items as columns for compute, streamed so a million items never exist as objects.

        Raw DB-API cursors (server-side on PostgreSQL) instead of SQLAlchemy rows: this runs after
        every sync over every revision, and row objects would triple its time. Both queries are
        ordered by (source, id) in byte order ("C" collation on PostgreSQL, BINARY on SQLite), so
        the histories merge onto their items in one pass. ``linked``: the only work item refs that
        can be released (those with links); None keeps every ref. The table's rows end up in
        item number order (``WorkItemTable.in_item_no_order``), which ``changed_work_items`` extends.
        """
        from collector.table import TableBuilder

        builder = TableBuilder(linked)
        collate = ' COLLATE "C"' if self.dialect == "postgresql" else ""
        items_sql = (
            "SELECT source, native_id, ref, project, team, type, created_at, item_no FROM work_items "
            f"ORDER BY source{collate}, native_id{collate}"
        )
        history_sql = (
            "SELECT source, work_item_id, at, state, category FROM state_changes "
            f"ORDER BY source{collate}, work_item_id{collate}, seq"
        )
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None, "a connection from the pool always has its driver connection"
            server_side = self.dialect == "postgresql"
            items_cur = driver.cursor(name="cycletime_items") if server_side else driver.cursor()
            history_cur = driver.cursor(name="cycletime_history") if server_side else driver.cursor()
            items_cur.execute(items_sql)
            history_cur.execute(history_sql)
            new_item = builder.item
            items = iter(items_cur)

            def attach(rows: Iterable[tuple[str, str, float, str, str]]) -> Iterator[tuple[int, float, str, str]]:
                current, index = None, -1
                for src, wid, at, name, category in rows:
                    if current is None or current[1] != wid or current[0] != src:
                        key = (src, wid)
                        while current is None or current < key:
                            row = next(items, None)
                            if row is None:
                                break
                            current = (row[0], row[1])
                            index = new_item(row[0], row[3], row[4], row[5], row[2], row[6], row[7])
                        if current != key:
                            continue  # history of an item the store no longer has
                    yield index, at, name, category

            builder.observe_many(attach(history_cur))
            for row in items:
                new_item(row[0], row[3], row[4], row[5], row[2], row[6], row[7])
            items_cur.close()
            history_cur.close()
        finally:
            raw.close()
        table = builder.build()
        del builder
        return table.in_item_no_order()

    def changed_work_items(self, since: int, extends: WorkItemTable) -> tuple[WorkItemTable, list[str]]:
        """The work items written after data version ``since``, whole (every revision), in item
        number order, with their refs row by row: what ``WorkItemTable.merge`` takes into
        ``extends``. An item counts as written when its row or any of its revisions was."""
        changed = (
            "WITH changed AS (SELECT source, native_id FROM work_items WHERE change_seq > :since "
            "UNION SELECT source, work_item_id FROM state_changes WHERE change_seq > :since) "
        )
        items_sql = (
            changed + "SELECT w.item_no, w.source, w.project, w.team, w.type, w.ref, w.created_at "
            "FROM changed AS c JOIN work_items AS w ON w.source = c.source AND w.native_id = c.native_id "
            "ORDER BY w.item_no"
        )
        history_sql = (
            changed + "SELECT w.item_no, h.at, h.state, h.category FROM changed AS c "
            "JOIN work_items AS w ON w.source = c.source AND w.native_id = c.native_id "
            "JOIN state_changes AS h ON h.source = c.source AND h.work_item_id = c.native_id "
            "ORDER BY w.item_no, h.seq"
        )
        from collector.table import TableBuilder

        builder = TableBuilder(extends=extends)
        refs: list[str] = []
        rows: dict[int, int] = {}
        with self.engine.connect() as conn:
            for number, src, project, team, type_, ref, created in conn.execute(sa.text(items_sql), {"since": since}):
                rows[number] = builder.item(src, project, team, type_, ref, created, number)
                refs.append(ref)
            history = conn.execute(sa.text(history_sql), {"since": since})
            # an item written between the two queries has no row yet: the next refresh reads it
            builder.observe_many((rows[h[0]], h[1], h[2], h[3]) for h in history if h[0] in rows)
        return builder.build(), refs

    def item_numbers(self, refs: Iterable[str]) -> dict[str, list[int]]:
        """ref → the item numbers of the work items with that ref."""
        out: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(refs)), 500):
                q = sa.select(work_items.c.ref, work_items.c.item_no).where(work_items.c.ref.in_(chunk))
                for ref, number in conn.execute(q):
                    out.setdefault(ref, []).append(number)
        return out

    def api_request_counts(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as conn:
            return {(s, c): n for s, c, n in conn.execute(sa.select(api_requests))}

    def poll_histograms(self) -> dict[str, tuple[dict[int, int], float]]:
        """source → (count per bucket index of the bounds passes were recorded with, sum of durations)."""
        out: dict[str, tuple[dict[int, int], float]] = {}
        with self.engine.connect() as conn:
            for source, bucket, count, total in conn.execute(sa.select(poll_durations)):
                counts, s = out.get(source, ({}, 0.0))
                if bucket < 0:
                    s = total
                else:
                    counts[bucket] = count
                out[source] = (counts, s)
        return out

    def statuses(self, total_shards: int = 1) -> dict[str, SourceStatus]:
        """source → its health as the last passes left it. With shards (``total_shards`` above 1),
        the passes of every shard of that number, combined (see ``_combined``): a source is up
        only when every shard's last pass was."""
        by_source: dict[str, list[tuple[int, int, SourceStatus]]] = {}
        with self.engine.connect() as conn:
            # the totals from the same rows: a source's first status committed between two reads
            # would have rows but no total
            rows = conn.execute(sa.select(source_status).order_by(source_status.c.shard)).all()
            current = _health_totals(((row[0], row[2], row[4]) for row in rows), total_shards)
            for row in rows:
                name, shard, n = row[0], row[1], row[2]
                if n == current[name]:
                    status = SourceStatus(name, bool(row[3]), _at(row[4]), _dt(row[5]), row[6], row[7], row[8], row[9])
                    by_source.setdefault(name, []).append((shard, n, status))
            budgets = _latest_budgets(conn) if any(len(rows) > 1 for rows in by_source.values()) else {}
        return {name: _combined(rows, budgets.get((name, "rest"))) for name, rows in by_source.items()}

    def record_counts(self) -> dict[str, dict[str, int]]:
        """source → {"work_items": n, "changes": n, "deployments": n}: what the store holds."""
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for table in (work_items, changes, deployments):
                q = sa.select(table.c.source, sa.func.count()).group_by(table.c.source)
                for source, n in conn.execute(q):
                    out.setdefault(source, {})[table.name] = n
        return out

    def writable(self) -> bool:
        """For /readyz: can we write right now (disk full, read-only, database gone)?"""
        try:
            with self.engine.begin() as conn:
                self._upsert(conn, meta, [{"key": "last_ready_check", "value": str(time.time())}], ["key"])
            return True
        except sa.exc.SQLAlchemyError as exc:
            self.note_failure(exc)
            return False

    def content_digest(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every data table's rows, sorted: tests compare stores with this."""
        out = {}
        with self.engine.connect() as conn:
            for table in (work_items, state_changes, changes, deployments, links, rejections, watermarks, queues):
                # when and in which commit a row was written is not its content
                cols = [c for c in table.columns if c.name not in ("updated_at", "item_no", "change_seq")]
                out[table.name] = sorted((tuple(r) for r in conn.execute(sa.select(*cols))), key=repr)
        return out


def _shard_row(table: sa.Table, key: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    return [table.c[column] == value for column, value in key.items()]


def _health_totals(rows: Iterable[Any], total_shards: int) -> dict[str, int]:
    """source → the number of shards whose health rows are the source's now: ``total_shards``
    once a shard of that number recorded a pass of it. Until then (the first passes after scaling
    from 2 shards to 3, or after the upgrade to schema 6) the number the latest pass ran with, so
    the rows of an earlier number count only until the current shards have passed once."""
    latest: dict[str, tuple[float, int]] = {}
    current: dict[str, int] = {}
    for name, n, attempt in rows:  # (source, total_shards, last_attempt) of source_status
        if n == total_shards:
            current[name] = n
        elif name not in latest or attempt > latest[name][0]:
            latest[name] = (attempt, n)
    return {**{name: n for name, (_attempt, n) in latest.items()}, **current}


def _latest_budgets(conn: Connection) -> dict[tuple[str, str], ApiBudget]:
    """(source, api) → the newest sight of its budget among the rows of every shard: the latest
    window (``reset_at``; rows without one are older than any with one), the lowest remaining in it."""
    out: dict[tuple[str, str], ApiBudget] = {}
    for s, _shard, _n, a, remaining, limit, reset_at in conn.execute(sa.select(api_budgets)):
        budget, seen = ApiBudget(a, remaining, limit, reset_at), out.get((s, a))
        if seen is None or _sight(budget) > _sight(seen):
            out[(s, a)] = budget
    return out


def _sight(budget: ApiBudget) -> tuple[bool, float, float]:
    return (budget.reset_at is not None, budget.reset_at or 0.0, -budget.remaining)


def _combined(rows: list[tuple[int, int, SourceStatus]], rest: ApiBudget | None = None) -> SourceStatus:
    """One source's health from its shards' last passes (shard, total, status), in shard order.

    Up only when every shard's last pass was (a failing shard is not hidden by another's later
    success); the last success the oldest of the shards' (the store holds every scope's data at
    least that fresh; a shard never successful yet is left out: it is down, which says more); the
    items summed, the duration the longest (the shards pass side by side); the errors each with
    its shard. The rate-limit budget is the credential's, which every shard spends: the newest
    sight of the ``rest`` budget (``rest``, see :meth:`Store.budgets`), else the lowest any shard saw.
    """
    if len(rows) == 1:
        return rows[0][2]
    statuses = [s for _shard, _n, s in rows]
    ok = all(s.ok for s in statuses)
    successes = [s.last_success for s in statuses if s.last_success is not None]
    budgets = [s.rate_limit_remaining for s in statuses if s.rate_limit_remaining is not None]
    errors = [f"shard {i} of {n}: {s.last_error}" for i, n, s in rows if s.last_error and (ok or not s.ok)]
    return SourceStatus(
        statuses[0].source,
        ok,
        max(s.last_attempt for s in statuses),
        min(successes) if successes else None,
        max(s.duration for s in statuses),
        sum(s.items for s in statuses),
        "; ".join(errors) or None,
        rest.remaining if rest is not None else (min(budgets) if budgets else None),
    )


def store_error_reason(exc: BaseException) -> str:
    """One line for a store failure, without SQL or parameters (they may be long, or private)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"store unavailable: {text}"


def _columns(table: sa.Table, n: int) -> list[sa.Column[Any]]:
    """A table's first ``n`` columns: its content, without the bookkeeping added after them."""
    return list(table.columns)[:n]


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    """Per-row change sequences and item numbers, so the figures load only what changed.

    Stores created since version 2 already have them (version 1 creates the current tables).
    Existing rows get sequence 0 (older than any refresh after the upgrade) and item numbers in
    the order the store holds them (rowid on SQLite, key order on PostgreSQL), below 2**32, the
    lowest number a new item gets.
    """
    inspector = sa.inspect(conn)
    for table in (work_items, state_changes, changes, deployments, links):
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in ("item_no", "change_seq"):
            if column in table.c and column not in present:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"))
                if column == "item_no":
                    conn.execute(sa.text(_NUMBER_ITEMS[conn.dialect.name]))
        for index in table.indexes:
            index.create(conn, checkfirst=True)


_NUMBER_ITEMS = {
    "sqlite": "UPDATE work_items SET item_no = rowid",
    "postgresql": (
        "UPDATE work_items AS w SET item_no = r.n FROM (SELECT source, native_id, "
        "row_number() OVER (ORDER BY source, native_id) AS n FROM work_items) AS r "
        "WHERE w.source = r.source AND w.native_id = r.native_id"
    ),
}


def _v3(conn: Connection) -> None:
    """The queues of work deferred past a watermark (the Boards relations)."""
    queues.create(conn, checkfirst=True)


def _v4(conn: Connection) -> None:
    """Rate budgets per API and the sync backlog (new tables; nothing to convert)."""
    metadata.create_all(conn, tables=[api_budgets, sync_backlog])


def _v5(conn: Connection) -> None:
    """A pull request's ready-for-review and first-review times (nullable: older rows have
    neither until their source re-reads them, and the stage figures treat them as unknown)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(changes.name)}
    for column in ("ready_at", "first_review_at"):
        if column not in present:
            conn.execute(sa.text(f"ALTER TABLE changes ADD COLUMN {column} FLOAT"))


def _v6(conn: Connection) -> None:
    """Source health per shard: the health tables gain the shard and the number of shards in
    their key. A key cannot be altered on SQLite, so each table is rebuilt (a row per source and
    API: small); the rows kept become shard 0 of 1's, what a single replica writes. A sharded
    store's shards read them until their own first passes (``_health_totals``)."""
    inspector = sa.inspect(conn)
    for table in _SHARD_HEALTH:
        if not inspector.has_table(table.name):
            continue  # created with this schema by an earlier step
        if "total_shards" in {c["name"] for c in inspector.get_columns(table.name)}:
            continue
        rows = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table.name}"))]
        conn.execute(sa.text(f"DROP TABLE {table.name}"))
        table.create(conn)
        if rows:
            conn.execute(table.insert(), [{**row, "shard": 0, "total_shards": 1} for row in rows])


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6}


_IDENTITY = ("store_id", "schema_version")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the exporter) never block the poller
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps commits atomic
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _chunks(rows: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
