"""The semantic layer: descriptions, synonyms, metrics and join paths for a database.

A YAML file (see ``data/demo/semantic.yaml``) with ``tables`` → ``columns``, ``metrics`` and
``joins``. It enriches the schema snapshot, the LLM prompt and the offline engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigurationError
from .sql.schema import SchemaSnapshot


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    expression: str
    description: str = ""
    table: str = ""
    synonyms: tuple[str, ...] = ()
    filter: str = ""  # a SQL condition every use of the metric applies ("which rows count")
    definition: str = ""  # the rule in a few words, stated beside every answer that uses it
    unit: str = ""  # currency or unit of the values, e.g. "$"


@dataclass(slots=True)
class SemanticLayer:
    name: str = ""
    description: str = ""
    table_descriptions: dict[str, str] = field(default_factory=dict)
    table_synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    column_descriptions: dict[tuple[str, str], str] = field(default_factory=dict)
    column_synonyms: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    joins: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> SemanticLayer:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read semantic layer {path}: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SemanticLayer:
        layer = cls(name=str(data.get("name", "")), description=str(data.get("description", "")))
        for tname, tdata in (data.get("tables") or {}).items():
            tdata = tdata or {}
            layer.table_descriptions[tname] = str(tdata.get("description", ""))
            layer.table_synonyms[tname] = tuple(tdata.get("synonyms") or ())
            for cname, cdata in (tdata.get("columns") or {}).items():
                cdata = cdata if isinstance(cdata, dict) else {"description": str(cdata)}
                layer.column_descriptions[(tname, cname)] = str(cdata.get("description", ""))
                layer.column_synonyms[(tname, cname)] = tuple(cdata.get("synonyms") or ())
        for mname, mdata in (data.get("metrics") or {}).items():
            layer.metrics[mname] = Metric(
                name=mname,
                expression=str(mdata["expression"]),
                description=str(mdata.get("description", "")),
                table=str(mdata.get("table", "")),
                synonyms=tuple(mdata.get("synonyms") or ()),
                filter=str(mdata.get("filter") or ""),
                definition=str(mdata.get("definition") or ""),
                unit=str(mdata.get("unit") or ""),
            )
        layer.joins = [str(j) for j in data.get("joins") or ()]
        return layer

    def apply(self, snapshot: SchemaSnapshot) -> SchemaSnapshot:
        """Copy descriptions into the snapshot (where the database had none)."""
        for table in snapshot.tables.values():
            desc = self.table_descriptions.get(table.name)
            if desc and not table.description:
                table.description = desc
            for col in table.columns:
                cdesc = self.column_descriptions.get((table.name, col.name))
                if cdesc and not col.description:
                    col.description = cdesc
        snapshot._prompts.clear()  # rendered before the descriptions arrived: render again
        return snapshot

    def to_prompt(self) -> str:
        """Metrics, synonyms and join paths as text for the LLM prompt."""
        lines: list[str] = []
        if self.metrics:
            lines.append("Metrics (use these definitions):")
            for m in self.metrics.values():
                syn = f" (also called: {', '.join(m.synonyms)})" if m.synonyms else ""
                where = f" WHERE {m.filter}" if m.filter else ""
                lines.append(f"- {m.name}{syn}: {m.expression}{where} -- {m.description}")
        synonyms = [
            f"- {', '.join(s)} → table {t}" for t, s in self.table_synonyms.items() if s
        ] + [
            f"- {', '.join(s)} → column {t}.{c}" for (t, c), s in self.column_synonyms.items() if s
        ]
        if synonyms:
            lines.append("Synonyms:")
            lines.extend(synonyms)
        if self.joins:
            lines.append("Join paths:")
            lines.extend(f"- {j}" for j in self.joins)
        return "\n".join(lines)
