"""Routing, chat, follow-up rewriting, the repair loop and usage, with a scripted chat model
that records every prompt it gets."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

import tablechat
from tablechat import events as ev
from tablechat.agent.rewrite import clean_rewrite
from tablechat.agent.router import parse_route

ROUTER = "Reply with one word: data or chat"
REWRITE = "Rewrite the latest message"
SQL = "## Database schema"
ANSWER = "SQL that was run"
CHAT = "You are tablechat"
KINDS = (ROUTER, REWRITE, SQL, ANSWER, CHAT)


class Scripted(BaseChatModel):
    """Replies by prompt kind (each kind's replies in order, the last one repeating) and
    records every prompt; reports token usage like a server would."""

    script: dict[str, list[str]] = Field(default_factory=dict)
    prompts: list[tuple[str, list[BaseMessage]]] = Field(default_factory=list)
    fail: dict[str, Exception] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def kind_of(self, messages: list[BaseMessage]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        return next((k for k in KINDS if k in text), "?")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kind = self.kind_of(messages)
        self.prompts.append((kind, messages))
        if kind in self.fail:
            raise self.fail[kind]
        replies = self.script.get(kind) or ["?"]
        text = replies.pop(0) if len(replies) > 1 else replies[0]
        prompt = sum(len(str(m.content).split()) for m in messages)
        usage = {"input_tokens": prompt, "output_tokens": len(text.split()),
                 "total_tokens": prompt + len(text.split())}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            text, usage_metadata=usage))])

    def of(self, kind: str) -> list[str]:
        return ["\n".join(str(m.content) for m in msgs) for k, msgs in self.prompts if k == kind]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def make(demo_db: Path):  # type: ignore[no-untyped-def]
    opened: list[tablechat.TableChat] = []

    def connect(script: dict[str, list[str]], **settings: Any) -> tuple[tablechat.TableChat,
                                                                         Scripted]:
        model = Scripted(script=script)
        tc = tablechat.connect(demo_db, llm=model, **settings)
        opened.append(tc)
        return tc, model

    yield connect
    for tc in opened:
        tc.close()


HISTORY = [
    {"role": "user", "content": "How many orders were placed in 2024?"},
    {"role": "assistant", "content": "8,000 orders were placed in 2024.",
     "sql": "SELECT count(*) AS n FROM orders WHERE year(order_date) = 2024"},
]


# -- routing ------------------------------------------------------------------------------------
def test_greeting_goes_to_chat(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({ROUTER: ["chat"], CHAT: ["Hello! Ask me about the shop's data."]})
    answer = tc.ask("hello!")
    assert answer.error is None and answer.engine == "llm" and answer.sql is None
    assert answer.text == "Hello! Ask me about the shop's data."
    assert [k for k, _ in model.prompts] == [ROUTER, CHAT]
    assert "hello!" in model.of(ROUTER)[0] and "orders" in model.of(ROUTER)[0]  # table list


def test_data_question_the_router_decides(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({ROUTER: ["data"], SQL: ["SELECT count(*) AS n FROM orders"],
                      ANSWER: ["40,000."]})
    answer = tc.ask("what is going on lately?")  # names nothing in the schema: the LLM decides
    assert answer.rows == [(40000,)] and answer.text == "40,000."
    assert [k for k, _ in model.prompts] == [ROUTER, SQL, ANSWER]


def test_question_naming_the_schema_skips_the_router(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({SQL: ["SELECT count(*) AS n FROM customers"], ANSWER: ["5000."]})
    answer = tc.ask("How many customers per segment?")
    assert answer.error is None
    assert [k for k, _ in model.prompts] == [SQL, ANSWER]


def test_odd_router_reply_means_data(make) -> None:  # type: ignore[no-untyped-def]
    tc, _ = make({ROUTER: ["hmm, let me think"], SQL: ["SELECT 1 AS one"], ANSWER: ["1."]})
    assert tc.ask("anything new?").sql is not None


@pytest.mark.parametrize(
    ("reply", "route"),
    [("chat", "chat"), ("data", "data"), ("DATA", "data"), ("I'd say chat.", "chat"),
     ('"chat"', "chat"), ("", "data"), ("chatty", "data"), ("sql", "data")],
)
def test_parse_route(reply: str, route: str) -> None:
    assert parse_route(reply) == route


# -- follow-ups ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("follow_up", "standalone", "sql"),
    [
        ("and in 2023?", "How many orders were placed in 2023?",
         "SELECT count(*) AS n FROM orders WHERE year(order_date) = 2023"),
        ("only for Europe", "How many orders from customers in Europe were placed in 2024?",
         "SELECT count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id "
         "JOIN regions r ON r.id = c.region_id WHERE r.name = 'Europe' "
         "AND year(o.order_date) = 2024"),
        ("break it down by month", "How many orders were placed in each month of 2024?",
         "SELECT month(order_date) AS m, count(*) AS n FROM orders "
         "WHERE year(order_date) = 2024 GROUP BY 1 ORDER BY 1"),
    ],
)
def test_follow_up_is_rewritten_before_text_to_sql(  # type: ignore[no-untyped-def]
    make, follow_up: str, standalone: str, sql: str
) -> None:
    tc, model = make({ROUTER: ["data"], REWRITE: [f"Standalone question: {standalone}"],
                      SQL: [sql], ANSWER: ["Done."]})
    answer = tc.ask(follow_up, history=HISTORY)
    assert answer.error is None, answer.error
    assert [k for k, _ in model.prompts] == [ROUTER, REWRITE, SQL, ANSWER]
    rewrite = model.of(REWRITE)[0]
    assert "How many orders were placed in 2024?" in rewrite
    assert "WHERE year(order_date) = 2024" in rewrite  # the last SQL
    assert rewrite.rstrip().endswith(
        "Reply with the standalone question only, on one line.")
    assert follow_up in rewrite
    sql_prompt = model.of(SQL)[0]
    assert sql_prompt.rstrip().endswith(standalone)
    assert "8,000 orders were placed in 2024." in sql_prompt  # the history is there too
    assert any(isinstance(e, ev.Status) and e.step == "rewrite" and standalone in e.message
               for e in answer.events)
    assert standalone in model.of(ANSWER)[0]


def test_why_is_that_goes_to_chat_with_the_history(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({ROUTER: ["chat"], CHAT: ["2024 had a big holiday season."]})
    answer = tc.ask("why is that?", history=HISTORY)
    assert answer.text == "2024 had a big holiday season." and answer.sql is None
    (_, messages) = next(p for p in model.prompts if p[0] == CHAT)
    assert [m.type for m in messages] == ["system", "human", "ai", "human"]
    assert "8,000 orders" in str(messages[2].content)
    assert "year(order_date) = 2024" in str(messages[2].content)  # the SQL it can explain
    assert messages[-1].content == "why is that?"
    assert "why is that?" in model.of(ROUTER)[0] and "8,000 orders" in model.of(ROUTER)[0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("How many orders in 2023?", "How many orders in 2023?"),
        ('Standalone question: "How many orders in 2023?"', "How many orders in 2023?"),
        ("<think>hmm</think>\n\nHow many orders in 2023?\nExplanation: ...",
         "How many orders in 2023?"),
        ("", "and in 2023?"),
        ("x" * 1000, "and in 2023?"),
    ],
)
def test_clean_rewrite(reply: str, expected: str) -> None:
    assert clean_rewrite(reply, "and in 2023?") == expected


# -- the repair loop ----------------------------------------------------------------------------
def test_wrong_column_is_repaired_with_the_error_fed_back(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({SQL: ["SELECT segmnt, count(*) AS n FROM customers GROUP BY 1",
                            "SELECT segment, count(*) AS n FROM customers GROUP BY 1 "
                            "ORDER BY n DESC"],
                      ANSWER: ["Consumers lead."]})
    answer = tc.ask("customers per segment")
    assert answer.error is None and answer.attempts == 2
    assert answer.rows[0][0] == "Consumer"
    first, second = model.of(SQL)
    assert "Your previous query failed" not in first
    assert "Your previous query failed" in second and "segmnt" in second


def test_hostile_sql_is_refused_and_never_run(make, demo_db: Path) -> None:  # type: ignore[no-untyped-def]
    before = _digest(demo_db)
    tc, model = make({SQL: ["DROP TABLE customers",
                            "COPY customers TO '/tmp/tablechat-router-leak.csv'",
                            "SELECT * FROM read_csv('/etc/passwd')"]}, max_retries=2)
    answer = tc.ask("delete all customers please")
    assert answer.error_type == "NoAnswerError" and "after 3 attempts" in (answer.error or "")
    assert not [e for e in answer.events if isinstance(e, ev.SQL | ev.Table)]
    assert len(model.of(SQL)) == 3
    assert not Path("/tmp/tablechat-router-leak.csv").exists()
    assert _digest(demo_db) == before
    assert tc.run_sql("SELECT count(*) FROM customers").rows == [(5000,)]


def test_retry_budget_ends_in_a_clear_error(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({SQL: ["SELECT nope FROM customers"]}, max_retries=1)
    answer = tc.ask("customers nope")
    assert answer.error_type == "NoAnswerError"
    assert "after 2 attempts" in (answer.error or "") and "nope" in (answer.error or "")
    # attempt 2 repeated attempt 1: asked once more with varied sampling, never run again
    assert len(model.of(SQL)) == 3


# -- usage and failures -------------------------------------------------------------------------
def test_usage_counts_every_llm_call(make) -> None:  # type: ignore[no-untyped-def]
    tc, model = make({ROUTER: ["data"], REWRITE: ["How many orders were placed in 2023?"],
                      SQL: ["SELECT count(*) AS n FROM orders"], ANSWER: ["Many."]})
    answer = tc.ask("and in 2023?", history=HISTORY)
    prompts = [sum(len(str(m.content).split()) for m in msgs) for _, msgs in model.prompts]
    assert answer.usage.llm_calls == 4
    assert answer.usage.prompt_tokens == sum(prompts)
    assert answer.usage.completion_tokens == 1 + 7 + 6 + 1  # words, as Scripted counts
    engine = tc._llm_agent()
    assert engine is not None
    assert engine.client.calls == {"router": 1, "rewrite": 1, "sql": 1, "answer": 1}


def test_llm_failure_falls_back_to_the_offline_engine(make) -> None:  # type: ignore[no-untyped-def]
    class Offline:
        name = "offline"

        async def run(self, ctx, usage):  # type: ignore[no-untyped-def]
            yield ev.AnswerText(text="offline answer", engine="offline")

    tc, model = make({})
    model.fail[SQL] = ConnectionError("connection refused")
    tc._offline = Offline()
    answer = tc.ask("How many customers are there?")
    assert answer.error is None and answer.engine == "offline"
    assert "offline answer" in answer.text and "Answered by the offline engine" in answer.text
    assert any(isinstance(e, ev.Status) and e.step == "fallback" for e in answer.events)
