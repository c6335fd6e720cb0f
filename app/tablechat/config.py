"""The one settings table.

Every setting has a help string. Environment variables are ``TABLECHAT_<NAME>``; the CLI, the
server and ``docs/settings.md`` read this same table (a test checks every setting is documented).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TABLECHAT_", extra="forbid", validate_assignment=True
    )

    # --- database ---
    database: str | None = Field(
        None,
        description="DuckDB file path or SQLAlchemy URL to query. Empty: the demo database "
        "(built on first use).",
    )
    query_timeout: float = Field(
        30.0, gt=0, description="Seconds a query may run before it is cancelled."
    )
    max_rows: int = Field(
        1000, gt=0, description="Most rows a query returns; a larger LIMIT is lowered to this."
    )
    export_max_rows: int = Field(
        1_000_000, gt=0, description="Most rows a CSV export of a whole result writes (the "
        "UI's Export all rows and `tablechat ask --csv` run a query cut at TABLECHAT_MAX_ROWS "
        "again, up to this).",
    )
    memory_limit: str = Field("1GB", description="DuckDB memory limit for the query sandbox.")
    threads: int = Field(2, gt=0, description="DuckDB worker threads for the query sandbox.")
    max_temp_directory_size: str = Field(
        "1GB", description="DuckDB spill-to-disk cap for the query sandbox."
    )
    result_max_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Most bytes one query result may hold (all its "
        "cells together); fetching stops there and the result says it was cut.",
    )
    result_max_cell_bytes: int = Field(
        64 * 1024, gt=0, description="Most bytes one cell of a result may hold; a longer one "
        "is cut and ends with '…'. The guard also refuses SQL that would build a larger value "
        "(repeat, lpad, range as a list, ...).",
    )
    schemas: str = Field(
        "", description="Comma-separated schemas to read tables from (PostgreSQL and other "
        "SQLAlchemy databases). The first is the default: its tables go by their own names "
        "and search_path is pinned to it; the others' as schema.table. Empty: the "
        "connection's default schema only. The guard refuses tables of any other schema.",
    )
    sample_values: int = Field(
        5, ge=0, description="Distinct sample values shown per text column in the schema context."
    )
    # --- SQL guard bounds (issue 11: checked before parsing deep) ---
    max_sql_chars: int = Field(
        20_000, gt=0, description="Longest SQL statement the guard reads, in characters; "
        "longer ones are refused before tokenizing.",
    )
    max_sql_tokens: int = Field(
        4_000, gt=0, description="Most tokens a SQL statement may hold; checked before parsing.",
    )
    max_sql_nodes: int = Field(
        4_000, gt=0, description="Most syntax-tree nodes a SQL statement may have; checked "
        "before the column check (qualify).",
    )
    max_sql_depth: int = Field(
        100, gt=0, description="Deepest nesting of a SQL statement (brackets and CASE before "
        "parsing, syntax-tree depth after).",
    )
    max_series_rows: int = Field(
        1_000_000, gt=0, description="Most values range()/generate_series() may yield; they "
        "are allowed with literal bounds only.",
    )
    semantic_layer: str | None = Field(
        None,
        description="Path of a semantic layer YAML (descriptions, synonyms, metrics). Empty: "
        "the demo's for the demo database, none otherwise.",
    )

    # --- LLM ---
    llm_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible server, e.g. a vLLM server at "
        "http://127.0.0.1:8000/v1, or gguf:/path/model.gguf to run a GGUF model in-process "
        "(needs tablechat[local]). Empty: no LLM (the offline engine answers).",
    )
    llm_model: str | None = Field(
        None, description="Model name to request. Empty: the first model the server lists."
    )
    llm_api_key: str | None = Field(
        None, description="API key for the LLM server (vLLM's --api-key).", repr=False
    )
    llm_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one LLM reply.")
    llm_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a connection to the LLM server."
    )
    llm_max_retries: int = Field(
        2, ge=0, description="HTTP retries (with backoff) for connection errors, 429 and 5xx."
    )
    llm_temperature: float = Field(0.0, ge=0, description="Sampling temperature for SQL writing.")
    llm_max_tokens: int = Field(512, gt=0, description="Most tokens one LLM reply may hold.")
    llm_sql_max_tokens: int = Field(
        128,
        gt=0,
        description="Most tokens a SQL reply may hold (at most llm_max_tokens): a query, not "
        "prose; a small model under the schema's grammar otherwise repeats itself up to the "
        "reply limit, slowly on a CPU. Raise it for a large model that writes long CTEs.",
    )
    llm_sql_grammar: bool = Field(
        True,
        description="On llama.cpp and embedded GGUF models: constrain the SQL reply with the "
        "schema's grammar and send the compact prompt, both shaped for small models (about "
        "135M-1.5B: short select lists, no subquery in WHERE, values only from the question). "
        "Turn it off for a larger model (e.g. a 7B coder), which then gets the full prompt and "
        "a JSON-constrained reply. vLLM always uses JSON.",
    )
    llm_answer_max_tokens: int = Field(
        80,
        gt=0,
        description="Most tokens the answer sentence may hold (at most llm_max_tokens): one or "
        "two sentences.",
    )
    llm_structured_output: bool = Field(
        True,
        description="Ask vLLM for constrained decoding (structured_outputs) of SQL; falls back "
        "to free text when the server rejects it.",
    )
    max_model_len: int | None = Field(
        None,
        description="Context length of the model in tokens. Empty: read from the server, else "
        "8192.",
    )
    max_retries: int = Field(
        2, ge=0, description="Times a guard or execution error is fed back to the LLM to repair."
    )

    # --- server / UI ---
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(7860, gt=0, lt=65536, description="Port the web server listens on.")
    workers: int = Field(
        1, gt=0, le=64, description="Processes `tablechat serve` runs behind its one port "
        "(uvicorn's process manager). Raise it, up to one per core, when the server's own "
        "Python work per question (prompts, guard, parsing, JSON) limits throughput: one "
        "process is bound by one core. Any process answers any /api or /v1 request (sessions "
        "in TABLECHAT_STORE, files in TABLECHAT_SHARED_DIR); with more than one, the web UI is "
        "not served (Gradio keeps a tab's queue and state in one process): run it as a server "
        "of its own with one worker (docs/web.md).",
    )
    ui: bool = Field(
        True, description="Serve the Gradio web UI at / (off: the REST and OpenAI-compatible "
        "API, /healthz and /metrics only). `tablechat serve --workers N` turns it off for N > 1.",
    )
    shared_dir: str | None = Field(
        None, description="Directory every server process and replica shares (a volume in a "
        "deployment): API sessions' uploaded files, re-read by whichever process serves the "
        "session, and CSV exports. Empty: shared/ in the data directory (data/ in a checkout).",
    )
    concurrency_limit: int = Field(
        16, gt=0, description="Questions the web UI runs at once (Gradio's per-event limit)."
    )
    auth: str | None = Field(
        None,
        description="user:password pairs (comma-separated) required by the web UI. Empty: open.",
        repr=False,
    )
    login_hours: float = Field(
        168.0, gt=0, description="Hours a web UI login (TABLECHAT_AUTH) stays valid; logins "
        "are kept in the store (a hash of each token), so every server process honours them.",
    )
    api_keys: str | None = Field(
        None,
        description="Comma-separated bearer tokens required by the REST and OpenAI-compatible "
        "API. Empty: open.",
        repr=False,
    )
    upload_max_mb: float = Field(50.0, gt=0, description="Largest upload accepted, in MB.")
    upload_max_columns: int = Field(
        500, gt=0, description="Most columns an uploaded file may have."
    )
    upload_max_cells: int = Field(
        10_000_000, gt=0, description="Most cells (rows × columns) an uploaded file may hold "
        "once decompressed; checked from the file's metadata or a streaming count before "
        "anything is loaded.",
    )
    upload_max_memory_mb: float = Field(
        256.0, gt=0, description="Most memory, in MB, an uploaded table may take once "
        "decompressed (estimated before it is loaded from its rows, column types and text "
        "lengths).",
    )
    max_question_chars: int = Field(
        4000, gt=0, description="Longest question accepted, in characters."
    )
    ui_session_disk_mb: float = Field(
        100.0, gt=0, description="Most MB of result files (CSV downloads, exports) the web UI "
        "keeps for one browser session; its oldest go first, and a file larger than this is "
        "not kept at all.",
    )
    ui_disk_mb: float = Field(
        1000.0, gt=0, description="Most MB the web UI keeps on disk for all sessions together: "
        "result files and the uploads of open sessions; the oldest go first.",
    )
    ui_file_max_age: float = Field(
        3600.0, gt=0, description="Seconds the web UI keeps a result file or an upload; Gradio "
        "deletes its own cached files of that age too (its delete_cache).",
    )
    ui_session_idle_minutes: float = Field(
        60.0, gt=0, description="Minutes a web UI session (a browser tab, or any client of the "
        "Gradio events) lives without an event; then its uploads, result files and state are "
        "dropped, whether or not the tab said it closed.",
    )

    # --- what a prompt may hold (issue 11, class 9: data is not instructions) ---
    prompt_name_chars: int = Field(
        64, gt=0, description="Longest table or column name shown to the model; a longer name, "
        "or one holding control characters or markup, is left out of the prompt (the guard "
        "still knows it).",
    )
    prompt_description_chars: int = Field(
        300, gt=0, description="Characters of one table or column comment/description in the "
        "schema prompt (newlines folded, markup defused).",
    )
    prompt_sample_chars: int = Field(
        80, gt=0, description="Characters of one sample value in the schema prompt.",
    )
    prompt_schema_tokens: int = Field(
        6000, gt=0, description="Tokens the schema and business definitions may take in the "
        "SQL prompt; the tables most relevant to the question are kept.",
    )
    prompt_history_messages: int = Field(
        12, ge=0, description="Earlier chat messages (user and assistant) a prompt may hold.",
    )
    prompt_history_tokens: int = Field(
        1500, ge=0, description="Tokens the earlier messages may take in a prompt; the oldest "
        "are dropped first.",
    )
    prompt_result_rows: int = Field(
        20, gt=0, description="Result rows shown to the model when it writes the answer.",
    )
    prompt_cell_chars: int = Field(
        100, gt=0, description="Characters of one result cell shown to the model (newlines "
        "folded, code fences, Markdown links/images and HTML defused).",
    )
    prompt_result_tokens: int = Field(
        2000, gt=0, description="Tokens the result table may take in the answer prompt.",
    )

    # --- web layer limits (docs/security.md) ---
    health_ttl: float = Field(
        10.0, ge=0, description="Seconds /healthz and /api/health reuse their last check of "
        "the database and the LLM server; at most one check runs at a time.",
    )
    auth_max_failures: int = Field(
        10, gt=0, description="Failed logins or API credentials allowed per client address, "
        "and per user name, within TABLECHAT_AUTH_FAILURE_WINDOW; more are answered 429.",
    )
    auth_failure_window: float = Field(
        300.0, gt=0, description="Seconds a failed login or API credential counts against its "
        "client address and user name.",
    )
    penalty_refusals: int = Field(
        10, ge=0, description="Refused requests (a malformed or oversized body, wrong "
        "credentials, a file or URL the client may not name: HTTP 400, 401, 403, 413, 422 ...) "
        "allowed per client address within TABLECHAT_PENALTY_WINDOW; past that every request "
        "from the address is answered 429 before any work. 0 turns the penalty box off.",
    )
    penalty_window: float = Field(
        60.0, gt=0, description="Seconds a refused request counts against its client address "
        "(the penalty box lets a client out once its refusals are this old).",
    )
    penalty_delay: float = Field(
        1.0, ge=0, le=30, description="Seconds the penalty box holds each 429 before sending "
        "it (at most 4 at once per address), so a client that ignores Retry-After cannot turn "
        "cheap refusals into a flood.",
    )
    max_body_kb: int = Field(
        1024, gt=0, description="Largest request body /api and /v1 accept, in KB (uploads: "
        "TABLECHAT_UPLOAD_MAX_MB plus 1 MB); larger bodies are answered 413.",
    )
    session_idle_minutes: float = Field(
        30.0, gt=0, description="Minutes an API session (POST /api/sessions) lives without "
        "use; then its uploads are dropped.",
    )
    max_api_sessions: int = Field(
        1000, gt=0, description="API sessions open at once; more are answered 429.",
    )

    # --- store, feedback and memory (docs/feedback.md) ---
    store: str | None = Field(
        None,
        description="SQLAlchemy URL of the store that keeps feedback, verified examples and "
        "sessions (sqlite:///path or postgresql://...). Never the queried database. Empty: "
        "tablechat-store.sqlite in the data directory (data/ in a checkout).",
        repr=False,
    )
    feedback_max_chars: int = Field(
        2000, gt=0, le=100_000, description="Longest feedback comment or corrected SQL kept, "
        "in characters (longer comments are cut, longer SQL refused)."
    )
    verifiers: str = Field(
        "*",
        description="Who may verify a question→SQL pair by voting an answer good or saving a "
        "correction: `*` anyone, `named` anyone with a principal (a signed-in user or API "
        "key), `none` nobody (examples then come only from `tablechat examples add`), or a "
        "comma-separated list of principals.",
    )
    memory: bool = Field(
        True, description="Use verified examples: the offline engine answers a question that "
        "matches one (its values substituted).",
    )
    memory_min_score: float = Field(
        0.5, gt=0, le=1, description="How close a question must be to a verified example "
        "(0-1, word overlap after values are set aside) for the offline engine to reuse its "
        "SQL.",
    )

    @field_validator(
        "database",
        "llm_url",
        "llm_model",
        "llm_api_key",
        "semantic_layer",
        "auth",
        "api_keys",
        "store",
        "shared_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and keyword overrides; bad values: ConfigurationError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def settings_table() -> list[tuple[str, str, str]]:
    """(env var, default, help) for every setting: what the docs and ``--help`` show."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        rows.append((f"TABLECHAT_{name.upper()}", default, field.description or ""))
    return rows


def settings_markdown() -> str:
    """``docs/settings.md``: regenerate with ``python -m tablechat.config > docs/settings.md``."""
    lines = [
        "# Settings",
        "",
        "Every setting is an environment variable (`TABLECHAT_<NAME>`) or a keyword argument of",
        "`tablechat.connect()` (`<name>` in lower case). Generated from `app/tablechat/config.py`",
        "by `python -m tablechat.config > docs/settings.md`; a test keeps the two equal.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for env, default, help_text in settings_table():
        lines.append(f"| `{env}` | {f'`{default}`' if default else '(empty)'} | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
