"""Keeping a weak model's answer sentence honest: every number it states must come from the
result (or the question); otherwise a plain sentence made from the result is used instead.

Seen with SmolLM2-135M (issue 13): "the result is empty" for a 5,000 result, "10.3 % higher"
invented. A sentence is only as good as the numbers it quotes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

_NUMBER = re.compile(r"(?<![\w.])-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def numbers_in(text: str) -> list[float]:
    """The numbers written in ``text`` (thousands separators allowed)."""
    found = []
    for match in _NUMBER.findall(text):
        try:
            found.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return found


def _known(rows: Iterable[tuple[Any, ...]], extra: Iterable[str]) -> list[float]:
    values: list[float] = []
    for row in rows:
        for cell in row:
            if isinstance(cell, bool) or cell is None:
                continue
            if isinstance(cell, int | float) and math.isfinite(float(cell)):
                values.append(float(cell))
            else:  # dates, decimals, text holding numbers: the numbers as written
                values.extend(numbers_in(str(cell)))
    for text in extra:
        values.extend(numbers_in(text))
    return values


def _matches(number: float, known: list[float]) -> bool:
    """``number`` is one of ``known``, as written or rounded (2,345.68 → 2,346 or 2.3k are
    not invented numbers)."""
    for value in known:
        if number == value:
            return True
        for digits in (0, 1, 2):
            if round(value, digits) == number:
                return True
        if value and abs(number - value) / abs(value) < 0.005:
            return True
    return False


def grounded(sentence: str, rows: list[tuple[Any, ...]], *, question: str = "",
             row_count: int | None = None) -> bool:
    """Whether every number in ``sentence`` appears in ``rows``, the question or the row
    count (small counts up to it, "the top 3", included)."""
    known = _known(rows, [question])
    count = len(rows) if row_count is None else row_count
    known.extend(float(n) for n in range(count + 1))
    return all(_matches(n, known) for n in numbers_in(sentence))


def plain_answer(columns: list[str], rows: list[tuple[Any, ...]], truncated: bool) -> str:
    """A sentence made from the result alone (the stand-in for an ungrounded one)."""
    if not rows:
        return "No rows matched the question."
    if len(rows) == 1 and len(columns) == 1:
        return f"The answer is {rows[0][0]} ({columns[0]})."
    if len(rows) == 1:
        parts = ", ".join(f"{c}: {v}" for c, v in zip(columns, rows[0], strict=False))
        return f"The result is one row: {parts}."
    more = " (more rows matched; the result was cut)" if truncated else ""
    return f"The result has {len(rows)} rows{more}; see the table."


__all__ = ["grounded", "numbers_in", "plain_answer"]
