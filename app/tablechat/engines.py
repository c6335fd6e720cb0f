"""Which engine answers: probing the configured LLM server, building the LLM engine for its
backend, and going offline when the server is down (not when it is only busy).

``TableChat`` asks this module; it does not probe or choose itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from langchain_core.language_models import BaseChatModel

from .agent.budget import TokenCounter
from .agent.client import LLMClient
from .agent.engine import LLMEngine
from .backends import LLMBackend, ServerInfo, failure_kind, probe_backend
from .config import Settings
from .errors import ConfigurationError, LLMUnavailableError
from .llm import llm_health, model_name, resolve_model_name

PROBE_TTL_SECONDS = 30.0
_BUILD_LOCK = threading.Lock()


class LLMConnection:
    """The configured LLM (a server URL, a ``gguf:`` file, or a given chat model): its state,
    and the engine built for it once it is reachable."""

    def __init__(self, settings: Settings, model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.model = model
        self.backend: LLMBackend | None = None
        self.agent: LLMEngine | None = None
        self.server: ServerInfo | None = None
        self._probed_at = 0.0
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether an LLM is configured at all."""
        return self.model is not None or bool(self.settings.llm_url)

    def server_info(self, *, refresh: bool = False) -> ServerInfo | None:
        """The configured server's state (None when no server URL is configured). A down
        server is probed again after ``PROBE_TTL_SECONDS``."""
        if not self.settings.llm_url:
            return None
        with self._lock:
            stale = time.monotonic() - self._probed_at > PROBE_TTL_SECONDS
            if self.server is None or refresh or (stale and not self.server.reachable):
                try:
                    self.backend, self.server = probe_backend(self.settings, self.backend)
                except (LLMUnavailableError, ConfigurationError) as exc:
                    # an embedded model that is missing or would not load: said, not raised
                    self.server = ServerInfo(False, error=str(exc))
                self._probed_at = time.monotonic()
            return self.server

    def engine(self) -> LLMEngine | None:
        """The LLM engine, or None when no LLM is configured or reachable (may block: it
        probes the server, or loads an embedded model, the first time)."""
        if self.agent is not None:
            return self.agent
        with _BUILD_LOCK:  # concurrent first questions build one client, not one each
            if self.agent is None:
                self.agent = self._build()
            return self.agent

    def _build(self) -> LLMEngine | None:
        settings = self.settings
        if self.model is not None:
            client = LLMClient(self.model, label=model_name(self.model),
                               timeout=settings.llm_timeout)
            return LLMEngine(client, counter=TokenCounter(), max_model_len=settings.max_model_len,
                             max_tokens=settings.llm_max_tokens)
        info = self.server_info()
        if info is None or not info.reachable or self.backend is None:
            return None
        backend = self.backend
        name = resolve_model_name(settings, info)
        model = backend.build_model(name)
        structured = settings.llm_structured_output and bool(backend.constraints)
        client = LLMClient(model, structured=structured, label=model_name(model),
                           timeout=settings.llm_timeout, backend=backend,
                           retries=settings.llm_max_retries)
        return LLMEngine(client, counter=backend.token_counter(name),
                         max_model_len=backend.context_length(info),
                         max_tokens=settings.llm_max_tokens)

    async def failed(self, exc: LLMUnavailableError) -> None:
        """A call failed: when the server is gone (refused connection), answer offline until
        the next probe. A timeout means busy or slow, never down."""
        if self.model is None and failure_kind(exc) == "connection":
            with self._lock:
                self.server = ServerInfo(False, error=str(exc))
                self._probed_at = time.monotonic()
                agent, self.agent = self.agent, None
            if agent is not None:
                await agent.client.aclose()

    def health(self) -> dict[str, Any]:
        """The ``llm`` part of ``TableChat.health()``."""
        if self.model is not None:
            return {"configured": True, "reachable": True, "model": model_name(self.model)}
        if not self.settings.llm_url:
            return {"configured": False, "reachable": False, "model": None,
                    "message": "no LLM configured: the offline engine answers"}
        info = self.server_info(refresh=True)
        assert info is not None
        structured = self.agent.structured if self.agent is not None else None
        return llm_health(self.settings, info, structured=structured)

    async def aclose(self) -> None:
        """Close the client's connections and stop an embedded server."""
        agent, self.agent = self.agent, None
        if agent is not None and self.model is None:
            await agent.client.aclose()

    def stop(self) -> None:
        """Stop an embedded server (after :meth:`aclose`)."""
        if self.backend is not None:
            self.backend.close()


__all__ = ["PROBE_TTL_SECONDS", "LLMConnection"]
