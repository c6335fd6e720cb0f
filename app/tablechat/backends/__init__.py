"""LLM backends: one class per kind of server, chosen here and nowhere else.

- :class:`VLLMBackend`: vLLM (``owned_by: vllm`` in ``/v1/models``);
- :class:`LlamaCppBackend`: llama.cpp's server (``owned_by: llamacpp``);
- :class:`LLMBackend`: any other OpenAI-compatible server (no constrained decoding);
- :class:`EmbeddedBackend`: a GGUF file run in-process (``gguf:/path/model.gguf``).
"""

from __future__ import annotations

from ..config import Settings
from .base import LLMBackend, ServerInfo, check_url, list_models, server_root
from .embedded import GGUF_PREFIX, EmbeddedBackend
from .failures import context_size, failure_kind
from .llamacpp import LlamaCppBackend
from .vllm import VLLMBackend

BY_OWNER: dict[str, type[LLMBackend]] = {"vllm": VLLMBackend, "llamacpp": LlamaCppBackend}


def backend_class(owners: set[str]) -> type[LLMBackend]:
    """The backend for a server whose model cards name these owners."""
    for owner, kind in BY_OWNER.items():
        if owner in owners:
            return kind
    return LLMBackend


def probe_backend(settings: Settings, backend: LLMBackend | None = None,
                  timeout: float | None = None) -> tuple[LLMBackend, ServerInfo]:
    """The backend for the configured server and its state now.

    A ``gguf:`` URL gives the embedded backend (started here). Otherwise ``/v1/models`` says
    who serves it; a backend chosen before is kept (a busy server does not say).
    """
    url = settings.llm_url or ""
    if backend is None and url.startswith(GGUF_PREFIX):
        backend = EmbeddedBackend(settings)
    if backend is not None and (backend.kind != "openai" or url.startswith(GGUF_PREFIX)):
        return backend, backend.probe(timeout)
    check_url(url)
    wait = timeout if timeout is not None else settings.llm_connect_timeout
    info, cards = list_models(url, settings.llm_api_key, wait, settings.llm_model)
    owners = {str(m.get("owned_by")) for m in cards}
    chosen = backend_class(owners)(settings)
    if not info.reachable or info.busy:
        return chosen, info
    return chosen, chosen.describe(info, cards)


__all__ = [
    "GGUF_PREFIX",
    "EmbeddedBackend",
    "LLMBackend",
    "LlamaCppBackend",
    "ServerInfo",
    "VLLMBackend",
    "backend_class",
    "context_size",
    "failure_kind",
    "probe_backend",
    "server_root",
]
