"""llama.cpp's server (``llama-server``, or the one inside the ``xllamacpp`` wheel)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, ClassVar

from .base import LLMBackend, ServerInfo, get_json, server_root


def choice_grammar(choices: list[str]) -> str:
    """A GBNF grammar whose only sentences are ``choices``."""
    return "root ::= " + " | ".join(json.dumps(str(c)) for c in choices)


class LlamaCppBackend(LLMBackend):
    """llama.cpp: ``response_format`` with a JSON schema, a GBNF ``grammar`` field, the context
    size and parallel slots in ``/props``, and ``/tokenize`` ``{"content"}``."""

    kind: ClassVar[str] = "llamacpp"
    constraints: ClassVar[frozenset[str]] = frozenset({"json", "choice", "grammar"})
    # the small local models llama.cpp runs invent columns; the schema's grammar forbids them
    sql_grammar: ClassVar[bool] = True

    def describe(self, info: ServerInfo, cards: list[dict[str, Any]]) -> ServerInfo:
        """``n_ctx`` and ``total_slots`` from ``/props`` (the model card's ``meta.n_ctx`` when
        ``/props`` is off)."""
        props = get_json(server_root(self.base_url) + "/props", self.api_key,
                         self.settings.llm_connect_timeout)
        n_ctx: int | None = None
        slots: int | None = None
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
                n_ctx = settings["n_ctx"]
            if isinstance(props.get("total_slots"), int):
                slots = props["total_slots"]
        if n_ctx is None:
            metas: list[dict[str, Any]] = [m["meta"] for m in cards
                                           if isinstance(m.get("meta"), dict)]
            n_ctx = next((int(m["n_ctx"]) for m in metas if isinstance(m.get("n_ctx"), int)),
                         None)
        return replace(info, kind=self.kind, max_model_len=n_ctx, slots=slots)

    def constraint_body(self, constraint: dict[str, Any]) -> dict[str, Any]:
        """JSON as ``response_format`` ``json_schema``; choices and grammars as GBNF."""
        if "grammar" in constraint:
            return {"grammar": constraint["grammar"]}
        if "choice" in constraint:
            return {"grammar": choice_grammar(list(constraint["choice"]))}
        if "json" in constraint:
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": constraint["json"], "strict": True}}}
        return {}

    def tokenize_request(self, model: str) -> tuple[str, Any] | None:
        """``POST /tokenize`` ``{"content"}`` → ``{"tokens": [...]}``."""
        return server_root(self.base_url) + "/tokenize", lambda text: {"content": text}


__all__ = ["LlamaCppBackend", "choice_grammar"]
