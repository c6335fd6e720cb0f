"""The schema grammar (agent/grammar.py) without a model: what it names, how it quotes, that
its text loads (checked by tests/support/gbnf.py as llama.cpp's parser reads GBNF), and the
request body per server dialect. tests/test_grammar_llama.py runs it in llama.cpp itself."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

import tablechat
from tablechat.agent.grammar import (
    MAX_BRANCHES,
    MAX_TABLES,
    grammar_body,
    sql_grammar,
    sql_name,
)
from tablechat.errors import ConfigurationError
from tablechat.sql.functions import allowed_names
from tablechat.sql.schema import Column, SchemaSnapshot, TableInfo
from tests.support import gbnf
from tests.support.gbnf_sample import sample


@pytest.fixture(scope="module")
def demo_snapshot(demo_db: Path) -> SchemaSnapshot:
    with tablechat.connect(demo_db) as tc:
        return tc.snapshot()


def _from_tables(text: str, dialect: str = "duckdb") -> set[str]:
    """The tables a FROM clause reads (its joins too)."""
    tree = sqlglot.parse_one(f"SELECT 1 FROM {text}", read=dialect)
    return {t.sql(dialect=dialect) for t in tree.find_all(exp.Table)}


def _names(rules: dict[str, list[tuple[str, str]]], dialect: str = "duckdb"
           ) -> tuple[set[str], set[str]]:
    tables = set().union(*(_from_tables(lit, dialect) for r in rules if r.startswith("from-")
                           for lit in gbnf.literals(rules, r)))
    columns = set().union(*(gbnf.literals(rules, r) for r in rules if r.startswith("cols-")))
    return tables, columns


def _branches(rules: dict[str, list[tuple[str, str]]]) -> dict[frozenset[str], str]:
    """Each branch's tables → its suffix (``-b3``)."""
    return {frozenset(_from_tables(next(iter(gbnf.literals(rules, r))))): r[len("from"):]
            for r in rules if r.startswith("from-")}


def test_identifiers_come_only_from_the_tables_given(demo_snapshot: SchemaSnapshot) -> None:
    rules = gbnf.check(sql_grammar(demo_snapshot, ["customers", "regions"]))
    tables, columns = _names(rules)
    assert tables == {"customers", "regions"}
    assert columns == {
        c.name for t in ("customers", "regions") for c in demo_snapshot.tables[t].columns}
    branches = _branches(rules)
    assert set(branches) == {frozenset({"customers"}), frozenset({"regions"}),
                             frozenset({"customers", "regions"})}
    column = re.compile(gbnf.regex(rules, "col" + branches[frozenset({"customers"})]))
    assert column.fullmatch("customers.segment") and column.fullmatch("region_id")
    # a column of another table, a column the schema lacks, a table not given, an alias: none
    for wrong in ("customers.cost", "customer_name", "orders.id", "t1.name", "c.region_id",
                  "regions.name"):
        assert not column.fullmatch(wrong), wrong


def test_a_join_reads_its_tables_on_their_keys_and_names_only_their_columns(
        demo_snapshot: SchemaSnapshot) -> None:
    rules = gbnf.check(sql_grammar(demo_snapshot, ["orders", "customers", "regions"]))
    branches = _branches(rules)
    pair = branches[frozenset({"orders", "customers"})]
    assert gbnf.literals(rules, "from" + pair) == {
        "customers JOIN orders ON orders.customer_id = customers.id",
        "orders JOIN customers ON customers.id = orders.customer_id"}
    column = re.compile(gbnf.regex(rules, "col" + pair))
    for right in ("orders.status", "customers.name", "segment", "order_date"):
        assert column.fullmatch(right), right
    # "id" and "region_id"... "id" is in both tables: qualified only; regions is not read
    for wrong in ("id", "regions.name", "o.status", "orders.region_id"):
        assert not column.fullmatch(wrong), wrong
    # orders and regions share no key: no branch reads them without customers
    assert frozenset({"orders", "regions"}) not in branches
    assert frozenset({"orders", "customers", "regions"}) in branches


def test_every_table_without_a_subset(demo_snapshot: SchemaSnapshot) -> None:
    rules = gbnf.check(sql_grammar(demo_snapshot))
    tables, columns = _names(rules)
    assert tables == set(demo_snapshot.tables)
    assert columns == {c.name for t in demo_snapshot.tables.values() for c in t.columns}
    # a relevance pick that names no known table falls back to all of them
    assert sql_grammar(demo_snapshot, ["nope"]) == sql_grammar(demo_snapshot)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "sqlite"])
def test_every_function_it_admits_is_one_the_guard_allows(demo_snapshot: SchemaSnapshot,
                                                          dialect: str) -> None:
    snap = SchemaSnapshot(dialect, demo_snapshot.tables)
    rules = gbnf.check(sql_grammar(snap))
    calls = {lit[:-1] for r in rules if r.startswith(("pcall-", "acall-", "agg-", "pcast-"))
             for lit in gbnf.literals(rules, r) if len(lit) > 1 and lit.endswith("(")}
    calls |= {"count", "sum", "avg", "min", "max"}
    assert calls - {"CAST"} <= allowed_names(dialect)
    assert "strftime" in calls if dialect != "postgres" else "to_char" in calls


def test_names_that_need_it_are_quoted_as_the_dialect_quotes() -> None:
    assert sql_name("name") == "name"
    assert sql_name("order") == '"order"'  # reserved
    assert sql_name("Name") == '"Name"'  # Postgres would fold it
    assert sql_name('a "b"') == '"a ""b"""'
    assert sql_name("x y", "mysql") == "`x y`"


def test_a_column_alias_is_any_word_sqlglot_reads_as_one() -> None:
    rules = gbnf.check(sql_grammar(SchemaSnapshot("duckdb", {"t": TableInfo("t", [
        Column("a", "INT")])})))
    alias = re.compile(gbnf.regex(rules, "alias"))
    for word in ("total", "n", "no", "nots", "selected", "mo", "order", "count", "_x1"):
        assert alias.fullmatch(word), word
    for word in ("not", "select", "mod", "1x", "a" * 32, "Total"):
        assert not alias.fullmatch(word), word


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True))
@example("not")
@example("select")
@example("mod")
@example("no")
@example("selects")
def test_the_alias_rule_refuses_exactly_the_words_sqlglot_refuses(word: str) -> None:
    rules = gbnf.check(sql_grammar(SchemaSnapshot("duckdb", {"t": TableInfo("t", [
        Column("a", "INT")])})))
    admitted = re.fullmatch(gbnf.regex(rules, "alias"), word) is not None
    assert admitted == (word not in {"not", "select", "mod"})
    if admitted:
        tree = sqlglot.parse_one(f"SELECT count(*) AS {word} FROM t", read="duckdb")
        assert tree.selects[0].alias == word


def test_the_request_body_per_server_dialect() -> None:
    g = 'root ::= "SELECT 1"'
    assert grammar_body("vllm", g) == {"structured_outputs": {"grammar": g}}
    assert grammar_body("llamacpp", g) == {"grammar": g}
    assert grammar_body("embedded", g) == {"grammar": g}
    assert grammar_body("openai", g) == {}


# -- random schemas ------------------------------------------------------------------------------
# odd names: spaces, quotes, backslashes, reserved words, upper case, digits first, unicode,
# control characters; many columns
_ODD = st.one_of(
    st.sampled_from(["order", "select", "Name", "a b", 'q"q', "back\\slash", "1st", "naïve",
                     "tab\there", "new\nline", "名前", "x'y", "", "count", "date"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
)


@st.composite
def schemas(draw: st.DrawFn) -> SchemaSnapshot:
    tables = {}
    for n in range(draw(st.integers(1, 4))):
        name = draw(_ODD) or f"t{n}"
        cols = draw(st.lists(_ODD, min_size=1, max_size=60, unique=True))
        tables[name] = TableInfo(name, [Column(c, "INTEGER") for c in cols])
    return SchemaSnapshot(draw(st.sampled_from(["duckdb", "postgres", "sqlite"])), tables)


def _shown(name: str, dialect: str) -> str:
    return sql_name(name, dialect)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_random_schemas_give_grammars_that_load_and_name_them_exactly(snap: SchemaSnapshot
                                                                      ) -> None:
    usable = {n: t for n, t in snap.tables.items() if n}
    if not any(c.name for t in usable.values() for c in t.columns):
        with pytest.raises(ConfigurationError):
            sql_grammar(snap)
        return
    rules = gbnf.check(sql_grammar(snap))
    tables, columns = _names(rules, snap.dialect)
    usable = {n: t for n, t in usable.items() if any(c.name for c in t.columns)}
    assert tables == {_shown(n, snap.dialect) for n in usable}
    assert columns == {_shown(c.name, snap.dialect) for t in usable.values()
                       for c in t.columns if c.name}
    # each name as the grammar writes it reads back, in the dialect, as exactly that name
    for shown in columns:
        column = sqlglot.parse_one(f"SELECT {shown} FROM x", read=snap.dialect).selects[0]
        assert isinstance(column, exp.Column)
        assert column.name in {c.name for t in usable.values() for c in t.columns}


def test_a_query_over_one_table_names_only_that_tables_columns(
        demo_snapshot: SchemaSnapshot) -> None:
    rules = gbnf.check(sql_grammar(demo_snapshot))
    column = re.compile(gbnf.regex(rules, "col" + _branches(rules)[frozenset({"orders"})]))
    for right in ("status", "orders.status", "customer_id"):
        assert column.fullmatch(right), right
    for wrong in ("order_id", "unit_price", "orders.order_id", "o.customer_id", "t1.status"):
        assert not column.fullmatch(wrong), wrong


def test_every_sentence_it_admits_passes_the_guard(demo_snapshot: SchemaSnapshot,
                                                    demo_db: Path) -> None:
    """Random sentences of the demo's grammar: the guard passes every one (names of tables
    read, keys joined, allowed functions), and a select list that mixes aggregates with plain
    columns is always grouped (GROUP BY ALL)."""
    rules = gbnf.check(sql_grammar(demo_snapshot))
    rng = random.Random(13)
    with tablechat.connect(demo_db) as tc:
        for _ in range(150):
            sql = sample(rules, rng, depth=7)
            tc.check_sql(sql)  # raises if refused
            tree = sqlglot.parse_one(sql, read="duckdb")
            items = tree.selects
            aggregated = [bool(i.find(exp.AggFunc)) for i in items]
            if any(aggregated) and not all(aggregated):
                assert tree.args.get("group") is not None, sql
            assert tree.find(exp.TableAlias) is None, sql


def test_its_size_stays_bounded_for_a_big_schema() -> None:
    tables = {f"t{n}": TableInfo(f"t{n}", [Column("id", "INTEGER", primary_key=True),
                                           Column(f"t{n + 1}_id", "INTEGER"),
                                           *[Column(f"c{k}", "VARCHAR") for k in range(30)]])
              for n in range(500)}
    big = sql_grammar(SchemaSnapshot("duckdb", tables))
    rules = gbnf.check(big)
    assert len(_branches(rules)) == MAX_BRANCHES
    assert len(_names(rules)[0]) <= MAX_TABLES
    assert len(big) < 60_000


def test_a_select_list_names_each_column_at_most_once(demo_snapshot: SchemaSnapshot) -> None:
    """SmolLM2 at temperature 0 wrote ``SELECT customers.country, customers.country, ...`` to
    the reply limit (issue 13): a plain select list names each column of its tables at most
    once, in the schema's order, and at most four, so a model that repeats itself must move on
    to FROM."""
    rules = gbnf.check(sql_grammar(demo_snapshot))
    suffix = _branches(rules)[frozenset({"orders"})]
    items = re.compile(gbnf.regex(rules, "pcols" + suffix))
    for right in ("status", "id, status, channel", "orders.status, channel",
                  "customer_id, order_date"):
        assert items.fullmatch(right), right
    for wrong in ("status, status", "orders.status, status", "channel, channel, channel",
                  "channel, status",
                  # at most four: SmolLM2 listed every column of a join to the reply limit
                  "id, customer_id, store_id, order_date, status"):
        assert not items.fullmatch(wrong), wrong



def test_a_questions_grammar_filters_only_on_values_the_question_gives(
        demo_snapshot: SchemaSnapshot, demo_db: Path) -> None:
    """Given the question, the grammar's numbers are the ones it writes (a percentage also as
    a fraction), its dates are in the years it names, and with no value at all there is no
    WHERE: SmolLM2 added ``WHERE id = 1``, ``= id`` or ``IS NULL`` to nearly every query."""
    question = "How many order lines had a discount of 20% or more in 2023?"
    rules = gbnf.check(sql_grammar(demo_snapshot, ["order_items", "orders"], question=question))
    rng = random.Random(5)
    filtered = 0
    with tablechat.connect(demo_db) as tc:
        for _ in range(150):
            sql = sample(rules, rng, depth=7)
            tc.check_sql(sql)
            where = sqlglot.parse_one(sql, read="duckdb").args.get("where")
            if where is None:
                continue
            filtered += 1
            for literal in where.find_all(exp.Literal):
                if literal.is_string:  # the year named, as its dates (agent/periods.py)
                    assert literal.this in {"2023-01-01", "2024-01-01"}, sql
                else:
                    assert literal.this in {"20", "0.2", "2023"}, sql
    assert filtered
    bare = gbnf.check(sql_grammar(demo_snapshot, ["orders"], question="How many orders?"))
    for _ in range(50):
        sql = sample(bare, rng, depth=7)
        assert sqlglot.parse_one(sql, read="duckdb").args.get("where") is None, sql


def _typed(rules: dict[str, list[tuple[str, str]]], tables: frozenset[str]) -> re.Pattern[str]:
    """The comparisons a branch's WHERE may hold (``typed-bN``: non-recursive)."""
    return re.compile(gbnf.regex(rules, "typed" + _branches(rules)[tables]))


def test_a_comparison_is_typed_by_its_columns_type(demo_snapshot: SchemaSnapshot) -> None:
    """SmolLM2 wrote ``order_date = 2023`` (6 of 97 demo questions), ``store_id = 'Berlin'``
    and ``order_date = 'cancelled'``, and each was repaired twice (issue 13): a number only
    against a number column, a string only against a text column (one of its values when the
    snapshot holds them all: ``status`` has 4), a date column against a date or its year."""
    rules = gbnf.check(sql_grammar(demo_snapshot, ["orders"]))
    typed = _typed(rules, frozenset({"orders"}))
    for right in ("year(order_date) = 2023", "extract(year FROM order_date) >= 2022",
                  "order_date >= DATE '2023-01-01'", "orders.store_id = 3",
                  "store_id <> 12", "store_id + customer_id > 100", "status = 'cancelled'",
                  "lower(status) = 'returned'", "status IN ('cancelled', 'returned')",
                  "date_trunc('month', order_date) = DATE '2023-03-01'",
                  "customer_id BETWEEN 1 AND 10"):
        assert typed.fullmatch(right), right
    for wrong in ("order_date = 2023", "store_id = 'Berlin'", "order_date = 'cancelled'",
                  "status = 'Berlin'", "status = 3", "channel = 'cancelled'",
                  "year(status) = 2023", "order_date > 5", "id = '1'"):
        assert not typed.fullmatch(wrong), wrong


def test_a_questions_comparisons_take_its_values_in_their_types(
        demo_snapshot: SchemaSnapshot) -> None:
    question = "How many orders from 2023 were cancelled at the Berlin store?"
    rules = gbnf.check(sql_grammar(demo_snapshot, ["orders", "stores"], question=question))
    # the question names the store: only the join of both tables is left
    typed = _typed(rules, frozenset({"orders", "stores"}))
    for right in ("status = 'cancelled'",
                  "order_date >= DATE '2023-01-01' AND order_date < DATE '2024-01-01'"):
        assert typed.fullmatch(right), right
    for wrong in ("order_date = 2023", "store_id = 'Berlin'", "status = 'Berlin'",
                  "year(order_date) = 2022", "status = 'returned'",
                  "order_date = 'cancelled'", "order_date >= DATE '2022-01-01'",
                  # the year named is the whole year (SmolLM2: "> DATE '2023-01-01'")
                  "order_date > DATE '2023-01-01'", "order_date = DATE '2023-05-03'"):
        assert not typed.fullmatch(wrong), wrong
    joined = _typed(rules, frozenset({"orders", "stores"}))
    assert joined.fullmatch("stores.city = 'Berlin'")  # city's samples are not all its values
    assert not joined.fullmatch("stores.id = 'Berlin'")


def test_a_boolean_column_compares_with_true_or_false() -> None:
    snap = SchemaSnapshot("duckdb", {"t": TableInfo("t", [
        Column("active", "BOOLEAN"), Column("n", "INTEGER")])})
    rules = gbnf.check(sql_grammar(snap))
    typed = _typed(rules, frozenset({"t"}))
    for right in ("active", "active = TRUE", "active IS NOT FALSE", "n > 3"):
        assert typed.fullmatch(right), right
    for wrong in ("active = 1", "active = 'yes'", "n = TRUE"):
        assert not typed.fullmatch(wrong), wrong


@pytest.mark.parametrize(("dialect", "right", "wrong"), [
    ("postgres", "date_part('year', d) = 2023", "year(d) = 2023"),
    ("sqlite", "strftime('%Y', d) = '2023'", "strftime('%Y', d) = 2023"),
])
def test_a_dates_year_is_read_as_the_dialect_reads_it(dialect: str, right: str,
                                                      wrong: str) -> None:
    snap = SchemaSnapshot(dialect, {"t": TableInfo("t", [Column("d", "DATE")])})
    typed = _typed(gbnf.check(sql_grammar(snap)), frozenset({"t"}))
    assert typed.fullmatch(right)
    assert not typed.fullmatch(wrong)
    assert sqlglot.parse_one(f"SELECT 1 FROM t WHERE {right}", read=dialect)
