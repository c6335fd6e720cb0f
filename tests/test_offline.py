"""The offline engine on the demo database: each question shape gives the rows of the SQL a
person would write, and the engine says so when it does not know."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest

import tablechat
from tablechat import events as ev
from tablechat.core import TableChat
from tablechat.offline import OfflineEngine

# the demo's money metrics leave out cancelled and returned orders (its semantic layer)
KEPT = " JOIN orders o ON o.id = oi.order_id WHERE o.status NOT IN ('cancelled', 'returned')"


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if not math.isnan(value) else "nan"
    return value


def rows_of(offline_tc: TableChat, sql: str) -> list[tuple[Any, ...]]:
    result = offline_tc.database.execute(sql, max_rows=10000)
    return [tuple(_norm(v) for v in row) for row in result.rows]


def same_rows(
    offline_tc: TableChat, answer: tablechat.Answer, sql: str, *, ordered: bool = False
) -> bool:
    got = [tuple(_norm(v) for v in row) for row in answer.rows]
    want = rows_of(offline_tc, sql)
    return got == want if ordered else Counter(got) == Counter(want)


def ask(offline_tc: TableChat, question: str, history: Any = None) -> tablechat.Answer:
    answer = offline_tc.ask(question, history)
    assert answer.error is None, answer.error
    assert answer.engine == "offline"
    return answer


def test_the_offline_engine_is_installed(offline_tc: TableChat) -> None:
    assert isinstance(offline_tc._offline, OfflineEngine)
    assert offline_tc.engine_name == "offline"


@pytest.mark.parametrize(("question", "sql"), [
    ("How many customers do we have?", "SELECT count(*) FROM customers"),
    ("How many countries do our customers come from?",
     "SELECT count(DISTINCT country) FROM customers"),
    ("What is the average list price of our products?", "SELECT avg(unit_price) FROM products"),
    ("What are the minimum, average and maximum quantities on an order line?",
     "SELECT min(quantity), avg(quantity), max(quantity) FROM order_items"),
    ("How many units have we sold in total?",  # units_sold leaves out cancelled/returned
     "SELECT sum(oi.quantity) FROM order_items oi" + KEPT),
])
def test_counts_and_aggregates(offline_tc: TableChat, question: str, sql: str) -> None:
    answer = ask(offline_tc, question)
    assert answer.sql is not None
    assert same_rows(offline_tc, answer, sql)


def test_count_sentence_states_the_number(offline_tc: TableChat) -> None:
    answer = ask(offline_tc, "How many customers are there?")
    assert answer.text == "There are 5,000 customers."


@pytest.mark.parametrize(("question", "sql"), [
    ("Number of customers by country", "SELECT country, count(*) FROM customers GROUP BY 1"),
    ("How many customers are there in each segment?",
     "SELECT segment, count(*) FROM customers GROUP BY 1"),
    ("Average list price per category",
     "SELECT c.name, avg(p.unit_price) FROM products p JOIN categories c ON c.id = p.category_id"
     " GROUP BY c.name"),
    ("Break down orders by status", "SELECT status, count(*) FROM orders GROUP BY 1"),
])
def test_group_by(offline_tc: TableChat, question: str, sql: str) -> None:
    assert same_rows(offline_tc, ask(offline_tc, question), sql)


def test_revenue_by_region_uses_the_metric_and_the_join_path(offline_tc: TableChat) -> None:
    answer = ask(offline_tc, "Revenue by region")
    sql = ("SELECT r.name, SUM(oi.quantity * oi.unit_price * (1 - oi.discount)) FROM order_items oi"
           " JOIN orders o ON o.id = oi.order_id JOIN stores s ON s.id = o.store_id"
           " JOIN regions r ON r.id = s.region_id"
           " WHERE o.status NOT IN ('cancelled', 'returned') GROUP BY r.name ORDER BY 2 DESC")
    assert same_rows(offline_tc, answer, sql, ordered=True)
    assert answer.text.startswith("Europe has the highest revenue ($")
    assert answer.text.endswith("of 5 regions.")
    assert answer.chart is not None and answer.chart["type"] == "bar"


@pytest.mark.parametrize(("question", "sql"), [
    ("Top 3 countries by number of customers",
     "SELECT country, count(*) AS n FROM customers GROUP BY 1 ORDER BY n DESC LIMIT 3"),
    ("What are our 3 cheapest products?",
     "SELECT name, unit_price FROM products ORDER BY unit_price LIMIT 3"),
    ("Which 3 stores have the most orders?",
     "SELECT s.name, count(*) AS n FROM orders o JOIN stores s ON s.id = o.store_id"
     " GROUP BY s.id, s.name ORDER BY n DESC LIMIT 3"),
    ("Which category makes the most profit?",
     "SELECT c.name, SUM(oi.quantity * (oi.unit_price * (1 - oi.discount) - p.cost)) AS profit"
     " FROM order_items oi JOIN products p ON p.id = oi.product_id"
     " JOIN categories c ON c.id = p.category_id" + KEPT +
     " GROUP BY c.id, c.name ORDER BY profit DESC LIMIT 1"),
])
def test_top_n_and_the_most(offline_tc: TableChat, question: str, sql: str) -> None:
    answer = ask(offline_tc, question)
    want = rows_of(offline_tc, sql)
    got = [tuple(_norm(v) for v in row) for row in answer.rows]
    assert [r[-1] for r in got] == [r[-1] for r in want]  # the ranked values, in order
    assert Counter(got) == Counter(want)


@pytest.mark.parametrize(("question", "sql"), [
    ("How many customers are in the Corporate segment?",
     "SELECT count(*) FROM customers WHERE segment = 'Corporate'"),
    ("How many orders were cancelled?", "SELECT count(*) FROM orders WHERE status = 'cancelled'"),
    ("how many custmers live in germany",  # a typo and a lower-case value
     "SELECT count(*) FROM customers WHERE country = 'Germany'"),
    ("How many Small Business customers are there in North America?",
     "SELECT count(*) FROM customers c JOIN regions r ON r.id = c.region_id"
     " WHERE c.segment = 'Small Business' AND r.name = 'North America'"),
])
def test_filters_on_values_found_in_the_data(
    offline_tc: TableChat, question: str, sql: str
) -> None:
    assert same_rows(offline_tc, ask(offline_tc, question), sql)


@pytest.mark.parametrize(("question", "sql"), [
    ("Which products have a list price above $300?",
     "SELECT name, unit_price FROM products WHERE unit_price > 300"),
    ("How many order lines had a discount of 20% or more?",
     "SELECT count(*) FROM order_items WHERE discount >= 0.20"),
    ("How many products have a list price between 10 and 20?",
     "SELECT count(*) FROM products WHERE unit_price BETWEEN 10 AND 20"),
])
def test_numeric_comparisons(offline_tc: TableChat, question: str, sql: str) -> None:
    assert same_rows(offline_tc, ask(offline_tc, question), sql)


@pytest.mark.parametrize(("question", "sql"), [
    ("How many orders were placed in 2023?",
     "SELECT count(*) FROM orders WHERE year(order_date) = 2023"),
    ("How many orders did we get in Q1 2024?",
     "SELECT count(*) FROM orders WHERE order_date >= DATE '2024-01-01'"
     " AND order_date < DATE '2024-04-01'"),
    ("How many orders were placed in November 2022?",
     "SELECT count(*) FROM orders WHERE order_date >= DATE '2022-11-01'"
     " AND order_date < DATE '2022-12-01'"),
    ("How many orders came in during the last 7 days?",
     "SELECT count(*) FROM orders WHERE order_date > (SELECT max(order_date) FROM orders)"
     " - INTERVAL 7 DAY"),
    ("How many orders were placed between June 1 and August 31, 2024?",
     "SELECT count(*) FROM orders WHERE order_date BETWEEN DATE '2024-06-01'"
     " AND DATE '2024-08-31'"),
    ("How many stores opened after 2020?",
     "SELECT count(*) FROM stores WHERE opened_on > DATE '2020-12-31'"),
    ("How many customers signed up in 2024?",
     "SELECT count(*) FROM customers WHERE year(signup_date) = 2024"),
])
def test_date_ranges(offline_tc: TableChat, question: str, sql: str) -> None:
    assert same_rows(offline_tc, ask(offline_tc, question), sql)


def test_join_through_a_foreign_key(offline_tc: TableChat) -> None:
    answer = ask(offline_tc, "How many orders came from the Berlin store?")
    sql = "SELECT count(*) FROM orders o JOIN stores s ON s.id = o.store_id"
    assert same_rows(offline_tc, answer, sql + " WHERE s.city = 'Berlin'")
    assert answer.sql is not None and "JOIN" in answer.sql.upper()


@pytest.mark.parametrize(("question", "sql"), [
    ("What are total sales?",  # "sales" is a synonym of the revenue metric
     "SELECT SUM(quantity * unit_price * (1 - discount)) FROM order_items oi" + KEPT),
    ("Show the 10 best-selling products",  # a synonym of units_sold
     "SELECT p.name, sum(oi.quantity) AS u FROM order_items oi JOIN products p"
     " ON p.id = oi.product_id" + KEPT +
     " GROUP BY p.id, p.name ORDER BY u DESC LIMIT 10"),
    ("What is the average order value?",
     "SELECT SUM(quantity * unit_price * (1 - discount)) / count(DISTINCT order_id)"
     " FROM order_items oi" + KEPT),
])
def test_metrics_and_synonyms_from_the_semantic_layer(offline_tc: TableChat, question: str,
                                                      sql: str) -> None:
    assert same_rows(offline_tc, ask(offline_tc, question), sql)


@pytest.mark.parametrize("question", [
    "Which customers bought more than their neighbours last summer?",
    "What is the ratio of returned orders to cancelled orders for each store manager?",
    "How much did the Berlin Mitte store sell in 2024?",
])
def test_declines_below_the_confidence_threshold(offline_tc: TableChat, question: str) -> None:
    answer = ask(offline_tc, question)
    assert answer.sql is None and answer.rows == []
    assert not any(isinstance(e, ev.SQL | ev.Table) for e in answer.events)
    assert "I can't answer this reliably" in answer.text
    assert "TABLECHAT_" not in answer.text and "http" not in answer.text  # not for the admin
    plan = offline_tc._offline.analyze(question, offline_tc.snapshot())
    assert plan.kind == "decline" and plan.confidence < offline_tc._offline.threshold
    assert plan.missing or (plan.intent and plan.intent.unknown), \
        "a decline says what was not understood"


def test_decline_says_what_was_understood(offline_tc: TableChat) -> None:
    answer = ask(offline_tc, "How much did the Berlin Mitte store sell in 2024?")
    assert "I did understand:" in answer.text
    assert "Berlin Mitte" in answer.text


@pytest.mark.parametrize("message", ["hello", "who are you?", "write me a poem", "thanks!"])
def test_chat_messages_get_an_honest_reply(offline_tc: TableChat, message: str) -> None:
    answer = ask(offline_tc, message)
    assert answer.sql is None
    assert "offline engine" in answer.text
    assert "TABLECHAT_" not in answer.text and "vllm serve" not in answer.text  # no admin advice
    assert answer.text.count('"') >= 4, "example questions drawn from the schema"
    assert offline_tc._offline.plan(message, offline_tc.snapshot()) is None


def test_example_questions_in_the_chat_reply_are_answerable(offline_tc: TableChat) -> None:
    text = ask(offline_tc, "hello").text
    examples = text.split("Try: ")[1].rstrip(".")
    questions = [q.strip(' "') for q in examples.split(" · ")]
    assert len(questions) >= 2
    for question in questions:
        assert ask(offline_tc, question).sql is not None, question


def test_event_stream_of_an_answer(offline_tc: TableChat) -> None:
    async def collect() -> list[ev.Event]:
        return [e async for e in offline_tc.stream("How many orders were cancelled?")]

    events = asyncio.run(collect())
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and events[-1].ok  # type: ignore[attr-defined]
    understand = next(i for i, e in enumerate(events)
                      if isinstance(e, ev.Status) and e.step == "understand")
    assert understand < kinds.index("sql") < kinds.index("table") < kinds.index("chart") \
        < kinds.index("answer")
    answer = next(e for e in events if isinstance(e, ev.AnswerText))
    assert answer.engine == "offline"
    assert answer.text.startswith("There are ")


def test_generated_sql_goes_through_the_guard(offline_tc: TableChat) -> None:
    answer = ask(offline_tc, "List the customers who live in Tokyo")
    assert answer.sql is not None
    assert "LIMIT 1001" in answer.sql  # the guard's row cap (+1 to tell a cut result)
    checked = offline_tc.guard(offline_tc.snapshot()).check(answer.sql)
    assert checked.tables == {"customers"}


def test_plan_is_synchronous_and_in_the_snapshot_dialect(offline_tc: TableChat) -> None:
    engine = offline_tc._offline
    assert isinstance(engine, OfflineEngine)
    plan = engine.plan("Revenue per sales channel in Europe", offline_tc.snapshot())
    assert plan is not None and plan.sql is not None
    assert plan.confidence >= engine.threshold
    assert plan.understood and "revenue" in plan.understood[0]
    assert same_rows(offline_tc, tablechat.Answer("q", rows=rows_of(offline_tc, plan.sql)),
                     "SELECT o.channel, SUM(oi.quantity * oi.unit_price * (1 - oi.discount))"
                     " FROM order_items oi JOIN orders o ON o.id = oi.order_id"
                     " JOIN stores s ON s.id = o.store_id JOIN regions r ON r.id = s.region_id"
                     " WHERE r.name = 'Europe' AND o.status NOT IN ('cancelled', 'returned')"
                     " GROUP BY o.channel")


@pytest.mark.parametrize(("cap", "cut", "text"), [
    (3, True, "Showing the first 3 regions (there are more)."),
    (5, False, "Found 5 regions."),  # exactly the cap: all of them, nothing cut
])
def test_the_sentence_says_whether_the_row_cap_cut_the_result(
    demo_db: Any, monkeypatch: pytest.MonkeyPatch, cap: int, cut: bool, text: str
) -> None:
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    tc = tablechat.connect(demo_db, max_rows=cap)
    try:
        answer = tc.ask("List the regions")
    finally:
        tc.close()
    assert answer.engine == "offline" and len(answer.rows) == cap
    assert answer.truncated is cut and answer.text == text
