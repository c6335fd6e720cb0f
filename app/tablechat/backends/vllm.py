"""vLLM's OpenAI-compatible server (``vllm serve MODEL``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from .base import LLMBackend, ServerInfo, server_root


class VLLMBackend(LLMBackend):
    """vLLM: ``structured_outputs`` for constraints, ``max_model_len`` in ``/v1/models``, its
    own ``/tokenize``. It reads ``max_completion_tokens``, which ChatOpenAI sends."""

    kind: ClassVar[str] = "vllm"
    constraints: ClassVar[frozenset[str]] = frozenset({"json", "choice", "grammar", "regex"})
    # JSON, not the SELECT-subset grammar: the 7B+ models vLLM serves write CTEs, CASE and
    # window functions the grammar does not admit
    sql_grammar: ClassVar[bool] = False
    # vLLM aborts a non-streamed request whose client disconnects (``with_cancellation`` on
    # its OpenAI routes, vllm/entrypoints/utils.py), so a whole reply needs no stream for a
    # timeout to free its slot; streamed, one question's two replies cost the client ~8 ms
    # of CPU more (SDK chunk models, LangChain's chunk merging: issue 15, bench workers)
    stream_whole_replies: ClassVar[bool] = False

    def describe(self, info: ServerInfo, cards: list[dict[str, Any]]) -> ServerInfo:
        """The context length from the model cards (vLLM adds ``max_model_len``)."""
        max_len = next((int(m["max_model_len"]) for m in cards
                        if isinstance(m.get("max_model_len"), int)), None)
        return replace(info, kind=self.kind, max_model_len=max_len)

    def request_options(self, constraint: dict[str, Any] | None,
                        max_tokens: int | None) -> dict[str, Any]:
        """``max_completion_tokens`` (ChatOpenAI's) and ``structured_outputs``: the old
        ``guided_*`` fields are accepted and silently ignored by vLLM."""
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if constraint is not None:
            options["extra_body"] = self.constraint_body(constraint)
        return options

    def constraint_body(self, constraint: dict[str, Any]) -> dict[str, Any]:
        """``{"structured_outputs": {"json"|"choice"|"grammar"|"regex": ...}}``."""
        return {"structured_outputs": constraint}

    def tokenize_request(self, model: str) -> tuple[str, Any] | None:
        """vLLM's ``POST /tokenize`` ``{"model", "prompt"}`` → ``{"count", "tokens"}``."""
        return server_root(self.base_url) + "/tokenize", lambda text: {"model": model,
                                                                      "prompt": text}


__all__ = ["VLLMBackend"]
