"""A question's grammar admits only the shape its words ask for (``agent/sketch.py`` read by
``agent/grammar.py``, issue 13): each pair below is a right query the grammar must admit and
the kind of wrong one SmolLM2-135M wrote under the whole grammar, which it must refuse."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import tablechat
from tablechat.agent.grammar import sql_grammar
from tablechat.errors import SQLExecutionError
from tablechat.sql.schema import SchemaSnapshot
from tests.support import gbnf
from tests.support.gbnf import admits
from tests.support.gbnf_sample import sample


@pytest.fixture(scope="module")
def demo_snapshot(demo_db: Path) -> SchemaSnapshot:
    with tablechat.connect(demo_db) as tc:
        return tc.snapshot()


CASES = [
    # (question, linked tables, admitted, refused)
    # the fewest tables that hold what the question needs (SmolLM2 joined and counted lines)
    ("How many orders have been placed in total?", ["orders", "order_items"],
     "SELECT count(*) FROM orders",
     "SELECT count(*) FROM orders JOIN order_items ON order_items.order_id = orders.id"),
    ("How many customers are there in each segment?", ["customers"],
     "SELECT segment, count(*) FROM customers GROUP BY ALL ORDER BY count(*) DESC",
     "SELECT count(*) FROM customers"),
    # a breakdown reads biggest first
    ("Number of customers by country", ["customers"],
     "SELECT country, count(*) FROM customers GROUP BY ALL ORDER BY count(*) DESC",
     "SELECT country, count(*) FROM customers GROUP BY ALL"),
    ("How many products do we have in each category?", ["products", "categories"],
     "SELECT categories.name, count(*) FROM products JOIN categories ON categories.id = "
     "products.category_id GROUP BY ALL ORDER BY count(*) DESC",
     "SELECT products.cost, count(*) FROM products GROUP BY ALL"),
    ("Number of orders per month in 2024", ["orders"],
     "SELECT month(order_date), count(*) FROM orders WHERE order_date >= DATE '2024-01-01' "
     "AND order_date < DATE '2025-01-01' GROUP BY ALL ORDER BY 1",
     "SELECT month(order_date), count(*) FROM orders GROUP BY ALL ORDER BY 1"),
    ("What are our 3 cheapest products?", ["products"],
     "SELECT name, unit_price FROM products ORDER BY unit_price ASC LIMIT 3",
     "SELECT * FROM products WHERE category_id = 3"),
    ("Which 3 stores have the most orders?", ["stores", "orders"],
     "SELECT stores.name, count(*) FROM stores JOIN orders ON orders.store_id = stores.id "
     "GROUP BY ALL ORDER BY count(*) DESC LIMIT 3",
     "SELECT stores.name, count(*) FROM stores JOIN orders ON orders.store_id = stores.id "
     "GROUP BY ALL ORDER BY count(*) ASC LIMIT 3"),
    ("How many customers are in the Corporate segment?", ["customers"],
     "SELECT count(*) FROM customers WHERE segment = 'Corporate'",
     "SELECT count(*) FROM customers WHERE name = 'Corporate'"),
    ("How many customers are in the Corporate segment?", ["customers"],
     "SELECT count(*) FROM customers WHERE segment = 'Corporate'",
     "SELECT count(*) FROM customers WHERE region_id IS NULL"),
    ("Which products have a list price above $300?", ["products"],
     "SELECT name, unit_price FROM products WHERE unit_price > 300",
     "SELECT name FROM products WHERE category_id = 300"),
    ("How many countries do our customers come from?", ["customers"],
     "SELECT count(DISTINCT country) FROM customers",
     "SELECT count(*) FROM customers"),
    ("What is the average discount on order lines?", ["order_items"],
     "SELECT avg(discount) FROM order_items",
     "SELECT avg(order_id) FROM order_items"),
    ("How many customers do we have?", ["customers"],
     "SELECT count(*) FROM customers",
     "SELECT CASE WHEN region_id IS NULL THEN 1 END FROM customers"),
    ("What is the total quantity per product?", ["order_items", "products"],
     "SELECT products.name, sum(quantity) FROM order_items JOIN products ON products.id = "
     "order_items.product_id GROUP BY ALL ORDER BY sum(quantity) DESC",
     "SELECT products.name, sum(products.name) FROM order_items JOIN products ON products.id = "
     "order_items.product_id GROUP BY ALL"),
    ("How many orders were placed in 2023?", ["orders"],
     "SELECT count(*) FROM orders WHERE order_date >= DATE '2023-01-01' AND order_date < "
     "DATE '2024-01-01'",
     "SELECT count(*) FROM orders WHERE order_date > DATE '2023-01-01'"),
    ("How many orders were placed in November 2022?", ["orders"],
     "SELECT count(*) FROM orders WHERE order_date >= DATE '2022-11-01' AND order_date < "
     "DATE '2022-12-01'",
     "SELECT count(*) FROM orders WHERE order_date = DATE '2022-11-20' AND order_date = "
     "DATE '2022-12-31'"),
    ("Which stores opened after 2020?", ["stores"],
     "SELECT name, opened_on FROM stores WHERE opened_on >= DATE '2021-01-01'",
     "SELECT name FROM stores WHERE opened_on = DATE '2020-01-01'"),
    ("List the customers who live in Tokyo", ["customers"],
     "SELECT name FROM customers WHERE city = 'Tokyo'",
     "SELECT count(*) FROM customers WHERE city = 'Tokyo'"),
    # the names, not the first four columns
    ("List the customers who live in Tokyo", ["customers"],
     "SELECT name FROM customers WHERE city = 'Tokyo'",
     "SELECT id, name, email, city FROM customers WHERE city = 'Tokyo'"),
    # a value some column's samples hold is that column's
    ("How many customers live in Berlin?", ["customers"],
     "SELECT count(*) FROM customers WHERE city = 'Berlin'",
     "SELECT count(*) FROM customers WHERE country = 'Berlin'"),
]


@pytest.mark.parametrize(("question", "tables", "right", "wrong"), CASES,
                         ids=[f"{n}" for n in range(len(CASES))])
def test_the_grammar_admits_the_shape_asked_and_refuses_what_smollm2_wrote(
        demo_snapshot: SchemaSnapshot, question: str, tables: list[str], right: str,
        wrong: str) -> None:
    grammar = sql_grammar(demo_snapshot, tables, question=question)
    assert admits(grammar, right), right
    assert not admits(grammar, wrong), wrong


def test_the_question_narrows_only_with_words_that_say_so(
        demo_snapshot: SchemaSnapshot) -> None:
    """A question with no shape word keeps rows, filters and the whole select list."""
    grammar = sql_grammar(demo_snapshot, ["stores"], question="Show the stores and their city")
    for right in ("SELECT name, city FROM stores", "SELECT name FROM stores ORDER BY name"):
        assert admits(grammar, right), right


@pytest.mark.parametrize("question", [c[0] for c in CASES])
def test_every_sentence_of_a_shaped_grammar_passes_the_guard(
        demo_snapshot: SchemaSnapshot, demo_db: Path, question: str) -> None:
    rules = gbnf.check(sql_grammar(demo_snapshot, ["orders", "customers", "products"],
                                   question=question))
    rng = random.Random(question)
    with tablechat.connect(demo_db) as tc:
        for _ in range(25):
            sql = sample(rules, rng, depth=7)
            tc.check_sql(sql)  # raises if refused
            try:  # and the database finds no type error in it (SmolLM2: sum(name * ...))
                tc.run_sql(sql)
            except SQLExecutionError as exc:  # an overflow is the data's, not the grammar's
                assert "Out of Range" in exc.message, (sql, exc.message)
