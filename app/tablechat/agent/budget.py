"""Token budgets: count prompt tokens and trim the schema context to fit the model's window.

Counting, best first:

1. the server's ``POST /tokenize`` (exact: the served model's own tokenizer; vLLM's and
   llama.cpp's, each in its own dialect given by the backend), when the server has it;
2. ``tiktoken``, only when its BPE file is already in tiktoken's local cache (tiktoken downloads
   encodings on first use; tablechat never triggers a download);
3. a deterministic approximation (:func:`approx_tokens`) meant to over-count slightly.

Exact counts are cached per text (the schema part of a prompt changes only with the schema),
and their ratio to the approximation calibrates the per-table estimates used for trimming.

When the schema does not fit ``max_model_len - llm_max_tokens - reserve``, the tables most
relevant to the question are kept (:mod:`.relevance`), with their foreign-key neighbours.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..redact import scrub
from ..semantic import SemanticLayer
from ..sql.schema import SchemaSnapshot, render_table
from .relevance import rank_tables

log = logging.getLogger(__name__)

_PIECE = re.compile(r"[^\W\d_]+|\d|_|[^\w\s]")
CHARS_PER_TOKEN = 3.5
TEMPLATE_OVERHEAD = 16  # chat-template tokens around each message
REPAIR_RESERVE = 200  # tokens a failed attempt and its error add to the next prompt
TIKTOKEN_ENCODING = "o200k_base"
MIN_TABLES = 3  # when fewer relevant tables fit, fill the window with the others


def approx_tokens(text: str) -> int:
    """A deterministic token estimate that errs on the high side for code and schemas.

    The larger of ``len(text) / 3.5`` and a word-piece count: a run of letters counts one
    token per 8 letters (at least one), every digit, underscore and punctuation mark one.
    BPE tokenizers (Llama, Qwen, GPT) split digits singly and merge common words, so this is
    usually 0-30% above the true count for schemas, SQL and English.
    """
    if not text:
        return 0
    pieces = 0
    for piece in _PIECE.findall(text):
        pieces += 1 + (len(piece) - 1) // 8 if piece[0].isalpha() else 1
    return max(pieces, math.ceil(len(text) / CHARS_PER_TOKEN))


def tiktoken_counter() -> Callable[[str], int] | None:
    """tiktoken's ``o200k_base`` counter, only when its BPE file is in the local cache."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") \
        or str(Path(tempfile.gettempdir()) / "data-gym-cache")
    url = f"https://openaipublic.blob.core.windows.net/encodings/{TIKTOKEN_ENCODING}.tiktoken"
    cached = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 - tiktoken's key
    if not cached.is_file():
        return None
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(TIKTOKEN_ENCODING)
    except Exception as exc:  # a corrupt cache: never fall through to a download
        log.debug("tiktoken unusable: %s", exc)
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


class TokenCounter:
    """Counts prompt tokens: the server's ``/tokenize``, cached tiktoken, or an estimate."""

    def __init__(
        self,
        tokenize_url: str | None = None,  # e.g. http://127.0.0.1:8000/tokenize
        model: str | None = None,
        api_key: str | None = None,
        *,
        payload: Callable[[str], dict[str, Any]] | None = None,
        timeout: float = 5.0,
    ) -> None:
        # credentials in the URL become basic auth: httpx logs every request's URL (issue 11)
        self.tokenize_url, self._auth = _split_credentials(tokenize_url)
        # the request body for a text (vLLM: prompt + model; llama.cpp: content)
        self.payload = payload
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self._cache: dict[str, int] = {}
        self._estimates: dict[str, int] = {}
        self._server_ok = tokenize_url is not None
        self._tiktoken = tiktoken_counter()
        self.local_method = "tiktoken" if self._tiktoken is not None else "approx"
        self.method = self.local_method  # what the last count used: server, tiktoken, approx
        self.scale = 1.0  # raised when the server said a prompt was longer than estimated

    def estimate(self, text: str) -> int:
        """A local count (tiktoken when cached, else the approximation): never a request."""
        if len(text) < 256:
            n = self._local(text)
        else:
            key = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a cache key
            cached = self._estimates.get(key)
            if cached is None:
                if len(self._estimates) > 4096:
                    self._estimates.clear()
                cached = self._estimates[key] = self._local(text)
            n = cached
        return n if self.scale == 1.0 else math.ceil(n * self.scale)

    def _local(self, text: str) -> int:
        return self._tiktoken(text) if self._tiktoken is not None else approx_tokens(text)

    async def count(self, text: str) -> int:
        """The best count available; results are cached by text."""
        key = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a cache key
        if key in self._cache:
            return self._cache[key]
        n: int | None = None
        if self._server_ok:
            n = await self._server_count(text)
        if n is None:
            n = self.estimate(text)
            self.method = self.local_method
        else:
            self.method = "server"
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = n
        return n

    async def _server_count(self, text: str) -> int | None:
        import httpx

        assert self.tokenize_url is not None
        body: dict[str, Any]
        if self.payload is not None:
            body = self.payload(text)
        else:
            body = {"prompt": text}
            if self.model:
                body["model"] = self.model
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        auth: Any = httpx.BasicAuth(*self._auth) if self._auth and not self.api_key \
            else httpx.USE_CLIENT_DEFAULT
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.post(self.tokenize_url, json=body, headers=headers,
                                         auth=auth)
            if resp.status_code in (404, 405, 501):
                self._server_ok = False  # no tokenizer served: never ask again
                return None
            resp.raise_for_status()
            data = resp.json()
            count = data.get("count") if isinstance(data, dict) else None
            if not isinstance(count, int):
                tokens = data.get("tokens") if isinstance(data, dict) else None
                count = len(tokens) if isinstance(tokens, list) else None
            return count
        except (httpx.HTTPError, ValueError) as exc:
            # httpx names the URL, credentials included: scrub it (issue 11)
            log.debug("/tokenize failed, estimating locally: %s", scrub(str(exc)))
            return None


def _split_credentials(url: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """(``url`` without user name and password, those two for basic auth or None)."""
    if not url:
        return url, None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), auth


@dataclass(frozen=True, slots=True)
class SchemaFit:
    """The schema text chosen for one prompt, and how it was chosen."""

    text: str
    tables: tuple[str, ...]  # the tables shown
    total_tables: int
    prompt_tokens: int  # the (estimated or exact) tokens of the whole prompt
    budget: int  # tokens the prompt may take
    trimmed: bool
    method: str

    @property
    def note(self) -> str:
        if not self.trimmed:
            return ""
        return (f"{len(self.tables)} of {self.total_tables} tables shown: those most relevant "
                "to the question")


def input_budget(max_model_len: int, max_tokens: int, retries: int) -> int:
    """Prompt tokens allowed: the window less the answer, the repair turns and a margin."""
    reserve = TEMPLATE_OVERHEAD * 2 + retries * (REPAIR_RESERVE + min(max_tokens, 256))
    margin = max(32, max_model_len // 50)
    return max(256, max_model_len - max_tokens - reserve - margin)


async def fit_schema(
    snapshot: SchemaSnapshot,
    question: str,
    render_prompt: Callable[[str], str],
    counter: TokenCounter,
    budget: int,
    *,
    semantic: SemanticLayer | None = None,
    dynamic: str = "",
    schema_tokens: int | None = None,
) -> SchemaFit:
    """Choose the schema text for a prompt of at most ``budget`` tokens.

    ``render_prompt(schema_text)`` renders the static part of the prompt (schema first, for
    prefix caching); ``dynamic`` is the rest (question, history), estimated locally.
    ``schema_tokens`` bounds the schema text itself, by the local (high) estimate, however
    large the model's window (``TABLECHAT_PROMPT_SCHEMA_TOKENS``, issue 11).
    """
    full = snapshot.to_prompt()
    names = list(snapshot.tables)
    dynamic_tokens = counter.estimate(dynamic) + TEMPLATE_OVERHEAD
    static_full = render_prompt(full)
    estimated = counter.estimate(static_full) + dynamic_tokens

    def capped(text: str) -> bool:
        return schema_tokens is None or counter.estimate(text) <= schema_tokens

    whole = capped(full)
    if estimated <= budget and whole:  # fits even by the (high) local estimate: no request
        return SchemaFit(full, tuple(names), len(names), estimated, budget, False,
                         counter.local_method)
    exact = await counter.count(static_full)
    if exact + dynamic_tokens <= budget and whole:
        return SchemaFit(full, tuple(names), len(names), exact + dynamic_tokens, budget, False,
                         counter.method)
    # Trim: per-table estimates, calibrated by the exact count of the full static prompt.
    ratio = exact / max(1, counter.estimate(static_full))
    fixed = await counter.count(render_prompt("")) + dynamic_tokens
    room = budget - fixed
    relevant, rest = rank_tables(snapshot, question, semantic)
    chosen: list[str] = []
    used = raw = 0
    raw_room = (schema_tokens if schema_tokens is not None else budget) - 24  # 24: the note

    def take(candidates: list[str]) -> None:
        nonlocal used, raw
        for name in candidates:
            local = counter.estimate(render_table(snapshot.tables[name])) + 2
            cost = math.ceil((local - 2) * ratio) + 2
            # else a smaller, less relevant table may still fit
            if used + cost <= room and raw + local <= raw_room:
                chosen.append(name)
                used += cost
                raw += local

    take(relevant)
    if len(chosen) < MIN_TABLES:  # nothing (or little) matched the question: fill the window
        take(rest)
    note = f"-- {{shown}} of {len(names)} tables shown: those most relevant to the question"

    def schema_text() -> str:
        body = snapshot.to_prompt(chosen) if chosen else "(the schema is too large to show)"
        return note.format(shown=len(chosen)) + "\n\n" + body

    # verify; drop the least relevant tables while the count says it does not fit
    text = schema_text()
    total = await counter.count(render_prompt(text)) + dynamic_tokens
    for _ in range(8):
        if (total <= budget and capped(text)) or not chosen:
            break
        del chosen[-max(1, len(chosen) // 10):]
        text = schema_text()
        total = await counter.count(render_prompt(text)) + dynamic_tokens
    return SchemaFit(text, tuple(chosen), len(names), total, budget, True, counter.method)


__all__ = [
    "SchemaFit",
    "TokenCounter",
    "approx_tokens",
    "fit_schema",
    "input_budget",
    "tiktoken_counter",
]
