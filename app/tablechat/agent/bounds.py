"""What any prompt may hold, and how data is made harmless inside it (issue 11, class 9).

Everything a prompt takes from the database (names, comments, sample values, result cells) or
from a client (chat history) is data, not instructions. It is bounded per part (settings
``prompt_*``) and defused:

- control characters and newlines are folded into spaces where data sits on one line (a comment
  cannot start a new prompt section, a cell cannot start a new table row);
- runs of three or more backticks or tildes (code fences) become ``'''``;
- Markdown images and links lose the syntax that makes them load or link: ``![`` becomes
  ``! [`` and ``](`` becomes ``] (``;
- an HTML tag's ``<`` (before a letter, ``/``, ``!`` or ``?``) becomes ``‹``.

The text stays readable for the model (and for a person reading the prompt); it just cannot
render as markup, and the templates say that what sits in the data sections is data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..sql.schema import Column, ForeignKey, SchemaSnapshot, TableInfo
from .budget import approx_tokens

if TYPE_CHECKING:
    from ..config import Settings
    from .context import Message

ELLIPSIS = "…"
TYPE_CHARS = 120  # a column type (an ENUM lists every value) shown to the model
HISTORY_MESSAGE_CHARS = 2000  # one earlier message
HISTORY_SQL_CHARS = 2000  # the SQL behind one earlier answer
RESULT_COLUMNS = 30  # result columns shown to the model
ERROR_CHARS = 1000  # an error fed back to the model (it may quote data values)
NOTE_TOKENS = 24  # kept free in the result budget for the line saying what was left out

_FENCE = re.compile(r"`{3,}|~{3,}")
_IMAGE = re.compile(r"!\s*\[")
_LINK = re.compile(r"\]\s*\(")
_REF = re.compile(r"\]\s*:")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True, slots=True)
class PromptLimits:
    """The per-part bounds of a prompt, from the ``prompt_*`` settings."""

    name_chars: int = 64
    description_chars: int = 300
    sample_chars: int = 80
    samples: int = 5
    schema_tokens: int = 6000
    history_messages: int = 12
    history_tokens: int = 1500
    result_rows: int = 20
    cell_chars: int = 100
    result_tokens: int = 2000

    @classmethod
    def from_settings(cls, settings: Settings) -> PromptLimits:
        """The limits the settings give."""
        return cls(
            name_chars=settings.prompt_name_chars,
            description_chars=settings.prompt_description_chars,
            sample_chars=settings.prompt_sample_chars,
            samples=settings.sample_values,
            schema_tokens=settings.prompt_schema_tokens,
            history_messages=settings.prompt_history_messages,
            history_tokens=settings.prompt_history_tokens,
            result_rows=settings.prompt_result_rows,
            cell_chars=settings.prompt_cell_chars,
            result_tokens=settings.prompt_result_tokens,
        )


# -- text ---------------------------------------------------------------------------------------
def fold(text: str) -> str:
    """``text`` on one line: newlines and other control characters become spaces, invisible
    format characters (zero-width, bidi overrides) are dropped."""
    if text.isprintable():  # the common case, in C
        return _SPACES.sub(" ", text).strip()
    out = []
    for ch in text:
        cat = unicodedata.category(ch) if not ch.isprintable() else ""
        if cat in ("Cf", "Co", "Cn"):
            continue
        out.append(" " if cat else ch)
    return _SPACES.sub(" ", "".join(out)).strip()


def defuse(text: str) -> str:
    """``text`` with code fences, Markdown image/link syntax and HTML tags made inert."""
    text = _FENCE.sub("'''", text)
    text = _IMAGE.sub("! [", text)
    text = _LINK.sub("] (", text)
    text = _REF.sub("] :", text)
    return _TAG.sub("‹", text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def inline(value: Any, limit: int) -> str:
    """A data value as one defused line of at most ``limit`` characters.

    Cut first (a 10 MB cell costs no more than its first characters), then folded and defused,
    then cut again (defusing may lengthen it a little).
    """
    text = "" if value is None else str(value)
    text = text[: limit * 2 + 16]
    return clip(defuse(fold(text)), limit)


def clip_tokens(text: str, tokens: int, estimate: Callable[[str], int] = approx_tokens) -> str:
    """``text`` cut so that ``estimate`` counts at most ``tokens`` for it."""
    if estimate(text) <= tokens:
        return text
    cut = text[: int(tokens * 3.5)]
    while cut and estimate(cut + ELLIPSIS) > tokens:
        cut = cut[: int(len(cut) * 0.9)]
    return cut + ELLIPSIS if cut else ""


def safe_name(name: str, limit: int) -> bool:
    """Whether a table or column name may be shown to the model as it is: short, one line, no
    markup. Any other name is left out of the prompt (it cannot be shortened and stay usable)."""
    return 0 < len(name) <= limit and name.isprintable() and defuse(name) == name


# -- schema -------------------------------------------------------------------------------------
def _column(col: Column, limits: PromptLimits) -> Column:
    samples = [inline(s, limits.sample_chars) if isinstance(s, str) else s
               for s in col.samples[: limits.samples]]
    return Column(col.name, inline(col.type, TYPE_CHARS), col.nullable, col.primary_key,
                  inline(col.description, limits.description_chars), samples)


def _table(table: TableInfo, limits: PromptLimits) -> TableInfo:
    ok = [c for c in table.columns if safe_name(c.name, limits.name_chars)]
    names = {c.name for c in ok}
    fks = [ForeignKey(fk.column, fk.ref_table, fk.ref_column) for fk in table.foreign_keys
           if fk.column in names and safe_name(fk.ref_table, limits.name_chars)
           and safe_name(fk.ref_column, limits.name_chars)]
    description = inline(table.description, limits.description_chars)
    hidden = len(table.columns) - len(ok)
    if hidden:
        note = f"({hidden} column{'s' if hidden > 1 else ''} with unusable names not shown)"
        description = f"{description} {note}".strip()
    return TableInfo(table.name, [_column(c, limits) for c in ok], table.row_count, fks,
                     description, table.session_only)


# Bounded tables by source table: a session's snapshot (the database's tables plus its
# uploads) is a new object per question, its tables are not (500 tables: ~80 ms to bound).
_TABLES: dict[int, tuple[TableInfo, PromptLimits, TableInfo]] = {}
_TABLES_SIZE = 20_000
_SNAPSHOTS: list[tuple[SchemaSnapshot, PromptLimits, SchemaSnapshot]] = []
_SNAPSHOTS_SIZE = 4


def _bounded_table(table: TableInfo, limits: PromptLimits) -> TableInfo:
    hit = _TABLES.get(id(table))
    if hit is not None and hit[0] is table and hit[1] == limits:
        return hit[2]
    if len(_TABLES) >= _TABLES_SIZE:
        _TABLES.clear()
    bounded = _table(table, limits)
    _TABLES[id(table)] = (table, limits, bounded)  # holds the source: its id stays its own
    return bounded


def prompt_snapshot(snapshot: SchemaSnapshot, limits: PromptLimits) -> SchemaSnapshot:
    """The schema as the model may see it: unusable names left out, comments, types and sample
    values folded, defused and cut. Built once per snapshot object and limits."""
    for source, lim, bounded in _SNAPSHOTS:
        if source is snapshot and lim == limits and len(bounded.tables) <= len(source.tables):
            return bounded
    tables = {n: _bounded_table(t, limits) for n, t in snapshot.tables.items()
              if safe_name(n, limits.name_chars)}
    bounded = SchemaSnapshot(snapshot.dialect, tables, inline(snapshot.name, limits.name_chars))
    _SNAPSHOTS.insert(0, (snapshot, limits, bounded))
    del _SNAPSHOTS[_SNAPSHOTS_SIZE:]
    return bounded


# -- history ------------------------------------------------------------------------------------
def bound_history(history: Iterable[Message], limits: PromptLimits) -> list[Message]:
    """The newest messages that fit ``history_messages`` and ``history_tokens``, each cut, its
    text defused (an earlier answer may quote data; a client may send anything as history)."""
    from .context import Message

    kept: list[Message] = []
    left = limits.history_tokens
    for m in reversed(list(history)[-limits.history_messages:] if limits.history_messages
                      else []):
        content = clip(defuse(m.content[: HISTORY_MESSAGE_CHARS * 2]), HISTORY_MESSAGE_CHARS)
        # SQL is only cut: defusing would change it (``a<b``), and the offline engine reuses it
        sql = clip(m.sql, HISTORY_SQL_CHARS) if m.sql else None
        cost = approx_tokens(content) + (approx_tokens(sql) if sql else 0) + 4
        if cost > left:
            if kept or left < 32:
                break
            content, sql = clip_tokens(content, left - 4), None  # the newest, cut to fit
            cost = left
        kept.append(Message(m.role, content, sql))
        left -= cost
    kept.reverse()
    return kept


# -- results ------------------------------------------------------------------------------------
def _cell(value: Any, limit: int) -> str:
    return inline(value, limit).replace("|", "\\|")


def result_table(
    columns: list[str], rows: list[tuple[Any, ...]], limits: PromptLimits,
    estimate: Callable[[str], int] = approx_tokens,
) -> str:
    """A result as a Markdown table for the answer prompt: at most ``result_rows`` rows and
    ``RESULT_COLUMNS`` columns, each cell one defused line of at most ``cell_chars``, the whole
    within ``result_tokens``. A line after the table says what was left out."""
    if not columns:
        return "(no columns)"
    width = min(len(columns), RESULT_COLUMNS)

    def header(n: int) -> str:
        names = " | ".join(_cell(c, limits.cell_chars) for c in columns[:n])
        return f"| {names} |\n|" + "---|" * n

    head = header(width)
    while width > 1 and estimate(head) > limits.result_tokens // 2:  # very wide: fewer columns
        width = max(1, width // 2)
        head = header(width)
    head = clip_tokens(head, limits.result_tokens // 2, estimate)
    used = estimate(head)
    body: list[str] = []
    for row in rows[: limits.result_rows]:
        line = "| " + " | ".join(_cell(v, limits.cell_chars) for v in row[:width]) + " |"
        cost = estimate(line) + 1
        if used + cost > limits.result_tokens - NOTE_TOKENS:
            break
        body.append(line)
        used += cost
    notes = []
    if len(rows) > len(body):
        notes.append(f"{len(rows) - len(body)} more rows not shown")
    if len(columns) > width:
        notes.append(f"{len(columns) - width} more columns not shown")
    text = "\n".join([head, *body]) if body or rows else head + "\n(no rows)"
    return text + (f"\n({'; '.join(notes)})" if notes else "")


def error_for_model(text: str) -> str:
    """An error message fed back to the model: cut and defused (it may quote data values)."""
    return clip(defuse(text[: ERROR_CHARS * 2]), ERROR_CHARS)


__all__ = [
    "PromptLimits",
    "bound_history",
    "clip",
    "clip_tokens",
    "defuse",
    "error_for_model",
    "fold",
    "inline",
    "prompt_snapshot",
    "result_table",
    "safe_name",
]
