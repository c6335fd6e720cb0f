"""Question sets with gold SQL, and the databases they are asked of.

A dataset is either

- a folder in the format of ``../shared/eval/spider_dev``: ``questions.jsonl`` and
  ``databases/<db_id>/load.sql`` (run from inside that folder it builds the database, typically
  from Parquet files beside it), or
- a ``.jsonl`` file such as ``data/questions/demo.jsonl``; ``db_id`` "demo" means the demo
  database, other ids are looked up as ``databases/<db_id>/`` or ``<db_id>.duckdb`` beside it.

Databases built from ``load.sql`` are cached as DuckDB files under
``$XDG_CACHE_HOME/tablechat/eval/`` (``~/.cache/...``), keyed by the content of their folder:
a later run reuses them until ``load.sql`` or a data file changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from .._jsonl import records
from .compare import derive_kind

QUESTIONS_FILE = "questions.jsonl"
DATABASES_DIR = "databases"
DEMO_DB_ID = "demo"


class DatasetError(Exception):
    """The dataset cannot be read (missing, malformed): a usage error, exit code 2."""


class DatabaseBuildError(Exception):
    """A database's load.sql failed; its questions are reported and left out of the score."""


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    db_id: str
    question: str
    gold_sql: str
    kind: str
    db_available: bool = True
    line: int = 0
    note: str = ""  # the dataset's own remark (e.g. why the database is missing)


@dataclass(frozen=True, slots=True)
class DatabaseSource:
    """Where one database comes from: ``demo``, a ``load.sql`` folder, or a DuckDB ``file``."""

    db_id: str
    kind: str
    path: Path | None = None

    def fingerprint(self) -> str:
        """Content hash of a load.sql folder (every file but DuckDB outputs)."""
        assert self.path is not None
        digest = hashlib.sha256()
        for item in sorted(self.path.iterdir()):
            if not item.is_file() or item.suffix in (".duckdb", ".wal", ".tmp"):
                continue
            digest.update(item.name.encode() + b"\0")
            with item.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
        return digest.hexdigest()


@dataclass(slots=True)
class Dataset:
    name: str
    path: Path
    questions: list[Question]
    databases: dict[str, DatabaseSource] = field(default_factory=dict)

    @property
    def db_ids(self) -> list[str]:
        """Every db_id the questions name, in first-seen order."""
        return list(dict.fromkeys(q.db_id for q in self.questions))

    def select(self, *, db_ids: Iterable[str] | None = None, limit: int | None = None) -> Dataset:
        """A subset: only these databases (unknown ids raise DatasetError), the first ``limit``."""
        questions = self.questions
        if db_ids:
            wanted = list(dict.fromkeys(db_ids))
            known = set(self.db_ids)
            unknown = [d for d in wanted if d not in known]
            if unknown:
                shown = ", ".join(sorted(known)[:40])
                raise DatasetError(
                    f"unknown database {', '.join(map(repr, unknown))} in {self.name}; "
                    f"its databases are: {shown}"
                )
            questions = [q for q in questions if q.db_id in set(wanted)]
        if limit is not None:
            questions = questions[:limit]
        return Dataset(self.name, self.path, questions, dict(self.databases))


def _require_text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {key!r} is missing or not a non-empty string")
    return value


def _kind_of(gold: str) -> str:
    return derive_kind(gold) if gold.strip() else "unknown"


def read_questions(path: Path, *, prefix: str) -> list[Question]:
    """Parse a questions JSONL file; a bad line raises DatasetError naming its line number."""
    questions: list[Question] = []
    for number, where, record in records(path, DatasetError):
        available = record.get("db_available", True) is not False
        gold = record.get("gold_sql")
        if gold is None:  # allowed (no database to run it on): reported, never scored
            gold = ""
        elif not isinstance(gold, str):
            raise DatasetError(f"{where}: field 'gold_sql' must be a string")
        kind = record.get("kind")
        note = record.get("error")
        questions.append(
            Question(
                id=str(record.get("id") or f"{prefix}-{number:04d}"),
                db_id=_require_text(record, "db_id", where),
                question=_require_text(record, "question", where),
                gold_sql=gold,
                kind=kind if isinstance(kind, str) and kind else _kind_of(gold),
                db_available=available,
                line=number,
                note=note if isinstance(note, str) else "",
            )
        )
    if not questions:
        raise DatasetError(f"{path} holds no questions")
    return questions


def _find_database(root: Path, db_id: str) -> DatabaseSource | None:
    folder = root / DATABASES_DIR / db_id
    if (folder / "load.sql").is_file():
        return DatabaseSource(db_id, "load_sql", folder)
    for candidate in (folder / f"{db_id}.duckdb", root / DATABASES_DIR / f"{db_id}.duckdb",
                      root / f"{db_id}.duckdb"):
        if candidate.is_file():
            return DatabaseSource(db_id, "file", candidate)
    if db_id == DEMO_DB_ID:
        return DatabaseSource(db_id, "demo")
    return None


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset folder or a questions ``.jsonl`` file (DatasetError when unusable)."""
    target = Path(path).expanduser()
    if not target.exists():
        raise DatasetError(f"dataset not found: {target}")
    if target.is_dir():
        questions_file = target / QUESTIONS_FILE
        if not questions_file.is_file():
            raise DatasetError(f"{target} is not a dataset folder: it has no {QUESTIONS_FILE}")
        root, name = target, target.resolve().name
    else:
        questions_file, root, name = target, target.parent, target.stem
    questions = read_questions(questions_file, prefix=name)
    databases: dict[str, DatabaseSource] = {}
    for db_id in dict.fromkeys(q.db_id for q in questions):
        source = _find_database(root, db_id)
        if source is not None:
            databases[db_id] = source
    return Dataset(name, target.resolve(), questions, databases)


# -- building and caching ---------------------------------------------------------------------
def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "tablechat" / "eval"


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def build_from_load_sql(folder: Path, target: Path) -> Path:
    """Run ``folder/load.sql`` into a new DuckDB file at ``target`` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    script = (folder / "load.sql").read_text(encoding="utf-8")
    search_path = str(folder.resolve()).replace("'", "''")
    try:
        con = duckdb.connect(str(tmp))
        try:
            # Relative file names in load.sql resolve against its folder, as if run from there.
            con.execute(f"SET file_search_path = '{search_path}'")
            con.execute(script)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
    except duckdb.Error as exc:
        raise DatabaseBuildError(f"{folder / 'load.sql'} failed: {exc}") from exc
    finally:
        _remove(tmp)
        _remove(tmp.with_name(tmp.name + ".wal"))
    return target


def materialize(source: DatabaseSource, cache_dir: Path, dataset_path: Path) -> Path:
    """A DuckDB file for ``source``: the demo database, the file itself, or a cached build."""
    if source.kind == "demo":
        from ..demo import ensure_demo

        return ensure_demo()
    assert source.path is not None
    if source.kind == "file":
        return source.path
    scope = hashlib.sha256(str(dataset_path).encode()).hexdigest()[:12]
    directory = cache_dir / f"{dataset_path.name}-{scope}"
    fingerprint = source.fingerprint()[:16]
    target = directory / f"{source.db_id}.{fingerprint}.duckdb"
    if target.is_file():
        return target
    built = build_from_load_sql(source.path, target)
    for stale in directory.glob(f"{source.db_id}.*.duckdb"):  # earlier versions of this db
        if stale != built and stale.name.count(".") == 2:
            _remove(stale)
    return built
