"""The question as a row of items (a mention or a loose word), with dates already merged."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from .intent import DateSpec
from .match import Mention, Slot
from .text import ORDINALS, STOPWORDS, Token

# Loose words skipped when looking for a neighbour.
SKIPPABLE = STOPWORDS - {"not", "no", "by", "per", "each", "every", "than", "between", "or",
                         "and", "but", "only", "most", "least"}


@dataclass(slots=True)
class Item:
    start: int
    end: int
    slot: Slot | None = None
    token: Token | None = None
    date: DateSpec | None = None
    used: str = ""

    def get(self, kind: str, kw: str | None = None) -> Mention | None:
        return self.slot.get(kind, kw) if self.slot is not None else None

    @property
    def kws(self) -> list[str]:
        return [m.kw for m in self.slot.mentions if m.kind == "kw"] if self.slot else []

    def has_kw(self, *names: str) -> bool:
        return any(k in names for k in self.kws)

    def kw_arg(self, name: str) -> object:
        m = self.get("kw", name)
        return m.arg if m is not None else None

    @property
    def skippable(self) -> bool:
        if self.used == "hint":
            return True
        return self.slot is None and self.date is None and (
            self.token is None or (self.token.kind == "punct" and self.token.norm != ",")
            or self.token.norm in SKIPPABLE)

    @property
    def word(self) -> str:
        """The lower-case word of a loose token ("" for a mention)."""
        return self.token.norm if self.token is not None else ""

    @property
    def number(self) -> float | None:
        m = self.get("number")
        return float(m.arg) if m is not None and m.arg is not None else None


def build_items(tokens: list[Token], slots: list[Slot]) -> list[Item]:
    items: list[Item] = []
    by_start = {s.start: s for s in slots}
    i = 0
    while i < len(tokens):
        slot = by_start.get(i)
        if slot is not None:
            items.append(Item(slot.start, slot.end, slot=slot))
            i = slot.end
        else:
            items.append(Item(i, i + 1, token=tokens[i]))
            i += 1
    _merge_dates(items, tokens)
    return [it for it in items if it.used != "merged"]


def _year(item: Item | None) -> int | None:
    if item is None:
        return None
    n = item.number
    if n is not None and n == int(n) and 1800 <= n <= 2100 and item.end - item.start == 1:
        return int(n)
    return None


def _month_end(year: int, month: int) -> dt.date:
    return dt.date(year + 1, 1, 1) if month == 12 else dt.date(year, month + 1, 1)


def _merge_dates(items: list[Item], tokens: list[Token]) -> None:
    i = 0
    n = len(items)

    def at(k: int) -> Item | None:
        while k < n and (items[k].word in ("of", "the", ",") or items[k].kws == ["comma"]):
            k += 1
        return items[k] if k < n else None

    def idx(item: Item | None) -> int:
        return items.index(item) if item is not None else n

    while i < n:
        it = items[i]
        spec: DateSpec | None = None
        last = i
        word = tokens[it.start].norm
        if it.has_kw("recent") or (it.slot and word == "last"):
            j = i + 1
            count = 1
            nxt = at(j)
            if nxt is not None and nxt.number is not None and nxt.number == int(nxt.number):
                count = int(nxt.number)
                j = idx(nxt) + 1
            unit_item = at(j)
            unit = unit_item.kw_arg("unit") if unit_item is not None else None
            if isinstance(unit, str):
                spec = DateSpec(relative=(count, unit), text=f"the last {count} {unit}s"
                                if count > 1 else f"the last {unit}")
                last = idx(unit_item)
        elif it.has_kw("this") or it.has_kw("ytd"):
            unit_item = at(i + 1)
            unit = unit_item.kw_arg("unit") if unit_item is not None and it.has_kw("this") \
                else "year"
            if isinstance(unit, str) and unit in ("year", "month", "quarter", "week"):
                spec = DateSpec(relative=(0, unit), text=f"this {unit}")
                last = idx(unit_item) if it.has_kw("this") else i
        elif it.has_kw("quarter") or (word in ORDINALS and _unit_after(at(i + 1), "quarter")):
            q = it.kw_arg("quarter")
            j = i + 1
            if not isinstance(q, int):
                q = ORDINALS[word] if ORDINALS[word] > 0 else 4
                j = idx(at(i + 1)) + 1
            y_item = at(j)
            year = _year(y_item)
            if year is not None:
                start = dt.date(year, 3 * (q - 1) + 1, 1)
                spec = DateSpec(start, _month_end(year, 3 * q), text=f"Q{q} {year}")
                last = idx(y_item)
            elif 1 <= q <= 4:
                spec = DateSpec(part=("quarter", q), text=f"Q{q}")
                last = j - 1
        elif it.has_kw("half") or (word in ORDINALS and at(i + 1) is not None
                                   and at(i + 1).has_kw("halfword")):  # type: ignore[union-attr]
            h = it.kw_arg("half")
            j = i + 1
            if not isinstance(h, int):
                h = 1 if ORDINALS[word] == 1 else 2
                j = idx(at(i + 1)) + 1
            y_item = at(j)
            year = _year(y_item)
            if year is not None:
                start = dt.date(year, 1 if h == 1 else 7, 1)
                end = dt.date(year, 7, 1) if h == 1 else dt.date(year + 1, 1, 1)
                spec = DateSpec(start, end, text=f"H{h} {year}")
                last = idx(y_item)
        elif it.has_kw("month") or (word == "may" and (
                _year(at(i + 1)) or _day(at(i + 1)) or (i > 0 and tokens[it.start].text == "May"))):
            month = it.kw_arg("month") if it.has_kw("month") else 5
            assert isinstance(month, int)
            j = i + 1
            day_item = at(j)
            day = _day(day_item)
            if day is not None and _year(day_item) is None:
                j = idx(day_item) + 1
            y_item = at(j)
            year = _year(y_item)
            name = calendar.month_name[month]
            if year is not None and day is not None:
                with_day = _safe_date(year, month, day)
                if with_day is not None:
                    spec = DateSpec(with_day, with_day + dt.timedelta(days=1),
                                    text=f"{name} {day}, {year}")
                last = idx(y_item)
            elif year is not None:
                spec = DateSpec(dt.date(year, month, 1), _month_end(year, month),
                                text=f"{name} {year}")
                last = idx(y_item)
            elif day is not None:
                spec = DateSpec(part=("day", month * 100 + day), text=f"{name} {day}")
                last = idx(day_item)
            else:
                spec = DateSpec(part=("month", month), text=name)
        elif _year(it) is not None and not _unit_after(at(i + 1), None):
            year = _year(it)
            assert year is not None
            spec = DateSpec(dt.date(year, 1, 1), dt.date(year + 1, 1, 1), text=str(year))
        if spec is not None:
            it.date = spec
            it.end = items[last].end
            for k in range(i + 1, last + 1):
                items[k].used = "merged"
            i = last + 1
        else:
            i += 1


def _unit_after(item: Item | None, unit: str | None) -> bool:
    if item is None:
        return False
    arg = item.kw_arg("unit")
    if unit is None:
        return isinstance(arg, str) and item.token is None and len(item.kws) == 1 and \
            item.get("schema") is None
    return arg == unit


def _day(item: Item | None) -> int | None:
    if item is None:
        return None
    n = item.number
    if n is not None and n == int(n) and 1 <= n <= 31:
        return int(n)
    if item.token is not None:
        text = item.token.norm.rstrip("stndrh")
        if text.isdigit() and 1 <= int(text) <= 31:
            return int(text)
    return None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
