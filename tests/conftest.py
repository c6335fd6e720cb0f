"""Shared fixtures: the demo database, scripted chat models, the fake vLLM server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tablechat
from tablechat import TableChat
from tablechat.demo import ensure_demo

pytest_plugins = ["tests.support.fixtures"]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def demo_db() -> Path:
    """The demo database (built once if missing; never modified by tests)."""
    return ensure_demo()


@pytest.fixture(scope="module")
def offline_tc(demo_db: Path) -> Iterator[TableChat]:
    """TableChat on the demo database with no LLM configured: the offline engine answers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TABLECHAT_LLM_URL", raising=False)
        chat = tablechat.connect(demo_db)
    yield chat
    chat.close()


@pytest.fixture()
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS
