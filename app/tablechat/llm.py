"""The LLM: a LangChain chat model for a vLLM (OpenAI-compatible) server, its health, and what
its failures mean for the person asking.

vLLM runs as its own server (``vllm serve MODEL``); this module only talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from .config import Settings
from .errors import ConfigurationError, LLMUnavailableError

DEFAULT_MAX_MODEL_LEN = 8192


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What an OpenAI-compatible server says about itself."""

    reachable: bool
    models: tuple[str, ...] = ()
    max_model_len: int | None = None
    is_vllm: bool = False
    error: str = ""
    health_status: int | None = None  # GET /health (vLLM); None when not served or not asked
    latency_ms: float | None = None  # of GET /v1/models

    def to_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "models": list(self.models),
            "max_model_len": self.max_model_len,
            "vllm": self.is_vllm,
            "health_status": self.health_status,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "error": self.error or None,
        }


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000`` (where vLLM serves /health, /tokenize)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"LLM URL must start with http:// or https://: {url}")


def _get(url: str, api_key: str | None, timeout: float) -> tuple[int, bytes]:
    _check_url(url)
    request = urllib.request.Request(url)  # noqa: S310 - scheme checked above
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read() or b""


def _probe_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused; is it running?"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer in time"
    return f"{type(reason).__name__}: {reason}"


def probe_server(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> ServerInfo:
    """Ask ``/v1/models`` (and vLLM's ``/health``) whether the server is up and what it serves.

    Never raises for a dead, slow or garbling server: the answer says what is wrong.
    """
    _check_url(base_url)
    start = time.perf_counter()
    try:
        status, body = _get(base_url.rstrip("/") + "/models", api_key, timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return ServerInfo(False, error=_probe_error(exc))
    latency = (time.perf_counter() - start) * 1000
    if status in (401, 403):
        return ServerInfo(False, error=f"HTTP {status}: the server refused the API key "
                          "(set TABLECHAT_LLM_API_KEY)", latency_ms=latency)
    if status != 200:
        return ServerInfo(False, error=f"HTTP {status} from /v1/models", latency_ms=latency)
    try:
        listing = json.loads(body) if body else None
    except ValueError:
        return ServerInfo(False, error="garbled /v1/models reply (not JSON)", latency_ms=latency)
    data = listing.get("data", []) if isinstance(listing, dict) else []
    cards = [m for m in data if isinstance(m, dict) and m.get("id")]
    models = tuple(str(m["id"]) for m in cards)
    max_len = next((int(m["max_model_len"]) for m in cards
                    if isinstance(m.get("max_model_len"), int)), None)
    is_vllm = any(m.get("owned_by") == "vllm" for m in cards)
    if not models:
        return ServerInfo(False, error="the server lists no models", latency_ms=latency)
    health: int | None = None
    try:
        health, _ = _get(server_root(base_url) + "/health", None, timeout)
    except (OSError, urllib.error.URLError, ValueError):
        health = None
    if health is not None and health >= 500:
        return ServerInfo(False, models, max_len, is_vllm, f"/health answers HTTP {health}",
                          health, latency)
    return ServerInfo(True, models, max_len, is_vllm, "",
                      health if health in (200, 204) else None, latency)


def llm_health(settings: Settings, info: ServerInfo, *,
               structured: bool | None = None) -> dict[str, Any]:
    """The ``llm`` part of ``TableChat.health()`` for a configured server."""
    model = settings.llm_model or (info.models[0] if info.models else None)
    llm: dict[str, Any] = {"configured": True, "url": settings.llm_url, "model": model,
                           **info.to_dict()}
    if info.reachable and model not in info.models:
        llm["message"] = (f"the server does not list model {model!r} "
                          f"(it serves {', '.join(info.models)}): set TABLECHAT_LLM_MODEL")
    elif info.reachable:
        llm["structured_outputs"] = (structured if structured is not None else
                                     settings.llm_structured_output and info.is_vllm)
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


def build_chat_model(settings: Settings, *, model: str | None = None) -> BaseChatModel:
    """A ``ChatOpenAI`` for the configured server (vLLM's OpenAI-compatible API).

    Its async calls go through :class:`~tablechat.openai_transport.ChatCompletionsTransport`
    (``model.async_client``: one aiohttp session, plain dicts instead of the openai SDK's
    models; a fraction of the SDK's CPU per call); ChatOpenAI still builds the payload,
    converts messages and chunks and handles errors. ``llm_timeout`` is the per-read limit
    and ``llm_connect_timeout`` the connect limit of the HTTP client; callers also bound each
    whole call (retries included) with ``llm_timeout``. Connection errors, 408/409/429 and 5xx
    are retried ``llm_max_retries`` times with exponential backoff (0.5 s doubling, at most
    8 s), honouring ``Retry-After`` up to 120 s. ChatOpenAI's own per-chunk stream timeout is
    off: the whole call is bounded instead.
    """
    if not settings.llm_url:
        raise ConfigurationError("no LLM configured: set TABLECHAT_LLM_URL")
    _check_url(settings.llm_url)
    import openai
    from langchain_openai import ChatOpenAI

    from .openai_transport import ChatCompletionsTransport

    name = model or settings.llm_model
    if not name:
        raise LLMUnavailableError("no model name: set TABLECHAT_LLM_MODEL")
    # openai>=3 runs on httpx2: its Timeout type is openai.Timeout (httpx.Timeout is not).
    # The sync client (model.invoke) and root_async_client (response_format) stay on the SDK.
    timeout = openai.Timeout(settings.llm_timeout, connect=settings.llm_connect_timeout)
    chat = ChatOpenAI(
        base_url=settings.llm_url,
        api_key=settings.llm_api_key or "EMPTY",  # type: ignore[arg-type]
        model=name,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,  # type: ignore[call-arg]
        timeout=timeout,
        max_retries=settings.llm_max_retries,
        use_responses_api=False,
        stream_usage=True,
        stream_chunk_timeout=None,
    )
    chat.async_client = ChatCompletionsTransport(
        settings.llm_url,
        settings.llm_api_key,
        timeout=settings.llm_timeout,
        connect_timeout=settings.llm_connect_timeout,
        max_retries=settings.llm_max_retries,
    )
    return chat


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


# -- failures -----------------------------------------------------------------------------------
def failure_kind(exc: BaseException) -> str:
    """'timeout', 'connection', 'garbled', 'context', 'auth', 'model', 'rate_limit', 'server',
    'structured' (the server refused structured_outputs), 'bad_request' or 'other'."""
    if isinstance(exc, LLMUnavailableError) and exc.__cause__ is not None:
        return failure_kind(exc.__cause__)
    name = type(exc).__name__
    text = str(exc).lower()
    status = getattr(exc, "status_code", None)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or "Timeout" in name:
        return "timeout"
    if "Connection" in name or isinstance(exc, ConnectionError):
        return "connection"
    if status in (401, 403):
        return "auth"
    if status == 404 and "model" in text:
        return "model"
    if status == 429:
        return "rate_limit"
    if isinstance(status, int) and status >= 500:
        return "server"
    if status in (400, 413, 422):
        if "context length" in text or "context window" in text or "too long" in text:
            return "context"
        if "max_tokens" in text and "too large" in text:
            return "context"
        if any(w in text for w in ("structured_outputs", "guided", "unrecognized request",
                                   "extra inputs", "not supported", "extra_forbidden")):
            return "structured"
        return "bad_request"
    if isinstance(exc, json.JSONDecodeError | ValueError | UnicodeDecodeError) or any(
        w in name for w in ("Decode", "Validation", "Parse", "Protocol")
    ):
        return "garbled"
    return "other"


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
