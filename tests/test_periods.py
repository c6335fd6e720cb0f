"""The periods a question names, read as date conditions (``agent/periods.py``, issue 13)."""

from __future__ import annotations

from datetime import date

import pytest

from tablechat.agent.periods import Period, periods


@pytest.mark.parametrize(("question", "expected"), [
    ("How many orders were placed in 2023?", Period(date(2023, 1, 1), date(2024, 1, 1))),
    ("What was the revenue in December 2024?", Period(date(2024, 12, 1), date(2025, 1, 1))),
    ("sales in march of 2021", Period(date(2021, 3, 1), date(2021, 4, 1))),
    ("How many orders did we get in Q1 2024?", Period(date(2024, 1, 1), date(2024, 4, 1))),
    ("revenue in the fourth quarter of 2023", Period(date(2023, 10, 1), date(2024, 1, 1))),
    ("our revenue in the first half of 2023", Period(date(2023, 1, 1), date(2023, 7, 1))),
    ("the second half of 2022", Period(date(2022, 7, 1), date(2023, 1, 1))),
    ("orders between June 1 and August 31, 2024",
     Period(date(2024, 6, 1), date(2024, 8, 31), inclusive=True)),
    ("Which stores opened after 2020?", Period(date(2021, 1, 1), None)),
    ("customers since 2019", Period(date(2019, 1, 1), None)),
    ("stores opened before 2010", Period(None, date(2010, 1, 1))),
])
def test_a_named_period_is_read_as_its_dates(question: str, expected: Period) -> None:
    assert periods(question) == [expected]


def test_no_year_no_period() -> None:
    assert periods("How many orders came in during the last 7 days?") == []
    assert periods("Which products cost more than $300?") == []
    # no such day: not a span; the year remains
    assert periods("orders between February 30 and March 3, 2024") == [
        Period(date(2024, 1, 1), date(2025, 1, 1))]


def test_two_periods_in_order() -> None:
    assert periods("Compare 2022 with Q1 2024") == [
        Period(date(2022, 1, 1), date(2023, 1, 1)), Period(date(2024, 1, 1), date(2024, 4, 1))]


def test_a_condition_over_one_column() -> None:
    column = '"order_date"'
    assert Period(date(2023, 1, 1), date(2024, 1, 1)).condition(column) == (
        '"order_date" " >= DATE \'2023-01-01\' AND " "order_date" " < DATE \'2024-01-01\'"')
    assert Period(date(2024, 6, 1), date(2024, 8, 31), True).condition(column) == (
        '"order_date" " BETWEEN DATE \'2024-06-01\' AND DATE \'2024-08-31\'"')
    assert Period(None, date(2010, 1, 1)).condition(column) == (
        '"order_date" " < DATE \'2010-01-01\'"')
