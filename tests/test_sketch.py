"""The shape a question asks for, read from its words (``agent/sketch.py``, issue 13)."""

from __future__ import annotations

import pytest

from tablechat.agent.sketch import Sketch, sketch, top_count


@pytest.mark.parametrize(("question", "aggregates"), [
    ("How many singers do we have?", {"count"}),
    ("What is the number of cars?", {"count"}),
    ("What is the average age of all teachers?", {"avg"}),
    ("What is the total budget of the departments?", {"sum"}),
    ("How much did we spend?", {"sum"}),
    ("What is the highest salary?", {"max"}),
    ("What's the lowest price?", {"min"}),
    ("What are the minimum, average and maximum ages?", {"min", "avg", "max"}),
    ("List the names of the teachers.", set()),
])
def test_the_aggregates_a_question_names(question: str, aggregates: set[str]) -> None:
    assert sketch(question).aggregates == aggregates


@pytest.mark.parametrize(("question", "grouped", "per"), [
    ("Number of pets per owner", True, ("owner",)),
    ("Revenue by sales channel", True, ("sale", "channel")),
    ("How many students are there in each department?", True, ("department",)),
    ("Break down flights by airline", True, ("airline",)),
    ("Monthly revenue in 2024", True, ("month",)),
    # not a grouping: a sort order, a person, a list
    ("Show the names ordered by age", False, ()),
    ("Show all orders placed by Ahmed Kim", False, ()),
    ("List every customer", False, ()),
])
def test_a_grouping_and_its_key_words(question: str, grouped: bool,
                                      per: tuple[str, ...]) -> None:
    shape = sketch(question)
    assert shape.grouped is grouped
    assert shape.per == per


@pytest.mark.parametrize(("question", "top", "descending"), [
    ("What are the top 5 products by revenue?", 5, True),
    ("What are our 3 cheapest products?", 3, False),
    ("Which 3 customers placed the most orders?", 3, True),
    ("Which city has the most customers?", 1, True),
    ("Who is the youngest singer with the lowest age?", 1, False),
    # a number that is a value, a price, a share or a year: no ranking
    ("Which products cost more than $30?", None, None),
    ("How many lines had a discount of 20% or more?", None, None),
    ("Which stores opened after 2020?", None, None),
    ("What is the highest price?", None, None),
])
def test_a_ranking_its_size_and_direction(question: str, top: int | None,
                                          descending: bool | None) -> None:
    shape = sketch(question)
    assert (shape.top, shape.descending) == (top, descending)


def test_the_number_of_a_ranking_is_the_one_written() -> None:
    assert top_count("Top 10 albums") == (10, "10")
    assert top_count("the 4 biggest cities in 2020") == (4, "4")
    assert top_count("sales in 2024 above 300") is None


def test_a_counted_word_distinct_and_or() -> None:
    shape = sketch("How many different countries do our customers come from?")
    assert shape.counted == "country" and shape.distinct
    assert sketch("Orders from Berlin or Paris").either
    assert not sketch("a discount of 20% or more").either


def test_a_question_with_no_shape_word_narrows_nothing() -> None:
    assert sketch("Show the names of the stores") == Sketch()
