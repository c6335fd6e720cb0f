"""``tablechat eval --vs classic`` with real weights: SmolLM2-135M-Instruct served by llama.cpp
(the real-model tier's server, one slot). Plumbing only, never the model's wisdom: both runs
take as many questions at once as the server's ``/props`` total_slots, both systems' calls and
tokens are counted from the server's usage, and the second question on a database is served
from the prefix cache.

Two questions on a one-table database, replies of at most 24 tokens and no repairs, so the
tier stays within its time budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tablechat.eval import EvalOptions, load_dataset
from tablechat.eval.versus import run_versus
from tests.support.llama_server import LlamaServer
from tests.test_eval_harness import write_dataset

# both name the table, so tablechat asks no router call: two calls a question (SQL, answer)
QUESTIONS = [
    {"id": "n", "db_id": "shop", "question": "How many items are there?",
     "gold_sql": "SELECT count(*) FROM items"},
    {"id": "a", "db_id": "shop", "question": "What is the average price of the items?",
     "gold_sql": "SELECT avg(price) FROM items"},
]

pytestmark = pytest.mark.real_model


@pytest.fixture()
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    for name, value in {"LLM_MAX_TOKENS": "24", "LLM_TIMEOUT": "300", "MAX_RETRIES": "0",
                        "LLM_MAX_RETRIES": "1"}.items():
        monkeypatch.setenv(f"TABLECHAT_{name}", value)
    return write_dataset(tmp_path / "tiny", QUESTIONS)


def test_versus_classic_counts_both_systems_from_the_server(
    dataset: Path, llama_server: LlamaServer
) -> None:
    slots = llama_server.get("/props")["total_slots"]
    versus = run_versus(load_dataset(dataset), EvalOptions(llm_url=llama_server.url))
    # no --workers: tablechat's run and the classic chain's as many at once as it has slots
    assert (versus.ours.workers, versus.ours.workers_from) == (slots, "server slots")
    assert (versus.workers, versus.workers_from) == (slots, "server slots")
    classic = versus.theirs.results
    assert [r.id for r in classic] == ["n", "a"]
    for r in classic:  # one call each, its usage as the server reported it
        assert (r.llm_calls, r.sql_calls) == (1, 1)
        assert r.prompt_tokens > 0 and r.completion_tokens > 0
    # the same instructions and table info before each question: the second prompt's prefix
    # comes from llama.cpp's cache (one slot, the classic chain alone on it)
    assert classic[1].cached_tokens > 0
    assert classic[1].cached_tokens <= classic[1].prompt_tokens
    for r in versus.ours.results:
        assert not r.fallback, r.error
        assert r.llm_calls >= 1 and r.prompt_tokens > 0
    ours, theirs = versus.figures()
    assert ours.scored == theirs.scored == 2
    assert theirs.llm_calls == 1.0 and 0 < theirs.cached_share < 1
