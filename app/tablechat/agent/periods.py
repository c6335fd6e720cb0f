"""The time periods a question names, as date conditions (issue 13).

Under the schema's grammar SmolLM2-135M wrote "in 2023" as ``order_date > DATE '2023-01-01'``,
``= DATE '2023-05-03'`` or ``year(order_date) = 2023 AND order_date = ...``; "in November 2022"
as two equalities. The period a question names is plain to read ("in 2023", "November 2022",
"Q1 2024", "the fourth quarter of 2023", "the first half of 2023", "between June 1 and
August 31, 2024", "after 2020"), so it is read here, and the grammar
(:func:`.grammar.sql_grammar`) offers a date column only these conditions:

    order_date >= DATE '2022-11-01' AND order_date < DATE '2022-12-01'

:func:`periods` gives each as a :class:`Period`; :meth:`Period.condition` writes it over one
column in GBNF. No schema or question set went into it: it is a reading of English dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november" \
         r"|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)"
_YEAR = r"((?:19|20)\d\d)"
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3,
            "4th": 4}

_SPAN = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+{_YEAR})?\s+"
                   rf"(?:and|to|until|through|-)\s+{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+"
                   rf"{_YEAR}\b", re.I)
_QUARTER = re.compile(rf"\bq([1-4])\s+(?:of\s+)?{_YEAR}\b"
                      rf"|\b(first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter\s+(?:of\s+)?"
                      rf"{_YEAR}\b", re.I)
_HALF = re.compile(rf"\b(first|second)\s+half\s+(?:of\s+)?{_YEAR}\b", re.I)
_MONTH_YEAR = re.compile(rf"\b{_MONTH}\s+(?:of\s+)?{_YEAR}\b", re.I)
_SIDE = re.compile(rf"\b(after|since|before)\s+{_YEAR}\b", re.I)  # "from 2023": in it
_BARE_YEAR = re.compile(rf"\b{_YEAR}\b")


def _month(name: str) -> int:
    return next(i for i, m in enumerate(_MONTHS, start=1) if m.startswith(name.lower()[:3]))


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """A condition on a date: ``start <= d < end`` (``end`` exclusive), ``start <= d <= end``
    (``inclusive``), or one side only (the other None)."""

    start: date | None
    end: date | None
    inclusive: bool = False

    def condition(self, column: str) -> str:
        """The condition over ``column`` (a GBNF fragment) as a GBNF sequence."""
        def lit(day: date) -> str:
            return f"DATE '{day.isoformat()}'"

        if self.inclusive and self.start and self.end:
            return f'{column} " BETWEEN {lit(self.start)} AND {lit(self.end)}"'
        if self.start and self.end:
            return (f'{column} " >= {lit(self.start)} AND " {column} '
                    f'" < {lit(self.end)}"')
        if self.start:
            return f'{column} " >= {lit(self.start)}"'
        assert self.end is not None
        return f'{column} " < {lit(self.end)}"'


def periods(question: str) -> list[Period]:
    """The periods ``question`` names, each once, in the order written; [] when it names no
    year (relative periods such as "the last 7 days" are not read)."""
    found: list[tuple[int, Period]] = []
    taken: list[tuple[int, int]] = []

    def free(match: re.Match[str]) -> bool:
        return not any(a < match.end() and match.start() < b for a, b in taken)

    def add(match: re.Match[str], period: Period) -> None:
        taken.append((match.start(), match.end()))
        found.append((match.start(), period))

    for m in _SPAN.finditer(question):
        year_end = int(m.group(6))
        year_start = int(m.group(3)) if m.group(3) else year_end
        try:
            add(m, Period(date(year_start, _month(m.group(1)), int(m.group(2))),
                          date(year_end, _month(m.group(4)), int(m.group(5))), inclusive=True))
        except ValueError:  # "February 30"
            continue
    for m in _QUARTER.finditer(question):
        if free(m):
            quarter = int(m.group(1)) if m.group(1) else _ORDINAL[m.group(3).lower()]
            start = date(int(m.group(2) or m.group(4)), 3 * quarter - 2, 1)
            add(m, Period(start, _add_months(start, 3)))
    for m in _HALF.finditer(question):
        if free(m):
            start = date(int(m.group(2)), 1 if m.group(1).lower() == "first" else 7, 1)
            add(m, Period(start, _add_months(start, 6)))
    for m in _MONTH_YEAR.finditer(question):
        if free(m):
            start = date(int(m.group(2)), _month(m.group(1)), 1)
            add(m, Period(start, _add_months(start, 1)))
    for m in _SIDE.finditer(question):
        if free(m):
            year = int(m.group(2))
            word = m.group(1).lower()
            if word == "after":
                add(m, Period(date(year + 1, 1, 1), None))
            elif word == "since":
                add(m, Period(date(year, 1, 1), None))
            else:
                add(m, Period(None, date(year, 1, 1)))
    for m in _BARE_YEAR.finditer(question):
        if free(m):
            start = date(int(m.group(1)), 1, 1)
            add(m, Period(start, _add_months(start, 12)))
    return list(dict.fromkeys(period for _, period in sorted(found, key=lambda f: f[0])))


__all__ = ["Period", "periods"]
