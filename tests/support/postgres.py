"""A real PostgreSQL server for the tests, from Debian's packages (issue 15).

``make test`` installs the ``postgresql`` package when it is missing (``make postgres``). The
server runs from a temporary data directory as the unprivileged ``postgres`` user (initdb
refuses root), listens on 127.0.0.1 at a free port and on a Unix socket in that directory,
and holds a copy of the demo database loaded through psycopg's COPY. Two roles:

- ``tc_owner`` owns the data (used only to load it);
- ``tc_reader`` may only read: SELECT grants, ``default_transaction_read_only = on``, a
  ``statement_timeout`` and a pinned ``search_path``, as docs/security.md recommends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_USER = "postgres"
READER_PASSWORD = "reader-pw"
OWNER_PASSWORD = "owner-pw"

_TYPES = {"INTEGER": "integer", "BIGINT": "bigint", "DOUBLE": "double precision",
          "VARCHAR": "text", "DATE": "date", "TIMESTAMP": "timestamp", "BOOLEAN": "boolean",
          "SMALLINT": "smallint", "FLOAT": "real", "HUGEINT": "numeric"}


def bindir() -> Path | None:
    """Where initdb/pg_ctl live (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return versions[0].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """One throwaway cluster; ``url(role)`` gives a SQLAlchemy URL for psycopg."""

    root: Path
    port: int
    bin: Path

    def url(self, role: str = "tc_reader", database: str = "demo") -> str:
        password = READER_PASSWORD if role == "tc_reader" else OWNER_PASSWORD
        return f"postgresql+psycopg://{role}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", PG_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=True)

    def psql(self, *statements: str, database: str = "postgres") -> str:
        """Run statements as the superuser over the Unix socket, each in its own transaction
        (CREATE DATABASE may not run inside one)."""
        commands = [arg for sql in statements for arg in ("-c", sql)]
        return self._run(str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                         "-h", str(self.root), "-p", str(self.port), "-U", PG_USER,
                         "-d", database, *commands).stdout


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a cluster, wait until it accepts connections (pg_ctl -w), stop and remove it."""
    found = bindir()
    if found is None:
        raise RuntimeError("PostgreSQL is not installed: run `make postgres` (Debian's package)")
    root = Path(tempfile.mkdtemp(prefix="tc-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(root, _free_port(), found)
    data = root / "data"
    try:
        server._run(str(found / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                    "--no-sync", "-E", "UTF8", "--locale=C")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                       f"unix_socket_directories = '{root}'\nfsync = off\n"
                       "shared_buffers = 32MB\nmax_connections = 40\n")
        hba = data / "pg_hba.conf"
        hba.write_text("local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        server._run(str(found / "pg_ctl"), "-D", str(data), "-w", "-t", "120",
                    "-l", str(root / "log"), "start")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                server._run(str(found / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate",
                            "stop")
        shutil.rmtree(root, ignore_errors=True)


def load_demo(server: PostgresServer, duckdb_file: Path, *, timeout_ms: int = 5000) -> None:
    """Copy every table of the demo DuckDB file into database ``demo`` and set up the roles."""
    import duckdb
    import psycopg

    server.psql(f"CREATE ROLE tc_owner LOGIN PASSWORD '{OWNER_PASSWORD}'",
                f"CREATE ROLE tc_reader LOGIN PASSWORD '{READER_PASSWORD}'",
                "CREATE DATABASE demo OWNER tc_owner")
    # a copy: DuckDB refuses a second connection to a file this process already has open
    # with other settings (the sandboxed one of a TableChat)
    copy_path = server.root / "source.duckdb"
    shutil.copyfile(duckdb_file, copy_path)
    source = duckdb.connect(str(copy_path), read_only=True)
    try:
        tables = [r[0] for r in source.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        with psycopg.connect(server.url("tc_owner").replace("+psycopg", "")) as pg:
            for table in tables:
                columns = source.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE "
                    "table_name = ? ORDER BY ordinal_position", [table]).fetchall()
                spec = ", ".join(f'"{name}" {_pg_type(kind)}' for name, kind in columns)
                pg.execute(f'CREATE TABLE "{table}" ({spec})')
                names = ", ".join(f'"{name}"' for name, _ in columns)
                rows = source.execute(f'SELECT {names} FROM "{table}"').fetchall()
                with pg.cursor().copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
            pg.execute("CREATE SCHEMA extra")
            pg.execute("CREATE TABLE extra.notes (id integer PRIMARY KEY, body text)")
            pg.execute("INSERT INTO extra.notes VALUES (1, 'first'), (2, 'second')")
            pg.execute("GRANT USAGE ON SCHEMA public, extra TO tc_reader")
            pg.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public, extra TO tc_reader")
    finally:
        source.close()
    server.psql("ALTER ROLE tc_reader SET default_transaction_read_only = on",
                f"ALTER ROLE tc_reader SET statement_timeout = {timeout_ms}",
                "ALTER ROLE tc_reader SET search_path = public", database="demo")


def _pg_type(duck: str) -> str:
    base = duck.split("(")[0].upper()
    if base == "DECIMAL":
        return duck.replace("DECIMAL", "numeric")
    return _TYPES.get(base, "text")
