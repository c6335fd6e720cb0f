"""The LLM as the rest of tablechat sees it: the chat model for the configured server, its
health, token accounting, and what its failures mean for the person asking.

What differs between servers (vLLM, llama.cpp, any OpenAI-compatible one, a GGUF file run
in-process) lives in :mod:`tablechat.backends`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from .backends import LLMBackend, ServerInfo, failure_kind, probe_backend, server_root
from .config import Settings, load_settings
from .errors import ConfigurationError, LLMUnavailableError
from .redact import redact_url

DEFAULT_MAX_MODEL_LEN = 8192


def probe_server(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> ServerInfo:
    """Ask the server at ``base_url`` whether it is up and what it serves (see
    :func:`tablechat.backends.probe_backend`). Never raises for a dead or garbling server."""
    settings = load_settings(llm_url=base_url, llm_api_key=api_key)
    return probe_backend(settings, timeout=timeout)[1]


def llm_health(settings: Settings, info: ServerInfo, *,
               structured: bool | None = None) -> dict[str, Any]:
    """The ``llm`` part of ``TableChat.health()`` for a configured server."""
    model = settings.llm_model or (info.models[0] if info.models else None)
    llm: dict[str, Any] = {"configured": True, "url": redact_url(settings.llm_url), "model": model,
                           **info.to_dict()}
    if info.reachable and model not in info.models:
        llm["message"] = (f"the server does not list model {model!r} "
                          f"(it serves {', '.join(info.models)}): set TABLECHAT_LLM_MODEL")
    elif info.reachable:
        llm["structured_outputs"] = (structured if structured is not None else
                                     settings.llm_structured_output and info.kind != "openai")
        llm["message"] = f"engine: llm (model {model})"
    else:
        llm["message"] = f"LLM server unreachable, answering offline ({info.error})"
    return llm


def resolve_model_name(settings: Settings, info: ServerInfo | None) -> str:
    """The configured model, else the first one the server lists."""
    if settings.llm_model:
        return settings.llm_model
    if info is not None and info.models:
        return info.models[0]
    raise LLMUnavailableError("no model name: set TABLECHAT_LLM_MODEL")


def build_chat_model(settings: Settings, *, model: str | None = None,
                     backend: LLMBackend | None = None) -> BaseChatModel:
    """A ``ChatOpenAI`` for the configured server (see :meth:`LLMBackend.build_model`)."""
    if not settings.llm_url:
        raise ConfigurationError("no LLM configured: set TABLECHAT_LLM_URL")
    chosen = backend or LLMBackend(settings)
    if not settings.llm_url.startswith("gguf:"):
        from .backends import check_url

        check_url(settings.llm_url)
    name = model or settings.llm_model
    if not name:
        raise LLMUnavailableError("no model name: set TABLECHAT_LLM_MODEL")
    return chosen.build_model(name)


def model_name(model: BaseChatModel) -> str:
    """A short name for the UI: the served model's name, or the class name."""
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def is_openai_compatible(model: BaseChatModel) -> bool:
    try:
        from langchain_openai.chat_models.base import BaseChatOpenAI
    except ImportError:  # pragma: no cover - langchain-openai is a dependency
        return False
    return isinstance(model, BaseChatOpenAI)


# -- token accounting ---------------------------------------------------------------------------
def usage_of(message: BaseMessage | None) -> tuple[int, int]:
    """(prompt, completion) tokens the server reported for one reply."""
    meta = getattr(message, "usage_metadata", None) or {}
    return int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0)


def cached_of(message: BaseMessage | None) -> int:
    """Prompt tokens of one reply that the server's prefix cache served (LangChain reads the
    OpenAI usage's ``prompt_tokens_details.cached_tokens`` into ``cache_read``)."""
    meta = getattr(message, "usage_metadata", None) or {}
    details = meta.get("input_token_details") or {}
    return int(details.get("cache_read", 0) or 0)


# -- failures ---------------------------------------------------------------------------------
def llm_error(exc: BaseException, *, timeout: float | None = None) -> LLMUnavailableError:
    """Turn a client exception into a message for the person (no traceback, no SDK jargon)."""
    if isinstance(exc, LLMUnavailableError):
        return exc
    kind = failure_kind(exc)
    first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    root = exc
    for _ in range(8):  # the innermost cause says what happened (refused, closed mid-reply)
        if root.__cause__ is None:
            break
        root = root.__cause__
    if kind == "connection" and root is not exc and str(root) and str(root) != str(exc):
        first = f"{first.rstrip('.')}: {str(root).splitlines()[0][:200]}"
    messages = {
        "timeout": "the LLM server did not answer in time"
        + (f" ({timeout:g} s; TABLECHAT_LLM_TIMEOUT)" if timeout else ""),
        "connection": f"the LLM server is unreachable ({first})",
        "garbled": f"the LLM server sent a garbled reply ({type(exc).__name__})",
        "context": "the question and schema do not fit the model's context window "
        f"({first})",
        "auth": "the LLM server refused the API key (set TABLECHAT_LLM_API_KEY)",
        "model": f"the LLM server does not serve that model ({first}); "
        "set TABLECHAT_LLM_MODEL to one it lists",
        "rate_limit": "the LLM server is busy (HTTP 429, still after retries); try again soon",
        "server": f"the LLM server failed (HTTP {getattr(exc, 'status_code', '5xx')}, "
        f"still after retries): {first}",
    }
    message = messages.get(kind, f"the LLM server failed: {type(exc).__name__}: {first}")
    return LLMUnavailableError(message)


__all__ = [
    "DEFAULT_MAX_MODEL_LEN",
    "ServerInfo",
    "build_chat_model",
    "cached_of",
    "failure_kind",
    "is_openai_compatible",
    "llm_error",
    "llm_health",
    "model_name",
    "probe_server",
    "resolve_model_name",
    "server_root",
    "usage_of",
]
