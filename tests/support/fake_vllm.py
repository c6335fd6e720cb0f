"""A test double of vLLM's OpenAI-compatible server (standard library only).

Run it as its own process, bound to loopback only::

    python tests/support/fake_vllm.py --port 0 --port-file /tmp/port
    python -m tests.support.fake_vllm --port 0          # same, from the repo root

With ``--port 0`` a free port is chosen; it is written to ``--port-file`` (atomically) and
printed as the first stdout line ``PORT <n>``. Tests normally use
``tests.support.fake_vllm_client.FakeVLLM`` instead of starting it by hand.

Endpoints, shaped like vLLM's (``vllm serve``): ``GET /health``, ``GET /version``,
``GET /v1/models``, ``POST /tokenize``, ``POST /v1/chat/completions`` (JSON or SSE stream),
``GET /metrics``. With ``--api-key K`` every ``/v1/*`` path needs ``Authorization: Bearer K``
and answers 401 ``{"error":"Unauthorized"}`` otherwise (vLLM's exact body); other paths stay
open, as in vLLM. As in vLLM, unknown body fields are accepted (and logged), a ``model`` other
than the served one is a 404, and prompts over ``--max-model-len`` are a 400. Prompt tokens
come from a crude deterministic tokenizer over a crude chat template, so ``/tokenize`` with
the same ``messages`` counts exactly ``usage.prompt_tokens``.

Control API (loopback clients only; never logged):

- ``POST /_control/script`` ``{"replies": [...], "rules": [...], "default": {...},
  "health_status": 200}`` replaces the script. A chat request takes the reply of the first
  rule whose ``match`` regex (``re.search``) hits its text (``"on": "last_user"``, the
  default, or ``"prompt"``: every message rendered as ``role: content`` lines); a rule holds
  ``"reply": {...}`` or ``"replies": [...]`` (used in order, the last one repeats). Else the
  next queued reply; else ``default`` (``{"content": "SELECT 1"}`` unless set).
- A reply: ``content`` (str), ``status`` (200; 4xx/5xx answers an OpenAI-style error),
  ``error`` (message for that error), ``param`` (the error's ``param``: vLLM names the field
  at fault, ``input_tokens`` for a prompt too long), ``retry_after`` (seconds, sent as
  ``Retry-After``),
  ``delay`` (seconds before the first byte), ``token_delay`` (seconds between streamed
  tokens; a non-streamed reply comes whole when the stream's last token would have,
  ``token_delay * (tokens - 1)`` after the first), ``fault``, ``fault_after``
  (content tokens streamed before the fault; default half), ``finish_reason``,
  ``tool_calls`` (``[{"name": ..., "arguments": {...}}]``; finish_reason becomes
  ``tool_calls``), ``cached_tokens`` (reported as ``usage.prompt_tokens_details``, as vLLM
  with ``--enable-prompt-tokens-details`` and llama.cpp do). ``max_tokens``/
  ``max_completion_tokens`` truncate the content (finish_reason ``length``).
- Faults. ``"malformed_sse"``: a ``data:`` line of broken JSON mid-stream (non-stream: a
  truncated JSON body). ``"drop"``: the connection is closed mid-stream (non-stream: closed
  without any response). ``"hang"``: nothing is ever sent. ``"stall"``: headers and half the
  stream (non-stream: half the body), then nothing. A hanging or stalled request ends when
  the client disconnects, on reset, or on shutdown; other requests are served meanwhile.
  ``"error_event"`` (stream only): an error event as vLLM sends when generation fails
  mid-stream (``data: {"error": {"message": ..., "type": ..., "code": 500}}``), then
  ``[DONE]``.
- ``GET /_control/requests``: every request so far (method, path, headers with lower-case
  names, JSON body, ``client_port`` (one per client connection), ``timestamp``,
  ``first_token_sent_at``, ``finished_at``, ``status`` (the status line sent, logged before
  the client can read it; None when none was sent), ``reply``, ``client_disconnected``), all
  times from ``time.time()``.
- ``POST /_control/reset``: clears script and log and releases hanging requests.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import re
import select
import signal
import socket
import socketserver
import threading
import time
import uuid
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "fake-sql-model"
DEFAULT_MAX_MODEL_LEN = 8192
STREAM_FAULTS = ("drop", "malformed_sse", "stall", "error_event")
DEFAULT_REPLY: dict[str, Any] = {"content": "SELECT 1"}
FAULTS = (None, "malformed_sse", "drop", "hang", "stall", "error_event")
REPLY_KEYS = frozenset(
    {
        "content",
        "status",
        "error",
        "retry_after",
        "cached_tokens",
        "delay",
        "token_delay",
        "fault",
        "fault_after",
        "finish_reason",
        "tool_calls",
        "param",
    }
)
ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "RequestTimeoutError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}

_PROMPT_TOKEN = re.compile(r"\w+|[^\w\s]")
# Each piece keeps its leading whitespace; trailing whitespace is a piece of its own, so
# "".join(pieces) == text for every text.
_REPLY_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+\Z")


def prompt_pieces(text: str) -> list[str]:
    return _PROMPT_TOKEN.findall(text)


@functools.lru_cache(maxsize=256)
def prompt_token_count(text: str) -> int:
    """Tokens in a prompt; cached, since clients resend the same long prompts (as vLLM's
    prefix cache makes them cheap): the double's own CPU must not pace a load test."""
    return len(prompt_pieces(text))


def reply_pieces(text: str) -> list[str]:
    return _REPLY_TOKEN.findall(text)


def token_ids(pieces: list[str]) -> list[int]:
    return [100 + zlib.crc32(p.encode()) % 50_000 for p in pieces]


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    else:
        text = "" if content is None else str(content)
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], sort_keys=True)
    return text


def render_chat(messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """A crude chat template: what the prompt token count is computed from."""
    out = [f"<|{m.get('role', 'user')}|>\n{message_text(m)}<|end|>\n" for m in messages]
    if add_generation_prompt:
        out.append("<|assistant|>\n")
    return "".join(out)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def error_body(
    message: str, status: int, err_type: str | None = None, param: str | None = None
) -> dict[str, Any]:
    err_type = err_type or ERROR_TYPES.get(status) or HTTPStatus(status).phrase
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}


def _tool_call(spec: dict[str, Any]) -> dict[str, Any]:
    args = spec.get("arguments")
    return {
        "id": spec.get("id") or f"chatcmpl-tool-{uuid.uuid4().hex}",
        "type": "function",
        "function": {
            "name": spec["name"],
            "arguments": args if isinstance(args, str) else dumps(args or {}),
        },
    }


class ScriptError(ValueError):
    pass


def _check_reply(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise ScriptError(f"a reply must be an object, got {reply!r}")
    unknown = set(reply) - REPLY_KEYS
    if unknown:
        raise ScriptError(f"unknown reply keys {sorted(unknown)}; known: {sorted(REPLY_KEYS)}")
    if reply.get("fault") not in FAULTS:
        raise ScriptError(f"unknown fault {reply['fault']!r}; known: {FAULTS}")
    calls = reply.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) and "name" in c for c in calls):
        raise ScriptError(f"tool_calls must be a list of {{'name', 'arguments'}}: {calls!r}")
    status = reply.get("status", 200)
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ScriptError(f"bad status {status!r}")
    return {**DEFAULT_REPLY, **reply}


class State:
    """Script, request log and counters, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.metrics = {"prompt_tokens": 0, "generation_tokens": 0, "running": 0}
        self.finished: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            old = getattr(self, "release", None)
            self.release = threading.Event()
            self.replies: list[dict[str, Any]] = []
            self.rules: list[dict[str, Any]] = []
            self.default = dict(DEFAULT_REPLY)
            self.health_status = 200
            self.log: list[dict[str, Any]] = []
        if old is not None:
            old.set()  # wake every request hanging under the previous script

    def set_script(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ScriptError("the script must be a JSON object")
        unknown = set(spec) - {"replies", "rules", "default", "health_status"}
        if unknown:
            raise ScriptError(f"unknown script keys {sorted(unknown)}")
        replies = [_check_reply(r) for r in spec.get("replies") or []]
        rules = []
        for rule in spec.get("rules") or []:
            if not isinstance(rule, dict) or "match" not in rule:
                raise ScriptError(f"a rule needs 'match': {rule!r}")
            on = rule.get("on", "last_user")
            if on not in ("last_user", "prompt"):
                raise ScriptError(f"rule 'on' must be 'last_user' or 'prompt', got {on!r}")
            seq = rule["replies"] if "replies" in rule else [rule.get("reply", {})]
            if not seq:
                raise ScriptError("a rule needs at least one reply")
            try:
                pattern = re.compile(rule["match"], re.DOTALL)
            except re.error as exc:
                raise ScriptError(f"bad regex {rule['match']!r}: {exc}") from exc
            rules.append({"re": pattern, "on": on, "replies": [_check_reply(r) for r in seq]})
        default = _check_reply(spec.get("default") or {})
        with self.lock:
            self.replies, self.rules, self.default = replies, rules, default
            self.health_status = int(spec.get("health_status", 200))

    def pick(self, last_user: str, prompt: str) -> tuple[dict[str, Any], str]:
        with self.lock:
            for i, rule in enumerate(self.rules):
                text = last_user if rule["on"] == "last_user" else prompt
                if rule["re"].search(text):
                    seq = rule["replies"]
                    return (seq.pop(0) if len(seq) > 1 else seq[0]), f"rule[{i}]"
            if self.replies:
                return self.replies.pop(0), "replies"
            return self.default, "default"

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry["id"] = len(self.log)
            self.log.append(entry)
        return entry

    def update(self, entry: dict[str, Any], **fields: Any) -> None:
        with self.lock:
            entry.update(fields)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(dumps(self.log))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], config: argparse.Namespace) -> None:
        self.config = config
        self.state = State()
        self.started_at = time.time()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a name lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after 5 s, as uvicorn does under vLLM.
    timeout = 5.0
    server: Server

    def setup(self) -> None:
        super().setup()
        # uvicorn (under vLLM) sets TCP_NODELAY; without it each small SSE write can wait for
        # the client's delayed ACK (up to 40 ms on Linux)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.config.verbose:
            super().log_message(format, *args)

    # ----------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _send(
        self,
        status: int,
        body: bytes | str | dict[str, Any] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, dict):
            body = dumps(body)
        data = body.encode() if isinstance(body, str) else (body or b"")
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: str) -> None:
        raw = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))

    def _client_gone(self) -> bool:
        try:
            poller = select.poll()
            poller.register(self.connection, select.POLLIN)
            if not poller.poll(0):
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _wait(self, seconds: float | None, release: threading.Event, *,
              until: float | None = None) -> bool:
        """Sleep ``seconds`` (None: forever), or until the monotonic time ``until``; False as
        soon as the client leaves or a reset releases."""
        deadline = until if until is not None else (
            None if seconds is None else time.monotonic() + seconds)
        while True:
            if release.is_set() or self.server.state.stopping.is_set() or self._client_gone():
                return False
            remaining = 0.05 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(0.02, remaining))

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # the log has the status before the client can read a byte of the reply: a test that
        # reads the log right after its call returned sees it (recorded after the handler
        # ended, it could come too late)
        super().send_response(code, message)
        entry = getattr(self, "_entry", None)
        if entry is not None:
            self.server.state.update(entry, status=code)

    def _dispatch(self) -> None:
        # scripted delays count from here, as on a server whose own request handling is
        # negligible next to the model's work (vLLM tokenizes in Rust, off the API process)
        self._arrived = time.monotonic()
        self._entry: dict[str, Any] | None = None
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        state = self.server.state
        if path.startswith("/_control/"):
            self._control(path, body)
            return
        entry = state.record(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "raw_body": None if body is not None else raw.decode("utf-8", "replace"),
                "client_port": self.client_address[1],
                "timestamp": time.time(),
                "status": None,
                "reply": None,
                "reply_source": None,
                "first_token_sent_at": None,
                "finished_at": None,
                "client_disconnected": False,
            }
        )
        self._entry = entry
        try:
            self._route(path, body, entry)
        except (BrokenPipeError, ConnectionResetError):
            state.update(entry, client_disconnected=True)
            self.close_connection = True
        finally:
            state.update(entry, finished_at=time.time())

    def _route(self, path: str, body: Any, entry: dict[str, Any]) -> None:
        cfg, state = self.server.config, self.server.state
        routes = {
            "/health": ("GET", self._health),
            "/version": ("GET", self._version),
            "/v1/models": ("GET", self._models),
            "/metrics": ("GET", self._metrics),
            "/tokenize": ("POST", self._tokenize),
            "/v1/chat/completions": ("POST", self._chat),
        }
        if cfg.api_key and path.startswith("/v1"):
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or token != cfg.api_key:
                state.update(entry, status=401)
                self._send(401, {"error": "Unauthorized"})
                return
        if path not in routes:
            state.update(entry, status=404)
            self._send(404, {"detail": "Not Found"})
            return
        method, handler = routes[path]
        if self.command != method:
            state.update(entry, status=405)
            self._send(405, {"detail": "Method Not Allowed"}, headers={"Allow": method})
            return
        status = handler(body, entry)
        if status is not None:
            state.update(entry, status=status)

    # ------------------------------------------------------------ control API
    def _control(self, path: str, body: Any) -> None:
        state = self.server.state
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._send(403, {"detail": "control API is loopback-only"})
            return
        if path == "/_control/requests" and self.command == "GET":
            self._send(200, {"requests": state.snapshot()})
        elif path == "/_control/reset" and self.command == "POST":
            state.reset()
            self._send(200, {"ok": True})
        elif path == "/_control/script" and self.command == "POST":
            try:
                state.set_script(body)
            except ScriptError as exc:
                self._send(400, {"detail": str(exc)})
                return
            self._send(200, {"ok": True})
        else:
            self._send(404, {"detail": "Not Found"})

    # -------------------------------------------------------------- endpoints
    def _health(self, body: Any, entry: dict[str, Any]) -> int:
        status = self.server.state.health_status
        self._send(status)
        return status

    def _version(self, body: Any, entry: dict[str, Any]) -> int:
        self._send(200, {"version": "0.0.0+fake"})
        return 200

    def _models(self, body: Any, entry: dict[str, Any]) -> int:
        cfg = self.server.config
        card = {
            "id": cfg.model,
            "object": "model",
            "created": int(self.server.started_at),
            "owned_by": "vllm",
            "root": cfg.model,
            "parent": None,
            "max_model_len": cfg.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": int(self.server.started_at),
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        self._send(200, {"object": "list", "data": [card]})
        return 200

    def _metrics(self, body: Any, entry: dict[str, Any]) -> int:
        state, model = self.server.state, self.server.config.model
        label = f'model_name="{model}"'
        with state.lock:
            m, finished = dict(state.metrics), dict(state.finished)
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{label}}} {float(m['running'])}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{label}}} 0.0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{label}}} {float(m['prompt_tokens'])}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{label}}} {float(m['generation_tokens'])}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        lines += [
            f'vllm:request_success_total{{finished_reason="{r}",{label}}} {float(n)}'
            for r, n in sorted(finished.items())
        ]
        self._send(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4; charset=utf-8")
        return 200

    def _bad_request(
        self, message: str, status: int = 400, err_type: str | None = None, param: str | None = None
    ) -> int:
        self._send(status, error_body(message, status, err_type, param))
        return status

    def _check_model(self, body: dict[str, Any]) -> int | None:
        model = body.get("model")
        if model and model != self.server.config.model:
            return self._bad_request(
                f"The model `{model}` does not exist.", 404, "NotFoundError", "model"
            )
        return None

    def _tokenize(self, body: Any, entry: dict[str, Any]) -> int:
        cfg = self.server.config
        if not isinstance(body, dict) or ("prompt" not in body and "messages" not in body):
            return self._bad_request("The request needs 'prompt' or 'messages'.")
        if (err := self._check_model(body)) is not None:
            return err
        if "messages" in body:
            text = render_chat(body["messages"], body.get("add_generation_prompt", True))
        else:
            text = str(body["prompt"])
        pieces = prompt_pieces(text)
        self._send(
            200,
            {
                "count": len(pieces),
                "max_model_len": cfg.max_model_len,
                "tokens": token_ids(pieces),
                "token_strs": None,
            },
        )
        return 200

    # ------------------------------------------------------------ completions
    def _chat(self, body: Any, entry: dict[str, Any]) -> int | None:
        cfg, state = self.server.config, self.server.state
        if not isinstance(body, dict):
            return self._bad_request("Expected a JSON object as the request body.")
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) for m in messages)
        ):
            return self._bad_request("'messages' must be a non-empty list of objects.")
        if (err := self._check_model(body)) is not None:
            return err
        if cfg.reject_structured_outputs and "structured_outputs" in body:
            return self._bad_request(
                "Unrecognized request argument supplied: structured_outputs",
                err_type="invalid_request_error",
            )
        n_prompt = prompt_token_count(render_chat(messages))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if n_prompt >= cfg.max_model_len:
            return self._bad_request(
                f"This model's maximum context length is {cfg.max_model_len} tokens. However, "
                f"your request has {n_prompt} input tokens. Please reduce the length of the "
                "input messages.",
                param="input_tokens",
            )
        if max_tokens is not None and n_prompt + int(max_tokens) > cfg.max_model_len:
            return self._bad_request(
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                f"model's maximum context length is {cfg.max_model_len} tokens and your "
                f"request has {n_prompt} input tokens ({max_tokens} > {cfg.max_model_len} - "
                f"{n_prompt}).",
                param="max_tokens",
            )

        users = [m for m in messages if m.get("role") == "user"]
        last_user = message_text(users[-1]) if users else ""
        prompt = "\n".join(f"{m.get('role')}: {message_text(m)}" for m in messages)
        reply, source = state.pick(last_user, prompt)
        state.update(entry, reply=reply, reply_source=source)
        release = state.release
        with state.lock:
            state.metrics["running"] += 1
        try:
            return self._answer(body, reply, n_prompt, max_tokens, entry, release)
        finally:
            with state.lock:
                state.metrics["running"] -= 1

    def _answer(
        self,
        body: dict[str, Any],
        reply: dict[str, Any],
        n_prompt: int,
        max_tokens: int | None,
        entry: dict[str, Any],
        release: threading.Event,
    ) -> int | None:
        state = self.server.state
        fault = reply.get("fault")
        if reply.get("delay") and not self._wait(
            None, release, until=self._arrived + float(reply["delay"])
        ):
            state.update(entry, client_disconnected=not release.is_set())
            self.close_connection = True
            return None
        if fault == "hang":
            self._wait(None, release)
            state.update(entry, client_disconnected=not release.is_set())
            self._drop()
            return None
        status = int(reply.get("status", 200))
        if status != 200:
            headers = {}
            if reply.get("retry_after") is not None:
                headers["Retry-After"] = str(reply["retry_after"])
            message = reply.get("error") or f"Scripted error {status}."
            self._send(status, error_body(message, status, param=reply.get("param")),
                       headers=headers)
            return status

        pieces = reply_pieces(str(reply.get("content") or ""))
        finish = reply.get("finish_reason") or "stop"
        if max_tokens is not None and len(pieces) > int(max_tokens):
            pieces, finish = pieces[: int(max_tokens)], "length"
        tool_calls = [_tool_call(tc) for tc in reply.get("tool_calls") or []]
        if tool_calls and not reply.get("finish_reason"):
            finish = "tool_calls"
        n_completion = len(pieces) + sum(
            len(prompt_pieces(str(tc["function"]["arguments"]))) + 1 for tc in tool_calls
        )
        usage: dict[str, Any] = {
            "prompt_tokens": n_prompt,
            "total_tokens": n_prompt + n_completion,
            "completion_tokens": n_completion,
        }
        if reply.get("cached_tokens") is not None:  # vLLM's --enable-prompt-tokens-details
            usage["prompt_tokens_details"] = {"cached_tokens": int(reply["cached_tokens"])}
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.server.config.model,
        }
        if body.get("stream"):
            ok = self._stream(body, meta, pieces, tool_calls, finish, usage, reply, entry, release)
        else:
            ok = self._full(meta, pieces, tool_calls, finish, usage, reply, entry, release)
        if ok:
            with state.lock:
                state.metrics["prompt_tokens"] += n_prompt
                state.metrics["generation_tokens"] += n_completion
                state.finished[finish] = state.finished.get(finish, 0) + 1
        return None if ok is None else 200  # None: no response was sent

    def _full(
        self,
        meta: dict[str, Any],
        pieces: list[str],
        tool_calls: list[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
        reply: dict[str, Any],
        entry: dict[str, Any],
        release: threading.Event,
    ) -> bool | None:
        state, fault = self.server.state, reply.get("fault")
        # whole when the stream's last token would go out: the stream sends its first token
        # at once and the others token_delay apart (as one engine's steps make them)
        generation = float(reply.get("token_delay") or 0) * max(len(pieces) - 1, 0)
        done_at = self._arrived + float(reply.get("delay") or 0) + generation
        if generation and not self._wait(None, release, until=done_at):
            state.update(entry, client_disconnected=not release.is_set())
            self.close_connection = True
            return None
        if fault == "drop":
            self._drop()
            return None
        content = "".join(pieces)
        message = {
            "role": "assistant",
            "content": None if tool_calls and not content else content,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": tool_calls,
            "reasoning_content": None,
        }
        response = {
            "id": meta["id"],
            "object": "chat.completion",
            "created": meta["created"],
            "model": meta["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {"prompt_tokens_details": None, **usage},
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        data = dumps(response).encode()
        if fault in ("malformed_sse", "stall"):
            cut = data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) if fault == "stall" else len(cut)))
            self.end_headers()
            self.wfile.write(cut)
            state.update(entry, first_token_sent_at=time.time())
            if fault == "stall":
                self._wait(None, release)
                self._drop()
            return False
        self._send(200, data)
        state.update(entry, first_token_sent_at=time.time())
        return True

    def _stream(
        self,
        body: dict[str, Any],
        meta: dict[str, Any],
        pieces: list[str],
        tool_calls: list[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
        reply: dict[str, Any],
        entry: dict[str, Any],
        release: threading.Event,
    ) -> bool:
        state, fault = self.server.state, reply.get("fault")
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        fault_after = reply.get("fault_after")
        fault_at = len(pieces) // 2 if fault_after is None else int(fault_after)
        token_delay = float(reply.get("token_delay") or 0)
        n_prompt = usage["prompt_tokens"]

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(choice: dict[str, Any], done_tokens: int, first: bool = False) -> None:
            chunk: dict[str, Any] = {
                "id": meta["id"],
                "object": "chat.completion.chunk",
                "created": meta["created"],
                "model": meta["model"],
                "choices": [choice],
            }
            if first:
                chunk["prompt_token_ids"] = None
            if continuous:
                chunk["usage"] = {
                    "prompt_tokens": n_prompt,
                    "total_tokens": n_prompt + done_tokens,
                    "completion_tokens": done_tokens,
                }
            self._chunk(f"data: {dumps(chunk)}\n\n")

        event(
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            },
            0,
            first=True,
        )
        started = time.monotonic()  # set again when the first token goes out
        for i, piece in enumerate(pieces):
            if fault in STREAM_FAULTS and i == fault_at:
                return self._stream_fault(fault, meta, entry, release)
            # tokens on a fixed cadence from the first one, as vLLM's engine steps emit them:
            # the time this process takes to write a token does not add to the next one's delay
            if i and token_delay and not self._wait(None, release,
                                                     until=started + i * token_delay):
                state.update(entry, client_disconnected=not release.is_set())
                self._drop()
                return False
            event(
                {
                    "index": 0,
                    "delta": {"content": piece},
                    "logprobs": None,
                    "finish_reason": None,
                    "token_ids": None,
                },
                i + 1,
            )
            if i == 0:
                started = time.monotonic()
                state.update(entry, first_token_sent_at=time.time())
        if fault in STREAM_FAULTS:
            return self._stream_fault(fault, meta, entry, release)
        for k, tc in enumerate(tool_calls):
            event(
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": k, **tc}]},
                    "logprobs": None,
                    "finish_reason": None,
                    "token_ids": None,
                },
                usage["completion_tokens"],
            )
        event(
            {
                "index": 0,
                "delta": {"content": ""},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
                "token_ids": None,
            },
            usage["completion_tokens"],
        )
        if include_usage:
            last = {
                "id": meta["id"],
                "object": "chat.completion.chunk",
                "created": meta["created"],
                "model": meta["model"],
                "choices": [],
                "usage": usage,
            }
            self._chunk(f"data: {dumps(last)}\n\n")
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        return True

    def _stream_fault(
        self, fault: str, meta: dict[str, Any], entry: dict[str, Any], release: threading.Event
    ) -> bool:
        if fault in ("malformed_sse", "error_event"):
            if fault == "malformed_sse":
                self._chunk(
                    f'data: {{"id":"{meta["id"]}","object":"chat.completion.chunk",'
                    '"choices":[{"index":0,"delta":{"content":\n\n'
                )
            else:
                error = error_body("Generation failed: the engine died.", 500)
                self._chunk(f"data: {dumps(error)}\n\n")
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return False
        if fault == "stall":
            self._wait(None, release)
        self._drop()
        return False


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the chosen port here (atomically)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="served model name")
    parser.add_argument("--max-model-len", type=int, default=DEFAULT_MAX_MODEL_LEN)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/*")
    parser.add_argument(
        "--reject-structured-outputs",
        action="store_true",
        help="answer 400 to bodies with 'structured_outputs' (not vLLM)",
    )
    parser.add_argument("--verbose", action="store_true", help="log each request on stderr")
    args = parser.parse_args(argv)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or ":" in args.host:
        parser.error(f"--host must be an IPv4 loopback address, got {args.host!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    server = Server((args.host, args.port), args)
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"PORT {port}", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
