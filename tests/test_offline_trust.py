"""Answers people can trust (issue 12): every word of a question accounted for, the reading
stated with every answer, metric definitions applied and said, follow-ups only when they are
follow-ups, and refusals written for the person asking, with rewordings that work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

import tablechat
from tablechat import events as ev
from tablechat.core import TableChat
from tests.support.results import got, rows
from tests.test_web_support import live_server

REVENUE = "SUM(oi.quantity * oi.unit_price * (1 - oi.discount))"
KEPT = "o.status NOT IN ('cancelled', 'returned')"
ADMIN_WORDS = ("TABLECHAT_", "http://", "https://", "vllm", "--llm-url")
DEMO_QUESTIONS = Path(__file__).resolve().parents[1] / "data" / "questions" / "demo.jsonl"


def turn(question: str, answer: tablechat.Answer) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": answer.text, "sql": answer.sql}]


# --- every word accounted for ------------------------------------------------------------------
def test_monthly_revenue_in_2024_is_revenue_per_month(offline_tc: TableChat) -> None:
    """The UI's own example returned the year's total; 'monthly' was dropped silently."""
    for question in ("Monthly revenue in 2024", "monthly revenue for 2024"):
        answer = offline_tc.ask(question)
        assert got(answer) == rows(
            offline_tc, f"SELECT month(o.order_date), {REVENUE} FROM order_items oi JOIN orders o"
            f" ON o.id = oi.order_id WHERE year(o.order_date) = 2024 AND {KEPT} GROUP BY 1")
        assert len(answer.rows) == 12
        assert answer.interpretation.startswith("Read as: revenue per month, orders in 2024")
        assert "January" in answer.text and "December" in answer.text  # months by name


def test_unknown_words_refuse_and_are_named(offline_tc: TableChat) -> None:
    answer = offline_tc.ask("What is the ratio of cancelled orders to all orders?")
    assert answer.sql is None and answer.rows == []
    assert "“ratio”" in answer.text
    assert not any(isinstance(e, ev.SQL | ev.Table) for e in answer.events)


def test_a_comparison_symbol_is_a_comparison(offline_tc: TableChat) -> None:
    """'> 45.5' was read as '= 45.5': the symbol vanished in tokenizing."""
    answer = offline_tc.ask("Which products have a unit price > 45.5?")
    assert got(answer) == rows(offline_tc, "SELECT name, unit_price FROM products"
                                           " WHERE unit_price > 45.5")
    assert "> 45.5" in answer.interpretation
    left_over = offline_tc.ask("products with unit price + 45.5")
    assert left_over.sql is None and "“+”" in left_over.text


def test_top_things_by_a_table_rank_by_its_count(offline_tc: TableChat) -> None:
    """'top countries by customers' grouped by country and customer name."""
    answer = offline_tc.ask("Top 3 countries by customers")
    assert got(answer) == rows(offline_tc, "SELECT country, count(*) FROM customers"
                                           " GROUP BY country ORDER BY 2 DESC LIMIT 3")


def test_total_things_in_each_group_is_a_count_not_a_ranking(offline_tc: TableChat) -> None:
    """'total X in each Y' was read as a ranking by size (or COUNT(DISTINCT ...))."""
    answer = offline_tc.ask("total customers in each segment")
    assert got(answer) == rows(offline_tc, "SELECT segment, count(*) FROM customers"
                                           " GROUP BY segment")


def test_things_and_their_column_shows_both(offline_tc: TableChat) -> None:
    """'cities and their population' returned the population only."""
    answer = offline_tc.ask("stores and their city")
    assert got(answer) == rows(offline_tc, "SELECT name, city FROM stores")


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TableChat]:
    """A schema whose text column holds the words 'Average' and 'Great'."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE product (id INTEGER PRIMARY KEY, name VARCHAR, price DOUBLE)")
    con.execute("CREATE TABLE review (id INTEGER PRIMARY KEY, product_id INTEGER REFERENCES"
                " product(id), rating DOUBLE, text VARCHAR)")
    con.execute("INSERT INTO product VALUES (1, 'Lamp', 20), (2, 'Desk', 150), (3, 'Chair', 80)")
    con.execute("INSERT INTO review VALUES (1, 1, 4.8, 'Great'), (2, 1, 3.0, 'Average'),"
                " (3, 2, 4.6, 'Great'), (4, 2, 2.0, 'Poor'), (5, 3, 3.1, 'Average'),"
                " (6, 3, 4.9, 'Great')")
    con.close()
    tc = tablechat.connect(path, llm_url="")
    yield tc
    tc.close()


def test_an_aggregate_word_is_never_a_data_value(reviews: TableChat) -> None:
    """'average' became WHERE review.text = 'Average' on an unseen schema."""
    answer = reviews.ask("What is the average rating of reviews?")
    assert got(answer) == rows(reviews, "SELECT avg(rating) FROM review")
    assert answer.sql is not None and "'Average'" not in answer.sql
    quoted = reviews.ask("reviews with text 'Average'")  # quoted, it is the value
    assert len(quoted.rows) == 2


@pytest.mark.parametrize("question", ["What is the ratio of reviews?",
                                      "Which reviews are average?",
                                      "ratio of great reviews to the total"])
def test_ratios_and_operator_words_refuse(reviews: TableChat, question: str) -> None:
    """A ratio answered as a count, 'ratio' taken for 'rating': refused instead."""
    answer = reviews.ask(question)
    assert answer.sql is None
    assert "I don't know what" in answer.text


# --- metric definitions --------------------------------------------------------------------
def test_total_sales_leave_out_cancelled_and_returned_orders(offline_tc: TableChat) -> None:
    answer = offline_tc.ask("Total sales")
    assert got(answer) == rows(offline_tc, f"SELECT {REVENUE} FROM order_items oi JOIN orders o"
                                           f" ON o.id = oi.order_id WHERE {KEPT}")
    assert "excluding cancelled and returned orders" in answer.interpretation
    assert answer.text.startswith("The revenue is $")  # the currency of the semantic layer


def test_a_status_the_question_names_replaces_the_metric_rule(offline_tc: TableChat) -> None:
    answer = offline_tc.ask("How much revenue came from returned orders?")
    assert got(answer) == rows(offline_tc, f"SELECT {REVENUE} FROM order_items oi JOIN orders o"
                                           " ON o.id = oi.order_id WHERE o.status = 'returned'")
    assert "not the usual rule" in answer.interpretation


def test_a_metric_rule_does_not_filter_the_other_measures(offline_tc: TableChat) -> None:
    answer = offline_tc.ask("Give me total revenue, number of orders and units sold.")
    sql = f"SELECT {REVENUE} FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE {KEPT}"
    kept = offline_tc.database.execute(sql, max_rows=1).rows[0][0]
    revenue, orders, _units = answer.rows[0]
    assert orders == 40000  # every order, as "number of orders" says
    assert float(revenue) == pytest.approx(float(kept))


# --- follow-ups only when they are follow-ups -------------------------------------------------
def test_a_question_with_its_own_subject_is_a_new_question(offline_tc: TableChat) -> None:
    first = offline_tc.ask("Revenue by region")
    answer = offline_tc.ask("list every customer", turn("Revenue by region", first))
    assert answer.columns == ["name"] and answer.source_sql == "SELECT name FROM customers"


def test_earlier_filters_are_not_carried_silently(offline_tc: TableChat) -> None:
    first = offline_tc.ask("Monthly revenue in 2024")
    answer = offline_tc.ask("Revenue by region", turn("Monthly revenue in 2024", first))
    assert answer.sql is not None and "2024" not in answer.sql
    assert "earlier" not in answer.interpretation


def test_carried_context_is_stated(offline_tc: TableChat) -> None:
    first = offline_tc.ask("Revenue by region")
    answer = offline_tc.ask("and in 2023?", turn("Revenue by region", first))
    assert answer.sql is not None and "2023" in answer.sql
    assert "Kept from your earlier question: by region, revenue" in answer.interpretation
    assert "Kept from your earlier question" in answer.text


def test_follow_ups_through_the_stream_api_ask_uses(offline_tc: TableChat) -> None:
    """``/api/ask`` runs ``TableChat.stream`` with the request's history."""
    history = turn("Revenue by region", offline_tc.ask("Revenue by region"))

    async def collect() -> list[ev.Event]:
        return [e async for e in offline_tc.stream("list every customer", history)]

    events = asyncio.run(collect())
    table = next(e for e in events if isinstance(e, ev.Table))
    assert table.columns == ["name"] and len(table.rows) == 1000
    reading = next(e for e in events if isinstance(e, ev.Interpretation))
    assert reading.kind == "status" and reading.message.startswith("Read as: customers")


def test_follow_ups_over_http(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm_url="")
    with live_server(tc) as server:
        first = httpx.post(f"{server.url}/api/ask", json={"question": "Revenue by region"},
                           timeout=60).json()
        history = [{"role": "user", "content": "Revenue by region"},
                   {"role": "assistant", "content": first["text"], "sql": first["sql"]}]
        body = httpx.post(f"{server.url}/api/ask", timeout=60, json={
            "question": "list every customer", "history": history}).json()
        refused = httpx.post(f"{server.url}/api/ask", timeout=60, json={
            "question": "What share of the orders were returned?"}).json()
    assert body["columns"] == ["name"] and body["interpretation"].startswith("Read as:")
    assert refused["sql"] is None and 2 <= len(refused["suggestions"]) <= 3


# --- refusals for the person asking ------------------------------------------------------------
@pytest.mark.parametrize("question", [
    "What is the ratio of cancelled orders to all orders?",
    "How much did the Berlin Mitte store sell in 2024?",
    "Which customers bought more than their neighbours last summer?",
])
def test_refusals_offer_rewordings_that_work(offline_tc: TableChat, question: str) -> None:
    answer = offline_tc.ask(question)
    assert answer.sql is None
    assert not any(word in answer.text for word in ADMIN_WORDS)
    assert 2 <= len(answer.suggestions) <= 3
    for suggestion in answer.suggestions:
        assert suggestion in answer.text
        tried = offline_tc.ask(suggestion)
        assert tried.sql is not None and tried.rows, suggestion


def test_the_chat_reply_holds_no_setup_advice(offline_tc: TableChat) -> None:
    text = offline_tc.ask("hello").text
    assert not any(word in text for word in ADMIN_WORDS)


def test_every_refusal_in_the_demo_set_names_its_unknown_words(offline_tc: TableChat) -> None:
    questions = [json.loads(line)["question"] for line in DEMO_QUESTIONS.read_text().splitlines()]
    refused = [(q, a) for q in questions if (a := offline_tc.ask(q)).sql is None]
    assert refused, "the demo set holds questions the engine must refuse"
    for question, answer in refused:
        assert "I don't know what “" in answer.text, question
        assert answer.suggestions, question


# --- numbers formatted one way -------------------------------------------------------------
def test_years_are_written_as_years(offline_tc: TableChat) -> None:
    answer = offline_tc.ask("Show revenue by year")
    assert "2022" in answer.text and "2,022" not in answer.text and "2022.0" not in answer.text
    assert "$" in answer.text
