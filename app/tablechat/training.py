"""Training data from people's feedback: ``tablechat export-training``.

- ``sft``: one conversational record per verified pair (an answer voted good, or a person's
  corrected SQL), ``{"messages": [system, (the conversation before,) user, assistant]}``, the
  system message holding the schema as it was when the feedback was given. TRL's
  ``SFTTrainer`` and axolotl's ``chat_template`` type read it as is.
- ``dpo``: one record per corrected answer, ``{"prompt": [system, ..., user], "chosen":
  [assistant: the corrected SQL], "rejected": [assistant: the SQL that ran]}``: TRL's
  conversational preference format (``DPOTrainer``); axolotl reads it with ``type:
  chat_template.default`` and ``field_messages: prompt``.
- ``dpo-chatml``: the same pairs as strings, ``{"system", "question", "chosen", "rejected"}``:
  axolotl's ``chatml.intel`` DPO loader (follow-ups left out: one question, no conversation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .store import FeedbackError, FeedbackRecord, Store

FORMATS = ("sft", "dpo", "dpo-chatml")
INSTRUCTION = ("You write one DuckDB SQL query that answers the user's question about the "
               "database below. Reply with the SQL only.")


def system_message(schema: str | None) -> str:
    """The system message: the instruction, then the schema the model saw."""
    return f"{INSTRUCTION}\n\n{schema.strip()}" if schema else INSTRUCTION


def _norm(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").lower()


def _said(fb: FeedbackRecord) -> str:
    """The question with the conversation before it: what a duplicate must repeat."""
    return json.dumps([fb.context, fb.question], sort_keys=True)


def records(store: Store, fmt: str, *, since: datetime | None = None,
            database: str | None = None) -> Iterator[dict[str, Any]]:
    """The training records of ``fmt`` from the store's feedback, oldest first."""
    if fmt not in FORMATS:
        raise FeedbackError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    schemas: dict[str, str | None] = {}

    def system(fb: FeedbackRecord) -> str:
        key = fb.schema_hash or ""
        if key not in schemas:
            schemas[key] = store.schema_text(key) if key else None
        return system_message(schemas[key])

    def conversation(fb: FeedbackRecord) -> list[dict[str, str]]:
        """The system message, the conversation before the question, the question."""
        before = [{"role": m["role"], "content": m["content"]} for m in fb.context
                  if m.get("role") in ("user", "assistant") and m.get("content")]
        return [{"role": "system", "content": system(fb)}, *before,
                {"role": "user", "content": fb.question}]

    seen: set[tuple[str, str, str]] = set()
    for fb in store.feedback(since=since, database=database):
        if fmt == "sft":
            target = fb.corrected_sql or (fb.sql if fb.good else None)
            key = (fb.database, _said(fb), _norm(target or ""))
            if not target or key in seen:
                continue
            seen.add(key)
            yield {"messages": [*conversation(fb), {"role": "assistant", "content": target}]}
            continue
        if not fb.corrected_sql or not fb.sql or _norm(fb.corrected_sql) == _norm(fb.sql):
            continue  # a preference needs an answer a person corrected
        key = (fb.database, _said(fb), _norm(fb.sql) + "\0" + _norm(fb.corrected_sql))
        if key in seen or (fmt == "dpo-chatml" and len(conversation(fb)) > 2):
            continue  # chatml.intel holds one question: a follow-up's conversation does not fit
        seen.add(key)
        if fmt == "dpo":
            yield {"prompt": conversation(fb),
                   "chosen": [{"role": "assistant", "content": fb.corrected_sql}],
                   "rejected": [{"role": "assistant", "content": fb.sql}]}
        else:
            yield {"system": system(fb), "question": fb.question,
                   "chosen": fb.corrected_sql, "rejected": fb.sql}


def export_training(store: Store, fmt: str, out: str | Path, *, since: datetime | None = None,
                    database: str | None = None) -> int:
    """Write the records of ``fmt`` to ``out`` (JSONL, replaced whole only when complete);
    returns how many were written."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for record in records(store, fmt, since=since, database=database):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FeedbackError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
