"""What every LLM server has in common, and the generic OpenAI-compatible backend.

An :class:`LLMBackend` owns whatever differs between servers: how to build the LangChain chat
model, how to probe the server, its context length, its constrained-decoding dialect, how to
count tokens with the served model's tokenizer, how many calls it runs at once, and what its
errors mean. One subclass per server (``vllm.py``, ``llamacpp.py``, ``embedded.py``); the
choice is made in one place (:func:`tablechat.backends.probe_backend`).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel

from ..config import Settings
from ..errors import ConfigurationError, LLMUnavailableError


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What an OpenAI-compatible server says about itself."""

    reachable: bool
    models: tuple[str, ...] = ()
    max_model_len: int | None = None
    kind: str = "openai"  # which backend speaks to it: vllm, llamacpp, embedded, openai
    error: str = ""
    health_status: int | None = None  # GET /health; None when not served or not asked
    latency_ms: float | None = None  # of GET /v1/models
    busy: bool = False  # it accepted the connection but did not list its models in time
    slots: int | None = None  # requests it runs at once (llama.cpp /props total_slots)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_vllm(self) -> bool:
        return self.kind == "vllm"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form for ``TableChat.health()``."""
        return {
            "reachable": self.reachable,
            "models": list(self.models),
            "max_model_len": self.max_model_len,
            "backend": self.kind,
            "vllm": self.is_vllm,
            "busy": self.busy,
            "slots": self.slots,
            "health_status": self.health_status,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "error": self.error or None,
        }


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000`` (where /health, /tokenize, /props live)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def check_url(url: str) -> None:
    """Refuse anything but an http(s) URL (urllib would also open ``file:`` URLs)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"LLM URL must start with http:// or https://: {url}")


def http_get(url: str, api_key: str | None, timeout: float) -> tuple[int, bytes]:
    """GET ``url``: (status, body). Raises OSError/URLError when nothing answers."""
    check_url(url)
    request = urllib.request.Request(url)  # noqa: S310 - scheme checked above
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read() or b""


def get_json(url: str, api_key: str | None, timeout: float) -> Any:
    """GET ``url`` as JSON; None for any failure (an optional endpoint)."""
    try:
        status, body = http_get(url, api_key, timeout)
        return json.loads(body) if status == 200 and body else None
    except (OSError, ValueError):
        return None


def _connects(base_url: str, timeout: float) -> bool:
    """Whether the server accepts a TCP connection: alive, even when too busy to answer."""
    parts = urllib.parse.urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused; is it running?"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer in time"
    return f"{type(reason).__name__}: {reason}"


def list_models(base_url: str, api_key: str | None, timeout: float,
                model: str | None = None) -> tuple[ServerInfo, list[dict[str, Any]]]:
    """``GET /v1/models`` and ``/health``: is the server up, and its model cards.

    A server that accepts the connection but does not answer in time is *busy*, not down
    (llama.cpp-style servers answer ``/v1/models`` only between generations): it counts as
    reachable, serving ``model`` when one is configured.
    """
    check_url(base_url)
    start = time.perf_counter()
    try:
        status, body = http_get(base_url.rstrip("/") + "/models", api_key, timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError | socket.timeout) and _connects(base_url, timeout):
            return ServerInfo(True, (model,) if model else (), busy=True,
                              error="busy: no model list in time"), []
        return ServerInfo(False, error=_probe_error(exc)), []
    latency = (time.perf_counter() - start) * 1000
    if status in (401, 403):
        return ServerInfo(False, error=f"HTTP {status}: the server refused the API key "
                          "(set TABLECHAT_LLM_API_KEY)", latency_ms=latency), []
    if status != 200:
        return ServerInfo(False, error=f"HTTP {status} from /v1/models", latency_ms=latency), []
    try:
        listing = json.loads(body) if body else None
    except ValueError:
        return ServerInfo(False, error="garbled /v1/models reply (not JSON)",
                          latency_ms=latency), []
    data = listing.get("data", []) if isinstance(listing, dict) else []
    cards = [m for m in data if isinstance(m, dict) and m.get("id")]
    models = tuple(str(m["id"]) for m in cards)
    if not models:
        return ServerInfo(False, error="the server lists no models", latency_ms=latency), cards
    health: int | None
    try:
        health, _ = http_get(server_root(base_url) + "/health", None, timeout)
    except (OSError, urllib.error.URLError, ValueError):
        health = None
    if health is not None and health >= 500:
        return ServerInfo(False, models, error=f"/health answers HTTP {health}",
                          health_status=health, latency_ms=latency), cards
    return ServerInfo(True, models, health_status=health if health in (200, 204) else None,
                      latency_ms=latency), cards


class LLMBackend:
    """A generic OpenAI-compatible server: no constrained decoding, local token counts.

    Subclasses override what their server does differently.
    """

    kind: ClassVar[str] = "openai"
    #: the constraint kinds this server enforces: "json", "choice", "grammar"
    constraints: ClassVar[frozenset[str]] = frozenset()
    #: constrain the SQL reply with the schema's grammar (agent/grammar.py) rather than JSON
    sql_grammar: ClassVar[bool] = False
    #: ask for a reply used whole (the SQL, the router, an answer shown whole) as a stream.
    #: True unless the server stops generating when the client of a *non-streamed* request
    #: leaves (a timeout must free its slot); a stream costs the client per token (the SDK
    #: builds a model per chunk, LangChain merges the chunks)
    stream_whole_replies: ClassVar[bool] = True

    def __init__(self, settings: Settings, base_url: str | None = None) -> None:
        self.settings = settings
        self.base_url = base_url or settings.llm_url or ""
        self.api_key = settings.llm_api_key

    # -- lifecycle (the embedded backend runs its own server) ------------------------------
    def start(self) -> None:
        """Make the server reachable (nothing to do for a remote one)."""

    def close(self) -> None:
        """Release what :meth:`start` took."""

    @property
    def max_concurrency(self) -> int | None:
        """Calls to send at once (None: as many as the caller makes)."""
        return None

    def slots(self, info: ServerInfo | None) -> int | None:
        """Requests the server runs at once, as far as it says (None: it does not say).

        What a client should send at once to keep it busy without queueing: ``tablechat
        eval`` runs that many questions at a time. llama.cpp reports ``total_slots`` in
        ``/props``; vLLM batches whatever arrives and says nothing.
        """
        return self.max_concurrency or (info.slots if info is not None else None)

    # -- probing -----------------------------------------------------------------------------
    def describe(self, info: ServerInfo, cards: list[dict[str, Any]]) -> ServerInfo:
        """Add what this server tells beyond ``/v1/models`` (context length, slots)."""
        return replace(info, kind=self.kind)

    def probe(self, timeout: float | None = None) -> ServerInfo:
        """The server's state now. Never raises for a dead, slow or garbling server."""
        wait = timeout if timeout is not None else self.settings.llm_connect_timeout
        info, cards = list_models(self.base_url, self.api_key, wait, self.settings.llm_model)
        return self.describe(info, cards) if info.reachable and not info.busy else \
            replace(info, kind=self.kind)

    def context_length(self, info: ServerInfo | None) -> int | None:
        """The model's context window: the setting wins, then what the server says."""
        return self.settings.max_model_len or (info.max_model_len if info else None)

    # -- calls -------------------------------------------------------------------------------
    def build_model(self, model: str) -> BaseChatModel:
        """A ``ChatOpenAI`` on the openai SDK for this server.

        ``streaming`` (:attr:`stream_whole_replies`): by default every call is a stream, even
        one whose reply is used whole, so a call abandoned at its timeout closes the
        connection and the server frees its slot (against llama-cpp-python a non-streamed
        request ran on for 418 s after the client gave up; issue 13). Token streams
        (``astream``) always stream.
        ``llm_timeout`` bounds each read, ``llm_connect_timeout`` the connect; callers bound
        the whole call too. The SDK retries connection errors, 408/409/429 and 5xx
        ``llm_max_retries`` times with its own backoff.
        """
        check_url(self.base_url)
        import openai
        from langchain_openai import ChatOpenAI

        if not model:
            raise LLMUnavailableError("no model name: set TABLECHAT_LLM_MODEL")
        timeout = openai.Timeout(self.settings.llm_timeout,
                                 connect=self.settings.llm_connect_timeout)
        # unset rather than False when whole replies come whole: streaming=False would turn
        # off astream's token streams too (langchain-core 1.8)
        streaming: dict[str, Any] = {"streaming": True} if self.stream_whole_replies else {}
        return ChatOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "EMPTY",  # type: ignore[arg-type]
            model=model,
            temperature=self.settings.llm_temperature,
            max_tokens=self.settings.llm_max_tokens,  # type: ignore[call-arg]
            timeout=timeout,
            max_retries=self.settings.llm_max_retries,
            use_responses_api=False,
            **streaming,
            stream_usage=True,
            stream_chunk_timeout=None,
            # the SDK's default httpx client: its aiohttp one (openai.DefaultAioHttpClient)
            # reported a refused connection as a timeout (a dead server taken for a busy one)
            # and left its session unclosed at exit (measured with openai 3.60, issue 13)
        )

    def request_options(self, constraint: dict[str, Any] | None,
                        max_tokens: int | None) -> dict[str, Any]:
        """Keyword arguments for one call: the reply limit and the constraint in this server's
        dialect. ``extra_body`` given per call replaces the model's, so it is whole here."""
        options: dict[str, Any] = {}
        body: dict[str, Any] = {}
        limit = max_tokens or self.settings.llm_max_tokens
        if max_tokens is not None:
            options["max_tokens"] = max_tokens  # ChatOpenAI sends it as max_completion_tokens
        # some servers read only the older max_tokens (llama-cpp-python generated 8,152
        # tokens past a max_completion_tokens of 512; issue 13): send both
        body["max_tokens"] = limit
        if constraint is not None:
            body.update(self.constraint_body(constraint))
        options["extra_body"] = body
        return options

    def constraint_body(self, constraint: dict[str, Any]) -> dict[str, Any]:
        """The request fields that enforce ``constraint`` ({"json"|"choice"|"grammar": ...})."""
        return {}

    def supports(self, constraint: dict[str, Any] | None) -> bool:
        """Whether this server enforces ``constraint``."""
        return constraint is not None and bool(set(constraint) & self.constraints)

    # -- tokens ------------------------------------------------------------------------------
    def tokenize_request(self, model: str) -> tuple[str, Any] | None:
        """(URL, body builder) of the server's tokenizer endpoint, or None to count locally."""
        return None

    def token_counter(self, model: str) -> Any:
        """A :class:`~tablechat.agent.budget.TokenCounter` using the served tokenizer."""
        from ..agent.budget import TokenCounter

        request = self.tokenize_request(model)
        if request is None:
            return TokenCounter()
        url, payload = request
        return TokenCounter(url, model, self.api_key, payload=payload,
                            timeout=self.settings.llm_connect_timeout)


__all__ = ["LLMBackend", "ServerInfo", "check_url", "get_json", "http_get", "list_models",
           "server_root"]
