"""Conditions (which column a value, a number or a date applies to), HAVING, and the
confidence score of a resolved question."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .index import name_words
from .intent import Col, Cond, DateSpec, GroupKey, Having, Intent
from .roles import PCond
from .scope import ResolverBase
from .text import FILLER, OPERATOR_WORDS, SOFT_VERBS, STOPWORDS, root

HARMLESS_KW = frozenset({"and", "or", "comma", "only", "this", "distinct", "then", "dir",
                         "instead", "whatabout", "halfword", "howmuch", "breakdown"})
# Words about how to present a result: accounted for by the table and chart every answer has.
PRESENTATION = frozenset({"chart", "plot", "graph", "visualize", "visualise", "draw", "bar",
                          "line", "pie", "diagram", "histogram", "table", "tabulate", "view",
                          "report", "overview"})


class FilterResolver(ResolverBase):
    """Conditions, HAVING and the confidence score."""

    def _conds(self, intent: Intent) -> None:
        for pc in self.p.conds:
            cond = self._cond(pc, intent)
            if cond is None:
                self.penalty *= 0.3
                self.missing.append("which column a condition applies to")
                continue
            intent.conds.append(cond)

    def _cond(self, pc: PCond, intent: Intent) -> Cond | None:
        tables = intent.tables() or self.explicit
        col: Col | None = None
        values: tuple[Any, ...] = pc.values
        if pc.ref is not None:
            fam: tuple[str, ...] = ()
            if pc.op in (">", "<", ">=", "<=", "between") and pc.date is None:
                fam = ("number", "year", "temporal")
            elif pc.date is not None or (pc.op == "in" and not values):
                fam = ("temporal", "year")
            col = self.col_of(pc.ref, fam)
            target = self.pick(pc.ref, ("column",), fam)
            if (target is not None and target.weight < 0.58) or (
                    target is not None and target.weight < 0.7 and target.table not in tables):
                self.penalty *= 0.6
                self.notes.append("a condition on a name that only partly matches a column")
        elif pc.props:
            col = self.props_col(pc.props, tables)
        elif pc.hits:
            col, values = self._value_col(pc, tables)
        elif pc.date is not None or (pc.values and self._is_year(pc.values[0])):
            col = self.date_col(pc.pos, self._facts(intent))
        if col is None:
            return None
        info = self.index.column(col.table, col.column)
        if pc.percent and info is not None and isinstance(info.high, int | float) \
                and info.high <= 1:
            values = tuple(v / 100 for v in values)
        date = pc.date
        if date is None and info is not None and info.family == "temporal" and values and \
                self._is_year(values[0]):
            y = int(values[0])
            date = DateSpec(dt.date(y, 1, 1), dt.date(y + 1, 1, 1), text=str(y))
            values = ()
        if date is not None and info is not None and info.family != "temporal":
            if date.year is None:
                return None
            op = "=" if pc.op == "in" else pc.op
            return Cond(col, op, (float(date.year),), joiner=pc.joiner)
        if date is not None:
            return Cond(col, pc.op, (), date=date, joiner=pc.joiner)
        op = pc.op
        if op == "in" and len(values) == 1:
            op = "="
        if op == "=" and pc.like == "ci":
            return Cond(col, "like", values, like="ci", joiner=pc.joiner)
        return Cond(col, op, values, like=pc.like, joiner=pc.joiner)

    @staticmethod
    def _is_year(v: Any) -> bool:
        return isinstance(v, float | int) and v == int(v) and 1800 <= v <= 2100

    def _value_col(self, pc: PCond, tables: list[str]) -> tuple[Col | None, tuple[Any, ...]]:
        def score(h: Any) -> float:
            s = 0.0
            if h.table in tables:
                s += 1.0 + (0.5 if h.table == self.subject else 0.0)
            s += self._near(h.table)
            entry = self.index.table(h.table)
            if entry is not None and entry.label == h.column:
                s += 0.1
            return s

        ranked = sorted(pc.hits, key=score, reverse=True)
        hit = ranked[0]
        typed = " ".join(t.text for t in self.p.tokens[self.p.items[pc.pos].start:
                                                         self.p.items[pc.pos].end])
        if typed.islower() and str(hit.value) != typed and " " not in typed and \
                hit.table not in tables and self.p.items[pc.pos].get("quoted") is None:
            self.penalty *= 0.45
            self.notes.append(f"{typed!r} may be a word rather than the value {hit.value!r}")
        if len({(h.table, h.column) for h in ranked}) > 1 and \
                score(ranked[1]) >= score(hit) - 0.05:
            self.penalty *= 0.5
            self.notes.append(f"{hit.value!r} is in several columns")
        return Col(hit.table, hit.column), (hit.value,)

    def _check_conds(self, intent: Intent) -> None:
        """Conditions that cannot hold together on one row point at a set operation."""
        for i, a in enumerate(intent.conds):
            for b in intent.conds[i + 1:]:
                if a.col != b.col or b.joiner != "and" or a.date or b.date:
                    continue
                if a.op == "=" and b.op == "=":
                    if not intent.measures:
                        self.penalty *= 0.4
                        self.missing.append("rows having both values (needs a set operation)")
                elif {a.op[:1], b.op[:1]} == {"<", ">"}:
                    low = a if a.op.startswith(">") else b
                    high = b if low is a else a
                    if low.values and high.values and low.values[0] >= high.values[0]:
                        self.penalty *= 0.3
                        self.missing.append("conditions that cannot both hold")

    def _having(self, intent: Intent) -> None:
        for ref, op, value in self.p.having:
            t = self.pick(ref, ("table",))
            if t is None:
                continue
            if (op == ">=" and value == 1) or (op == ">" and value == 0):
                intent.joins.append(t.table)  # "at least one order": has some
                if not intent.measures:
                    intent.distinct = True
                continue
            intent.having.append(Having(t.table, op, value))
            if t.table == self.subject and not intent.groups:
                self.penalty *= 0.3
                self.missing.append("a count of the rows per group")
            if intent.groups or intent.measures:
                continue
            if intent.columns:
                for col in intent.columns:
                    intent.groups.append(GroupKey(col))
                intent.columns = []
                self._key_groups(intent)  # two people with one name are two groups
            elif self.subject and self.subject != t.table:
                self._group_entity(intent, self.subject)

    def _echoes(self, word: str, intent: Intent) -> bool:
        """'signed' for signup_date, 'opened' for opened_on: a verb form of a used name."""
        stem = root(word)
        if len(stem) < 4 or word in OPERATOR_WORDS:
            return False
        used = [*intent.columns, *(c.col for c in intent.conds), *(g.col for g in intent.groups),
                *(m.col for m in intent.measures if m.col)]
        words = {w for c in used if c for w in name_words(c.column)}
        words |= {w for t in intent.tables() for w in name_words(t)}
        for m in intent.measures:
            if m.metric:
                words |= set(m.metric.split("_"))
        return any(w.startswith(stem[:4]) and len(w) >= 4 for w in words)

    def _finish(self, intent: Intent) -> None:
        """Score the reading, and refuse it (confidence 0) when a content word of the question
        is left unexplained: a wrong answer stated confidently is worse than "I can't" (issue 12:
        "monthly" was silently dropped, "average" matched a text value)."""
        score = self.penalty
        unknown: list[str] = []
        for it in self.p.items:
            if it.used:
                continue
            text = " ".join(t.text for t in self.p.tokens[it.start:it.end])
            if it.slot is None:
                tok = it.token
                if tok is None or tok.kind == "punct" or tok.norm in STOPWORDS \
                        or tok.norm in FILLER or tok.stem in FILLER or tok.norm in PRESENTATION:
                    continue
                if tok.norm in SOFT_VERBS or self._echoes(tok.norm, intent):
                    score *= 0.9
                    continue
                unknown.append(tok.text)
                continue
            kws = [k for k in it.kws if k not in HARMLESS_KW and not (
                k == "agg" and it.kw_arg("agg") == "total" and intent.measures)]
            if it.kws and not kws:
                continue
            number = it.get("number") is not None and text.lower() not in ("one", "ones")
            if kws or it.get("value") or it.get("quoted") or number or it.date:
                unknown.append(text)  # a number or date left out is a condition dropped
        if any(it.has_kw("howmuch") for it in self.p.items) and not intent.measures:
            unknown.append("how much")  # nothing measured: the words asking for an amount
        for problem in self.p.problems:
            score *= 0.3
            self.missing.append(problem)
        if not (intent.measures or intent.columns or intent.groups) and not self.partial:
            score = 0.0
            self.missing.append("what to show")
        if unknown:
            score = 0.0
        intent.unknown = list(dict.fromkeys(unknown))
        intent.confidence = round(score, 3)
        intent.understood = intent.describe()
        intent.missing = list(dict.fromkeys(self.missing + self.notes))
