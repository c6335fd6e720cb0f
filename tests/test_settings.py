"""The one settings table: environment variables, validation, and documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

import tablechat
from tablechat.cli import build_parser
from tablechat.config import Settings, load_settings, settings_markdown, settings_table

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = [
    "TABLECHAT_DATABASE",
    "TABLECHAT_LLM_URL",
    "TABLECHAT_LLM_MODEL",
    "TABLECHAT_LLM_API_KEY",
    "TABLECHAT_QUERY_TIMEOUT",
    "TABLECHAT_MAX_ROWS",
]


def test_required_settings_exist() -> None:
    names = [env for env, _, _ in settings_table()]
    for name in REQUIRED:
        assert name in names


def test_every_setting_has_help() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 15, name


def test_every_setting_is_documented_and_the_doc_is_current() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_markdown(), "run: python -m tablechat.config > docs/settings.md"
    for env, _, _ in settings_table():
        assert f"`{env}`" in doc


def test_cli_help_lists_every_setting() -> None:
    text = build_parser().format_help()
    for env, _, _ in settings_table():
        assert env in text


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLECHAT_QUERY_TIMEOUT", "7.5")
    monkeypatch.setenv("TABLECHAT_MAX_ROWS", "42")
    monkeypatch.setenv("TABLECHAT_LLM_URL", "")
    s = load_settings()
    assert s.query_timeout == 7.5 and s.max_rows == 42 and s.llm_url is None
    assert load_settings(max_rows=3).max_rows == 3  # keyword beats environment


def test_defaults() -> None:
    s = Settings()
    assert s.query_timeout == 30 and s.max_retries == 2 and s.concurrency_limit >= 16


@pytest.mark.parametrize(
    "bad", [{"query_timeout": -1}, {"max_rows": 0}, {"port": 70000}, {"no_such_setting": 1}]
)
def test_bad_settings_are_configuration_errors(bad: dict) -> None:
    with pytest.raises(tablechat.ConfigurationError):
        load_settings(**bad)


def test_bad_environment_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLECHAT_MAX_ROWS", "many")
    with pytest.raises(tablechat.ConfigurationError, match="max_rows"):
        load_settings()


def test_secrets_are_not_in_repr() -> None:
    s = Settings(llm_api_key="sk-secret", api_keys="tok", auth="u:p")
    assert "sk-secret" not in repr(s) and "u:p" not in repr(s)
