"""Chat completions over one shared aiohttp session, for the ``ChatOpenAI`` models tablechat
builds from ``TABLECHAT_LLM_URL``.

Why it exists: every LLM call of a question runs on tablechat's one background loop
(``tablechat._loop``), so the client's CPU per call bounds how many questions overlap. Through
the openai SDK a question's two calls cost ~40 ms of CPU (request building and the TypedDict
transform of the params, httpx2/httpcore2/anyio, a pydantic ``ChatCompletionChunk`` per SSE
event that ChatOpenAI then dumps back to a dict): 32 concurrent questions could not fit in one
question's latency. This transport sends the same request with aiohttp and hands ChatOpenAI
plain dicts, which it accepts as they are.

What of ``ChatOpenAI`` stays: everything but the object in ``model.async_client`` (openai's
``AsyncCompletions``): payload building (``_get_request_payload``), message conversion, chunk
conversion (``_convert_chunk_to_generation_chunk``), ``_create_chat_result``, usage, and its
error handlers, since failures are raised as the openai SDK's own exception classes
(``APIConnectionError``, ``APITimeoutError``, ``RateLimitError``, ``BadRequestError``... built
on the SDK's ``httpx2`` request/response types). ChatOpenAI calls ``create(**payload)`` and
``with_raw_response.create(**payload).parse()``; nothing else. The sync ``model.client`` and
``model.root_async_client`` (``response_format`` and the Responses API, which tablechat does
not use) stay on the SDK.

The retry policy is the SDK's: connection errors and timeouts, 408/409/429 and 5xx are retried
``max_retries`` times, 0.5 s doubling up to 8 s (minus up to 25 % jitter), ``Retry-After`` /
``retry-after-ms`` honoured up to 120 s (a longer one is not retried), ``x-should-retry``
obeyed. A request is retried only while nothing of its reply has reached the caller: a stream
once handed over is never retried.
"""

from __future__ import annotations

import asyncio
import atexit
import email.utils
import json
import logging
import math
import random
import time
import urllib.request
import weakref
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import openai
from yarl import URL

try:  # the openai SDK's exceptions carry its HTTP library's request/response types
    import httpx2 as _http
except ImportError:  # pragma: no cover - openai<3 runs on httpx
    import httpx as _http  # type: ignore[no-redef]

log = logging.getLogger(__name__)

INITIAL_RETRY_DELAY = 0.5  # seconds; doubles per retry (the openai SDK's values)
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0  # a server asking for a longer wait is not retried
POOL_SIZE = 128  # simultaneous connections: room for 64+ concurrent requests
# Idle connections are dropped before uvicorn's 5 s keep-alive timeout (vLLM runs under it)
# closes them, so a request is never sent on a connection the server is closing.
KEEPALIVE_TIMEOUT = 4.0
_OPTION_KEYS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


# -- failures as the openai SDK raises them -----------------------------------------------------
def _request(url: str) -> Any:
    return _http.Request("POST", url)


def status_error(
    status: int, headers: Mapping[str, str], content: bytes, url: str
) -> openai.APIStatusError:
    """The SDK's exception for an HTTP error reply (same class, message and ``body``)."""
    request = _request(url)
    response = _http.Response(status, headers=list(headers.items()), content=content,
                              request=request)
    message = f"Error code: {status}"
    body: Any = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        text = error.get("message") if isinstance(error, dict) else None
        if isinstance(text, str) and text:
            message += f" - {text}"
    data = body.get("error", body) if isinstance(body, dict) else body
    cls = _STATUS_ERRORS.get(status) or (
        openai.InternalServerError if status >= 500 else openai.APIStatusError
    )
    return cls(message, response=response, body=data)


def transport_error(exc: BaseException, url: str) -> openai.APIConnectionError:
    """A timeout or connection failure as the SDK's exception, caused by ``exc``."""
    request = _request(url)
    error = (openai.APITimeoutError(request) if isinstance(exc, TimeoutError)
             else openai.APIConnectionError(request=request))
    error.__cause__ = exc
    return error


def _stream_error(data: Any, url: str) -> openai.APIError:
    error = data.get("error") if isinstance(data, dict) and data.get("error") else data
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, _request(url), body=error)


# -- retry policy -------------------------------------------------------------------------------
def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, ``Retry-After`` seconds or date)."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if math.isinf(delay) or math.isnan(delay):
            return MAX_RETRY_AFTER + 1  # absurd: refuse rather than wait less
        return delay / divisor
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def backoff(retry: int) -> float:
    """The wait before retry number ``retry + 1``: 0.5 s doubling, at most 8 s, minus jitter."""
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(retry, 32), MAX_RETRY_DELAY) * (
        1 - 0.25 * random.random()  # jitter, as the SDK
    )


def retry_delay(retry: int, status: int, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying an HTTP error reply, or None when it is not retried."""
    after = retry_after(headers)
    if after is not None and after > MAX_RETRY_AFTER:
        return None
    should = headers.get("x-should-retry")
    if should == "false":
        return None
    if should != "true" and status not in (408, 409, 429) and status < 500:
        return None
    return after if after is not None and after > 0 else backoff(retry)


def _env_proxy(url: URL) -> str | None:
    """The proxy the environment (``HTTP_PROXY``, ``NO_PROXY``...) sets for ``url``, read once:
    the SDK's HTTP client honours them too."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme or "http")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(url.host or "", proxies):
        return None
    if not proxy.startswith(("http://", "https://")):
        log.warning("ignoring proxy %s for the LLM server: only http(s) proxies work", proxy)
        return None
    return proxy


# -- the stream ---------------------------------------------------------------------------------
class SSEStream:
    """A streamed chat completion: an async context manager and an async iterator of each SSE
    ``data:`` JSON as a dict. Ends at ``[DONE]``; raises on an error event or malformed data;
    leaving it early (or any failure) closes the connection. Lines end in LF or CRLF."""

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self.response = response
        self._url = url
        self._buffer = b""
        self._data: list[bytes] = []
        self._event = ""
        self._ready: deque[tuple[str, bytes]] = deque()
        self._finished = False

    async def __aenter__(self) -> SSEStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection unless the reply was read to its end (then it is pooled)."""
        if not self._finished:
            self._finished = True
            self.response.close()

    def __aiter__(self) -> SSEStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._ready:
                event, data = self._ready.popleft()
                if data.startswith(b"[DONE]"):
                    self._ready.clear()  # nothing after [DONE] counts
                    await self._done()
                    raise StopAsyncIteration
                try:
                    parsed = json.loads(data)
                    if event == "error" or (isinstance(parsed, dict) and (
                            parsed.get("error") or parsed.get("object") == "error")):
                        raise _stream_error(parsed, self._url)
                except BaseException:
                    self.close()
                    raise
                return parsed  # type: ignore[no-any-return]
            if self._finished:
                raise StopAsyncIteration
            try:
                chunk = await self.response.content.readany()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.close()
                raise transport_error(exc, self._url) from exc
            except BaseException:
                self.close()
                raise
            if not chunk:  # the server ended the reply without [DONE]
                self._finished = True
                self.response.release()
                raise StopAsyncIteration
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line ends an event
                if self._data:
                    self._ready.append((self._event, b"\n".join(self._data)))
                self._data, self._event = [], ""
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            # comments (":..."), id: and retry: lines mean nothing here

    async def _done(self) -> None:
        """After ``[DONE]``: read the rest of the body so the connection goes back to the
        pool (the end of the chunked body follows at once); a server that holds the reply open
        after ``[DONE]`` costs its connection, not the caller's time."""
        content = self.response.content
        try:
            if not content.is_eof():
                async with asyncio.timeout(1.0):
                    while await content.readany():
                        pass
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.close()
            return
        except BaseException:
            self.close()
            raise
        self._finished = True
        self.response.release()


# -- the transport ------------------------------------------------------------------------------
class _RawResponse:
    """What ``with_raw_response.create`` returns: ``parse()`` and the reply's headers."""

    __slots__ = ("_parsed", "headers")

    def __init__(self, parsed: Any, headers: Mapping[str, str]) -> None:
        self._parsed = parsed
        self.headers = headers

    def parse(self) -> Any:
        return self._parsed


class _WithRawResponse:
    __slots__ = ("_transport",)

    def __init__(self, transport: ChatCompletionsTransport) -> None:
        self._transport = transport

    async def create(self, **params: Any) -> _RawResponse:
        parsed, headers = await self._transport.send(params)
        return _RawResponse(parsed, headers)


class ChatCompletionsTransport:
    """Stands in for openai's ``AsyncCompletions`` as ``ChatOpenAI.async_client``.

    ``create(**payload)`` returns the decoded JSON reply, or for ``stream=True`` an
    :class:`SSEStream` of chunk dicts. One ``aiohttp.ClientSession`` per transport, created
    on the first call's running loop (tablechat makes every call on its one background loop);
    :meth:`aclose` closes it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        connect_timeout: float,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = URL(base_url.rstrip("/") + "/chat/completions")
        self._url = str(self.url)
        self.max_retries = max_retries
        # per read (and per connect), like the SDK's timeout; callers bound the whole call
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                             sock_read=timeout)
        self.headers: dict[str, str] = {
            "Authorization": f"Bearer {api_key or 'EMPTY'}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "tablechat",
            **(headers or {}),
        }
        self._proxy = _env_proxy(self.url)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.with_raw_response = _WithRawResponse(self)

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The open session, if a call made one."""
        return self._session

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed and self._loop is loop:
            return session
        if session is not None and not session.closed:
            # first used on another loop (a caller outside tablechat's background loop):
            # its connections belong to that loop; leave them to it
            log.debug("LLM transport used on a new event loop: new connection pool")
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=0,
                                         keepalive_timeout=KEEPALIVE_TIMEOUT,
                                         ttl_dns_cache=300)
        # aiohttp sets TCP_NODELAY on every connection: small requests go out at once
        session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                        trust_env=False)  # proxies: read once, _env_proxy
        self._session, self._loop = session, loop
        _OPEN.add(self)
        return session

    async def aclose(self) -> None:
        """Close the session and its connections (a later call opens a new one)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    def _close_at_exit(self) -> None:
        """Close a session left open on a loop still running in another thread (tablechat's
        background loop), so a program that never closed its TableChat exits quietly."""
        session, loop = self._session, self._loop
        if session is None or session.closed or loop is None or not loop.is_running():
            return
        try:
            if asyncio.get_running_loop() is loop:
                return
        except RuntimeError:
            pass
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=2)
        except Exception as exc:  # exiting anyway
            log.debug("closing the LLM transport at exit: %s", exc)

    async def create(self, **params: Any) -> Any:
        return (await self.send(params))[0]

    async def send(self, params: Mapping[str, Any]) -> tuple[Any, Mapping[str, str]]:
        """POST one chat completion: (decoded JSON or :class:`SSEStream`, reply headers)."""
        body: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for key, value in params.items():
            if value is not None:
                (options if key in _OPTION_KEYS else body)[key] = value
        if options:
            body.update({k: v for k, v in (options.get("extra_body") or {}).items()
                         if v is not None})
        headers = {**self.headers, **(options.get("extra_headers") or {})}
        query = options.get("extra_query") or None
        # always a ClientTimeout: aiohttp takes timeout=None as "no timeouts at all"
        timeout = self._timeout_of(options.get("timeout"))
        stream = bool(body.get("stream"))
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        session = self._session_here()
        retry = 0
        while True:
            headers["x-stainless-retry-count"] = str(retry)  # as the SDK sends it, for logs
            try:
                response = await session.post(self.url, data=data, headers=headers,
                                              params=query, timeout=timeout, proxy=self._proxy)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error: openai.APIError = transport_error(exc, self._url)
                delay: float | None = backoff(retry)
            else:
                if response.status >= 400:
                    try:
                        content = await response.read()
                    except (aiohttp.ClientError, OSError, TimeoutError):
                        content = b""
                    error = status_error(response.status, response.headers, content, self._url)
                    delay = retry_delay(retry, response.status, response.headers)
                elif stream:
                    return SSEStream(response, self._url), response.headers
                else:
                    try:
                        raw = await response.read()
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        error, delay = transport_error(exc, self._url), backoff(retry)
                    else:
                        return json.loads(raw), response.headers
            if delay is None or retry >= self.max_retries:
                raise error
            log.info("LLM request failed (%s); retry %d of %d in %.2f s", error, retry + 1,
                     self.max_retries, delay)
            await asyncio.sleep(delay)
            retry += 1

    def _timeout_of(self, value: Any) -> aiohttp.ClientTimeout:
        """A per-call ``timeout`` option (seconds or ``openai.Timeout``), else the default."""
        if value is None:
            return self.timeout
        if isinstance(value, int | float):
            return aiohttp.ClientTimeout(total=None, sock_connect=self.timeout.sock_connect,
                                         sock_read=float(value))
        read, connect = getattr(value, "read", None), getattr(value, "connect", None)
        return aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.timeout.sock_connect if connect is None else connect,
            sock_read=self.timeout.sock_read if read is None else read,
        )


_OPEN: weakref.WeakSet[ChatCompletionsTransport] = weakref.WeakSet()


@atexit.register
def _close_open_transports() -> None:
    for transport in list(_OPEN):
        transport._close_at_exit()


__all__ = [
    "ChatCompletionsTransport",
    "SSEStream",
    "backoff",
    "retry_after",
    "retry_delay",
    "status_error",
    "transport_error",
]
