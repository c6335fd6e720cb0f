"""Give each mention of a question a role: measure, condition, group, order, rank, projection.

The passes run from the most specific pattern to the least (comparisons before bare numbers,
values before leftover names); what no pass explains lowers the confidence in ``resolve.py``.
"""

from __future__ import annotations

import itertools

from .conditions import ConditionPasses
from .roles import SOFT_LINKS, TIME_WORDS, Parsed, PMeasure, PRank
from .text import ALL_WORDS

# Time-grain adjectives that ask for one row per period wherever they stand.
ADVERB_UNITS = frozenset({"daily", "weekly", "monthly", "quarterly", "yearly", "annual",
                          "annually"})


class Parser(ConditionPasses):
    def parse(self) -> Parsed:
        self._compounds()
        self._likes()
        self._ranges()
        self._comparisons()
        self._top()
        self._values()
        self._numbers()
        self._dates()
        self._order_group()
        self._aggregates()
        self._ranks()
        self._rest()
        self._joiners()
        return self.p

    def _joiners(self) -> None:
        conds = sorted(self.p.conds, key=lambda c: c.pos)
        for prev, cond in itertools.pairwise(conds):
            between = [k for it in self.items[prev.pos + 1:cond.pos] for k in it.kws]
            cond.joiner = "or" if "or" in between else "and"
            if cond.joiner == "and" and "comma" in between and "and" not in between and \
                    prev.hits and cond.hits:
                cond.joiner = "or"
        self.p.conds = conds

    def _top(self) -> None:
        for j, it in enumerate(self.items):
            if it.used:
                continue
            if it.has_kw("top"):
                k = self.right(j)
                n = self.number(k)
                desc = it.kw_arg("top") == "desc"
                self.p.limit = int(n) if n is not None else 1
                self.p.ranks.append(PRank(desc, "measure", pos=j, limit=self.p.limit))
                self.use(j, *( (k,) if n is not None else ()), role="top")
                continue
            n = self.number(j)
            if n is None or n != int(n) or not 1 <= n <= 1000:
                continue
            nxt = self.item(self.right(j))
            if nxt is None:
                continue
            m = nxt.get("schema")
            kinds = {t.kind for t in m.targets} if m is not None else set()
            if not (nxt.has_kw("agg", "supprop", "mode") or kinds & {"metric", "table"}):
                continue
            prev = self.item(self.left(j))
            ranked_later = any(i.has_kw("agg", "supprop", "mode") for i in self.items[j + 1:])
            if m is not None and not ranked_later and not (prev and prev.has_kw("recent")) \
                    and "metric" not in kinds:
                continue  # "3 stores" with nothing to rank them by
            self.p.limit = int(n)
            self.use(j, role="top")

    def _order_group(self) -> None:
        pending: int | None = None  # "sort ... by X": an order verb waiting for its "by"
        for j, it in enumerate(self.items):
            if it.used:
                continue
            if it.has_kw("order"):
                desc = it.kw_arg("order") == "desc"
                k = self.right(j)
                while (nxt := self.item(k)) is not None and nxt.has_kw("dir", "sortdir") and \
                        not nxt.get("schema"):
                    desc = (nxt.kw_arg("dir") or nxt.kw_arg("sortdir")) == "desc"
                    self.use(k, role="order")
                    k = self.right(k)
                if (cnt := self.item(k)) is not None and cnt.has_kw("count") and not cnt.used:
                    self.p.orders.append((None, desc, -1))  # "in ascending order of count"
                    self.use(j, k, role="order")
                    continue
                ref = self.schema(k, ("column", "metric"))
                verb = self.p.tokens[it.start].norm in ("sort", "order", "rank", "arrange") and \
                    it.end - it.start == 1
                later_by = any(self.p.tokens[x.start].norm == "by" and x.has_kw("group")
                               for x in self.items[j + 1:])
                if ref is None or (verb and later_by):
                    pending = j
                    self.use(j, role="order")
                    self._sort_direction(j, desc)
                    continue
                d = self._direction(j, k)
                self.p.orders.append((ref, d if d is not None else desc, j))
                self.use(j, ref.pos, role="order")
            elif it.has_kw("group"):
                nxt_tok = self.p.tokens[it.end] if it.end < len(self.p.tokens) else None
                if nxt_tok is not None and nxt_tok.norm in ALL_WORDS and \
                        self.p.tokens[it.start].norm not in ("by", "per"):
                    self.use(j, role="all")  # "across all players": every row, no grouping
                    continue
                k = self.right(j)
                target = self.item(k)
                by = self.p.tokens[it.start].norm == "by"
                if target is not None and target.used == "cond" and by:
                    self.use(j, role="agent")  # "placed by Ahmed Kim"
                    continue
                while target is not None and target.used == "cond":
                    k = self.right(k)
                    target = self.item(k)
                if target is None or target.used:
                    continue
                col_after = self.schema(self.right(k), ("column",))
                if by and target.has_kw("count") and col_after is not None and any(
                        self._numeric(t) for t in col_after.targets):
                    desc = self.p.sort_desc if pending is not None else True
                    self.p.orders.append((col_after, desc, j))  # "by the number of final tables"
                    self.use(j, k, col_after.pos, role="order")
                    pending = None
                    continue
                if by and (target.has_kw("count") or (target.has_kw("agg") and
                                                       self._explicit_agg(k))):
                    if pending is not None:  # "sort members by number of loans"
                        self.p.orders.append((None, self.p.sort_desc, -1))
                        pending = None
                        if self.schema(self.right(k), ("table",)) is None:
                            self.p.problems.append("what to count")
                        self.use(k, role="order")
                    self.use(j, role="order")  # "top 3 members by number of loans"
                    continue
                unit = target.kw_arg("unit")
                ref = self.schema(k, ("column", "table", "metric"))
                top = next((r for r in self.p.ranks if r.kind == "measure"), None)
                if by and ref is not None and top is not None and pending is None and \
                        all(t.kind == "table" for t in ref.targets):
                    # "top countries by customers": ranked by how many customers each has,
                    # not grouped by the customers themselves (issue 12)
                    self.p.ranks.append(PRank(top.desc, "count", ref, pos=j, limit=top.limit))
                    self.use(j, k, role="rank")
                    continue
                before = self.item(j - 1)
                if by and before is not None and before.has_kw("sortdir", "dir") and \
                        not before.get("schema") and pending is None:
                    pending = j
                    self.p.sort_desc = (before.kw_arg("sortdir") or before.kw_arg("dir")) == "desc"
                    before.used = before.used or "order"
                if pending is not None and by and ref is None:
                    self.p.problems.append("what to sort by")
                    self.use(j, role="order")
                    pending = None
                    continue
                if ref is not None and pending is not None and by:
                    d = self._direction(j, k)
                    desc = self.p.sort_desc if d is None else d
                    self.p.orders.append((ref, desc, j))
                    self.use(j, k, role="order")
                    pending = None
                elif ref is not None and all(t.kind == "metric" for t in ref.targets):
                    self.p.orders.append((ref, True, j))
                    self.use(j, k, role="order")
                elif ref is not None and not target.get("value"):
                    word = self.p.tokens[it.start].norm
                    if word in ("each", "every") and self.items[k - 1].used == "hint":
                        self.use(j, role="all")  # "each owner's first name": every row
                        continue
                    self.p.groups.append((ref, str(unit or ""), j))
                    self.use(j, k, role="group")
                elif isinstance(unit, str):
                    self.p.groups.append((None, unit, j))
                    self.use(j, k, role="group")
        if pending is not None and not any(pos > pending for _r, _d, pos in self.p.orders):
            word = self.p.tokens[self.items[pending].start].norm
            if any(it.has_kw("sortdir") for it in self.items) or word in ("sort", "order"):
                self.p.orders.append((None, self.p.sort_desc, pending))
            elif word not in ("ordered", "sorted", "ranked", "arranged"):
                self.p.problems.append("what to sort by")
        for j, it in enumerate(self.items):
            if not it.used and it.has_kw("sortdir"):
                self.p.orders.append((None, it.kw_arg("sortdir") == "desc", j))
                self.use(j, role="order")

    def _sort_direction(self, j: int, default: bool) -> None:
        self.p.sort_desc = default
        for k in range(j + 1, len(self.items)):
            it = self.items[k]
            if not it.used and it.has_kw("sortdir", "dir") and not it.get("schema"):
                self.p.sort_desc = (it.kw_arg("sortdir") or it.kw_arg("dir")) == "desc"
                self.use(k, role="order")
                return

    def _direction(self, j: int, k: int) -> bool | None:
        for idx in range(max(0, j - 3), min(len(self.items), k + 6)):
            it = self.items[idx]
            d = it.kw_arg("dir") or it.kw_arg("sortdir") or (
                it.kw_arg("order") if idx != j else None)
            if d in ("asc", "desc") and not it.get("schema") and not it.used:
                it.used = "order"
                return d == "desc"
            sp = it.get("kw", "supprop")
            if sp is not None and idx > k and not it.used:
                it.used = "order"
                for later in self.items[idx + 1:idx + 4]:  # "from the oldest to the youngest"
                    if later.get("kw", "supprop") is not None and not later.used:
                        later.used = "order"
                        break
                return bool(sp.arg[0] == "max")
        return None

    def _aggregates(self) -> None:
        j = 0
        while j < len(self.items):
            it = self.items[j]
            if it.used:
                j += 1
                continue
            if it.has_kw("count"):
                self._count(j)
            elif it.has_kw("agg") and it.kw_arg("agg") in ("avg", "sum", "total", "max", "min"):
                funcs = [j]
                k = self.right(j)
                while (nx := self.item(k)) is not None and nx.has_kw("and", "comma"):
                    k2 = self.right(k)
                    while (mid := self.item(k2)) is not None and mid.has_kw("and", "comma"):
                        k2 = self.right(k2)
                    first_time = self.p.tokens[self.items[funcs[0]].start].norm in TIME_WORDS
                    nx2 = self.item(k2)
                    timely = first_time and nx2 is not None and \
                        self.p.tokens[nx2.start].norm in TIME_WORDS
                    if nx2 is not None and nx2.has_kw("agg") and not nx2.used \
                            and (self._explicit_agg(k2) or timely):
                        funcs.append(k2)
                        k = self.right(k2)
                    else:
                        break
                ref = self.schema(k, ("column", "metric"))
                timely = all(self.p.tokens[self.items[f].start].norm in TIME_WORDS for f in funcs)
                if timely and (tref := self.schema(k, ("table",))) is not None and (
                        ref is None or max(t.weight for t in tref.targets)
                        >= max(t.weight for t in ref.targets)):
                    ref = tref
                word = self.items[funcs[0]].kw_arg("agg")
                if ref is None and len(funcs) == 1 and word in ("total", "sum") and (
                        rows := self.schema(k, ("table",))) is not None:
                    # "total cities in each district": how many, never a ranking (issue 12)
                    self.p.measures.append(PMeasure("count", rows, funcs[0]))
                    self.use(funcs[0], rows.pos, role="measure")
                    j += 1
                    continue
                explicit = all(self._explicit_agg(f) for f in funcs) or (
                    ref is not None and all(t.kind == "table" for t in ref.targets))
                if ref is not None and explicit:
                    for f in funcs:
                        func = str(self.items[f].kw_arg("agg"))
                        self.p.measures.append(PMeasure("sum" if func == "total" else func,
                                                        ref, f))
                        self.use(f, role="measure")
                    self.use(ref.pos, role="measure")
            j += 1

    def _explicit_agg(self, f: int) -> bool:
        word = self.p.tokens[self.items[f].start].norm
        return word in ("average", "avg", "mean", "total", "sum", "maximum", "max", "minimum",
                        "min")

    def _has_projection(self, j: int) -> bool:
        """Something other than the ranked value is asked for (a name, an entity)."""
        for k, it in enumerate(self.items):
            if k == j or it.used:
                continue
            ref = self.schema(k, ("column", "table"))
            if ref is not None and k < j:
                return True
        return False

    def _count(self, j: int) -> None:
        k = self.right(j)
        distinct = False
        it = self.item(k)
        if it is not None and it.has_kw("distinct"):
            distinct = True
            self.use(k, role="measure")
            k = self.right(k)
        skipped = 0
        while (it := self.item(k)) is not None and it.token is not None and \
                it.token.kind == "word" and skipped < 1:
            k += 1  # an adjective we do not know ("store locations")
            skipped += 1
        ref = self.schema(k, ("table", "column", "metric"))
        if ref is not None and skipped == 0 and (head := self.schema(k + 1, ("table", "column"))) \
                is not None and not self.items[k + 1].get("value"):
            self.p.problems.append("a count of something described by another name")
            ref = head
        if skipped and ref is not None:
            self.p.problems.append("an unknown word before what is counted")
        self.use(j, role="measure")
        if ref is None:
            self.p.measures.append(PMeasure("count", None, j))
            return
        func = "count_distinct" if distinct else "count"
        self.p.measures.append(PMeasure(func, ref, j))
        self.use(ref.pos, role="measure")
        if distinct:  # "the number of different series names and contents"
            k = ref.pos
            while (nx := self.item(self.right(k))) is not None and nx.has_kw("and", "comma") and \
                    (more := self.schema(self.right(self.right(k)), ("column",))) is not None:
                self.p.measures.append(PMeasure(func, more, j))
                self.use(self.right(k), more.pos, role="measure")
                k = more.pos

    def _ranks(self) -> None:
        for j, it in enumerate(self.items):
            if it.used:
                continue
            mode = it.get("kw", "mode")
            agg = it.get("kw", "agg")
            prop = it.get("kw", "supprop")
            if mode is not None:
                desc = mode.arg != "min"
                ref = self.schema(self.right(j)) or self.schema(self.left(j, SOFT_LINKS))
                if ref is not None:
                    self.p.ranks.append(PRank(desc, "mode", ref, pos=j))
                    self.use(j, ref.pos, role="rank")
                continue
            if prop is not None:
                func, props = prop.arg
                before = self.item(self.left(j))
                if before is not None and not before.used and before.has_kw("agg"):
                    if before.kw_arg("agg") in ("min", "mincount"):
                        func = "min" if func == "max" else "max"
                    before.used = "rank"
                self.p.ranks.append(PRank(func == "max", "props", props=props, pos=j,
                                          limit=self.p.limit or 1))
                self.use(j, role="rank")
                continue
            if agg is None:
                continue
            func = str(agg.arg)
            if func in ("avg", "sum", "total"):
                continue  # an aggregate left unused is reported, never read as a ranking
            desc = func in ("max", "maxcount", "latest")
            word = self.p.tokens[it.start].norm
            if func == "latest" or word in ("earliest", "newest", "latest"):
                self.p.ranks.append(PRank(desc, "props", props=("date", "time", "year"), pos=j,
                                          limit=self.p.limit or 1))
                self.use(j, role="rank")
                continue
            k = self.right(j)
            nxt = self.item(k)
            if nxt is not None and nxt.has_kw("count") and not nxt.used:
                func = "maxcount" if desc else "mincount"
                self.use(k, role="rank")
                k = self.right(k)
            ref = self.schema(k, ("table", "column", "metric"))
            if ref is None:
                continue
            best = max(ref.targets, key=lambda t: (t.weight, t.kind == "table"))
            counting = func in ("maxcount", "mincount") or word in (
                "most", "fewest", "least", "more", "fewer") or (
                self.p.tokens[it.start:it.end][-1].norm in ("most", "fewest", "least"))
            if best.kind == "table" and not counting:
                size = ("size", "area", "capacity", "surface", "population", "length")
                self.p.ranks.append(PRank(desc, "props", ref, props=size, pos=j,
                                          limit=self.p.limit or 1))
                self.use(j, role="rank")
                continue
            if func in ("maxcount", "mincount") or best.kind == "table":
                kind = "count"
            elif best.kind == "metric":
                kind = "metric"
            else:
                kind = "col"
            self.p.ranks.append(PRank(desc, kind, ref, pos=j, limit=self.p.limit or 1))
            self.use(j, ref.pos, role="rank")

    def _rest(self) -> None:
        for j, it in enumerate(self.items):
            if it.used:
                continue
            if it.has_kw("both"):
                nxt = self.schema(self.right(j), ("column",))
                if nxt is not None and self.items[nxt.pos].used in ("", "projection"):
                    self.use(j, role="both")
                continue
            if it.has_kw("distinct"):
                self.p.distinct = True
                self.use(j, role="distinct")
                continue
            if it.has_kw("star"):
                self.p.star = True
                self.use(j, role="star")
                continue
            ref = self.schema(j, ("column", "table", "metric"))
            if ref is not None:
                self.p.projections.append(ref)
                self.use(j, role="projection")
            elif isinstance(unit := it.kw_arg("unit"), str) and (
                    (j > 0 and self.items[j - 1].word in ("which", "what"))
                    or self.p.tokens[it.start].norm in ADVERB_UNITS):
                # "monthly revenue" is revenue per month (issue 12: it was silently dropped)
                self.p.groups.append((None, unit, j))
                self.use(j, role="group")
