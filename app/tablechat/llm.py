"""The LLM: a LangChain chat model for a vLLM (OpenAI-compatible) server, and its health.

vLLM runs as its own server (``vllm serve MODEL``); this module only talks HTTP to it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from .config import Settings
from .errors import ConfigurationError, LLMUnavailableError


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What an OpenAI-compatible server says about itself."""

    reachable: bool
    models: tuple[str, ...] = ()
    max_model_len: int | None = None
    is_vllm: bool = False
    error: str = ""


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000`` (where vLLM serves /health, /tokenize)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _get_json(url: str, api_key: str | None, timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"LLM URL must start with http:// or https://: {url}")
    request = urllib.request.Request(url)  # noqa: S310 - scheme checked above
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = response.read()
    return json.loads(body) if body else None


def probe_server(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> ServerInfo:
    """Ask ``/v1/models`` (and vLLM's ``/health``) whether the server is up and what it serves."""
    try:
        listing = _get_json(base_url.rstrip("/") + "/models", api_key, timeout)
    except (OSError, urllib.error.URLError, ValueError, TimeoutError) as exc:
        return ServerInfo(False, error=f"{type(exc).__name__}: {exc}")
    data = listing.get("data", []) if isinstance(listing, dict) else []
    models = tuple(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))
    lens = [m.get("max_model_len") for m in data if isinstance(m, dict)]
    max_len = next((int(n) for n in lens if isinstance(n, int)), None)
    is_vllm = any(isinstance(m, dict) and m.get("owned_by") == "vllm" for m in data)
    if not models:
        return ServerInfo(False, error="the server lists no models")
    return ServerInfo(True, models, max_len, is_vllm)


def build_chat_model(settings: Settings, *, model: str | None = None) -> BaseChatModel:
    """A ``ChatOpenAI`` for the configured server (vLLM's OpenAI-compatible API)."""
    if not settings.llm_url:
        raise ConfigurationError("no LLM configured: set TABLECHAT_LLM_URL")
    import httpx
    from langchain_openai import ChatOpenAI

    name = model or settings.llm_model
    if not name:
        raise LLMUnavailableError("no model name: set TABLECHAT_LLM_MODEL")
    timeout = httpx.Timeout(settings.llm_timeout, connect=settings.llm_connect_timeout)
    return ChatOpenAI(
        base_url=settings.llm_url,
        api_key=settings.llm_api_key or "EMPTY",  # type: ignore[arg-type]
        model=name,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,  # type: ignore[call-arg]
        timeout=timeout,
        max_retries=settings.llm_max_retries,
        use_responses_api=False,
        stream_usage=True,
    )


def model_name(model: BaseChatModel) -> str:
    """A short name for the UI: the served model's name, or the class name."""
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__
