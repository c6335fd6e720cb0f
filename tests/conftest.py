"""Shared fixtures: the demo database, scripted chat models, the fake vLLM server."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tablechat
from tablechat import TableChat
from tablechat.demo import ensure_demo

pytest_plugins = ["tests.support.fixtures"]

# A store of this run's own: feedback or examples kept in data/ by a developer (the default
# store) must not change what the tests see. Set before any TableChat is made.
_STORE_DIR = tempfile.mkdtemp(prefix="tablechat-test-store-")
os.environ["TABLECHAT_STORE"] = f"sqlite:///{_STORE_DIR}/store.sqlite"
# and a shared directory of its own (API sessions' uploads, exports), beside that store
os.environ["TABLECHAT_SHARED_DIR"] = f"{_STORE_DIR}/shared"
atexit.register(shutil.rmtree, _STORE_DIR, True)
# Modules share one server and send refusals on purpose, all from 127.0.0.1: the penalty box
# would answer them 429 after a few. It is off here and tested on its own
# (tests/security/test_penalty.py turns it on).
os.environ["TABLECHAT_PENALTY_REFUSALS"] = "0"

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
