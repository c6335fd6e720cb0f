"""redact_url / scrub: what leaves the process carries no credentials or server paths."""

from __future__ import annotations

import pytest

from tablechat.redact import redact_url, scrub


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:sk-123@127.0.0.1:8000/v1", "http://***@127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1?api_key=abc&x=1", "http://127.0.0.1:8000/v1?api_key=***&x=1"),
        ("https://h.example/v1?token=t0k#frag", "https://h.example/v1?token=***"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (None, None),
    ],
)
def test_redact_url_drops_credentials(url: str | None, expected: str | None) -> None:
    assert redact_url(url) == expected


def test_redact_url_never_returns_unparsable_text_verbatim() -> None:
    out = redact_url("not a url but a:secret@ and /etc/passwd/x")
    assert out is not None and "/etc/passwd" not in out


def test_scrub_removes_paths_tokens_and_userinfo() -> None:
    text = ("IO Error: cannot open /root/.duckdb/stored_secrets/x; see http://u:p@h:1/v1/chat, "
            "Authorization: Bearer abcdefghijkl")
    out = scrub(text)
    assert "/root" not in out and "u:p@" not in out and "abcdefghijkl" not in out
    assert "http://***@h:1/v1/chat" in out


def test_scrub_keeps_ordinary_text() -> None:
    assert scrub("revenue 2024/01 by region: 12.5%") == "revenue 2024/01 by region: 12.5%"
