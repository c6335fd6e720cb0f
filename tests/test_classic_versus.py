"""``tablechat eval --vs classic`` against the fake vLLM server: LangChain's classic SQL chain
(create_sql_query_chain + SQLDatabase on the same DuckDB file) beside tablechat, both scored by
the same harness, with the figures the comparison prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tablechat.cli import main
from tablechat.eval import EvalOptions, load_dataset
from tablechat.eval.versus import run_versus
from tests.test_eval_harness import write_dataset
from tests.test_eval_usage import QUESTIONS, ROUTER, sql_rule


def classic_rule(question: str, content: str) -> dict[str, Any]:
    """The classic chain's prompt: its format instructions (``SQLQuery:``), then the question."""
    return {"match": f"(?s)SQLQuery.*{question}", "on": "prompt",
            "reply": {"content": content, "cached_tokens": 10}}


@pytest.fixture()
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    monkeypatch.setenv("TABLECHAT_LLM_MAX_RETRIES", "0")
    return write_dataset(tmp_path / "tiny", QUESTIONS)


@pytest.fixture()
def scripted(fake_vllm: Any) -> Any:
    fake_vllm.script(rules=[
        # the classic chain: right on the count, a column that does not exist on the average
        classic_rule("How many items", "SELECT count(*) FROM items"),
        classic_rule("average price", "SELECT avg(cost) FROM items"),
        ROUTER,
        sql_rule("How many items", {"content": "SELECT count(*) FROM items"}),
        sql_rule("average price", {"content": "SELECT avg(price) FROM items"}),
    ], default={"content": "The answer is in the table."})
    return fake_vllm


def test_both_systems_are_scored_by_the_same_harness(dataset: Path, scripted: Any) -> None:
    versus = run_versus(load_dataset(dataset), EvalOptions(llm_url=scripted.url))
    ours, classic = versus.figures()
    assert (ours.system, classic.system) == ("tablechat", "classic")
    assert (ours.scored, ours.correct, ours.invalid_sql) == (2, 2, 0)
    assert (classic.scored, classic.correct, classic.invalid_sql) == (2, 1, 1)
    assert classic.invalid_rate == 0.5
    # one call per question, the SQL run through SQLDatabase, usage from the server
    assert classic.llm_calls == 1.0 and classic.sql_calls == 1.0
    classic_requests = [r for r in scripted.chat_requests()
                        if "SQLQuery" in json.dumps(r["body"]["messages"])]
    assert len(classic_requests) == 2
    assert classic.prompt_tokens > 0
    assert classic.cached_share == pytest.approx(20 / (2 * classic.prompt_tokens))
    # the same model, temperature and server for both
    bodies = [r["body"] for r in scripted.chat_requests()]
    assert {b["model"] for b in bodies} == {scripted.model}
    assert {b.get("temperature") for b in bodies} == {0.0}
    results = {r.id: r for r in versus.theirs.results}
    assert results["n"].correct and results["n"].predicted_sql == "SELECT count(*) FROM items"
    assert not results["a"].answered and "cost" in (results["a"].error or "")
    assert all(r.latency > 0 for r in versus.theirs.results)
    assert versus.workers == 4 and versus.workers_from == "default"  # vLLM gives no slots


def test_cli_prints_both_side_by_side(dataset: Path, scripted: Any, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "per-question.jsonl"
    code = main(["eval", str(dataset), "--vs", "classic", "--llm-url", scripted.url,
                 "--workers", "2", "--no-progress", "--json", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["vs"] == "classic" and line["workers"] == 2
    assert line["systems"]["tablechat"]["accuracy"] == 1.0
    assert line["systems"]["classic"]["accuracy"] == 0.5
    assert "execution accuracy" in captured.err and "tablechat" in captured.err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted((r["system"], r["id"]) for r in rows) == [
        ("classic", "a"), ("classic", "n"), ("tablechat", "a"), ("tablechat", "n")]


def test_vs_is_for_the_llm_engine(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(dataset), "--vs", "classic", "--engine", "gold"]) == 2
    assert "--vs" in capsys.readouterr().err
    assert main(["eval", str(dataset), "--vs", "classic", "--no-progress"]) == 1
    assert "--llm-url" in capsys.readouterr().err
