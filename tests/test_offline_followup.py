"""Follow-up questions answered offline: the change a short message asks for is applied to the
previous question (re-read from the history) or to the previous SQL."""

from __future__ import annotations

from typing import Any

from tablechat.core import TableChat
from tests.support.results import got, rows

REVENUE = "SUM(oi.quantity * oi.unit_price * (1 - oi.discount))"
# revenue leaves out cancelled and returned orders (the demo's semantic layer)
KEPT = "o.status NOT IN ('cancelled', 'returned')"
BY_REGION = (f"SELECT r.name, {REVENUE} FROM order_items oi JOIN orders o ON o.id = oi.order_id"
             " JOIN stores s ON s.id = o.store_id JOIN regions r ON r.id = s.region_id")




def turn(offline_tc: TableChat, question: str) -> list[dict[str, Any]]:
    """The history after asking ``question``: the user turn and the assistant's answer."""
    answer = offline_tc.ask(question)
    assert answer.sql is not None, answer.text
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": answer.text, "sql": answer.sql}]


def test_and_in_a_year_adds_a_date_filter(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "Revenue by region")
    answer = offline_tc.ask("and in 2023?", history)
    assert got(answer) == rows(
        offline_tc, BY_REGION + f" WHERE year(o.order_date) = 2023 AND {KEPT} GROUP BY 1")


def test_only_for_a_value_adds_a_filter(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "Revenue by region")
    answer = offline_tc.ask("only for Electronics", history)
    sql = (BY_REGION + " JOIN products p ON p.id = oi.product_id JOIN categories c"
           f" ON c.id = p.category_id WHERE c.name = 'Electronics' AND {KEPT} GROUP BY 1")
    assert got(answer) == rows(offline_tc, sql)


def test_break_it_down_by_month_changes_the_grouping(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "What was the revenue in 2024?")
    answer = offline_tc.ask("break it down by month", history)
    sql = (f"SELECT month(o.order_date), {REVENUE} FROM order_items oi JOIN orders o"
           f" ON o.id = oi.order_id WHERE year(o.order_date) = 2024 AND {KEPT} GROUP BY 1")
    assert got(answer) == rows(offline_tc, sql)
    assert len(answer.rows) == 12


def test_top_n_instead_changes_the_limit(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "What are the top 5 products by revenue?")
    answer = offline_tc.ask("top 10 instead", history)
    sql = (f"SELECT p.name, {REVENUE} FROM order_items oi JOIN products p ON p.id = oi.product_id"
           f" JOIN orders o ON o.id = oi.order_id WHERE {KEPT}"
           " GROUP BY p.id, p.name ORDER BY 2 DESC LIMIT 10")
    assert got(answer) == rows(offline_tc, sql)


def test_what_about_replaces_a_filter_on_the_same_column(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "How much revenue came from Electronics?")
    answer = offline_tc.ask("what about Books?", history)
    sql = (f"SELECT {REVENUE} FROM order_items oi JOIN products p ON p.id = oi.product_id"
           " JOIN categories c ON c.id = p.category_id JOIN orders o ON o.id = oi.order_id"
           f" WHERE c.name = 'Books' AND {KEPT}")
    assert got(answer) == rows(offline_tc, sql)
    assert answer.sql is not None and "Electronics" not in answer.sql


def test_follow_ups_chain(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "How many orders were placed in 2023?")
    second = offline_tc.ask("and online?", history)
    assert got(second) == rows(
        offline_tc, "SELECT count(*) FROM orders WHERE year(order_date) = 2023"
        " AND channel = 'online'")
    history += [{"role": "user", "content": "and online?"},
                {"role": "assistant", "content": second.text, "sql": second.sql}]
    third = offline_tc.ask("what about 2024?", history)
    assert got(third) == rows(
        offline_tc, "SELECT count(*) FROM orders WHERE year(order_date) = 2024"
        " AND channel = 'online'")


def test_follow_up_on_sql_written_elsewhere(offline_tc: TableChat) -> None:
    """The previous question is not one the offline engine understands (an LLM answered it):
    the follow-up's filter is added to that SQL."""
    history = [
        {"role": "user", "content": "Show me every customer's name and country, LLM-style"},
        {"role": "assistant", "content": "Here they are.",
         "sql": "SELECT c.name, c.country FROM customers AS c"},
    ]
    answer = offline_tc.ask("only for Germany", history)
    assert got(answer) == rows(offline_tc, "SELECT name, country FROM customers"
                                   " WHERE country = 'Germany'")


def test_a_new_question_is_not_taken_as_a_follow_up(offline_tc: TableChat) -> None:
    history = turn(offline_tc, "Revenue by region")
    answer = offline_tc.ask("How many customers do we have?", history)
    assert got(answer) == rows(offline_tc, "SELECT count(*) FROM customers")


def test_gradio_style_pairs_are_accepted(offline_tc: TableChat) -> None:
    first = offline_tc.ask("How many orders were placed in 2023?")
    answer = offline_tc.ask("and in 2024?", [("How many orders were placed in 2023?", first.text)])
    assert got(answer) == rows(
        offline_tc, "SELECT count(*) FROM orders WHERE year(order_date) = 2024")
