"""Turn the roles found by ``parse.py`` into an :class:`Intent`: pick the table of every name,
the column of every value, the subject of the question, and score the confidence."""

from __future__ import annotations

from .filters import FilterResolver
from .intent import Col, GroupKey, Intent, Measure, OrderKey
from .roles import PRank, Ref
from .scope import best


class Resolver(FilterResolver):
    def run(self) -> Intent:
        intent = Intent()
        self.subject = self._subject()
        intent.subject = self.subject
        self.grouping = False  # entities asked for become groups (a ranking by a measure)
        self.extras: list[Col] = []  # columns worth showing beside a bare entity
        self._measures(intent)
        cols, entities = self._projections(intent)
        self._ranks(intent, cols, entities)
        self._orders(intent, cols, entities)
        self.every: list[tuple[str, int]] = []
        self.every_cols: list[Col] = []
        self.wh = False
        self._groups(intent)
        entities += [e for e in self.every if e[0] not in {x[0] for x in entities}]
        cols[:0] = [c for c in self.every_cols if c not in cols]  # "each charge type and ..."
        if self.p.limit:
            self.grouping = True
        by_words = {self.p.tokens[self.p.items[pos].start].norm for _r, _b, pos in self.p.groups
                    if pos >= 0}
        if intent.groups and not intent.measures and not self.p.ranks and self.subject and \
                not self.partial and by_words & {"by", "per", "across", "break", "split"}:
            intent.measures.append(Measure("count", table=self.subject))
            entities = [e for e in entities if e[0] != self.subject]
        self._place(intent, cols, entities)
        if not (intent.measures or intent.columns) and self.subject and not self.partial:
            if intent.groups:
                intent.measures.append(Measure("count", table=self.subject))
            else:
                self.penalty *= 0.7  # nothing named to show: the subject's rows
                compared = [self.col_of(c.ref) for c in self.p.conds
                            if c.ref is not None and not c.hits]
                table = next((c.table for c in compared if c is not None), self.subject)
                entities = [(table, -1)]
                self._place(intent, [], entities)
        if self.grouping:
            self._key_groups(intent)
        self._conds(intent)
        self._having(intent)
        if intent.limit is None and self.p.limit:
            intent.limit = self.p.limit
            if intent.measures and intent.groups and not intent.order:
                intent.order.append(OrderKey(True, measure=0))
        intent.distinct = (intent.distinct or self.p.distinct) and not intent.measures
        unique: list[Measure] = []
        for m in intent.measures:
            if any(u.func == m.func and u.col == m.col and u.metric == m.metric
                   and u.table == m.table for u in unique):
                continue
            unique.append(m)
        if len(unique) != len(intent.measures):
            index_of = {id(m): i for i, m in enumerate(unique)}
            keep = [index_of.get(id(m), -1) for m in intent.measures]
            intent.order = [OrderKey(o.desc, measure=keep[o.measure] if keep[o.measure] >= 0
                                     else 0, col=o.col) if o.measure >= 0 else o
                            for o in intent.order]
            intent.measures = unique
        if intent.having and intent.measures and not intent.groups:
            self.penalty *= 0.3
            self.missing.append("a count over groups (needs a subquery)")
        self._argmax(intent)
        self._extras(intent, cols, entities)
        self._check_conds(intent)
        self._finish(intent)
        return intent

    def _subject(self) -> str:
        for m in self.p.measures:
            if m.ref is not None and m.func in ("count", "count_distinct"):
                t = self.pick(m.ref, ("table",))
                if t is not None and best(m.ref.targets).kind == "table":
                    return t.table
        if self.explicit:
            return self.explicit[0]
        if self.p.hints:
            return self.p.hints[0]
        for ref in self.p.projections:
            t = self.pick(ref, ("column", "metric"))
            if t is not None:
                return self._metric_base(t) if t.kind == "metric" else t.table
        for m in self.p.measures:
            if m.ref is not None:
                t = self.pick(m.ref, ("column", "metric"))
                if t is not None:
                    return self._metric_base(t) if t.kind == "metric" else t.table
        for c in self.p.conds:
            if c.ref is not None:
                t = self.pick(c.ref)
                if t is not None:
                    return t.table
            if c.hits and len({h.table for h in c.hits}) == 1:
                return c.hits[0].table
        return ""

    def _measure(self, func: str, ref: Ref | None) -> Measure | None:
        if ref is None:
            if func == "count" and self.subject:
                self.penalty *= 0.8
                return Measure("count", table=self.subject)
            return None
        top = best(ref.targets)
        if top.kind == "metric" or (func in ("count", "sum") and any(
                t.kind == "metric" and t.weight >= top.weight - 0.05 for t in ref.targets)):
            metric = next(t for t in ref.targets if t.kind == "metric")
            return Measure("metric", metric=metric.table)
        if func in ("count", "count_distinct"):
            if top.kind == "table":
                entry = self.index.table(top.table)
                if func == "count_distinct" and entry is not None and entry.key:
                    return Measure("count_distinct", Col(entry.name, entry.key))
                return Measure("count", table=top.table)
            col = self.col_of(ref)
            if col is None:
                return None
            info = self.index.column(col.table, col.column)
            if info is not None and info.family == "number" and not info.keylike:
                self.penalty *= 0.75
            return Measure("count_distinct", col)
        fam = ("number",) if func in ("avg", "sum") else ("number", "temporal", "year", "text")
        col = self.col_of(ref, fam)
        if col is None:
            table = self.pick(ref, ("table",))
            if table is not None and func in ("min", "max"):
                col = self.date_col(ref.pos, [table.table])
            if col is None:
                return None
        return Measure(func, col)

    def _measures(self, intent: Intent) -> None:
        for pm in self.p.measures:
            m = self._measure(pm.func, pm.ref)
            if m is None:
                self.penalty *= 0.3
                self.missing.append("what to count or add up")
                continue
            intent.measures.append(m)

    def _projections(self, intent: Intent) -> tuple[list[Col], list[tuple[str, int]]]:
        cols: list[Col] = []
        entities: list[tuple[str, int]] = []
        clause, end = self._clause_start()
        for ref in self.p.projections:
            top = best(ref.targets)
            if top.kind == "metric":
                intent.measures.append(Measure("metric", metric=top.table))
                continue
            col_target = self.pick(ref, ("column",))
            in_clause = clause < ref.pos < end and (cols or entities)
            if top.kind == "table" and (col_target is None or col_target.weight <= top.weight
                                        or col_target.table not in self.explicit):
                if ref.pos in self.p.context or (in_clause and not self._listed(ref.pos)):
                    intent.joins.append(top.table)
                else:
                    entities.append((top.table, ref.pos))
                continue
            if col_target is None:
                continue
            if self._names_label(ref, col_target) is not None:
                col_target = self._names_label(ref, col_target)
                assert col_target is not None
            elif col_target.weight < 0.58 or (col_target.weight < 0.7 and
                                              col_target.table not in self.explicit):
                self.penalty *= 0.5
                self.notes.append("a name that only partly matches a column")
                continue
            if in_clause:
                intent.joins.append(col_target.table)
                self.penalty *= 0.5
                self.missing.append(f"what {col_target.column} has to do with the question")
                continue
            col = Col(col_target.table, col_target.column)
            if col not in cols:
                cols.append(col)
        return cols, entities

    def _place(self, intent: Intent, cols: list[Col], entities: list[tuple[str, int]]) -> None:
        counted = {m.table for m in intent.measures if m.table} | {
            m.col.table for m in intent.measures if m.col and m.func == "count_distinct"}
        if intent.measures:
            named = [c for c in cols if not any(m.col == c for m in intent.measures)]
            for i, g in enumerate(intent.groups):
                mine = [c for c in named if c.table == g.col.table]
                if mine and not g.bucket and g.col not in named:
                    # "for each continent, list its id and name": show what was named, in order
                    intent.groups[i] = GroupKey(g.col, key=g.key, show=False)
            rest = [g for g in intent.groups if g.col not in named]
            ordered = [next((g for g in intent.groups if g.col == col), GroupKey(col))
                       for col in named]
            intent.groups = rest + ordered
            first = min((m.pos for m in self.p.measures), default=10**6)
            grouped = bool(cols) or any(g.key is not None for g in intent.groups)
            for table, pos in entities:
                listed = pos < first and any(
                    it.has_kw("and", "comma") for it in self.p.items[pos:first])
                if (table in counted and not self.grouping) or grouped or \
                        any(g.col.table == table for g in intent.groups) or \
                        not (self.grouping or listed):
                    intent.joins.append(table)
                    continue
                grouped = self._group_entity(intent, table)
            return
        if not cols and entities:
            cols = self._wh_column(entities[0][0])
            self.wh = bool(cols)
        intent.columns = list(cols)
        for i, (table, pos) in enumerate(entities):
            if cols and i == 0 and self._lists_own(pos) and \
                    not any(c.table == table and c.column.lower() in ("name", "title")
                            for c in intent.columns):
                label, _key, _plain = self._entity_cols(table)
                if label is not None and label not in intent.columns:
                    intent.columns.insert(0, label)  # "cities and their population"
                    continue
            if (cols or i > 0) and self._listed(pos) and \
                    not any(c.table == table for c in intent.columns):
                label, _key, _plain = self._entity_cols(table)
                if label is not None:
                    intent.columns.append(label)
                    continue
                self.penalty *= 0.5
                self.missing.append(f"what to show of {table}")
            if cols or i > 0 or any(c.table == table for c in intent.columns):
                intent.joins.append(table)
                continue
            entry = self.index.table(table)
            if self.p.star and entry is not None:
                intent.columns += [Col(entry.name, c.name) for c in entry.columns.values()]
                continue
            label, _key, plain = self._entity_cols(table)
            if label is not None:
                intent.columns.append(label)
            else:
                self.penalty *= 0.9
                intent.columns += [c for c in plain if c not in intent.columns]

    def _groups(self, intent: Intent) -> None:
        for ref, bucket, pos in self.p.groups:
            if ref is None:
                col = self.date_col(pos, self._facts(intent))
                if col is None:
                    self.penalty *= 0.3
                    self.missing.append(f"which date to group by {bucket}")
                    continue
                info = self.index.column(col.table, col.column)
                if info is not None and info.yearlike and bucket == "year":
                    bucket = ""
                elif info is not None and info.family != "temporal":
                    self.penalty *= 0.3
                    continue
                intent.groups.append(GroupKey(col, bucket=bucket))
                continue
            top = best(ref.targets)
            colt = self.pick(ref, ("column",))
            alone = not intent.measures and not self.p.ranks and not self.p.having and \
                not self.p.orders_by_count
            if top.kind == "table" and (colt is None or colt.weight <= top.weight):
                if alone:
                    self.every.append((top.table, pos))  # "for every singer": all of them
                    continue
                if not self._group_entity(intent, top.table):
                    self.penalty *= 0.5
                continue
            if colt is not None and alone and not self.p.limit and \
                    self.p.tokens[self.p.items[pos].start].norm in ("each", "every"):
                self.every_cols.append(Col(colt.table, colt.column))
                continue
            if colt is not None:
                info = self.index.column(colt.table, colt.column)
                if info is not None and info.family == "temporal" and not bucket:
                    bucket = "day"
                if info is not None and info.family != "temporal":
                    bucket = ""
                col = Col(colt.table, colt.column)
                if not any(g.col == col and g.bucket == bucket for g in intent.groups):
                    intent.groups.append(GroupKey(col, bucket=bucket))

    def _ranks(self, intent: Intent, cols: list[Col], entities: list[tuple[str, int]]) -> None:
        for r in self.p.ranks:
            self._rank(intent, r, cols, entities)

    def _rank(self, intent: Intent, r: PRank, cols: list[Col],
              entities: list[tuple[str, int]]) -> None:
        limit = r.limit if r.limit else 1
        if r.kind == "measure":
            intent.limit = limit
            self.grouping = True
            if intent.measures and not intent.order and not self.p.orders:
                intent.order.append(OrderKey(r.desc, measure=0))
            return
        if r.kind == "mode":
            col = self.col_of(r.ref) if r.ref else None
            if col is None:
                self.penalty *= 0.3
                return
            if not any(g.col == col for g in intent.groups):
                intent.groups.insert(0, GroupKey(col))
            if col in cols:
                cols.remove(col)
            intent.measures.append(Measure("count", table=col.table, hidden=True))
            intent.order.append(OrderKey(r.desc, measure=len(intent.measures) - 1))
            intent.limit = limit
            return
        if r.kind in ("count", "metric"):
            assert r.ref is not None
            if r.kind == "count":
                t = self.pick(r.ref, ("table",))
                if t is None:
                    self.penalty *= 0.3
                    return
                shown = bool(intent.measures) or limit > 1
                m = Measure("count", table=t.table, hidden=not shown)
                entities[:] = [e for e in entities if e[0] != t.table]
            else:
                metric = next(t for t in r.ref.targets if t.kind == "metric")
                m = Measure("metric", metric=metric.table)
            intent.measures.append(m)
            self.grouping = True
            if not (cols or entities or self.p.groups):
                self.penalty *= 0.3
                self.missing.append("what to rank")
            intent.order.append(OrderKey(r.desc, measure=len(intent.measures) - 1))
            intent.limit = limit
            return
        col = None
        if r.kind == "col" and r.ref is not None:
            col = self.col_of(r.ref, ("number", "temporal", "year"))
        elif r.kind == "props":
            tables = [e[0] for e in entities] + [c.table for c in cols] + self.explicit
            col = self.props_col(r.props, list(dict.fromkeys(tables)) or intent.tables())
        if col is None:
            self.penalty *= 0.3
            self.missing.append("what to rank by")
            return
        if intent.measures:
            self.penalty *= 0.3
            self.missing.append("a measure of the top row (needs a subquery)")
        elif cols == [col] or not (cols or entities):
            if col in cols:
                cols.remove(col)
            intent.measures.append(Measure("max" if r.desc else "min", col))
            return
        if r.kind == "col" and r.ref is not None and cols and col not in cols and \
                r.pos < min(ref.pos for ref in self.p.projections):
            cols.insert(0, col)  # "the lowest version number and its type code"
        intent.order.append(OrderKey(r.desc, col=col))
        intent.limit = limit

    def _orders(self, intent: Intent, cols: list[Col], entities: list[tuple[str, int]]) -> None:
        for ref, desc, pos in self.p.orders:
            if ref is None and pos == -1:
                if not intent.measures and self.subject:
                    intent.measures.append(Measure("count", table=self.subject, hidden=True))
                self.grouping = True
                intent.order.append(OrderKey(desc, measure=0))
                continue
            if ref is None:
                shown = cols or [g.col for g in intent.groups]
                if shown:
                    intent.order.append(OrderKey(desc, col=shown[0]))
                elif entities:
                    label, _key, plain = self._entity_cols(entities[0][0])
                    if label or plain:
                        intent.order.append(OrderKey(desc, col=label or plain[0]))
                continue
            top = best(ref.targets)
            if top.kind == "metric":
                m = Measure("metric", metric=top.table)
                if m not in intent.measures:
                    intent.measures.append(m)
                self.grouping = True
                intent.order.insert(0, OrderKey(desc, measure=intent.measures.index(m)))
                continue
            col = self.col_of(ref)
            if col is not None:
                intent.order.append(OrderKey(desc, col=col))
