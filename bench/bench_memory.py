"""Verified-example retrieval with 10,000 examples in the store: BM25 search (the few-shot
examples an LLM prompt would get) and a whole memory match (search + value substitution +
scoring), p50 per question. Goal: retrieval <= 5 ms p50."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from bench import Row, p50

EXAMPLES = 10_000
SPIDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval" / "spider_dev"


def _questions() -> list[tuple[str, str]]:
    """Question→SQL pairs: spider_dev's when present, else generated ones."""
    path = SPIDER / "questions.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(r["question"], r["gold_sql"]) for r in rows if r.get("gold_sql")]
    return [(f"how many orders came from city {i}", f"SELECT count(*) FROM t WHERE c = '{i}'")
            for i in range(1000)]


def run() -> list[Row]:
    from tablechat.memory import StoreMemory
    from tablechat.store import Example, SQLStore

    rng = random.Random(14)
    pairs = _questions()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLStore(f"sqlite:///{Path(tmp) / 'store.sqlite'}")
        examples = []
        for i in range(EXAMPLES):  # real questions, repeated up to 10,000
            q, sql = pairs[i % len(pairs)]
            examples.append(Example("bench", q, sql))
        store.add_examples(examples)
        memory = StoreMemory(store, "bench")
        memory.current()  # first build: reading 10,000 rows and indexing them
        start = time.perf_counter()
        memory = StoreMemory(store, "bench")
        memory.current()
        build = (time.perf_counter() - start) * 1000
        asks = [rng.choice(pairs)[0] for _ in range(300)]
        search, match = [], []
        for q in asks:
            t0 = time.perf_counter()
            memory.search(q, 5)
            t1 = time.perf_counter()
            memory.match(q, "duckdb")
            t2 = time.perf_counter()
            search.append((t1 - t0) * 1000)
            match.append((t2 - t1) * 1000)
        store.close()
    s50, m50 = p50(search), p50(match)
    return [
        Row(f"memory: top-5 examples of {EXAMPLES:,} (BM25, p50)", s50, "ms", goal="<= 5 ms",
            ok=s50 <= 5),
        Row(f"memory: match of {EXAMPLES:,} (search + values, p50)", m50, "ms"),
        Row(f"memory: index {EXAMPLES:,} examples from the store", build, "ms"),
    ]
