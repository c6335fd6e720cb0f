"""Issue 11, classes 2 and 11 (the guard's side): statements are bounded in characters, tokens,
syntax nodes and nesting before the guard parses deep, and a too-deep statement is a clear
refusal, not ``internal error: RecursionError`` with thousands of log lines.

On main the 45,000-``UNION ALL`` statement (1.5 MB) cost the guard 3.5 s and 371 MB, and
3,000 nested parentheses raised RecursionError.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tablechat
from tablechat import InvalidSQLError, UnsafeSQLError
from tablechat import events as ev
from tablechat.sql.guard import SQLGuard
from tablechat.sql.limits import SQLLimits
from tests.support.fake_vllm_client import FakeVLLM

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {"regions": {"id": "INTEGER", "name": "VARCHAR"}}
UNIONS = "SELECT id FROM regions" + " UNION ALL SELECT id FROM regions" * 45_000
PARENS = "SELECT " + "(" * 3000 + "1" + ")" * 3000

# Runs the guard alone in a fresh interpreter and reports its peak RSS (VmHWM) before and
# after checking the statement: the high-water mark is what the kernel's OOM killer sees.
_MEASURE = """
import json, sys
from tablechat.errors import TableChatError
from tablechat.sql.guard import SQLGuard

def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

guard = SQLGuard({"regions": {"id": "INTEGER", "name": "VARCHAR"}})
guard.check("SELECT id FROM regions UNION ALL SELECT id FROM regions")
sql = "SELECT id FROM regions" + " UNION ALL SELECT id FROM regions" * int(sys.argv[1])
before = peak()
try:
    guard.check(sql)
    outcome = "passed"
except TableChatError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
print(json.dumps({"outcome": outcome, "before": before, "after": peak(), "chars": len(sql)}))
"""


def _measure(unions: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app")}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(unions)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_45000_union_statement_is_refused_in_little_memory() -> None:
    result = _measure(45_000)
    assert result["chars"] == len(UNIONS) > 1_400_000
    assert str(result["outcome"]).startswith("UnsafeSQLError: statement too long")
    grown = int(str(result["after"])) - int(str(result["before"]))
    # on main the guard's own peak grew by ~370 MB on this statement
    assert grown < 16 * 1024 * 1024, f"guard peak RSS grew {grown / 2**20:.0f} MB"


@pytest.fixture()
def guard() -> SQLGuard:
    return SQLGuard(SCHEMA)


def test_default_limits_refuse_each_kind_of_size(guard: SQLGuard) -> None:
    with pytest.raises(UnsafeSQLError, match="too long: 1,485,022 characters"):
        guard.check(UNIONS)
    # under the character bound, over the token bound
    with pytest.raises(UnsafeSQLError, match="tokens"):
        guard.check("SELECT 1" + ",1" * 5000)
    # few tokens, deep: a chain of additions nests the syntax tree with no bracket at all
    with pytest.raises(UnsafeSQLError, match="nested too deeply"):
        guard.check("SELECT " + "+".join(["1"] * 300))


def test_node_and_depth_bounds_are_checked_before_qualify(
    guard: SQLGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SQLGuard(SCHEMA, limits=SQLLimits(max_nodes=40, max_depth=8))
    monkeypatch.setattr(small, "_qualify", lambda tree: pytest.fail("qualify ran"))
    wide = "SELECT " + ", ".join(f"id + {i}" for i in range(20)) + " FROM regions"
    with pytest.raises(UnsafeSQLError, match="more than 40 syntax nodes"):
        small.check(wide)
    with pytest.raises(UnsafeSQLError, match="at most 8 levels"):
        small.check("SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT id FROM regions)))")
    assert guard.check(wide).sql  # the defaults let an ordinary query through


def test_limits_are_settings(demo_db: Path) -> None:
    chat = tablechat.connect(demo_db, max_sql_chars=60, max_sql_tokens=12)
    try:
        assert chat.run_sql("SELECT count(*) AS n FROM regions").rows
        with pytest.raises(UnsafeSQLError, match="at most 60"):
            chat.run_sql("SELECT count(*) AS n FROM regions WHERE name <> 'x' AND id > 0 "
                         "AND id < 1000")
        with pytest.raises(UnsafeSQLError, match="at most 12"):
            chat.run_sql("SELECT id, name, id + 1, id * 2 FROM regions")
    finally:
        chat.close()


# --- class 11: deep nesting is a clear refusal, with no log flood -------------------------------
DEEP = [
    PARENS,
    "SELECT " + "(" * 500 + "1" + ")" * 500,  # under the token bound
    "SELECT " + "NOT " * 900 + "TRUE",  # no bracket: the parser recurses on NOT itself
    "SELECT " + "- " * 900 + "1",
    "SELECT " + "CASE WHEN TRUE THEN " * 400 + "1" + " END" * 400,
    "SELECT * FROM " + "(SELECT * FROM " * 300 + "regions" + ") t" * 300,
    "SELECT " + "abs(" * 600 + "1" + ")" * 600,
]


@pytest.mark.parametrize("sql", DEEP, ids=["3000-parens", "500-parens", "not", "neg", "case",
                                           "subqueries", "calls"])
def test_deep_nesting_is_refused_clearly_and_quietly(
    guard: SQLGuard, caplog: pytest.LogCaptureFixture, sql: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises((UnsafeSQLError, InvalidSQLError)) as info:
        guard.check(sql)
    assert "Recursion" not in str(info.value)
    assert "\n" not in str(info.value)
    assert len(caplog.records) <= 3


@pytest.fixture()
def llm_chat(demo_db: Path, fake_vllm: FakeVLLM) -> Iterator[tablechat.TableChat]:
    chat = tablechat.connect(demo_db, llm=fake_vllm.url, llm_max_retries=0, max_retries=1)
    yield chat
    chat.close()


def test_a_model_writing_3000_parentheses_gets_a_refusal_not_an_internal_error(
    llm_chat: tablechat.TableChat, fake_vllm: FakeVLLM, caplog: pytest.LogCaptureFixture
) -> None:
    fake_vllm.script(rules=[
        {"match": "Reply with one word: data or chat", "on": "prompt",
         "reply": {"content": "data"}},
        {"match": "## Database schema", "on": "prompt",
         "reply": {"content": json.dumps({"sql": PARENS})}},
    ], default={"content": "ok"})
    caplog.set_level(logging.DEBUG)
    events = list(_events(llm_chat, "how many regions?"))
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert errors and all("internal error" not in e.message for e in errors)
    assert all(e.error_type != "InternalError" for e in errors)
    # on main: ~11,000 lines of traceback per request. The HTTP client's own DEBUG chatter
    # (a fixed few lines per request, more since every call streams) is not the flood
    ours = [r for r in caplog.records if not r.name.startswith(("httpcore", "httpx", "asyncio"))]
    assert len(ours) < 50
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)


def _events(chat: tablechat.TableChat, question: str) -> list[ev.Event]:
    import asyncio

    async def collect() -> list[ev.Event]:
        return [e async for e in chat.stream(question)]

    return asyncio.run(collect())
