"""Execution-accuracy comparison: multisets vs lists, tolerance, NULLs, shapes, query reading."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from tablechat.eval.compare import (
    column_permutations,
    compare_results,
    derive_kind,
    has_top_level_order_by,
    permute,
    values_equal,
)
from tablechat.eval.ties import compare_with_ties, order_key_query


def test_same_rows_in_another_order_match_as_a_multiset() -> None:
    gold = [(1, "a"), (2, "b"), (3, "c")]
    assert compare_results(gold, [(3, "c"), (1, "a"), (2, "b")]).equal


def test_order_matters_when_the_gold_query_sorts() -> None:
    gold = [(1, "a"), (2, "b")]
    verdict = compare_results(gold, [(2, "b"), (1, "a")], ordered=True)
    assert not verdict.equal
    assert "row 1" in verdict.reason
    assert compare_results(gold, [(1, "a"), (2, "b")], ordered=True).equal


def test_duplicates_count_in_a_multiset() -> None:
    assert not compare_results([("a",), ("a",), ("b",)], [("a",), ("b",), ("b",)]).equal
    assert compare_results([("a",), ("a",), ("b",)], [("a",), ("b",), ("a",)]).equal


def test_different_row_counts_never_match() -> None:
    verdict = compare_results([(1,), (2,)], [(1,), (2,), (2,)])
    assert not verdict.equal
    assert "row count" in verdict.reason
    assert not compare_results([(1,)], []).equal
    assert compare_results([], []).equal


def test_numbers_compare_with_tolerance() -> None:
    assert compare_results([(1.875,)], [(1.875 + 1e-10,)]).equal
    assert compare_results([(1_000_000.0,)], [(1_000_000.5,)]).equal  # rel 1e-6
    assert not compare_results([(1_000_000.0,)], [(1_000_002.0,)]).equal
    assert compare_results([(0.0,)], [(5e-10,)]).equal  # abs 1e-9
    assert not compare_results([(0.0,)], [(1e-6,)]).equal
    assert not compare_results([(1.5,)], [(1.6,)]).equal


def test_int_float_and_decimal_are_the_same_number() -> None:
    assert compare_results([(3,)], [(3.0,)]).equal
    assert compare_results([(decimal.Decimal("2.50"),)], [(2.5,)]).equal
    assert not compare_results([(3,)], [(4,)]).equal
    assert values_equal(10**20, 10**20)
    assert not values_equal(10**20, 10**20 + 1)  # big integers stay exact


def test_none_equals_none_only() -> None:
    assert compare_results([(None, 1)], [(None, 1)]).equal
    assert not compare_results([(None,)], [(0,)]).equal
    assert not compare_results([(None,)], [("",)]).equal
    assert values_equal(float("nan"), float("nan"))


def test_strings_compare_exactly() -> None:
    assert not compare_results([("Paris",)], [("paris",)]).equal
    assert not compare_results([("Paris",)], [("Paris ",)]).equal
    assert not compare_results([("3",)], [(3,)]).equal  # text is not a number


def test_column_names_play_no_part_but_column_order_does() -> None:
    # the comparison takes rows only: SELECT count(*) AS n and SELECT count(*) compare equal
    assert compare_results([(5, "x")], [(5, "x")]).equal
    assert not compare_results([(5, "x")], [("x", 5)]).equal


def test_different_column_counts_never_match() -> None:
    verdict = compare_results([(1, "a")], [(1, "a", None)])
    assert not verdict.equal
    assert "column count" in verdict.reason


def test_near_ties_still_pair_up_without_an_order() -> None:
    # sorting puts (1.0, 'b') before (1.0000000001, 'a'); the matching still pairs them
    gold = [(1.0, "b"), (1.0000000001, "a")]
    predicted = [(1.0000000001, "b"), (1.0, "a")]
    assert compare_results(gold, predicted).equal


def test_mixed_types_and_dates_sort_and_compare() -> None:
    day = dt.date(2024, 5, 1)
    gold = [(None, day), (1, "x"), ("y", 2.5)]
    assert compare_results(gold, [("y", 2.5), (None, day), (1, "x")]).equal
    assert not compare_results(gold, [("y", 2.5), (None, dt.date(2024, 5, 2)), (1, "x")]).equal


@pytest.mark.parametrize(
    ("sql", "ordered"),
    [
        ("SELECT name FROM t ORDER BY age", True),
        ("SELECT name FROM t", False),
        ("SELECT * FROM (SELECT name FROM t ORDER BY age LIMIT 3)", False),
        ("WITH x AS (SELECT a FROM t ORDER BY a) SELECT a FROM x", False),
        ("SELECT a FROM t UNION SELECT a FROM u ORDER BY a", True),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b)", False),
        ("not sql at all (", False),
    ],
)
def test_top_level_order_by(sql: str, ordered: bool) -> None:
    assert has_top_level_order_by(sql) is ordered


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT name FROM t", "simple"),
        ("SELECT name FROM t WHERE a > 1", "filter"),
        ("SELECT count(*) FROM t", "aggregate"),
        ("SELECT name FROM t ORDER BY a DESC LIMIT 1", "order_limit"),
        ("SELECT a, count(*) FROM t GROUP BY a", "group_by"),
        ("SELECT t.a FROM t JOIN u ON t.id = u.id", "join"),
        ("SELECT a FROM t WHERE a > (SELECT avg(a) FROM t)", "nested"),
        ("SELECT a FROM t EXCEPT SELECT a FROM u", "nested"),
    ],
)
def test_derived_kind(sql: str, kind: str) -> None:
    assert derive_kind(sql) == kind


# -- ties under ORDER BY ----------------------------------------------------------------------
KEYED = [("x", 5), ("y", 5), ("z", 3), ("w", 3), ("v", 1)]  # name, trailing sort key


def test_tied_rows_may_be_permuted() -> None:
    assert compare_with_ties(KEYED, 1, [("y",), ("x",), ("w",), ("z",), ("v",)]).equal
    assert not compare_with_ties(KEYED, 1, [("y",), ("z",), ("x",), ("w",), ("v",)]).equal
    assert not compare_with_ties(KEYED, 1, [("y",), ("x",), ("w",), ("z",)]).equal


def test_a_limit_may_cut_through_tied_rows() -> None:
    assert compare_with_ties(KEYED, 1, [("y",), ("x",), ("w",)], limit=3).equal
    assert compare_with_ties(KEYED, 1, [("x",), ("y",), ("z",)], limit=3).equal
    assert not compare_with_ties(KEYED, 1, [("x",), ("y",), ("v",)], limit=3).equal
    assert not compare_with_ties(KEYED, 1, [("x",), ("y",)], limit=3).equal


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a, count(*) AS n FROM t GROUP BY a ORDER BY n DESC",
         ("SELECT a, COUNT(*) AS n, COUNT(*) AS __tablechat_order_key_0", 1, None)),
        ("SELECT name FROM t ORDER BY age DESC LIMIT 3",
         ("SELECT name, age AS __tablechat_order_key_0 FROM t ORDER BY age DESC", 1, 3)),
        ("SELECT a, b FROM t ORDER BY 2, a",
         ("SELECT a, b, b AS __tablechat_order_key_0, a AS __tablechat_order_key_1", 2, None)),
    ],
)
def test_order_key_query(sql: str, expected: tuple[str, int, int | None]) -> None:
    keyed = order_key_query(sql)
    assert keyed is not None
    prefix, keys, limit = expected
    assert keyed.sql.startswith(prefix)
    assert "LIMIT" not in keyed.sql
    assert (keyed.keys, keyed.limit) == (keys, limit)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT name FROM t",  # no ORDER BY
        "SELECT DISTINCT name FROM t ORDER BY age",  # an extra column changes DISTINCT
        "SELECT * FROM t ORDER BY a",
        "SELECT a FROM t UNION SELECT a FROM u ORDER BY 1",
        "SELECT a FROM t ORDER BY a LIMIT 2 OFFSET 1",
    ],
)
def test_order_key_query_declines(sql: str) -> None:
    assert order_key_query(sql) is None


def test_column_permutations_find_the_order_spiders_test_suite_accepts() -> None:
    gold = [(12.0, "cat"), (11.35, "dog")]
    predicted = [("cat", 12.0), ("dog", 11.35)]
    assert not compare_results(gold, predicted).equal  # strict: columns in the gold order
    orders = column_permutations(gold, predicted)
    assert orders == [(1, 0)]
    assert compare_results(gold, permute(predicted, orders[0])).equal


def test_column_permutations_never_excuse_a_wrong_value_or_shape() -> None:
    assert column_permutations([(1, "a")], [("a", 2)]) == []  # no column holds 1
    assert column_permutations([(1, "a")], [("a", 1, 0)]) == []  # a column more
    assert column_permutations([(1,)], [(1,)]) == []  # one column: nothing to permute
