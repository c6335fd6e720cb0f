"""Passes that find conditions: comparisons, ranges, values, numbers and dates."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from .index import Target
from .intent import DateSpec
from .roles import SOFT_LINKS, ParserBase, PCond, Ref
from .text import OPERATOR_WORDS

# Keywords that make a word an operator; such a word is a value only when quoted.
OPERATOR_KWS = ("agg", "count", "cmp", "cmpprop", "supprop", "mode", "between", "top")


class ConditionPasses(ParserBase):
    """Conditions first: what they use is no longer free for other roles."""

    def _compounds(self) -> None:
        """'product price', 'singer name': a table followed by one of its columns."""
        for j in range(len(self.items) - 1):
            table = self.schema(j, ("table",))
            col = self.schema(j + 1, ("column",))
            it = self.items[j]
            if table is None or col is None or it.get("value") or it.get("quoted") or (
                    it.token is None and self.p.tokens[it.end - 1].norm !=
                    self.p.tokens[it.end - 1].stem):
                continue
            m = it.get("schema")
            assert m is not None
            if max(m.targets, key=lambda t: (t.weight, t.kind == "table")).kind != "table":
                continue
            names = {t.table for t in table.targets if t.kind == "table"}
            inside = tuple(t for t in col.targets if t.table in names)
            word = self.p.tokens[self.items[j + 1].start].stem
            if not inside and word in ("name", "title") and self.items[j + 1].end - \
                    self.items[j + 1].start == 1:
                entry = self.index.table(next(iter(names))) if len(names) == 1 else None
                if entry is not None and entry.label:
                    inside = (Target("column", entry.name, entry.label, 1.0),)
            if not inside:
                continue
            cm = self.items[j + 1].get("schema")
            assert cm is not None
            others = tuple(t for t in cm.targets if t.kind != "column")
            cm.targets = tuple(Target(t.kind, t.table, t.column, t.weight + 0.3)
                               for t in inside) + others
            it.used = "hint"
            self.p.hints.append(inside[0].table)

    def _likes(self) -> None:
        for j, it in enumerate(self.items):
            if it.used or not it.has_kw("like"):
                continue
            k = self.right(j, frozenset({"in", "its", "their"}))
            target = self.item(k)
            plain = target is not None and target.token is not None and \
                target.token.kind == "word"
            if target is None or not (target.get("quoted") or target.get("value") or plain):
                continue
            text = target.get("quoted").arg if target.get("quoted") else (  # type: ignore[union-attr]
                " ".join(t.text for t in self.p.tokens[target.start:target.end]))
            ref = self.schema(self.left(j, SOFT_LINKS)) or self.schema(
                self.right(k, frozenset({"in", "its", "their", "the"})))
            self.p.conds.append(PCond(ref, "like", (str(text),), like=str(it.kw_arg("like")),
                                      pos=j))
            self.use(j, k, role="cond")
            if ref is not None:
                self.use(ref.pos, role="cond")

    def _ranges(self) -> None:
        """'1 to 2 paragraphs', 'from 5000 to 10000': a range without 'between'."""
        for j, it in enumerate(self.items):
            if it.used or self.number(j) is None:
                continue
            b = j + 1
            tb = self.item(b)
            if tb is None or tb.token is None or tb.token.norm != "to":
                continue
            if self.number(b + 1) is None:
                continue
            self._between(j - 1, first=j)

    def _comparisons(self) -> None:
        for j, it in enumerate(self.items):
            if it.used:
                continue
            if it.has_kw("between"):
                self._between(j)
                continue
            m = it.get("kw", "cmp") or it.get("kw", "cmpprop")
            if m is None:
                continue
            op, props = (m.arg, ()) if m.kw == "cmp" else m.arg
            postfix = op.endswith("+")
            op = op.rstrip("+")
            k = self.left(j) if postfix else self.right(j, frozenset({"the", "a", "an", "of"}))
            value = self.number(k)
            target = self.item(k)
            if value is None and not (target and target.date and not target.used):
                if op in (">", "<") and target is not None and target.has_kw("agg"):
                    self.p.problems.append("a comparison with an aggregate")
                continue
            if self.negated(j):
                op = {">": "<=", "<": ">=", ">=": "<", "<=": ">", "=": "!="}[op]
            assert target is not None
            cond = PCond(None, op, (value,) if value is not None else (), props=props, pos=j,
                         percent=bool(target.token is None and target.slot
                                      and self.p.tokens[target.start].percent))
            if value is None or (target.date and target.date.year is None):
                cond.date = target.date
            anchor = min(j, k)
            ref = self.schema(self.left(anchor, SOFT_LINKS), ("column", "metric"))
            after = self.right(max(j, k))
            if not props and ref is None:
                ref = self.schema(after, ("column", "metric"))
            table = self.schema(after, ("table",)) if after == max(j, k) + 1 else None
            after_item = self.item(after)
            after_m = after_item.get("schema") if after_item is not None else None
            best_after = max(after_m.targets, key=lambda t: t.weight) if after_m else None
            if table is not None and value is not None and not props and (
                    ref is None or ref.pos != after or (best_after and best_after.kind == "table")):
                self.p.having.append((table, op, value))
                self.use(j, k, table.pos, role="having")
                continue
            cond.ref = self._verb_cost(ref) if ref is not None else None
            self.p.conds.append(cond)
            self.use(j, k, role="cond")
            if ref is not None:
                self.use(ref.pos, role="cond")

    def _verb_cost(self, ref: Ref) -> Ref:
        """'books cost more than $30': the verb 'cost' states a price; 'cost us' our cost."""
        it = self.items[ref.pos]
        words = [t.norm for t in self.p.tokens[it.start:it.end]]
        after = self.p.tokens[it.end].norm if it.end < len(self.p.tokens) else ""
        before = self.item(ref.pos - 1)
        if words not in (["cost"], ["costs"]) or after in ("us", "me", "we", "our") or \
                before is None or not (before.get("schema") or before.get("value")):
            return ref
        tables = {t.table for t in ref.targets}
        prices = tuple(Target("column", c.table, c.name, 1.0)
                       for t in tables if (entry := self.index.table(t)) is not None
                       for c in entry.columns.values() if "price" in c.words)
        return Ref(ref.pos, prices) if len(prices) == 1 else ref

    def _between(self, j: int, first: int | None = None) -> None:
        a = self.right(j) if first is None else first
        b = self.right(a) if first is None else first + 1
        c = self.right(b)
        item_b = self.item(b)
        if item_b is None or not (item_b.has_kw("and") or first is not None):
            return
        low, high = self.number(a), self.number(c)
        ia, ic = self.item(a), self.item(c)
        cond: PCond
        if low is not None and high is not None:
            cond = PCond(None, "between", (min(low, high), max(low, high)), pos=j)
        elif ia is not None and ic is not None and ia.date and ic.date and ic.date.end and (
                ia.date.start or (ia.date.part and ia.date.part[0] == "day" and ic.date.start)):
            start = ia.date.start
            if start is None and ia.date.part is not None and ic.date.start is not None:
                mmdd = ia.date.part[1]
                start = dt.date(ic.date.start.year, mmdd // 100, mmdd % 100)
            cond = PCond(None, "in", (), date=DateSpec(start, ic.date.end,
                                                       text=f"{ia.date.text} to {ic.date.text}"),
                         pos=j)
        else:
            return
        after = self.right(c)
        table = self.schema(after, ("table",))
        if table is not None and cond.values and first is not None:
            self.p.having.append((table, ">=", cond.values[0]))
            self.p.having.append((table, "<=", cond.values[1]))
            self.use(a, b, c, after, role="having")
            return
        cond.ref = self.schema(self.left(min(j, a), SOFT_LINKS)) or self.schema(after)
        self.p.conds.append(cond)
        self.use(*([j] if first is None else []), a, b, c, role="cond")
        if cond.ref is not None:
            self.use(cond.ref.pos, role="cond")

    def _values(self) -> None:
        last: PCond | None = None
        for j, it in enumerate(self.items):
            if it.used:
                continue
            vm = it.get("value") or it.get("quoted")
            if vm is None or (it.get("schema") is not None and not self._prefer_value(j)):
                continue
            if it.get("quoted") is None and (it.has_kw(*OPERATOR_KWS) or any(
                    t.norm in OPERATOR_WORDS for t in self.p.tokens[it.start:it.end])):
                continue  # "average", "ratio": read as operators, never as data (issue 12)
            hit_cols = {(h.table, h.column) for h in vm.hits}
            ref = None
            lk = self.left(j, SOFT_LINKS)
            while (li := self.item(lk)) is not None and li.has_kw("neg") and not li.get("schema"):
                lk = self.left(lk, SOFT_LINKS)
            for k in (lk, self.right(j)):
                cand = self.schema(k)
                near = self.item(k)
                nm = near.get("schema") if near is not None and not near.used else None
                if cand is None and nm is not None and hit_cols and any(
                        (t.table, t.column) in hit_cols for t in nm.targets):
                    cand = Ref(k, tuple(t for t in nm.targets if t.kind == "column"))
                if cand is not None and (not hit_cols or any(
                        (t.table, t.column) in hit_cols for t in cand.targets)):
                    targets = tuple(t for t in cand.targets if (t.table, t.column) in hit_cols)
                    ref = Ref(cand.pos, targets or cand.targets)
                    break
            if not vm.hits and ref is None:
                continue
            for k in (j - 1, j + 1):
                table_ref = self.schema(k, ("table",))
                if table_ref is not None and vm.hits:
                    tables = {t.table for t in table_ref.targets}
                    inside_hits = tuple(h for h in vm.hits if h.table in tables)
                    if inside_hits and ref is None:
                        vm = replace(vm, hits=inside_hits)
                        self.p.context.add(k)
            raw: Any = vm.hits[0].value if vm.hits else vm.arg
            if ref is not None and vm.hits:
                raw = next((h.value for h in vm.hits
                            if any((t.table, t.column) == (h.table, h.column)
                                   for t in ref.targets)), raw)
            op = "!=" if self.negated(j) else "="
            joiner = self._joiner(last.pos if last else -1, j)
            cond = PCond(ref, op, (raw,), hits=vm.hits, pos=j, joiner=joiner,
                         like="" if vm.hits or op != "=" else "ci")
            self.p.conds.append(cond)
            last = cond
            self.use(j, role="cond")
            if ref is not None:
                self.use(ref.pos, role="cond")

    def _prefer_value(self, j: int) -> bool:
        it = self.items[j]
        if it.get("quoted"):
            return True
        schema = it.get("schema")
        assert schema is not None
        vm = it.get("value")
        if vm is None:
            return False
        cols = {(h.table, h.column) for h in vm.hits}
        for k in (self.left(j, SOFT_LINKS), self.right(j)):
            cand = self.schema(k)
            if cand and any((t.table, t.column) in cols for t in cand.targets):
                return True
        return max(t.weight for t in schema.targets) < 0.7 or all(
            t.kind == "column" and t.weight < 0.9 for t in schema.targets)

    def _numbers(self) -> None:
        for j, it in enumerate(self.items):
            n = self.number(j)
            if n is None or it.has_kw("top"):
                continue
            ref = None
            nxt = self.item(j + 1)
            if nxt is not None and (cand := self.schema(j + 1)) and any(
                    self._numeric(t) for t in cand.targets):
                ref = cand
            if ref is None:
                cand = self.schema(self.left(j, frozenset({"of", "is", "=", "as", "equal"})))
                if cand is not None and any(self._numeric(t) for t in cand.targets):
                    ref = cand
            if ref is None:
                continue
            values = [n]
            k = j
            while (o := self.item(self.right(k))) is not None and o.has_kw("or") and \
                    (m := self.number(self.right(self.right(k)))) is not None:
                values.append(m)
                self.use(self.right(k), self.right(self.right(k)), role="cond")
                k = self.right(self.right(k))
            self.p.conds.append(PCond(ref, "in" if len(values) > 1 else "=", tuple(values),
                                      pos=j))
            self.use(j, ref.pos, role="cond")

    def _dates(self) -> None:
        for j, it in enumerate(self.items):
            if it.used or it.date is None:
                continue
            ref = self.schema(self.left(j, frozenset({"in", "during", "of", "on", "for"})))
            if ref is not None and not any(self._dated(t) for t in ref.targets):
                ref = None
            joiner = self._joiner(j - 2, j) if j >= 2 and self.items[j - 1].has_kw("or") else "and"
            self.p.conds.append(PCond(ref, "in", (), date=it.date, pos=j, joiner=joiner))
            self.use(j, role="cond")
            if ref is not None:
                self.use(ref.pos, role="cond")
