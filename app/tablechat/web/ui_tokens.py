"""Logins to the web UI that every server process honours (issue 15).

Gradio keeps a login as a random token in a dict of its app (``App.tokens``: token -> user)
and names its cookie after a random per-process id (``App.cookie_id``): a login made by one
process is unknown to every other. :func:`share_logins` gives the mounted app a mapping kept in
the store instead (only a SHA-256 of each token is kept, never the token) and a cookie name
derived from the store's URL, the same in every process of a deployment. Gradio's own login,
logout and ``/user`` routes then work unchanged across processes; nothing of Gradio is
re-implemented, two of its attributes are replaced (an upper bound on Gradio guards them).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ..store import Store

PREFIX = "login-"  # the store's session id of a login: PREFIX + sha256(token)


class _StoredId(str):
    """A login's id as iteration yields it (Gradio's logout iterates, then looks up and
    deletes): accepted as a key only in this type, never as a cookie's plain text."""

    __slots__ = ()


class StoreTokens(MutableMapping[str, str]):
    """Gradio's ``tokens`` mapping (token -> user name), kept in the store."""

    def __init__(self, store: Store, *, max_age: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.max_age = max_age
        self.clock = clock

    @staticmethod
    def _id(token: str) -> str:
        if isinstance(token, _StoredId):
            return str.__str__(token)
        return PREFIX + hashlib.sha256(token.encode()).hexdigest()

    def _live(self, data: dict[str, Any]) -> bool:
        return self.clock() - float(data.get("at", 0)) <= self.max_age

    def __getitem__(self, token: str) -> str:
        if not isinstance(token, str) or not token:
            raise KeyError(token)
        info = self.store.session(self._id(token))
        if info is None or info.principal is None or not self._live(info.data):
            raise KeyError(token)
        return info.principal

    def __setitem__(self, token: str, user: str) -> None:
        self._purge()  # logins past their age go when a new one comes
        self.store.touch_session(self._id(token), principal=user, data={"at": self.clock()})

    def __delitem__(self, token: str) -> None:
        if not self.store.end_session(self._id(token)):
            raise KeyError(token)

    def __iter__(self) -> Iterator[str]:
        return iter([_StoredId(r.id) for r in self.store.sessions(PREFIX)
                     if self._live(r.data)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _purge(self) -> None:
        for row in self.store.sessions(PREFIX):
            if not self._live(row.data):
                self.store.end_session(row.id)


def share_logins(gradio_app: Any, store: Store, *, max_age: float) -> None:
    """Make the mounted Gradio app's logins valid in every process sharing ``store``."""
    gradio_app.tokens = StoreTokens(store, max_age=max_age)
    digest = hashlib.sha256(f"tablechat-login:{store.url}".encode()).hexdigest()
    gradio_app.cookie_id = digest[:32]
