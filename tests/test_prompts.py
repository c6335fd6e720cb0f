"""Prompt templates: each renders, matches its snapshot, and keeps static parts first.

After an intended prompt change, refresh the snapshots with
``UPDATE_PROMPT_SNAPSHOTS=1 .venv/bin/pytest tests/test_prompts.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tablechat._resources import resource_path
from tablechat.agent.prompts import load_template, render, template_names

SNAPSHOTS = Path(__file__).parent / "snapshots" / "prompts"
TEMPLATES = sorted(p.stem for p in resource_path("prompts/sql.md").parent.glob("*.md"))


def rendered(name: str) -> str:
    names = template_names(load_template(name))
    return render(name, **{n: f"<{n.upper()}>" for n in names})


@pytest.mark.parametrize("name", TEMPLATES)
def test_prompt_matches_its_snapshot(name: str) -> None:
    text = rendered(name)
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_PROMPT_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no snapshot for prompts/{name}.md: run with UPDATE_PROMPT_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


def test_every_snapshot_has_a_template() -> None:
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.txt")) == TEMPLATES


def test_render_needs_every_placeholder() -> None:
    with pytest.raises(KeyError, match="question"):
        render("sql", dialect="duckdb")


def test_sql_prompt_puts_static_parts_first() -> None:
    """Schema, definitions and rules before history and question: vLLM's prefix cache reuses
    the static head across questions."""
    text = rendered("sql")
    order = ["<SCHEMA>", "<SEMANTIC>", "## Rules", "<HISTORY>", "<QUESTION>"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert text.rstrip().endswith("<QUESTION>")


def test_router_and_rewrite_end_with_the_instruction() -> None:
    assert rendered("router").rstrip().endswith("Reply with one word: data or chat.")
    assert rendered("rewrite").rstrip().endswith("on one line.")
