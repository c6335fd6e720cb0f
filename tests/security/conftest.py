"""Fixtures shared by the security modules: Gradio's cache folder of the module's own, and a
live server (``tablechat serve`` on 127.0.0.1) on the demo database with the scripted model.

A module sets ``SERVER_SETTINGS`` (keyword arguments of ``tablechat.connect``) to configure
its server, or defines a ``server`` fixture of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Gradio's upload and cache folder, this module's own (other tests share /tmp/gradio)."""
    folder = tmp_path_factory.mktemp("gradio-cache").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, demo_db: Path, cache: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The module's live server (``SERVER_SETTINGS`` of the module, if any), with a store and
    a shared directory of its own: what its sessions count (``max_api_sessions`` counts every
    session in the store) is its own, not the sessions the rest of the run left there."""
    own = tmp_path_factory.mktemp("server-store")
    settings = {"store": f"sqlite:///{own}/store.sqlite", "shared_dir": str(own / "shared"),
                **getattr(request.module, "SERVER_SETTINGS", {})}
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), **settings)
    live = LiveServer(tc).start()
    yield live
    live.stop()
    tc.close()


def hand_clock(sessions: Any) -> Iterator[list[float]]:
    """``sessions.clock`` moved by hand (expiry without sleeping): every session ended before
    and after. For a fixture over the API's or the UI's sessions."""
    sessions.end_all()
    now = [1_000_000.0]
    real = sessions.clock
    sessions.clock = lambda: now[0]
    yield now
    sessions.clock = real
    sessions.end_all()
