"""SQLite database files for the tests of the SQLAlchemy path."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sqlite_file(path: Path, script: str) -> Path:
    """Create ``path`` from an SQL script; return it."""
    con = sqlite3.connect(path)
    try:
        con.executescript(script)
    finally:
        con.close()
    return path
