"""The eval harness end to end: datasets, database caching, engines, scoring, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tablechat.cli import main
from tablechat.eval import EvalOptions, load_dataset, run_eval, summarize
from tablechat.eval.datasets import DatasetError

REPO = Path(__file__).resolve().parents[1]
DEMO_QUESTIONS = REPO / "data" / "questions" / "demo.jsonl"
HEADLINE_KEYS = {"dataset", "engine", "total", "answered", "correct", "accuracy", "precision"}
ROW_KEYS = {
    "id", "db", "question", "gold_sql", "predicted_sql", "correct", "answered", "error",
    "latency", "llm_calls", "prompt_tokens", "completion_tokens", "kind",
}

TABLES: dict[str, dict[str, tuple[str, str]]] = {
    # db_id -> table -> (DDL columns, VALUES rows)
    "shop": {
        "items": ("id BIGINT, name VARCHAR, price DOUBLE",
                  "(1, 'pen', 1.5), (2, 'ink', 2.25), (3, 'pad', NULL), (4, 'cap', 1.875)"),
    },
    "zoo": {
        "keepers": ("id BIGINT, name VARCHAR", "(1, 'Ada'), (2, 'Bo')"),
        "animals": ("id BIGINT, name VARCHAR, weight DECIMAL(8,2), keeper_id BIGINT",
                    "(1, 'lion', 190.5, 1), (2, 'zebra', 380.25, 1), (3, 'owl', 1.2, 2)"),
    },
    "league": {  # ties: b and c share a score
        "scores": ("name VARCHAR, score BIGINT", "('a', 3), ('b', 2), ('c', 2), ('d', 1)"),
    },
}

QUESTIONS: list[dict[str, Any]] = [
    {"id": "s1", "db_id": "shop", "question": "How many items are there?",
     "gold_sql": "SELECT count(*) FROM items"},
    {"id": "s2", "db_id": "shop", "question": "List the item names",
     "gold_sql": "SELECT name FROM items"},
    {"id": "s3", "db_id": "shop", "question": "Items by price, dearest first",
     "gold_sql": "SELECT name, price FROM items ORDER BY price DESC NULLS LAST"},
    {"id": "s4", "db_id": "shop", "question": "What is the average price?",
     "gold_sql": "SELECT avg(price) FROM items", "kind": "average"},
    {"id": "s5", "db_id": "shop", "question": "Which is the cheapest item?",
     "gold_sql": "SELECT name FROM items ORDER BY price LIMIT 1"},
    {"id": "s6", "db_id": "shop", "question": "Broken gold",
     "gold_sql": "SELECT no_such_column FROM items"},
    {"id": "z1", "db_id": "zoo", "question": "How many animals does each keeper look after?",
     "gold_sql": "SELECT k.name, count(*) FROM animals a JOIN keepers k ON k.id = a.keeper_id "
                 "GROUP BY k.name"},
    {"id": "z2", "db_id": "zoo", "question": "What is the heaviest animal?",
     "gold_sql": "SELECT name FROM animals ORDER BY weight DESC LIMIT 1"},
    {"id": "g1", "db_id": "gone", "question": "A question about a missing database",
     "gold_sql": None, "db_available": False},
    {"id": "h1", "db_id": "ghost", "question": "No folder for this database",
     "gold_sql": "SELECT 1"},
]
SCORABLE = 7  # s1-s5, z1, z2


def write_dataset(root: Path, questions: list[dict[str, Any]] | None = None) -> Path:
    """A dataset folder like spider_dev: questions.jsonl, databases/<db>/{load.sql,*.parquet}."""
    for db_id, tables in TABLES.items():
        folder = root / "databases" / db_id
        folder.mkdir(parents=True)
        load = []
        con = duckdb.connect()
        for table, (columns, values) in tables.items():
            con.execute(f"CREATE TABLE {table} ({columns})")
            con.execute(f"INSERT INTO {table} VALUES {values}")
            con.execute(f"COPY {table} TO '{folder / (table + '.parquet')}' (FORMAT parquet)")
            load.append(f"CREATE TABLE {table}({columns});")
        for table in tables:
            load.append(f"INSERT INTO {table} SELECT * FROM read_parquet('{table}.parquet');")
        con.close()
        (folder / "load.sql").write_text("\n".join(load) + "\n", encoding="utf-8")
    lines = [json.dumps(q) for q in (questions if questions is not None else QUESTIONS)]
    (root / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture()
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny")


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    return cache / "tablechat" / "eval"


def by_id(run: Any) -> dict[str, Any]:
    return {r.id: r for r in run.results}


# -- gold engine ------------------------------------------------------------------------------
def test_gold_scores_every_scorable_question(dataset_dir: Path, cache_dir: Path) -> None:
    run = run_eval(load_dataset(dataset_dir), EvalOptions(engine="gold", workers=3))
    summary = summarize(run)
    assert summary.overall.total == SCORABLE
    assert summary.overall.correct == SCORABLE
    assert summary.overall.answered == SCORABLE
    assert summary.gold_errors == 1
    assert summary.no_database == 2
    results = by_id(run)
    assert [r.id for r in run.results] == [q["id"] for q in QUESTIONS]  # dataset order
    assert results["s6"].status == "gold_error"
    assert "no_such_column" in (results["s6"].error or "")
    assert results["g1"].status == "no_database"
    assert results["h1"].status == "no_database"
    assert "ghost" in (results["h1"].error or "")
    assert results["s1"].predicted_sql is not None
    assert results["s4"].kind == "average"  # the dataset's own kind wins
    assert results["z1"].kind == "join"  # else derived from the gold SQL
    assert set(summary.by_db) == {"shop", "zoo"}


def test_gold_on_the_demo_questions_scores_everything(demo_db: Path, cache_dir: Path) -> None:
    run = run_eval(load_dataset(DEMO_QUESTIONS), EvalOptions(engine="gold"))
    summary = summarize(run)
    assert summary.questions == len(DEMO_QUESTIONS.read_text().splitlines())
    assert summary.overall.total == summary.questions
    assert summary.overall.correct == summary.overall.total
    assert summary.by_db.keys() == {"demo"}


def test_databases_are_built_once_and_rebuilt_when_the_data_changes(
    dataset_dir: Path, cache_dir: Path
) -> None:
    dataset = load_dataset(dataset_dir).select(db_ids=["shop"])
    run_eval(dataset, EvalOptions(engine="gold"))
    built = sorted(cache_dir.rglob("shop.*.duckdb"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    run_eval(dataset, EvalOptions(engine="gold"))
    assert sorted(cache_dir.rglob("shop.*.duckdb")) == built
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not list(cache_dir.rglob("zoo.*.duckdb"))  # only the databases asked for

    # new data: a fifth item → the cached build is replaced and the gold result follows
    folder = dataset_dir / "databases" / "shop"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE items AS SELECT * FROM read_parquet('{folder / 'items.parquet'}')")
    con.execute("INSERT INTO items VALUES (5, 'nib', 0.5)")
    con.execute(f"COPY items TO '{folder / 'items.parquet'}' (FORMAT parquet)")
    con.close()
    run = run_eval(dataset, EvalOptions(engine="gold"))
    rebuilt = sorted(cache_dir.rglob("shop.*.duckdb"))
    assert len(rebuilt) == 1 and rebuilt != built
    assert summarize(run).overall.correct == 5  # s1-s5 still agree with themselves
    with duckdb.connect(str(rebuilt[0]), read_only=True) as check:
        assert check.execute("SELECT count(*) FROM items").fetchone() == (5,)


def test_a_failing_load_sql_is_reported_not_fatal(dataset_dir: Path, cache_dir: Path) -> None:
    (dataset_dir / "databases" / "zoo" / "load.sql").write_text("CREATE TABLE broken(;\n")
    run = run_eval(load_dataset(dataset_dir), EvalOptions(engine="gold"))
    results = by_id(run)
    assert results["z1"].status == "no_database"
    assert "load.sql" in (results["z1"].error or "")
    assert results["s1"].correct


# -- an LLM engine (the fake vLLM server): wrong answers must count as wrong -------------------
def test_llm_engine_scores_right_and_wrong_predictions(
    dataset_dir: Path, cache_dir: Path, fake_vllm: Any
) -> None:
    def rule(question: str, sql: str) -> dict[str, Any]:
        return {"match": question, "on": "prompt", "reply": {"content": sql}}

    fake_vllm.script(rules=[
        # right: same count
        rule("How many items are there", "SELECT count(*) AS n FROM items"),
        # right: the same multiset in another order (the gold does not sort)
        rule("List the item names", "SELECT name FROM items ORDER BY name DESC"),
        # wrong: the gold sorts by price descending
        rule("dearest first", "SELECT name, price FROM items ORDER BY price ASC NULLS LAST"),
        # right, within the tolerance
        rule("average price", "SELECT avg(price) + 1e-12 FROM items"),
        # not answered: no SQL in any reply
        rule("cheapest item", "Sorry, I cannot tell."),
        # right: other column names
        rule("each keeper", "SELECT k.name AS keeper, count(a.id) AS animals FROM animals a "
             "JOIN keepers k ON k.id = a.keeper_id GROUP BY 1"),
        # wrong: the lightest
        rule("heaviest animal", "SELECT name FROM animals ORDER BY weight LIMIT 1"),
    ])
    options = EvalOptions(engine="llm", llm_url=fake_vllm.url, workers=2)
    run = run_eval(load_dataset(dataset_dir), options)
    summary = summarize(run)
    results = by_id(run)
    assert summary.overall.total == SCORABLE
    assert summary.overall.answered == 6
    assert summary.overall.correct == 4
    assert {i for i, r in results.items() if r.correct} == {"s1", "s2", "s4", "z1"}
    assert not results["s3"].correct and "ordered" in (results["s3"].reason or "")
    assert not results["s5"].answered and results["s5"].error
    assert results["z2"].answered and not results["z2"].correct
    assert all(results[i].llm_calls >= 1 for i in ("s1", "s2", "s3", "s4", "s5", "z1", "z2"))
    assert results["s1"].prompt_tokens > 0 and results["s1"].completion_tokens > 0
    assert summary.llm_calls >= SCORABLE


def test_a_prediction_cut_by_the_row_cap_is_compared_whole(
    dataset_dir: Path, cache_dir: Path, fake_vllm: Any
) -> None:
    fake_vllm.script(rules=[{"match": "List the item names", "on": "prompt",
                             "reply": {"content": "SELECT name FROM items"}}])
    options = EvalOptions(engine="llm", llm_url=fake_vllm.url, workers=1, max_rows=2)
    results = by_id(run_eval(load_dataset(dataset_dir), options))
    assert results["s2"].correct, results["s2"].reason


def test_rows_with_equal_sort_keys_may_come_in_any_order(
    tmp_path: Path, cache_dir: Path, fake_vllm: Any
) -> None:
    questions = [
        {"id": "t1", "db_id": "league", "question": "Everyone by score",
         "gold_sql": "SELECT name, score FROM scores ORDER BY score DESC"},
        {"id": "t2", "db_id": "league", "question": "The top two",
         "gold_sql": "SELECT name FROM scores ORDER BY score DESC LIMIT 2"},
        {"id": "t3", "db_id": "league", "question": "Names by score",
         "gold_sql": "SELECT name FROM scores ORDER BY score DESC"},
        {"id": "t4", "db_id": "league", "question": "The top three",
         "gold_sql": "SELECT name FROM scores ORDER BY score DESC LIMIT 3"},
    ]
    dataset = write_dataset(tmp_path / "ties", questions)
    fake_vllm.script(rules=[
        # right: b and c tie, so either order is a correct answer
        {"match": "Everyone by score", "on": "prompt", "reply": {
            "content": "SELECT name, score FROM scores ORDER BY score DESC, name DESC"}},
        # right: the LIMIT cuts through the b/c tie; c is as good as b
        {"match": "The top two", "on": "prompt", "reply": {
            "content": "SELECT name FROM scores ORDER BY score DESC, name DESC LIMIT 2"}},
        # wrong: the opposite order
        {"match": "Names by score", "on": "prompt", "reply": {
            "content": "SELECT name FROM scores ORDER BY score ASC"}},
        # wrong: d is not among the tied rows
        {"match": "The top three", "on": "prompt", "reply": {
            "content": "SELECT name FROM scores WHERE name <> 'c' ORDER BY score DESC"}},
    ])
    run = run_eval(load_dataset(dataset), EvalOptions(engine="llm", llm_url=fake_vllm.url))
    results = by_id(run)
    assert all(r.answered for r in run.results)
    assert results["t1"].correct
    assert results["t2"].correct
    assert not results["t3"].correct
    assert not results["t4"].correct


def test_llm_engine_without_a_server_is_a_clear_error(
    dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", str(dataset_dir), "--engine", "llm", "--no-progress"])
    assert code == 1
    assert "--llm-url" in capsys.readouterr().err


# -- the CLI ----------------------------------------------------------------------------------
def test_cli_json_and_out(
    dataset_dir: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports" / "gold.jsonl"
    code = main(["eval", str(dataset_dir), "--engine", "gold", "--json", "--out", str(out),
                 "--workers", "2"])
    assert code == 0
    captured = capsys.readouterr()
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert last.keys() >= HEADLINE_KEYS
    assert last["engine"] == "gold" and last["dataset"] == "tiny"
    assert (last["total"], last["answered"], last["correct"]) == (SCORABLE, SCORABLE, SCORABLE)
    assert last["accuracy"] == 1.0 and last["precision"] == 1.0
    assert "by database" in captured.err and "by kind" in captured.err  # human summary
    assert f"{len(QUESTIONS)}/{len(QUESTIONS)}" in captured.err  # progress lines (no TTY)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [q["id"] for q in QUESTIONS]
    for row in rows:
        assert row.keys() >= ROW_KEYS
    assert sum(r["correct"] for r in rows) == SCORABLE
    assert isinstance(rows[0]["latency"], float)


def test_cli_human_summary_on_stdout(
    dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", str(dataset_dir), "--engine", "gold", "--db", "zoo", "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "by database" in captured.out and "zoo" in captured.out
    assert "shop" not in captured.out
    assert "100.0%" in captured.out
    assert captured.err == ""


def test_cli_limit(dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(dataset_dir), "--engine", "gold", "--limit", "2", "--json",
                 "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["total"] == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "dataset not found"),
        (lambda d: (d / "databases"), "no questions.jsonl"),
    ],
)
def test_cli_missing_dataset_exits_2(
    dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str], make: Any,
    message: str,
) -> None:
    assert main(["eval", str(make(dataset_dir))]) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_json_line_names_the_line(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n\n{not json\n", encoding="utf-8")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3" in err and "not valid JSON" in err


def test_cli_unknown_db_exits_2(
    dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(dataset_dir), "--db", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown database 'nope'" in err and "shop" in err


def test_a_question_without_gold_sql_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"db_id": "demo", "question": "hi", "gold_sql": 3}) + "\n")
    with pytest.raises(DatasetError, match=r"q\.jsonl:1"):
        load_dataset(path)


# -- the shared Spider dev set ----------------------------------------------------------------
def spider_dir() -> Path | None:
    env = os.environ.get("TABLECHAT_SPIDER_DIR", "").strip()
    candidate = Path(env) if env else REPO.parent / "shared" / "eval" / "spider_dev"
    return candidate if (candidate / "questions.jsonl").is_file() else None


@pytest.mark.slow
def test_gold_scores_every_spider_question_whose_gold_runs(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spider = spider_dir()
    if spider is None:
        pytest.skip("spider_dev not found: put it at ../shared/eval/spider_dev beside the "
                    "checkout or set TABLECHAT_SPIDER_DIR")
    assert main(["eval", str(spider), "--engine", "gold", "--json", "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["total"] == 970  # 972 with a database, 2 of whose gold fails on DuckDB
    assert last["gold_errors"] == 2
    assert last["correct"] == 970
    assert last["answered"] == 970


def test_a_cut_prediction_is_rerun_as_written_its_own_limit_kept(demo_db: Path) -> None:
    """Cut at a row cap of 2, LIMIT 3 comes back as 3 rows (not the whole table: the LIMIT the
    guard ran, cap + 1 = 3, is the query's own)."""
    import tablechat
    from tablechat.eval.harness import _predicted_rows

    with tablechat.connect(demo_db, max_rows=2) as tc:
        own = tc.run_sql("SELECT id FROM regions ORDER BY id LIMIT 3")
        assert len(own.rows) == 2 and own.truncated
        assert _predicted_rows(tc, own) == [(1,), (2,), (3,)]
        bare = tc.run_sql("SELECT id FROM regions ORDER BY id")
        assert _predicted_rows(tc, bare) == [(i,) for i in range(1, 6)]


# -- column order and cross-validation (issue 12) ----------------------------------------------
def test_swapped_columns_are_wrong_strictly_and_right_in_any_order(
    demo_db: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "swapped.jsonl"
    questions.write_text(json.dumps({
        "id": "q1", "db_id": "demo", "question": "How many customers per segment?",
        "gold_sql": "SELECT count(*), segment FROM customers GROUP BY segment"}) + "\n")
    assert main(["eval", str(questions), "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert (last["answered"], last["correct"], last["correct_any_order"]) == (1, 0, 1)
    assert last["precision"] == 0.0 and last["precision_any_order"] == 1.0
    assert "strict column order" in captured.err and "any column order" in captured.err


def test_split_tunes_on_other_databases_and_scores_the_held_out_one(
    dataset_dir: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split.jsonl"
    code = main(["eval", str(dataset_dir), "--split", "2", "--json", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folds = report["folds"]
    assert report["split"] == 2 and len(folds) == 2
    seen = [db for f in folds for db in f["databases"]]
    assert sorted(seen) == ["shop", "zoo"] and len(set(seen)) == 2  # each db held out once
    assert report["held_out"]["total"] == SCORABLE
    assert sum(f["held_out"]["total"] for f in folds) == SCORABLE
    for fold in folds:  # every threshold was chosen on the other fold's databases only
        assert 0 < fold["threshold"] <= 1
        assert fold["train"]["total"] + fold["held_out"]["total"] == SCORABLE
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["confidence"] is not None for r in rows if r["answered"])


def test_split_is_for_the_offline_engine_with_enough_databases(
    dataset_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(dataset_dir), "--split", "2", "--engine", "gold"]) == 2
    assert main(["eval", str(dataset_dir), "--split", "5", "--no-progress"]) == 2
    assert "between 2 and 2 folds" in capsys.readouterr().err
