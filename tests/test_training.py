"""export-training: SFT and DPO files in the formats TRL and axolotl read, loaded back with
the `datasets` library and checked record by record."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the json builder is local; never the Hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tablechat
from tablechat.cli import main
from tablechat.store import FeedbackRecord, SQLStore, close_stores, utcnow
from tablechat.training import INSTRUCTION

datasets = pytest.importorskip("datasets")

QUESTION = "how many customers are there"
FIXED = "SELECT count(DISTINCT email) FROM customers"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_db: Path) -> Iterator[SQLStore]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("TABLECHAT_STORE", url)
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    with tablechat.connect(demo_db) as tc:
        answer = tc.ask(QUESTION)
        tc.feedback(answer, good=True)  # a vote up: SFT only
        tc.feedback(answer, good=False, sql=FIXED)  # a correction: SFT and DPO
        tc.feedback(answer, good=False, sql=FIXED)  # the same again: exported once
        tc.feedback(answer, good=False, comment="no")  # a vote down alone: nothing
        follow = tc.ask("and how many orders", [{"role": "user", "content": QUESTION}])
        tc.feedback(follow, sql="SELECT count(*) FROM orders",  # a follow-up's correction
                    history=[{"role": "user", "content": QUESTION},
                             {"role": "assistant", "content": "5000"}])
    s = SQLStore(url)
    s.add_feedback(FeedbackRecord("demo", "old question", sql="SELECT 1", good=True,
                                  created_at=utcnow() - timedelta(days=400)))
    yield s
    close_stores()


def _load(path: Path, cache: Path) -> Any:
    return datasets.load_dataset("json", data_files=str(path), split="train",
                                 cache_dir=str(cache))


def _messages(value: Any, roles: list[str]) -> None:
    assert [m["role"] for m in value] == roles
    assert all(isinstance(m["content"], str) and m["content"] for m in value)


def test_sft_is_conversational_messages(store: SQLStore, tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    assert main(["export-training", "--format", "sft", str(out)]) == 0
    ds = _load(out, tmp_path / "cache")
    assert ds.column_names == ["messages"]  # TRL: conversational language modeling
    assert len(ds) == 4  # vote, correction, follow-up, the old vote; not the repeat, the no
    for n, record in enumerate(ds):
        if n != 2:
            _messages(record["messages"], ["system", "user", "assistant"])
    first = ds[0]["messages"]
    assert first[0]["content"].startswith(INSTRUCTION)
    assert "CREATE TABLE customers" in first[0]["content"]  # the schema the model saw
    assert first[1]["content"] == QUESTION
    assert [r["messages"][2]["content"] for r in ds][1] == FIXED
    # --since leaves the old one out
    # a follow-up's record carries the conversation before it
    _messages(ds[2]["messages"], ["system", "user", "assistant", "user", "assistant"])
    assert ds[2]["messages"][3]["content"] == "and how many orders"
    assert main(["export-training", "--format", "sft", "--since",
                 (utcnow() - timedelta(days=30)).date().isoformat(), str(out)]) == 0
    assert len(_load(out, tmp_path / "cache2")) == 3


def test_dpo_is_trl_conversational_preference(store: SQLStore, tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    assert main(["export-training", "--format", "dpo", str(out)]) == 0
    ds = _load(out, tmp_path / "cache")
    assert sorted(ds.column_names) == ["chosen", "prompt", "rejected"]
    assert len(ds) == 2  # the correction, and the follow-up's with its conversation
    record, follow = ds
    _messages(follow["prompt"], ["system", "user", "assistant", "user"])
    _messages(record["prompt"], ["system", "user"])
    _messages(record["chosen"], ["assistant"])
    _messages(record["rejected"], ["assistant"])
    assert record["chosen"][0]["content"] == FIXED
    assert record["rejected"][0]["content"] != FIXED
    assert record["prompt"][1]["content"] == QUESTION


def test_dpo_chatml_is_axolotl_chatml_intel(store: SQLStore, tmp_path: Path) -> None:
    out = tmp_path / "dpo-chatml.jsonl"
    assert main(["export-training", "--format", "dpo-chatml", str(out)]) == 0
    ds = _load(out, tmp_path / "cache")
    assert sorted(ds.column_names) == ["chosen", "question", "rejected", "system"]
    [record] = ds
    assert all(isinstance(record[k], str) and record[k] for k in ds.column_names)
    assert (record["question"], record["chosen"]) == (QUESTION, FIXED)
    assert json.loads(out.read_text())["system"].startswith(INSTRUCTION)


def test_an_unwritable_output_is_a_one_line_error(store: SQLStore, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing-dir" / "x.jsonl"
    assert main(["export-training", "--format", "sft", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err
