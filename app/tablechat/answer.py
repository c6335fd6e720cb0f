"""The Answer a question produces, assembled from its event stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import events as ev

if TYPE_CHECKING:
    import pandas as pd


@dataclass(slots=True)
class Usage:
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # prompt tokens the server's prefix cache served (usage.prompt_tokens_details.cached_tokens)
    cached_tokens: int = 0

    def add(self, prompt: int, completion: int, cached: int = 0) -> None:
        self.llm_calls += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_tokens += cached


@dataclass(slots=True)
class Answer:
    question: str
    sql: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    text: str = ""
    engine: str = ""
    chart: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    truncated: bool = False
    source_sql: str | None = None  # the query as written, before the guard's row cap
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    interpretation: str = ""  # how the question was read ("Read as: revenue per month, ...")
    suggestions: list[str] = field(default_factory=list)  # rewordings that can be answered
    confidence: float | None = None
    events: list[ev.Event] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def df(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([list(r) for r in self.rows], columns=list(self.columns))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape shared by ``tablechat ask --json`` and ``POST /api/ask``."""
        return {
            "question": self.question,
            "sql": self.sql,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "text": self.text,
            "engine": self.engine,
            "chart": self.chart,
            "error": self.error,
            "truncated": self.truncated,
            "interpretation": self.interpretation,
            "suggestions": list(self.suggestions),
        }

    def apply(self, event: ev.Event) -> None:
        """Fold one event into the answer."""
        self.events.append(event)
        if isinstance(event, ev.Interpretation):
            self.interpretation = event.interpretation or self.interpretation
            self.suggestions = list(event.suggestions) or self.suggestions
            self.confidence = event.confidence
        elif isinstance(event, ev.SQL):
            self.sql = event.sql
            self.source_sql = event.source or event.sql
            self.attempts = event.attempt
        elif isinstance(event, ev.Table):
            self.columns, self.rows, self.truncated = (
                list(event.columns),
                list(event.rows),
                event.truncated,
            )
        elif isinstance(event, ev.Chart):
            self.chart = event.spec
        elif isinstance(event, ev.AnswerText):
            self.text = event.text
            self.engine = event.engine or self.engine
        elif isinstance(event, ev.Error):
            self.error, self.error_type = event.message, event.error_type
