"""What the resolver knows while it works: the tables named, distances between tables, and
how to pick the column a name means."""

from __future__ import annotations

from collections import deque

from .index import SchemaIndex, Target
from .intent import Col, GroupKey, Intent, OrderKey
from .roles import Parsed, Ref


def best(targets: tuple[Target, ...]) -> Target:
    """The strongest reading of a mention; a table wins a tie with a column."""
    return max(targets, key=lambda t: (t.weight, t.kind == "table"))


class ResolverBase:
    def __init__(self, parsed: Parsed, index: SchemaIndex, context: Intent | None = None,
                 *, partial: bool = False):
        self.p = parsed
        self.partial = partial
        self.index = index
        self.context = context
        self.penalty = 1.0
        self.notes: list[str] = []
        self.missing: list[str] = []
        self.explicit = self._explicit_tables()
        self.subject = ""
        self._dist: dict[str, dict[str, int]] = {}
        self.wh = False  # the shown column was chosen by "when"/"where"
        self.group_tables = {best(r.targets).table for r, _b, _p in parsed.groups
                             if r is not None and best(r.targets).kind == "table"}

    def _explicit_tables(self) -> list[str]:
        refs = [*self.p.projections, *(m.ref for m in self.p.measures if m.ref),
                *(r.ref for r in self.p.ranks if r.ref), *(g[0] for g in self.p.groups if g[0]),
                *(h[0] for h in self.p.having)]
        out = []
        for ref in sorted(refs, key=lambda r: r.pos):
            top = best(ref.targets)
            if top.kind == "table":
                out.append(top.table)
        out += self.p.hints
        for c in self.p.conds:
            if c.hits and len({h.table for h in c.hits}) == 1:
                out.append(c.hits[0].table)
        if self.context is not None:
            out += self.context.tables()
        return list(dict.fromkeys(out))

    def distance(self, a: str, b: str) -> int:
        if a == b:
            return 0
        if a not in self._dist:
            dist = {a: 0}
            queue = deque([a])
            while queue:
                t = queue.popleft()
                for other, _ in self.index.neighbours(t):
                    if other not in dist:
                        dist[other] = dist[t] + 1
                        queue.append(other)
            self._dist[a] = dist
        return self._dist[a].get(b, 99)

    def _near(self, table: str) -> float:
        anchors = ([self.subject] if self.subject else []) + self.explicit
        if not anchors:
            return 0.0
        d = min(self.distance(a, table) for a in anchors)
        return -0.15 * d if d < 99 else -1.0

    def _adjacent_table(self, pos: int) -> str | None:
        """The table a column mention belongs to: 'name and theme of the concert', 'singer name'."""
        items = self.p.items
        k = pos + 1
        crossed = 0
        while k < len(items) and crossed < 8:
            it = items[k]
            k += 1
            if it.token is not None and it.token.norm in ("of", "the", "for", "each", "every",
                                                          "all", "a", "an", "in", "that", "its",
                                                          "their", ","):
                continue
            if it.has_kw("and", "comma"):
                continue
            m = it.get("schema")
            if m is None:
                break
            top = best(m.targets)
            if top.kind == "table":
                return top.table
            crossed += 1
        if pos > 0 and (m := items[pos - 1].get("schema")) is not None:
            top = best(m.targets)
            if top.kind == "table":
                return top.table
        return None

    def pick(self, ref: Ref, kinds: tuple[str, ...] = ("column",),
             family: tuple[str, ...] = ()) -> Target | None:
        cands = [t for t in ref.targets if t.kind in kinds]
        if family:
            fitting = [t for t in cands if t.kind != "column" or self._family(t) in family]
            cands = fitting
        if not cands:
            return None
        adjacent = self._adjacent_table(ref.pos)

        def score(t: Target) -> float:
            s = t.weight + (0.05 if t.kind == "metric" else 0.0)
            if t.kind == "column":
                s += 0.5 if t.table in self.explicit else 0.0
                s += 0.45 if t.table in self.group_tables else 0.0
                s += 0.4 if t.table == adjacent else 0.0
                s += 0.3 if t.table == self.subject else 0.0
                s += self._near(t.table)
            return s

        ranked = sorted(cands, key=score, reverse=True)
        if len(ranked) > 1 and score(ranked[0]) - score(ranked[1]) < 0.05 and \
                (ranked[0].table, ranked[0].column) != (ranked[1].table, ranked[1].column):
            self.penalty *= 0.5
            self.notes.append(f"ambiguous: {ranked[0].table}.{ranked[0].column} or "
                              f"{ranked[1].table}.{ranked[1].column}")
        return ranked[0]

    def _family(self, t: Target) -> str:
        col = self.index.column(t.table, t.column)
        if col is None:
            return ""
        if col.family == "number" and col.yearlike:
            return "year"
        return col.family

    def col_of(self, ref: Ref, family: tuple[str, ...] = ()) -> Col | None:
        t = self.pick(ref, ("column",), family)
        return Col(t.table, t.column) if t else None

    def props_col(self, props: tuple[str, ...], tables: list[str]) -> Col | None:
        for table in tables:
            entry = self.index.table(table)
            if entry is None:
                continue
            for prop in props:
                for c in entry.columns.values():
                    if prop in c.words and (c.family in ("number", "temporal") or c.yearlike):
                        return Col(entry.name, c.name)
        return None

    def date_col(self, near: int, tables: list[str]) -> Col | None:
        words = {t.stem[:4] for t in self.p.tokens if t.kind == "word" and len(t.stem) >= 4}
        cands: list[tuple[float, Col]] = []
        for table in self.index.tables.values():
            d = min((self.distance(t, table.name) for t in tables), default=0 if not tables
                    else 99)
            if d >= 3:
                continue
            for c in table.columns.values():
                if c.family != "temporal" and not c.yearlike:
                    continue
                score = -d - (0.5 if c.family != "temporal" else 0.0)
                if any(w[:4] in words for w in c.words if len(w) >= 4 and w != "date"):
                    score += 1.5
                cands.append((score, Col(table.name, c.name)))
        if not cands:
            return None
        cands.sort(key=lambda x: -x[0])
        if len(cands) > 1 and cands[0][0] == cands[1][0]:
            self.penalty *= 0.8
            self.notes.append("several date columns")
        return cands[0][1]

    def _facts_only(self, intent: Intent) -> list[str]:
        out: list[str] = []
        for m in intent.measures:
            if m.func == "metric":
                info = self.index.metrics.get(m.metric)
                out += list(info.tables) if info is not None else []
            elif m.col is not None:
                out.append(m.col.table)
            elif m.table:
                out.append(m.table)
        return out

    def _facts(self, intent: Intent) -> list[str]:
        """Tables whose rows are measured (where a date condition most likely applies)."""
        if not intent.measures and self.context is not None and self.context.measures:
            return self._facts(self.context)
        out: list[str] = []
        for m in intent.measures:
            if m.func == "metric":
                info = self.index.metrics.get(m.metric)
                if info is not None:
                    out += list(info.tables)
            elif m.col is not None:
                out.append(m.col.table)
            elif m.table:
                out.append(m.table)
        return list(dict.fromkeys(out)) or intent.tables() or self.explicit

    def _entity_cols(self, table: str) -> tuple[Col | None, Col | None, list[Col]]:
        """(label, key, all plain columns) of an entity table."""
        entry = self.index.table(table)
        if entry is None:
            return None, None, []
        label = Col(entry.name, entry.label) if entry.label else None
        key = Col(entry.name, entry.key) if entry.key else None
        plain = [Col(entry.name, c.name) for c in entry.columns.values() if not c.fk]
        return label, key, plain

    def _group_entity(self, intent: Intent, table: str) -> bool:
        label, key, _plain = self._entity_cols(table)
        shown = label or key
        if shown is None or any(g.col == shown for g in intent.groups):
            return shown is not None
        intent.groups.append(GroupKey(shown, key=key if key and key != shown else None))
        return True

    def _key_groups(self, intent: Intent) -> None:
        """Grouped columns of an entity table group by its key too (two shops, one name)."""
        counted = set(self._facts_only(intent))
        tables = {g.col.table for g in intent.groups if not g.bucket and g.key is None}
        for table in tables - counted:
            entry = self.index.table(table)
            if entry is None or not entry.key:
                continue
            key = Col(entry.name, entry.key)
            if any(g.col == key or g.key == key for g in intent.groups):
                continue
            first = next(i for i, g in enumerate(intent.groups) if g.col.table == table)
            g = intent.groups[first]
            intent.groups[first] = GroupKey(g.col, g.bucket, key, g.show)

    def _metric_base(self, t: Target) -> str:
        info = self.index.metrics.get(t.table)
        return info.base if info else ""

    def _clause_start(self) -> tuple[int, int]:
        """Where a relative clause ('... whose/which/that/with ...') starts and ends: names in
        it describe rows rather than name what to show."""
        seen = False
        start = len(self.p.items)
        items = self.p.items
        first = next((k for k, it in enumerate(items) if not (
            it.token is not None and it.token.norm in ("which", "what", "the", "all"))
            and not it.get("number")), 0)
        if items and items[0].token is not None and items[0].token.norm in ("which", "what") \
                and first < len(items) and (m := items[first].get("schema")) is not None \
                and best(m.targets).kind == "table":
            start = first + 1  # "Which countries have ...": the rest describes the countries
        for k, it in enumerate(self.p.items):
            if it.get("schema") is not None and it.used == "projection":
                seen = True
            if start == len(self.p.items) and seen and k > 0 and it.token is not None and \
                    it.token.norm in ("where", "whose", "which", "that", "who", "whom", "with",
                                      "having"):
                start = k
            elif start < k and it.token is not None and it.token.norm in (".", "?", ";", "!"):
                return start, k
        return start, len(self.p.items)

    def _listed(self, pos: int) -> bool:
        """'names of teachers and the courses they teach': a table in the list of outputs."""
        k = pos - 1
        while k >= 0 and self.p.items[k].word in ("the", "what", "which", "their", "its", "a"):
            k -= 1
        return k >= 0 and self.p.items[k].has_kw("and", "comma")

    def _lists_own(self, pos: int) -> bool:
        """'cities and their population': the entity itself is asked for, then what it has."""
        items = self.p.items
        k = pos + 1
        if k >= len(items) or not items[k].has_kw("and", "comma"):
            return False
        k += 1
        while k < len(items) and items[k].word in ("their", "its", "the", "respective"):
            k += 1
        return k < len(items) and items[k].get("schema") is not None and k > pos + 2

    def _names_label(self, ref: Ref, target: Target) -> Target | None:
        """'the names of all cartoons': 'name' means the label of the entity named next."""
        text = " ".join(t.stem for t in self.p.tokens[self.p.items[ref.pos].start:
                                                       self.p.items[ref.pos].end])
        if text not in ("name", "title") or (ref.pos > 0 and
                                             self.p.items[ref.pos - 1].used == "hint"):
            return None
        table = self._adjacent_table(ref.pos)
        if table is None and len(self.group_tables) == 1:
            table = next(iter(self.group_tables))  # "for each continent, list its name"
        if table is None or table == target.table:
            return None
        entry = self.index.table(table)
        if entry is None or entry.label is None:
            return None
        return Target("column", entry.name, entry.label, 1.0)

    def _wh_column(self, table: str) -> list[Col]:
        """'When did ... air?' → its date; 'Where is ... from?' → its place."""
        wh = self.p.tokens[0].norm if self.p.tokens else ""
        entry = self.index.table(table)
        if entry is None or wh not in ("when", "where"):
            return []
        words = {t.stem for t in self.p.tokens}
        if wh == "when":
            cands = [c for c in entry.columns.values() if c.family == "temporal" or c.yearlike
                     or set(c.words) & {"date", "time", "year", "day"}]
        else:
            cands = [c for c in entry.columns.values() if c.family == "text" and set(c.words) & {
                "location", "city", "country", "place", "address", "hometown", "town", "state",
                "region", "venue", "home", "nationality"}]
        echo = [c for c in cands if set(c.words) & words]
        chosen = echo or cands
        if len(chosen) != 1:
            return []
        return [Col(entry.name, chosen[0].name)]

    def _argmax(self, intent: Intent) -> None:
        """'Which model has the minimum horsepower?', 'the maximum horsepower and the make':
        the row with the extreme value, not a grouped aggregate."""
        if len(intent.measures) != 1 or self.p.groups or self.p.ranks or intent.having:
            return
        m = intent.measures[0]
        if m.func not in ("max", "min") or m.col is None or not intent.groups or \
                any(g.bucket for g in intent.groups):
            return
        cols = [g.col for g in intent.groups]
        first = min((ref.pos for ref in self.p.projections), default=10**6)
        if min((pm.pos for pm in self.p.measures), default=10**6) < first:
            cols.insert(0, m.col)
        intent.columns, intent.groups, intent.measures = cols, [], []
        intent.order = [OrderKey(m.func == "max", col=m.col)]
        intent.limit = 1

    def _extras(self, intent: Intent, cols: list[Col], entities: list[tuple[str, int]]) -> None:
        """A bare entity listed by a comparison or a ranking also shows what it was ranked by."""
        if cols or not entities or intent.measures or intent.distinct or self.wh:
            return
        more = [c.col for c in intent.conds if c.op in (">", "<", ">=", "<=", "between")
                or (c.date is not None and c.op != "in")]
        more += [o.col for o in intent.order if o.col is not None]
        for c in more:
            if c is not None and c not in intent.columns and c.table in intent.tables():
                intent.columns.append(c)
