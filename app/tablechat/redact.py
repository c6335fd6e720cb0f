"""Keep secrets and server paths inside the process (issue 11, class 7 and 11).

Everything that leaves the process — health replies, events, answer texts, error messages and
logs — passes URLs through :func:`redact_url` and free text through :func:`scrub`. An LLM URL
may carry credentials (``http://user:key@host/v1``, ``?api_key=...``); a DuckDB error may name
``/root/.duckdb/stored_secrets`` or the temp directory.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# Query parameters whose values are secrets, compared in lower case.
_SECRET_PARAMS = frozenset(
    {"key", "api_key", "apikey", "api-key", "token", "access_token", "auth", "password",
     "passwd", "pwd", "secret", "sig", "signature", "x-api-key"}
)

# Credentials inside any URL written in free text: scheme://user:password@host
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
# Absolute POSIX paths of two or more segments, and Windows drive paths.
_PATH = re.compile(r"(?<![\w:/.])(?:/[\w.\-~]+){2,}/?|\b[A-Za-z]:\\[^\s'\"]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact_url(url: str | None) -> str | None:
    """``url`` without user name, password or secret query parameters (None stays None).

    Anything that does not parse as a URL is returned as the scrubbed text, never verbatim.
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return scrub(url)
    if not parts.scheme or host is None:
        return scrub(url)
    netloc = host if ":" not in host else f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str) -> str:
    """``text`` with URL credentials, bearer tokens and absolute server paths replaced."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)
    return _PATH.sub("<path>", text)
