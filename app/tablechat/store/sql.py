"""``SQLStore``: the store on any database SQLAlchemy reaches (SQLite by default, PostgreSQL).

Several processes may write at once. SQLite runs in WAL mode (readers never wait for the
writer) with a busy timeout, and every write transaction starts with ``BEGIN IMMEDIATE`` so it
takes the write lock up front: a deferred transaction that upgrades from read to write gets
SQLITE_BUSY at once, whatever the timeout. A write that still finds the database locked is
retried with backoff, classified by the driver's error code (SQLITE_BUSY/LOCKED, PostgreSQL's
serialization and deadlock states), never by message text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from ..redact import redact_url
from .base import Example, FeedbackRecord, SessionInfo, Store, StoreError, utcnow
from .migrations import LATEST, migrate

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
WRITE_ATTEMPTS = 8
_SQLITE_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (extended codes keep them low byte)
_PG_RETRY_STATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available

_md = sa.MetaData()
FEEDBACK = sa.Table(
    "feedback", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime), sa.Column("database", sa.String),
    sa.Column("question", sa.Text), sa.Column("context", sa.Text), sa.Column("sql", sa.Text),
    sa.Column("good", sa.Boolean), sa.Column("comment", sa.Text), sa.Column("engine", sa.String),
    sa.Column("model", sa.String), sa.Column("principal", sa.String),
    sa.Column("corrected_sql", sa.Text), sa.Column("prompt_version", sa.String),
    sa.Column("session", sa.String), sa.Column("schema_hash", sa.String),
)
EXAMPLES = sa.Table(
    "examples", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime), sa.Column("database", sa.String),
    sa.Column("question", sa.Text), sa.Column("sql", sa.Text), sa.Column("source", sa.String),
    sa.Column("verified_by", sa.String), sa.Column("feedback_id", sa.Integer),
)
SCHEMAS = sa.Table("schemas", _md, sa.Column("hash", sa.String, primary_key=True),
                   sa.Column("text", sa.Text))
SESSIONS = sa.Table(
    "sessions", _md, sa.Column("id", sa.String, primary_key=True),
    sa.Column("principal", sa.String), sa.Column("created_at", sa.DateTime),
    sa.Column("last_seen", sa.DateTime), sa.Column("data", sa.Text),
)


def is_busy(exc: BaseException) -> bool:
    """True for a driver error that means 'locked by someone else, try again'."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        return (getattr(orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_BUSY_CODES
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state in _PG_RETRY_STATES


class SQLStore(Store):
    """The store on a SQLAlchemy URL; creates and migrates its own schema on open."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"TABLECHAT_STORE is not a SQLAlchemy URL: {exc}") from None
        self._sqlite = parsed.get_backend_name() == "sqlite"
        if self._sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = sa.create_engine(parsed, pool_pre_ping=not self._sqlite)
        except (ImportError, sa.exc.SQLAlchemyError) as exc:
            raise StoreError(f"cannot open the store {redact_url(url)}: {exc}") from None
        if self._sqlite:
            sa.event.listen(self._engine, "connect", self._on_sqlite_connect)
            sa.event.listen(self._engine, "begin", self._on_sqlite_begin)
        self.version = self._write(self._migrate, lock=True)
        self.example_writes = 0  # examples added or removed through this object (memory cache)

    # -- connection handling ------------------------------------------------------------------
    @staticmethod
    def _on_sqlite_connect(dbapi_con: Any, _record: Any) -> None:
        # the driver's own transaction handling is off: _on_sqlite_begin emits BEGIN itself
        dbapi_con.isolation_level = None
        dbapi_con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_con.execute("PRAGMA journal_mode = WAL")
        dbapi_con.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints

    @staticmethod
    def _on_sqlite_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("tablechat_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            conn = conn.execution_options(tablechat_write=write)
            with conn.begin():
                yield conn

    def _write(self, fn: Callable[[sa.Connection], T], *, lock: bool = False) -> T:
        """Run ``fn`` in a write transaction, retried while the store is locked; ``lock``: one
        such transaction at a time on every backend (migrations)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._tx(write=True) as conn:
                    if lock and not self._sqlite:  # SQLite's BEGIN IMMEDIATE is the lock
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7403)"))
                    return fn(conn)
            except sa.exc.OperationalError as exc:
                if not is_busy(exc) or attempt == WRITE_ATTEMPTS - 1:
                    raise self._error("write to", exc) from None
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))
            except sa.exc.SQLAlchemyError as exc:
                raise self._error("write to", exc) from None
        raise AssertionError("unreachable")

    def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        try:
            with self._tx(write=False) as conn:
                return fn(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise self._error("read", exc) from None

    def _error(self, verb: str, exc: Exception) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        return StoreError(f"cannot {verb} the store {redact_url(self.url)}: "
                          f"{type(orig).__name__}: {orig}")

    def _migrate(self, conn: sa.Connection) -> int:
        try:
            return migrate(conn, target=LATEST)[1]
        except RuntimeError as exc:
            raise StoreError(str(exc)) from None

    # -- feedback -----------------------------------------------------------------------------
    def add_feedback(self, record: FeedbackRecord) -> int:
        """Keep ``record``; returns its id."""
        values = {
            "created_at": record.created_at, "database": record.database,
            "question": record.question, "context": json.dumps(record.context),
            "sql": record.sql, "good": record.good, "comment": record.comment,
            "engine": record.engine, "model": record.model, "principal": record.principal,
            "corrected_sql": record.corrected_sql, "prompt_version": record.prompt_version,
            "session": record.session, "schema_hash": record.schema_hash,
        }

        def insert(conn: sa.Connection) -> int:
            key = conn.execute(FEEDBACK.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        record.id = self._write(insert)
        return record.id

    def feedback(self, *, database: str | None = None, since: datetime | None = None,
                 limit: int | None = None) -> list[FeedbackRecord]:
        """Feedback records, oldest first (only ``database``'s, only from ``since`` on)."""
        query = sa.select(FEEDBACK).order_by(FEEDBACK.c.id)
        if database is not None:
            query = query.where(FEEDBACK.c.database == database)
        if since is not None:
            query = query.where(FEEDBACK.c.created_at >= since)
        if limit is not None:
            query = query.limit(limit)
        rows = self._read(lambda c: c.execute(query).mappings().all())
        return [FeedbackRecord(**{**r, "context": json.loads(r["context"] or "[]")})
                for r in rows]

    def count_feedback(self, *, database: str | None = None) -> int:
        """How many feedback records the store holds."""
        query = sa.select(sa.func.count()).select_from(FEEDBACK)
        if database is not None:
            query = query.where(FEEDBACK.c.database == database)
        return int(self._read(lambda c: c.execute(query).scalar_one()))

    def purge_feedback(self, before: datetime) -> int:
        """Delete feedback given before ``before``; returns how many records went."""
        return self._write(lambda c: c.execute(
            FEEDBACK.delete().where(FEEDBACK.c.created_at < before)).rowcount)

    # -- examples -----------------------------------------------------------------------------
    def add_examples(self, examples: list[Example]) -> list[int]:
        """Keep ``examples`` (in one transaction); returns their ids."""
        def insert(conn: sa.Connection) -> list[int]:
            ids = []
            for e in examples:
                result = conn.execute(EXAMPLES.insert().values(
                    created_at=e.created_at, database=e.database, question=e.question,
                    sql=e.sql, source=e.source, verified_by=e.verified_by,
                    feedback_id=e.feedback_id))
                key = result.inserted_primary_key
                assert key is not None
                e.id = int(key[0])
                ids.append(e.id)
            return ids

        if not examples:
            return []
        ids = self._write(insert)
        self.example_writes += 1
        return ids

    def examples(self, *, database: str | None = None) -> list[Example]:
        """Verified examples, oldest first (only ``database``'s when given)."""
        query = sa.select(EXAMPLES).order_by(EXAMPLES.c.id)
        if database is not None:
            query = query.where(EXAMPLES.c.database == database)
        return [Example(**r) for r in self._read(lambda c: c.execute(query).mappings().all())]

    def remove_examples(self, ids: list[int]) -> int:
        """Delete the examples with these ids; returns how many there were."""
        if not ids:
            return 0
        gone: int = self._write(lambda c: c.execute(
            EXAMPLES.delete().where(EXAMPLES.c.id.in_(ids))).rowcount)
        self.example_writes += 1
        return gone

    def examples_revision(self, database: str) -> tuple[int, int]:
        """(count, largest id) of ``database``'s examples: changes on every add or remove."""
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(EXAMPLES.c.id), 0)
                          ).where(EXAMPLES.c.database == database)
        row = self._read(lambda c: c.execute(query).one())
        return int(row[0]), int(row[1])

    # -- schema texts -------------------------------------------------------------------------
    def put_schema(self, text: str) -> str:
        """Keep a schema text once; returns its hash."""
        digest = hashlib.sha256(text.encode()).hexdigest()

        def put(conn: sa.Connection) -> None:
            found = conn.execute(sa.select(SCHEMAS.c.hash).where(SCHEMAS.c.hash == digest))
            if found.first() is None:
                conn.execute(SCHEMAS.insert().values(hash=digest, text=text))

        self._write(put)
        return digest

    def schema_text(self, schema_hash: str) -> str | None:
        """The schema text with this hash, if kept."""
        query = sa.select(SCHEMAS.c.text).where(SCHEMAS.c.hash == schema_hash)
        return self._read(lambda c: c.execute(query).scalar_one_or_none())

    # -- sessions -----------------------------------------------------------------------------
    def touch_session(self, session: str, *, principal: str | None = None,
                      data: dict[str, Any] | None = None) -> SessionInfo:
        """Create ``session`` or mark it seen now (merging ``data`` into its metadata)."""
        def touch(conn: sa.Connection) -> SessionInfo:
            now = utcnow()
            # FOR UPDATE: two processes merging into one session's data never lose a key
            # (SQLite's BEGIN IMMEDIATE already serialises writers; it ignores the clause)
            row = conn.execute(sa.select(SESSIONS).where(SESSIONS.c.id == session)
                               .with_for_update()).mappings().first()
            if row is None:
                info = SessionInfo(session, principal, now, now, dict(data or {}))
                conn.execute(SESSIONS.insert().values(
                    id=session, principal=principal, created_at=now, last_seen=now,
                    data=json.dumps(info.data)))
                return info
            info = _session(row)
            info.last_seen = now
            info.data.update(data or {})
            info.principal = principal or info.principal
            conn.execute(SESSIONS.update().where(SESSIONS.c.id == session).values(
                last_seen=now, data=json.dumps(info.data), principal=info.principal))
            return info

        return self._write(touch)

    def session(self, session: str) -> SessionInfo | None:
        """A session's metadata, if known."""
        query = sa.select(SESSIONS).where(SESSIONS.c.id == session)
        row = self._read(lambda c: c.execute(query).mappings().first())
        return _session(row) if row is not None else None

    def end_session(self, session: str) -> bool:
        """Forget a session; False when it was unknown."""
        return bool(self._write(lambda c: c.execute(
            SESSIONS.delete().where(SESSIONS.c.id == session)).rowcount))

    def sessions(self, prefix: str) -> list[SessionInfo]:
        """Every session whose id starts with ``prefix``, oldest first."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = sa.select(SESSIONS).where(SESSIONS.c.id.like(f"{escaped}%", escape="\\")
                                          ).order_by(SESSIONS.c.created_at, SESSIONS.c.id)
        return [_session(r) for r in self._read(lambda c: c.execute(query).mappings().all())]

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()


def _session(row: Any) -> SessionInfo:
    return SessionInfo(row["id"], row["principal"], row["created_at"], row["last_seen"],
                       json.loads(row["data"] or "{}"))
