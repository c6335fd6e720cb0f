"""The web UI's and the API's result files on disk, under a budget (issue 11, class 10).

Result CSVs (the Download button, Export all rows) are written inside Gradio's cache folder, so
Gradio serves them as they are instead of copying each into its cache for good (333 MB after 8
runs of one session, before). Each session has a folder of its own; after every new file:

- the session keeps at most ``keep`` files and ``session_bytes`` bytes (oldest go first; a
  file larger than the whole budget is refused and deleted);
- all sessions' files, with the uploads Gradio holds for this app (``upload_file_set``), stay
  under ``total_bytes`` (oldest go first, whoever they belong to);
- a file older than ``max_age`` seconds goes.

The same sweep runs after every upload request (``GradioGuard``'s ``after_upload``) and Gradio's
``delete_cache`` removes its own files of that age on its schedule. A session's folder goes when
its tab closes (or the session expires, ``ui_sessions``).

The API's exports (``POST /api/export``) use the same budgets in a folder of the shared
directory (``TABLECHAT_SHARED_DIR``, :meth:`ResultFiles.exports`), so the process that fetches
a file need not be the one that wrote it.

An uploaded file is Gradio's: it names it by its content's hash, so two sessions uploading the
same bytes get the same path, and one deleting it after reading would take it from the other
before it reads (issue 12). A session about to read an upload registers it
(:meth:`ResultFiles.uploaded`); the file goes when the last session that read it ends, unless
the path holds a newer upload by then (another session's, not read yet). Until then it counts
in the total budget like any upload Gradio holds.

An export (a whole result, up to ``TABLECHAT_EXPORT_MAX_ROWS`` rows) is kept within the budgets
while it is written, not only once it is done: :meth:`ResultFiles.writing` makes room first (the
session's older files, then the oldest files of all), reserves what is left for it, and the
export stops once its file would pass that (``write_csv``'s ``max_bytes``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..config import Settings
from ..errors import UserFacingError
from ..export import ExportTooLargeError
from .gradio_guard import upload_folder

MB = 1024 * 1024
KEEP_FILES = 4  # a session's newest result files; older ones are deleted
# how often Gradio's delete_cache looks for files past TABLECHAT_UI_FILE_MAX_AGE, at most
CACHE_SWEEP_SECONDS = 600


class DiskBudgetError(UserFacingError):
    """A result file is larger than the session's disk budget."""


class ResultFiles:
    """Result files per session, inside Gradio's cache folder, under byte and age budgets."""

    def __init__(self, *, session_bytes: int, total_bytes: int, max_age: float,
                 keep: int = KEEP_FILES, extra: Callable[[], Iterable[str]] = tuple,
                 root: Path | None = None, shared: Path | None = None) -> None:
        if shared is not None:  # every process's files in one folder: none owns it
            shared.mkdir(parents=True, exist_ok=True)
            self.root = shared
        else:  # a folder of this process's own, deleted by close()
            base = root or upload_folder()
            base.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix="tablechat-results-", dir=base))
        self.owned = shared is None
        self.session_bytes = session_bytes
        self.total_bytes = total_bytes
        self.max_age = max_age
        self.keep = keep
        self.extra = extra  # other files counted in the total budget (Gradio's uploads)
        self._lock = threading.Lock()
        self._reserved = 0  # bytes promised to exports being written
        # uploads read, by path: the sessions that read each, and the files (inodes) they read
        self._readers: dict[Path, set[str]] = {}
        self._read_inodes: dict[Path, set[int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ResultFiles:
        """The budgets of ``settings``; the files are deleted when the process exits."""
        files = cls(session_bytes=int(settings.ui_session_disk_mb * MB),
                    total_bytes=int(settings.ui_disk_mb * MB),
                    max_age=settings.ui_file_max_age)
        atexit.register(files.close)
        return files

    @classmethod
    def exports(cls, settings: Settings) -> ResultFiles:
        """The API's CSV exports: in the shared directory, so any process serves a file any
        other wrote, under the same budgets (each process counts every file; the room it
        reserves for an export being written is its own)."""
        return cls(session_bytes=int(settings.ui_session_disk_mb * MB),
                   total_bytes=int(settings.ui_disk_mb * MB),
                   max_age=settings.ui_file_max_age, shared=shared_dir(settings) / "exports")

    def folder(self, session: str) -> Path:
        """A session's folder: named by a hash, so a file's URL does not carry the session."""
        digest = hashlib.sha256(session.encode()).hexdigest()[:32]
        return self.root / digest

    def new_path(self, session: str) -> Path:
        """A fresh file name for a session's next result CSV (unguessable, as Gradio's are)."""
        return self.folder(session) / f"result-{uuid.uuid4().hex}.csv"

    def admit(self, session: str, path: Path) -> Path:
        """Keep ``path`` within the budgets (deleting older files to make room), or delete it
        and raise :class:`DiskBudgetError` when it alone is over the session's budget."""
        size = _size(path)
        if size > self.session_bytes:
            path.unlink(missing_ok=True)
            raise DiskBudgetError(
                f"the CSV would take {size / MB:.1f} MB, over this session's disk budget "
                f"(TABLECHAT_UI_SESSION_DISK_MB={self.session_bytes / MB:g})")
        with self._lock:
            files = _newest_first(self.folder(session).glob("result-*.csv"))
            used = 0
            for n, old in enumerate(files):
                used += _size(old)
                if old != path and (n >= self.keep or used > self.session_bytes):
                    used -= _size(old)
                    old.unlink(missing_ok=True)
        self.sweep()
        return path

    @contextlib.contextmanager
    def writing(self, session: str) -> Iterator[int]:
        """The bytes the session's next file may take while it is written (an export's
        ``max_bytes``), reserved until the block ends. Room is made first, as admitting the
        file would make it: the session keeps only its newest file (the current result's CSV,
        which its Download button names: a failed export offers it again), and the oldest
        files of all go until the session's whole budget fits in the total. A file that would
        pass the room raises :class:`DiskBudgetError`."""
        with self._lock:
            mine = _newest_first(self.folder(session).glob("result-*.csv"))
            for old in mine[1:]:
                old.unlink(missing_ok=True)
            kept = _size(mine[0]) if mine else 0
            want = max(self.session_bytes - kept, 0)
            used = self._sweep_locked(self.total_bytes - want - self._reserved)
            room = max(min(want, self.total_bytes - used - self._reserved), 0)
            self._reserved += room
        try:
            yield room
        except ExportTooLargeError as exc:
            raise DiskBudgetError(
                f"the CSV would take more than {room / MB:.1f} MB, the room left in this "
                f"session's disk budget (TABLECHAT_UI_SESSION_DISK_MB="
                f"{self.session_bytes / MB:g}, TABLECHAT_UI_DISK_MB={self.total_bytes / MB:g} "
                "for all sessions)") from exc
        finally:
            with self._lock:
                self._reserved -= room

    def sweep(self) -> None:
        """Delete files past ``max_age``, then the oldest until all fit ``total_bytes`` (less
        what exports being written have reserved)."""
        with self._lock:
            self._sweep_locked(self.total_bytes - self._reserved)

    def _sweep_locked(self, limit: int) -> int:
        """Delete files past ``max_age``, then the oldest until all fit ``limit``; the bytes
        the files left take."""
        now = time.time()
        files = _newest_first([*self.root.glob("*/result-*.csv"),
                               *(Path(p) for p in self.extra())])
        used = 0
        for f in files:
            try:
                stat = f.stat()
            except OSError:
                continue
            if now - stat.st_mtime > self.max_age or used + stat.st_size > limit:
                f.unlink(missing_ok=True)
            else:
                used += stat.st_size
        return used

    def usage(self) -> int:
        """Bytes the result files take now."""
        return sum(_size(f) for f in self.root.glob("*/result-*.csv"))

    def uploaded(self, session: str, path: Path) -> None:
        """``session`` is about to read the upload at ``path`` (a file in Gradio's cache): it
        goes when the last session that read it ends (:meth:`end`), never while another
        session may still have to read the same bytes there. (The file is identified before
        it is read: a newer upload to the path meanwhile is another session's to delete.)"""
        try:
            inode = path.stat().st_ino
        except OSError:
            return  # gone already (swept): nothing to delete later
        with self._lock:
            self._readers.setdefault(path, set()).add(session)
            self._read_inodes.setdefault(path, set()).add(inode)

    def end(self, session: str) -> None:
        """Delete a session's files (its tab closed), and the uploads it read that no other
        session is reading."""
        shutil.rmtree(self.folder(session), ignore_errors=True)
        with self._lock:
            for path in [p for p, who in self._readers.items() if session in who]:
                who = self._readers[path]
                who.discard(session)
                if who:
                    continue  # another session read these bytes too: its end deletes them
                del self._readers[path]
                inodes = self._read_inodes.pop(path, set())
                with contextlib.suppress(OSError):
                    # the same path may hold a newer upload of the same bytes, not read yet
                    if path.stat().st_ino in inodes:
                        path.unlink()
                        path.parent.rmdir()  # Gradio's folder for those bytes, once empty

    def close(self) -> None:
        """Delete every file (the server stops), unless the folder is shared."""
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)


def shared_dir(settings: Settings) -> Path:
    """``TABLECHAT_SHARED_DIR``, else ``shared/`` beside the default store and demo database
    (``data/`` in a checkout)."""
    if settings.shared_dir:
        return Path(settings.shared_dir)
    from ..demo import default_demo_path

    return default_demo_path().parent.resolve() / "shared"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _newest_first(files: Iterable[Path]) -> list[Path]:
    stamped = []
    for f in files:
        with contextlib.suppress(OSError):  # deleted meanwhile
            stamped.append((f.stat().st_mtime, f))
    return [f for _, f in sorted(stamped, key=lambda t: t[0], reverse=True)]
