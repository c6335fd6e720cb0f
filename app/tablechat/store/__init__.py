"""Persistent state: feedback, verified examples, schema texts and sessions' metadata.

``open_store(url)`` returns the one :class:`SQLStore` for a SQLAlchemy URL in this process
(its connection pool is shared). The default URL is a SQLite file in tablechat's data
directory (``data/`` in a checkout, beside the demo database), set by ``TABLECHAT_STORE``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .base import (
    Example,
    FeedbackError,
    FeedbackRecord,
    SessionInfo,
    Store,
    StoreError,
    parse_date,
    utcnow,
)
from .sql import SQLStore

if TYPE_CHECKING:
    from ..config import Settings

STORE_FILENAME = "tablechat-store.sqlite"
_open: dict[str, Store] = {}
_lock = threading.Lock()


def default_store_url() -> str:
    """``sqlite:///<data dir>/tablechat-store.sqlite``, the data directory being the demo
    database's (``data/`` in a checkout, else ``$XDG_DATA_HOME/tablechat``)."""
    from ..demo import default_demo_path

    return f"sqlite:///{default_demo_path().parent.resolve() / STORE_FILENAME}"


def store_url(settings: Settings | None) -> str:
    """The store URL ``settings`` (default: the environment's) choose with
    ``TABLECHAT_STORE``, else the default."""
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    return settings.store or default_store_url()


def open_store(url: str | None = None, *, settings: Settings | None = None) -> Store:
    """The store at ``url`` (default: :func:`store_url`), opened and migrated once per
    process. Raises :class:`StoreError` when it cannot be opened."""
    url = url or store_url(settings)
    with _lock:
        store = _open.get(url)
        if store is None:
            store = _open[url] = SQLStore(url)
        return store


def close_stores() -> None:
    """Close every store this process opened (tests, shutdown)."""
    with _lock:
        for store in _open.values():
            store.close()
        _open.clear()


__all__ = [
    "Example",
    "FeedbackError",
    "FeedbackRecord",
    "SQLStore",
    "SessionInfo",
    "Store",
    "StoreError",
    "close_stores",
    "default_store_url",
    "open_store",
    "parse_date",
    "store_url",
    "utcnow",
]
