"""Verified examples as memory: BM25 retrieval, value substitution checked against the data,
the offline engine answering from an example (marked as such), leave-one-out evaluation,
and `tablechat examples add/list/remove`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import tablechat
from tablechat import events as ev
from tablechat.cli import main
from tablechat.memory import Memory, normalize_question
from tablechat.memory.bm25 import BM25, terms
from tablechat.memory.values import adapt
from tablechat.store import Example, SQLStore, close_stores, open_store

ROOT = Path(__file__).resolve().parents[1]
DEMO_EXAMPLES = ROOT / "data" / "demo" / "examples.jsonl"
NEVER = "Which customers in Berlin never placed an order?"
NEVER_SQL = ("SELECT c.name FROM customers AS c WHERE c.city = 'Berlin' AND NOT EXISTS "
             "(SELECT 1 FROM orders AS o WHERE o.customer_id = c.id) ORDER BY c.name")


@pytest.fixture()
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("TABLECHAT_STORE", url)
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    yield url
    close_stores()


def test_bm25_ranks_the_closest_question_first() -> None:
    docs = ["how many singers are there", "list the names of all stadiums",
            "what is the average capacity of stadiums"]
    index = BM25([terms(d) for d in docs])
    assert [i for i, _ in index.search(terms("average stadium capacity"), 2)] == [2, 1]
    assert index.search(terms("zebra"), 3) == []


def test_values_are_substituted_through_sqlglot() -> None:
    got = adapt("How many car makers are there in france?",
                "SELECT COUNT(*) FROM makers WHERE country = 'france' AND year > 1970",
                "How many car makers are there in germany?", "duckdb")
    assert got is not None
    assert got.sql == "SELECT COUNT(*) FROM makers WHERE country = 'germany' AND year > 1970"
    assert got.values == {"france": "germany"}
    # a value of the example the question no longer says: not the same question
    assert adapt("cars made in 1970", "SELECT * FROM cars WHERE year = 1970",
                 "cars made recently", "duckdb") is None
    # a number the question asks about that the SQL would ignore
    assert adapt("list the cars", "SELECT * FROM cars", "list the 5 cars", "duckdb") is None
    # a quote in a value stays a literal
    quoted = adapt("customers in Berlin", "SELECT 1 FROM c WHERE city = 'Berlin'",
                   "customers in O'Hare", "duckdb")
    assert quoted is not None and quoted.sql == "SELECT 1 FROM c WHERE city = 'O''Hare'"


def test_a_question_that_means_something_else_is_not_matched() -> None:
    memory = Memory([Example("d", "Which city has most number of arriving flights?",
                             "SELECT 1"),
                     Example("d", "How many flights depart from Aberdeen?", "SELECT 2")])
    assert memory.match("Which city has most number of departing flights?", "duckdb") is None
    assert memory.match("What are the flights departing from Aberdeen?", "duckdb") is None
    hit = memory.match("How many flights depart from Aberdeen?", "duckdb")
    assert hit is not None and hit.sql == "SELECT 2"


def test_leave_one_out_skips_the_question_and_its_exact_duplicates() -> None:
    examples = [Example("d", "How many singers?", "SELECT 1"),
                Example("d", "how many singers", "SELECT 1"),
                Example("d", "How many singers are there?", "SELECT 2")]
    loo = Memory(examples, exclude_same_question=True, min_score=0.1)
    assert normalize_question("How many singers?") == normalize_question("how many singers")
    assert [e.sql for e in loo.search("How many singers?")] == ["SELECT 2"]


def test_the_offline_engine_answers_from_a_verified_example(demo_db: Path,
                                                            store_url: str) -> None:
    question = "Which customers in Paris never placed an order?"
    with tablechat.connect(demo_db) as tc:
        assert tc.ask(question).sql is None  # the offline engine alone declines
        open_store(store_url).add_examples([Example("demo", NEVER, NEVER_SQL)])
        answer = tc.ask(question)
        expected = tc.run_sql(NEVER_SQL.replace("Berlin", "Paris"))
    assert answer.error is None and answer.engine == "offline"
    assert "c.city = 'Paris'" in (answer.sql or "")
    assert sorted(answer.rows) == sorted(expected.rows) and answer.rows
    marks = [e.message for e in answer.events if isinstance(e, ev.Status)]
    assert any("a verified example" in m and "Berlin → Paris" in m for m in marks)


def test_a_value_the_column_does_not_hold_is_not_substituted(demo_db: Path,
                                                             store_url: str) -> None:
    SQLStore(store_url).add_examples([Example("demo", NEVER, NEVER_SQL)])
    with tablechat.connect(demo_db) as tc:
        assert tc.ask("Which customers in Atlantis never placed an order?").sql is None
        # the spelling comes from the data
        answer = tc.ask("Which customers in paris never placed an order?")
    assert "c.city = 'Paris'" in (answer.sql or "")


def test_memory_can_be_switched_off(demo_db: Path, store_url: str) -> None:
    SQLStore(store_url).add_examples([Example("demo", NEVER, NEVER_SQL)])
    with tablechat.connect(demo_db, memory=False) as tc:
        assert tc.ask("Which customers in Paris never placed an order?").sql is None


def test_cli_examples_add_list_remove(store_url: str, demo_db: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    assert main(["examples", "add", str(DEMO_EXAMPLES), "--db", str(demo_db)]) == 0
    assert main(["examples", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shipped = DEMO_EXAMPLES.read_text().splitlines()
    assert len(listed) == len(shipped) >= 5 and {e["database"] for e in listed} == {"demo"}
    assert main(["examples", "remove", str(listed[0]["id"])]) == 0
    assert len(SQLStore(store_url).examples()) == len(shipped) - 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "sql": "DROP TABLE customers"}\n')
    assert main(["examples", "add", str(bad), "--db", str(demo_db)]) == 1
    assert "bad.jsonl: 'q':" in capsys.readouterr().err
    assert len(SQLStore(store_url).examples()) == len(shipped) - 1  # nothing of it added
    bad.write_text('{"question": "q"}\n')
    assert main(["examples", "add", str(bad)]) == 1
    assert "bad.jsonl:1: 'sql' is missing" in capsys.readouterr().err


def test_eval_memory_loo_reports_both_runs(tmp_path: Path, store_url: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": f"q{i}", "db_id": "demo", "question": NEVER.replace("Berlin", city),
             "gold_sql": NEVER_SQL.replace("Berlin", city)}
            for i, city in enumerate(["Berlin", "Paris", "Madrid"])]
    dataset = tmp_path / "never.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["eval", str(dataset), "--memory", "loo", "--json", "--no-progress",
                 "--workers", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["without_memory"]["correct"] == 0
    assert summary["correct"] == 3 and summary["precision"] == 1.0
    assert summary["memory"] == {"source": "loo", "examples": 3}
    # leave-one-out on a single question has nothing to learn from
    dataset.write_text(json.dumps(rows[0]) + "\n")
    assert main(["eval", str(dataset), "--memory", "loo", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["answered"] == 0


def test_asking_never_creates_the_store(demo_db: Path, store_url: str) -> None:
    path = Path(store_url.removeprefix("sqlite:///"))
    with tablechat.connect(demo_db) as tc:
        assert tc.ask("Which customers in Paris never placed an order?").sql is None
        assert not path.exists()
        open_store(store_url).add_examples([Example("demo", NEVER, NEVER_SQL)])
        assert tc.ask("Which customers in Paris never placed an order?").sql


def test_eval_memory_from_a_file(tmp_path: Path, store_url: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": f"q{i}", "db_id": "demo", "question": NEVER.replace("Berlin", city),
             "gold_sql": NEVER_SQL.replace("Berlin", city)}
            for i, city in enumerate(["Paris", "Madrid"])]
    dataset = tmp_path / "never.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"db_id": "demo", "question": NEVER, "sql": NEVER_SQL}))
    assert main(["eval", str(dataset), "--memory", str(examples), "--json",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["without_memory"]["correct"], summary["correct"]) == (0, 2)
    assert main(["eval", str(dataset), "--memory", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--memory: cannot read" in err and "Traceback" not in err
