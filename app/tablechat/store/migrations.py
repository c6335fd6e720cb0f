"""The store's schema, created and migrated by tablechat itself: an ordered list of steps.

Each step takes the schema from version ``n - 1`` to ``n`` inside one transaction; the version
reached is kept in ``tablechat_store_meta``. A step is never edited once released: a change is
a new step at the end. Steps use only DDL that SQLite and PostgreSQL share.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

Step = Callable[[sa.Connection], None]
META_TABLE = "tablechat_store_meta"


def _v1(conn: sa.Connection) -> None:
    """Feedback and verified examples."""
    md = sa.MetaData()
    sa.Table(
        "feedback", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("database", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False, server_default="[]"),
        sa.Column("sql", sa.Text),
        sa.Column("good", sa.Boolean),
        sa.Column("comment", sa.Text),
        sa.Column("engine", sa.String(50)),
        sa.Column("model", sa.String(200)),
        sa.Column("principal", sa.String(200)),
    )
    sa.Table(
        "examples", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("database", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("sql", sa.Text, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("verified_by", sa.String(200)),
        sa.Column("feedback_id", sa.Integer),
    )
    md.create_all(conn)


def _v2(conn: sa.Connection) -> None:
    """Corrections, prompt versions and schema texts for training data; sessions' metadata;
    indexes for the per-database and by-date reads."""
    for column in ("corrected_sql TEXT", "prompt_version VARCHAR(100)",
                   "session VARCHAR(200)", "schema_hash VARCHAR(64)"):
        conn.execute(sa.text(f"ALTER TABLE feedback ADD COLUMN {column}"))
    md = sa.MetaData()
    sa.Table(
        "schemas", md,
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
    )
    sa.Table(
        "sessions", md,
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("principal", sa.String(200)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    )
    md.create_all(conn)
    conn.execute(sa.text("CREATE INDEX ix_feedback_created ON feedback (created_at)"))
    conn.execute(sa.text("CREATE INDEX ix_feedback_database ON feedback (database)"))
    conn.execute(sa.text("CREATE INDEX ix_examples_database ON examples (database)"))


MIGRATIONS: list[Step] = [_v1, _v2]
LATEST = len(MIGRATIONS)


def current_version(conn: sa.Connection) -> int:
    """The schema version of the store ``conn`` is connected to (0: empty)."""
    if not sa.inspect(conn).has_table(META_TABLE):
        return 0
    row = conn.execute(sa.text(f"SELECT value FROM {META_TABLE} WHERE key = 'version'")).first()
    return int(row[0]) if row else 0


def migrate(conn: sa.Connection, *, target: int = LATEST) -> tuple[int, int]:
    """Apply the missing steps up to ``target`` in the caller's transaction, which must hold
    the store's write lock. Returns (version before, version after)."""
    before = current_version(conn)
    if before > LATEST:
        raise RuntimeError(f"the store's schema is version {before}, newer than this tablechat "
                           f"knows ({LATEST}): upgrade tablechat")
    if before == 0:
        conn.execute(sa.text(f"CREATE TABLE {META_TABLE} (key VARCHAR(50) PRIMARY KEY, "
                             "value VARCHAR(200) NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO {META_TABLE} (key, value) VALUES ('version', '0')"))
    for version in range(before + 1, target + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(sa.text(f"UPDATE {META_TABLE} SET value = :v WHERE key = 'version'"),
                     {"v": str(version)})
    return before, max(before, target)
