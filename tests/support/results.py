"""Results as multisets of rounded rows, to compare an answer with hand-written SQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import tablechat
from tablechat.core import TableChat


def as_counter(result: Iterable[Sequence[Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(round(v, 4) if isinstance(v, float) else v for v in r) for r in result)


def rows(tc: TableChat, sql: str) -> Counter[tuple[Any, ...]]:
    """The rows of ``sql`` run straight on the database (no guard, no row cap of the answer)."""
    return as_counter(tc.database.execute(sql, max_rows=10000).rows)


def got(answer: tablechat.Answer) -> Counter[tuple[Any, ...]]:
    """The rows of an answer that must have succeeded with SQL."""
    assert answer.error is None, answer.error
    assert answer.sql is not None, answer.text
    return as_counter(answer.rows)
