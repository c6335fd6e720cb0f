"""Build the SQL of an :class:`Intent` as sqlglot expressions (never by formatting user text).

The base table is the one whose rows are measured; the other tables join along the cheapest
foreign-key paths. A path that fans out (one row to many) is noted: counts switch to
``COUNT(DISTINCT key)`` and sums over fanned-out rows lower the confidence.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from sqlglot import exp

from .index import JoinEdge, SchemaIndex, name_words
from .intent import Col, Cond, GroupKey, Intent, Measure
from .sqlparts import PlanError, _compare, _date_range, alias_name, ident


@dataclass(slots=True)
class Built:
    tree: exp.Select
    sql: str
    base: str
    fanout: bool = False
    penalty: float = 1.0
    notes: list[str] = field(default_factory=list)


class SQLBuilder:
    def __init__(self, index: SchemaIndex, hints: set[str] | None = None) -> None:
        self.index = index
        self.dialect = index.dialect
        self.hints = hints or set()
        self.qualify = False
        self.penalty = 1.0
        self.notes: list[str] = []
        self.many: set[str] = set()
        self.inline_rules = False
        self.table_words = {w for t in index.tables.values() for w in t.words}

    # -- expressions --------------------------------------------------------------------------
    def col(self, c: Col) -> exp.Column:
        if self.qualify:
            return exp.Column(this=ident(c.column, self.dialect),
                              table=ident(c.table, self.dialect))
        return exp.Column(this=ident(c.column, self.dialect))

    def table(self, name: str) -> exp.Table:
        return exp.Table(this=ident(name, self.dialect))

    @staticmethod
    def lit(value: object) -> exp.Expr:
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
            return exp.Literal.number(int(value))
        if isinstance(value, int | float):
            return exp.Literal.number(value)
        return exp.Literal.string(str(value))

    @staticmethod
    def date(d: object) -> exp.Expr:
        return exp.cast(exp.Literal.string(str(d)), exp.DataType.build("DATE"))

    # -- joins --------------------------------------------------------------------------------
    def join_plan(self, base: str, needed: list[str]) -> tuple[list[tuple[JoinEdge, str]], bool]:
        """Edges to add (edge, table it brings in) from ``base``, and whether rows fan out."""
        dist: dict[str, float] = {base: 0.0}
        prev: dict[str, tuple[JoinEdge, str]] = {}
        tie: set[str] = set()
        heap: list[tuple[float, str]] = [(0.0, base)]
        while heap:
            d, t = heapq.heappop(heap)
            if d > dist.get(t, float("inf")):
                continue
            for other, edge in self.index.neighbours(t):
                cost = edge.cost + (0.05 if edge.left == other else 0.0)
                if self.hints and any(w in self.hints and w not in self.table_words
                                      for w in _words(edge.left_col)):
                    cost -= 0.3
                nd = d + cost
                old = dist.get(other, float("inf"))
                if nd < old - 1e-9:
                    dist[other] = nd
                    prev[other] = (edge, t)
                    tie.discard(other)
                    heapq.heappush(heap, (nd, other))
                elif abs(nd - old) < 1e-9 and prev.get(other, (None,))[0] != edge:
                    tie.add(other)
        edges: list[tuple[JoinEdge, str]] = []
        fanout = False
        added = {base}
        self.many = set()
        for table in needed:
            if table in added:
                continue
            if table not in dist:
                raise PlanError(f"no join path from {base} to {table}")
            chain: list[tuple[JoinEdge, str]] = []
            t = table
            while t != base:
                edge, parent = prev[t]
                if t in tie:
                    self.penalty *= 0.45
                    self.notes.append(f"several ways to join {table}")
                chain.append((edge, t))
                t = parent
            for edge, t in reversed(chain):
                if t not in added:
                    edges.append((edge, t))
                    added.add(t)
                    if edge.left == t:  # reached the many side from the one side
                        fanout = True
                    if fanout:
                        self.many.add(t)
        return edges, fanout

    def base_table(self, intent: Intent, needed: list[str]) -> str:
        cands: list[str] = []
        for m in intent.measures:
            if m.func == "metric":
                info = self.index.metrics.get(m.metric)
                if info:
                    cands.append(info.base)
            elif m.col is not None:
                cands.append(m.col.table)
            elif m.table:
                cands.append(m.table)
        if intent.having:
            return intent.subject or needed[0]
        if not intent.measures and intent.columns:
            return intent.columns[0].table  # a listing: rows of what is shown
        for cand in dict.fromkeys(cands):
            try:
                _, fan = SQLBuilder(self.index, self.hints).join_plan(cand, needed)
            except PlanError:
                continue
            if not fan:
                return cand
        if cands:
            return cands[0]
        return intent.subject or needed[0]

    # -- the query ----------------------------------------------------------------------------
    def build(self, intent: Intent) -> Built:
        needed = intent.tables()
        for m in intent.measures:
            if m.func == "metric":
                info = self.index.metrics.get(m.metric)
                if info is None:
                    raise PlanError(f"unknown metric {m.metric}")
                needed += [t for t in info.tables if t not in needed]
        if not needed:
            raise PlanError("no table")
        base = self.base_table(intent, needed)
        edges, fanout = self.join_plan(base, needed)
        self.qualify = bool(edges)
        tree = exp.Select().from_(self.table(base))
        for edge, new in edges:
            on = exp.EQ(this=self.col(Col(edge.left, edge.left_col)),
                        expression=self.col(Col(edge.right, edge.right_col)))
            tree = tree.join(self.table(new), on=on)
        joined = {(Col(e.left, e.left_col), Col(e.right, e.right_col)) for e, _t in edges}
        kept: list[GroupKey] = []
        for g in intent.groups:
            if not g.bucket and any(not k.bucket and ((k.col, g.col) in joined or
                                                      (g.col, k.col) in joined) for k in kept):
                continue
            kept.append(g)
        intent = intent.copy()
        intent.groups = kept
        years = {c.col for c in intent.conds if c.date is not None and c.date.year}
        used_alias: set[str] = set()
        selects: list[exp.Expr] = []
        group_exprs: list[exp.Expr] = []
        for g in intent.groups:
            expr, name = self.group_expr(g, years)
            group_exprs.append(expr)
            if g.key is not None:
                group_exprs.append(self.col(g.key))
            if g.show:
                selects.append(self.aliased(expr, name, used_alias, bare=not g.bucket))
        for c in intent.columns:
            selects.append(self.aliased(self.col(c), c.column, used_alias, bare=True))
        rules = self.metric_filters(intent)
        measure_exprs = [self.measure_expr(m, base, fanout) for m in intent.measures]
        if self.inline_rules:
            measure_exprs = [self.filtered(e, r) if (r := self.metric_rule(m, intent)) else e
                             for m, e in zip(intent.measures, measure_exprs, strict=True)]
        for m, expr in zip(intent.measures, measure_exprs, strict=True):
            if not m.hidden:
                selects.append(self.aliased(expr, m.label, used_alias))
        if not selects:
            raise PlanError("nothing to select")
        tree = tree.select(*selects)
        shown_tables = {c.table for c in intent.columns} | {g.col.table for g in intent.groups}
        if not intent.measures and not intent.groups and (intent.distinct or (
                self.many and not shown_tables & self.many)):
            tree = tree.distinct()  # rows repeated by a join to the many side: show each once
        for cond in intent.conds:
            if cond.op in ("!=", "not_in") and cond.col.table in self.many:
                self.penalty *= 0.3  # "countries that do not speak English" is NOT IN, not <>
                self.notes.append("a negated condition on related rows (needs a subquery)")
        where = self.where(intent.conds, self.many)
        if where is not None:
            tree = tree.where(where)
        for rule in rules:
            tree = tree.where(rule)
        if group_exprs and (intent.measures or intent.having):
            tree = tree.group_by(*group_exprs)
        for h in intent.having:
            tree = tree.having(_compare(h.op, exp.Count(this=exp.Star()), self.lit(h.value)))
        tree = self.order(tree, intent, measure_exprs, group_exprs)
        if intent.limit:
            tree = tree.limit(intent.limit)
        if fanout and any(m.func in ("sum", "avg", "metric") for m in intent.measures):
            self.penalty *= 0.5
            self.notes.append("rows are repeated by a join")
        return Built(tree, tree.sql(dialect=self.dialect), base, fanout, self.penalty,
                     self.notes)

    def aliased(self, expr: exp.Expr, name: str, used: set[str], *, bare: bool = False
                ) -> exp.Expr:
        alias = alias_name(name)
        while alias in used:
            alias += "_2"
        used.add(alias)
        if bare and isinstance(expr, exp.Column) and expr.name.lower() == alias:
            return expr
        return exp.alias_(expr, ident(alias, self.dialect))

    def group_expr(self, g: GroupKey, years: set[Col]) -> tuple[exp.Expr, str]:
        col = self.col(g.col)
        if not g.bucket:
            return col, g.col.column
        if g.bucket == "year":
            return exp.Year(this=col), "year"
        if g.bucket == "month":
            if g.col in years:
                return exp.Month(this=col), "month"
            return exp.TimestampTrunc(this=col, unit=exp.Var(this="MONTH")), "month"
        if g.bucket == "quarter":
            if g.col in years:
                return exp.Quarter(this=col), "quarter"
            return exp.TimestampTrunc(this=col, unit=exp.Var(this="QUARTER")), "quarter"
        if g.bucket == "week":
            return exp.TimestampTrunc(this=col, unit=exp.Var(this="WEEK")), "week"
        return exp.cast(col, exp.DataType.build("DATE")), "day"

    def requalify(self, tree: exp.Expr) -> exp.Expr:
        """A semantic-layer expression with its columns named as this query names them."""
        tree = tree.copy()
        for c in list(tree.find_all(exp.Column)):
            entry = self.index.table(c.table) if c.table else None
            if entry is not None:
                c.replace(self.col(Col(entry.name, c.name)))
        return tree

    def metric_rule(self, m: Measure, intent: Intent) -> exp.Expr | None:
        """The row rule of a metric ("revenue excludes cancelled orders"), unless the question
        sets a condition on a column the rule reads: then the person's condition wins."""
        info = self.index.metrics.get(m.metric) if m.func == "metric" else None
        if info is None or info.filter is None:
            return None
        ruled = {c.name.lower() for c in info.filter.find_all(exp.Column)}
        if any(c.col.column.lower() in ruled for c in intent.conds):
            return None
        return self.requalify(info.filter)

    def metric_filters(self, intent: Intent) -> list[exp.Expr]:
        """The metrics' row rules as WHERE conditions, when every measure shares one rule;
        otherwise each metric filters its own aggregates (``FILTER (WHERE ...)``) so that
        "revenue and number of orders" still counts every order."""
        rules = [self.metric_rule(m, intent) for m in intent.measures]
        first = rules[0] if rules else None
        if first is not None and all(r is not None and r == first for r in rules):
            self.inline_rules = False
            return [first]
        self.inline_rules = True
        return []

    def filtered(self, tree: exp.Expr, rule: exp.Expr) -> exp.Expr:
        """Every aggregate of ``tree`` counting only the rows ``rule`` keeps."""
        if isinstance(tree, exp.AggFunc):
            return exp.Filter(this=tree, expression=exp.Where(this=rule.copy()))
        for agg in list(tree.find_all(exp.AggFunc)):
            agg.replace(exp.Filter(this=agg.copy(), expression=exp.Where(this=rule.copy())))
        return tree

    def measure_expr(self, m: Measure, base: str, fanout: bool) -> exp.Expr:
        if m.func == "count":
            entry = self.index.table(m.table) if m.table else None
            if (m.table in ("", base) and not fanout) or entry is None or not entry.key:
                return exp.Count(this=exp.Star())
            return exp.Count(this=exp.Distinct(expressions=[self.col(Col(entry.name, entry.key))]))
        if m.func == "metric":
            return self.requalify(self.index.metrics[m.metric].expression)
        assert m.col is not None
        col = self.col(m.col)
        if m.func == "count_distinct":
            return exp.Count(this=exp.Distinct(expressions=[col]))
        func = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max}[m.func]
        return func(this=col)

    # -- conditions ---------------------------------------------------------------------------
    def where(self, conds: list[Cond], many: set[str] | None = None) -> exp.Expr | None:
        merged: list[Cond] = []
        for c in conds:
            prev = merged[-1] if merged else None
            if prev is not None and prev.col == c.col and prev.op in ("=", "in") and \
                    c.op in ("=", "in") and c.date is None and prev.date is None and \
                    not prev.like and not c.like:
                if c.joiner == "and" and many and c.col.table in many:
                    self.penalty *= 0.4  # "with English and French": both, on different rows
                    self.notes.append("two values of one column that must both hold")
                merged[-1] = Cond(c.col, "in", (*prev.values, *c.values), joiner=prev.joiner)
                continue
            merged.append(c)
        groups: list[list[exp.Expr]] = []
        for c in merged:
            expr = self.cond_expr(c)
            if c.joiner == "or" and groups:
                groups[-1].append(expr)
            else:
                groups.append([expr])
        parts = [g[0] if len(g) == 1 else exp.paren(exp.or_(*g), copy=False) for g in groups]
        return exp.and_(*parts) if parts else None

    def cond_expr(self, c: Cond) -> exp.Expr:
        col = self.col(c.col)
        if c.date is not None:
            return self.date_cond(c, col)
        if c.op == "like":
            text = str(c.values[0])
            pattern = {"prefix": f"{text}%", "suffix": f"%{text}"}.get(c.like, f"%{text}%")
            if c.like == "ci":
                return exp.EQ(this=exp.Lower(this=col), expression=exp.Literal.string(text.lower()))
            return exp.ILike(this=col, expression=exp.Literal.string(pattern))
        if c.op == "between":
            return exp.Between(this=col, low=self.lit(c.values[0]), high=self.lit(c.values[1]))
        if c.op in ("in", "not_in"):
            node: exp.Expr = exp.In(this=col, expressions=[self.lit(v) for v in c.values])
            return exp.Not(this=node) if c.op == "not_in" else node
        return _compare(c.op, col, self.lit(c.values[0]))

    def date_cond(self, c: Cond, col: exp.Expr) -> exp.Expr:
        spec = c.date
        assert spec is not None
        if spec.relative is not None:
            n, unit = spec.relative
            latest = exp.Subquery(this=exp.select(exp.Max(this=self.col(c.col))).from_(
                self.table(c.col.table)))
            if n == 0:
                return exp.EQ(this=exp.TimestampTrunc(this=col, unit=exp.Var(this=unit.upper())),
                              expression=exp.TimestampTrunc(this=latest,
                                                            unit=exp.Var(this=unit.upper())))
            interval = exp.Interval(this=exp.Literal.string(str(n)),
                                    unit=exp.Var(this=unit.upper()))
            return exp.GT(this=col, expression=exp.Sub(this=latest, expression=interval))
        if spec.part is not None:
            kind, value = spec.part
            if kind == "month":
                return exp.EQ(this=exp.Month(this=col), expression=exp.Literal.number(value))
            if kind == "quarter":
                return exp.EQ(this=exp.Quarter(this=col), expression=exp.Literal.number(value))
            month = exp.EQ(this=exp.Month(this=col), expression=exp.Literal.number(value // 100))
            day = exp.EQ(this=exp.Day(this=col.copy()), expression=exp.Literal.number(value % 100))
            return exp.and_(month, day)
        return _date_range(c.op, col, spec, self.date)

    def order(self, tree: exp.Select, intent: Intent, measures: list[exp.Expr],
              groups: list[exp.Expr]) -> exp.Select:
        keys: list[exp.Expr] = []
        for o in intent.order:
            if o.measure >= 0 and o.measure < len(measures):
                expr = measures[o.measure].copy()
            elif o.col is not None:
                expr = self.col(o.col)
            else:
                continue
            keys.append(exp.Ordered(this=expr, desc=o.desc))
        if not keys and intent.groups and intent.measures:
            if any(g.bucket for g in intent.groups):
                keys = [exp.Ordered(this=g.copy(), desc=False) for g, k in
                        zip(groups, intent.groups, strict=False) if k.bucket]
            else:
                first = next((i for i, m in enumerate(intent.measures) if not m.hidden), 0)
                keys = [exp.Ordered(this=measures[first].copy(), desc=True)]
        if not keys and intent.columns and not intent.measures:
            ranged = [c for c in intent.conds if c.op in (">", ">=", "<", "<=") and c.date is None]
            if ranged:
                keys = [exp.Ordered(this=self.col(ranged[0].col),
                                    desc=ranged[0].op in (">", ">="))]
        return tree.order_by(*keys) if keys else tree


def _words(name: str) -> list[str]:
    return list(name_words(name))
