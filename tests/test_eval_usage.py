"""What ``tablechat eval --engine llm`` reports beyond accuracy, against the fake vLLM server:
prompt tokens and the prefix cache's share, LLM and SQL calls per question, offline fallbacks
counted apart from the LLM's answers, and how many questions run at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tablechat.backends import EmbeddedBackend, LlamaCppBackend, LLMBackend, ServerInfo, VLLMBackend
from tablechat.cli import main
from tablechat.config import load_settings
from tablechat.eval import EvalOptions, load_dataset, run_eval, summarize
from tablechat.eval.report import format_summary, summary_json
from tests.test_eval_harness import by_id, write_dataset

QUESTIONS: list[dict[str, Any]] = [
    {"id": "n", "db_id": "shop", "question": "How many items are there?",
     "gold_sql": "SELECT count(*) FROM items"},
    {"id": "a", "db_id": "shop", "question": "What is the average price?",
     "gold_sql": "SELECT avg(price) FROM items"},
]


@pytest.fixture()
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    monkeypatch.setenv("TABLECHAT_LLM_MAX_RETRIES", "0")
    return write_dataset(tmp_path / "tiny", QUESTIONS)


ROUTER = {"match": "data or chat", "on": "prompt", "reply": {"content": "data"}}


def sql_rule(question: str, *replies: dict[str, Any]) -> dict[str, Any]:
    """Replies to the SQL step of ``question`` (its prompt asks for SQL), in order."""
    return {"match": f"(?s)SQL.*{question}", "on": "prompt", "replies": list(replies)}


def test_prompt_tokens_cached_share_and_calls_per_question(dataset: Path, fake_vllm: Any
                                                           ) -> None:
    fake_vllm.script(
        rules=[
            ROUTER,
            sql_rule("How many items", {"content": "SELECT count(*) FROM items",
                                        "cached_tokens": 30}),
            # a repair: an unknown column first, then a query that runs
            sql_rule("average price", {"content": "SELECT avg(cost) FROM items"},
                     {"content": "SELECT avg(price) FROM items", "cached_tokens": 20}),
        ],
        default={"content": "The answer is in the table.", "cached_tokens": 5},
    )
    run = run_eval(load_dataset(dataset), EvalOptions(engine="llm", llm_url=fake_vllm.url,
                                                      workers=1))
    results = by_id(run)
    assert results["n"].correct and results["a"].correct
    assert results["n"].sql_calls == 1
    assert results["a"].sql_calls == 2  # the repair is a second SQL call
    assert results["a"].llm_calls == results["n"].llm_calls + 1  # the repair
    assert results["n"].cached_tokens == 30 + 5  # the SQL call and the answer sentence
    assert results["a"].cached_tokens == 0 + 20 + 5
    requests = fake_vllm.chat_requests()
    summary = summarize(run)
    assert summary.llm_calls == len(requests)
    assert summary.cached_tokens == 60
    assert summary.sql_calls == 3
    assert summary.cached_share == pytest.approx(60 / summary.prompt_tokens)
    line = summary_json(summary)
    assert line["cached_tokens"] == 60
    assert line["per_question"]["sql_calls"] == 1.5
    assert line["per_question"]["llm_calls"] == len(requests) / 2
    text = format_summary(summary)
    assert f"{len(requests) / 2:.2f} LLM calls, 1.50 SQL calls" in text
    assert f"{60 / summary.prompt_tokens:.0%} of prompt tokens from the server's prefix " \
        "cache" in text


def test_an_offline_fallback_is_not_counted_as_the_llm_s_answer(dataset: Path, fake_vllm: Any
                                                                ) -> None:
    fake_vllm.script(rules=[
        ROUTER,
        sql_rule("How many items", {"content": "SELECT count(*) FROM items"}),
        # a garbled reply: the question falls back to the offline engine, which gets it right
        sql_rule("average price", {"content": "SELECT avg(price) FROM items",
                                   "fault": "malformed_sse"}),
    ], default={"content": "The answer is in the table."})
    run = run_eval(load_dataset(dataset), EvalOptions(engine="llm", llm_url=fake_vllm.url,
                                                      workers=1))
    results = by_id(run)
    fallback = results["a"]
    assert fallback.engine == "offline" and fallback.fallback
    assert fallback.fallback_correct  # the offline engine's answer was right ...
    assert not fallback.answered and not fallback.correct  # ... but it is not the LLM's
    assert fallback.sql_calls == 0
    assert results["n"].correct and not results["n"].fallback
    summary = summarize(run)
    assert (summary.overall.correct, summary.overall.answered) == (1, 1)
    assert summary.overall.accuracy == 0.5
    assert (summary.fallbacks, summary.fallback_correct) == (1, 1)
    assert summary_json(summary)["fallbacks"] == 1
    assert "fallbacks 1 questions answered by the offline engine" in format_summary(summary)


def test_workers_default_to_the_servers_slots_and_an_explicit_number_wins(
    dataset: Path, fake_vllm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_vllm.script(default={"content": "SELECT count(*) FROM items"})
    # vLLM advertises no slot count: the default
    run = run_eval(load_dataset(dataset), EvalOptions(engine="llm", llm_url=fake_vllm.url))
    assert (run.workers, run.workers_from) == (4, "default")
    run = run_eval(load_dataset(dataset), EvalOptions(engine="llm", llm_url=fake_vllm.url,
                                                      workers=2))
    assert (run.workers, run.workers_from) == (2, "--workers")
    assert main(["eval", str(dataset), "--engine", "llm", "--llm-url", fake_vllm.url,
                 "--workers", "3", "--no-progress", "--json"]) == 0
    out = capsys.readouterr()
    assert "workers   3 questions at once (--workers)" in out.err
    line = json.loads(out.out.strip().splitlines()[-1])
    assert (line["workers"], line["workers_from"]) == (3, "--workers")


def test_each_backend_says_how_many_calls_its_server_runs_at_once(tmp_path: Path) -> None:
    settings = load_settings(llm_url="http://127.0.0.1:9/v1")
    four = ServerInfo(True, ("m",), slots=4)
    assert LlamaCppBackend(settings).slots(four) == 4  # /props total_slots
    assert LlamaCppBackend(settings).slots(ServerInfo(True, ("m",))) is None
    assert VLLMBackend(settings).slots(ServerInfo(True, ("m",))) is None  # batches anything
    assert LLMBackend(settings).slots(None) is None
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    embedded = EmbeddedBackend(load_settings(llm_url=f"gguf:{gguf}"))
    assert embedded.slots(None) == 1  # one call at a time, whatever it is asked


def test_a_failed_repair_loop_counts_every_sql_call(dataset: Path, fake_vllm: Any) -> None:
    fake_vllm.script(rules=[
        ROUTER,
        sql_rule("How many items", {"content": "SELECT count(*) FROM items"}),
        sql_rule("average price", {"content": "SELECT avg(cost) FROM items"},
                 {"content": "SELECT avg(weight) FROM items"},
                 {"content": "SELECT avg(size) FROM items"}),
    ], default={"content": "The answer is in the table."})
    results = by_id(run_eval(load_dataset(dataset),
                             EvalOptions(engine="llm", llm_url=fake_vllm.url, workers=1)))
    failed = results["a"]
    assert not failed.answered and failed.error and "no valid query" in failed.error
    assert failed.sql_calls == 3  # the first query and two repairs (TABLECHAT_MAX_RETRIES=2)
    assert not failed.fallback
