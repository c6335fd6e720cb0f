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
    sample_values: int = Field(
        5, ge=0, description="Distinct sample values shown per text column in the schema context."
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
    concurrency_limit: int = Field(
        16, gt=0, description="Questions the web UI runs at once (Gradio's per-event limit)."
    )
    auth: str | None = Field(
        None,
        description="user:password pairs (comma-separated) required by the web UI. Empty: open.",
        repr=False,
    )
    api_keys: str | None = Field(
        None,
        description="Comma-separated bearer tokens required by the REST and OpenAI-compatible "
        "API. Empty: open.",
        repr=False,
    )
    upload_max_mb: float = Field(50.0, gt=0, description="Largest upload accepted, in MB.")
    max_question_chars: int = Field(
        4000, gt=0, description="Longest question accepted, in characters."
    )

    @field_validator(
        "database",
        "llm_url",
        "llm_model",
        "llm_api_key",
        "semantic_layer",
        "auth",
        "api_keys",
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
