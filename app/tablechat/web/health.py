"""``/healthz`` and ``/api/health``: cheap, cached, and no secret in either (issue 11, class 7).

Each ``TableChat.health()`` asks the LLM server twice (``/v1/models`` and ``/health``) and waits
on the core's probe lock. Called per request, 60 concurrent ``/healthz`` against a silent LLM
took every worker thread and pushed ``/api/schema`` to 104 s. Here one probe at most is in
flight, in a thread of its own; callers wait for it on the event loop (no worker thread) only
while nothing has been probed yet, and otherwise get the last result, younger than
``TABLECHAT_HEALTH_TTL`` seconds, while a stale one is refreshed in the background.

The public view says only whether the database and the LLM are up. The detailed view (the
LLM's URL without credentials, models, errors scrubbed of paths) is under ``/api/`` and so
behind auth when auth is on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core import TableChat
from ..redact import redact_url, scrub


def redacted(health: dict[str, Any]) -> dict[str, Any]:
    """``TableChat.health()`` safe to show: URLs without credentials, messages scrubbed."""
    out = copy.deepcopy(health)
    for part in ("llm", "database"):
        section = out.get(part)
        if not isinstance(section, dict):
            continue
        if "url" in section:
            section["url"] = redact_url(section["url"])
        for key in ("error", "message"):
            if isinstance(section.get(key), str):
                section[key] = scrub(section[key])
    return out


def public(detail: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: up or down, nothing about where or why."""
    db = detail.get("database") or {}
    llm = detail.get("llm") or {}
    return {
        "ok": bool(detail.get("ok")),
        "engine": detail.get("engine", "offline"),
        "database": {"ok": bool(db.get("ok"))},
        "llm": {"configured": bool(llm.get("configured")),
                "reachable": bool(llm.get("reachable"))},
    }


class HealthView:
    """A single-flight, time-limited cache of ``TableChat.health()``."""

    def __init__(self, tc: TableChat, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tc = tc
        self.ttl = ttl
        self.clock = clock
        self.probes = 0  # probes started, for tests and the docs' claims
        self.waiting = 0  # callers waiting on the loop for the first probe
        self._lock = threading.Lock()
        self._detail: dict[str, Any] | None = None
        self._at = 0.0
        self._flight: concurrent.futures.Future[dict[str, Any]] | None = None

    def start(self) -> None:
        """Check now, in the background (the server's start-up: so the first /healthz
        finds a result, or at least a check under way)."""
        self._refresh()

    def _refresh(self) -> concurrent.futures.Future[dict[str, Any]] | None:
        """Start a probe when the cache is empty or stale and none is in flight (never
        blocks); the probe in flight, if any."""
        with self._lock:
            fresh = self._detail is not None and self.clock() - self._at < self.ttl
            if self._flight is None and not fresh:
                self._flight = concurrent.futures.Future()
                self.probes += 1
                threading.Thread(target=self._probe, args=(self._flight,),
                                 name="tablechat-health", daemon=True).start()
            return self._flight

    def _probe(self, flight: concurrent.futures.Future[dict[str, Any]]) -> None:
        try:
            detail = redacted(self.tc.health())
        except Exception as exc:  # a broken probe is a failed check, not a broken endpoint
            detail = {"ok": False, "engine": "offline",
                      "database": {"ok": False, "error": scrub(f"{type(exc).__name__}: {exc}")},
                      "llm": {"configured": bool(self.tc.settings.llm_url), "reachable": False}}
        with self._lock:
            self._detail, self._at, self._flight = detail, self.clock(), None
        if not flight.done():
            flight.set_result(detail)

    async def detail(self) -> dict[str, Any]:
        """The last probe's result (redacted); waits on the loop only for the first one."""
        flight = self._refresh()
        cached = self._detail
        if cached is not None:
            return cached
        assert flight is not None  # nothing cached: a probe was started above
        self.waiting += 1
        try:
            # shielded: a caller that goes away must not cancel the probe the others wait on
            return await asyncio.shield(asyncio.wrap_future(flight))
        finally:
            self.waiting -= 1

    async def summary(self) -> dict[str, Any]:
        """The public view of :meth:`detail`."""
        return public(await self.detail())
