"""The demo database: a fictional retail chain generated locally, deterministically, in seconds.

``ensure_demo()`` returns the path of a ready DuckDB file, building it on first use. The build
runs ``data/demo/build.sql`` into a temporary file next to the target and renames it into place,
so an interrupted build never leaves a half-written database behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from pathlib import Path

import duckdb

from ._resources import checkout_root, resource_path

__all__ = [
    "DEMO_FILENAME",
    "build_demo",
    "default_demo_path",
    "demo_semantic_layer_path",
    "ensure_demo",
]

DEMO_FILENAME = "demo.duckdb"
_BUILD_SQL = "data/demo/build.sql"
_SEMANTIC_YAML = "data/demo/semantic.yaml"


def _user_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "tablechat"


def default_demo_path() -> Path:
    """Where the demo database lives: ``<checkout>/data/demo.duckdb`` in a source checkout,
    otherwise ``$XDG_DATA_HOME/tablechat/demo.duckdb`` (``~/.local/share/tablechat/...``)."""
    root = checkout_root()
    if root is not None:
        return root / "data" / DEMO_FILENAME
    return _user_data_dir() / DEMO_FILENAME


def demo_semantic_layer_path() -> Path:
    """The demo database's semantic layer (descriptions, synonyms, metrics, joins)."""
    return resource_path(_SEMANTIC_YAML)


_STALE_AFTER_S = 3600.0  # a build takes seconds; an older temporary file is a killed build's


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_stale_builds(target: Path) -> None:
    cutoff = time.time() - _STALE_AFTER_S
    for leftover in target.parent.glob(f"{glob.escape(target.name)}.*.tmp*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def build_demo(path: str | Path, *, force: bool = False) -> Path:
    """Build the demo database at ``path`` and return ``path``.

    Does nothing if the file exists, unless ``force``. The database is written to a temporary
    file in the same directory (unique per build, so concurrent builds do not collide) and
    renamed into place only once complete.
    """
    target = Path(path).expanduser().resolve()
    if target.exists() and not force:
        return target
    sql = resource_path(_BUILD_SQL).read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target)
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp_wal = tmp.with_name(tmp.name + ".wal")
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(sql)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        # A write-ahead log left next to the target belongs to the file being replaced; DuckDB
        # would replay it onto the new database.
        _remove(target.with_name(target.name + ".wal"))
        os.replace(tmp, target)
    finally:
        _remove(tmp)
        _remove(tmp_wal)
    return target


def ensure_demo() -> Path:
    """The default demo database, built first if missing."""
    return build_demo(default_demo_path())
