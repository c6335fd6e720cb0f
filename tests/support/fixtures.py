"""Pytest fixtures for the fake vLLM server.

Register them in ``tests/conftest.py`` with::

    pytest_plugins = ["tests.support.fixtures"]

(``tests.support`` must be importable: run pytest from the repo root with ``.`` on the path,
e.g. ``pythonpath = ["app", "."]`` under ``[tool.pytest.ini_options]``.)

- ``fake_vllm_server``: one server for the whole session.
- ``fake_vllm``: that server, with script and request log reset before and after each test.
- ``fake_vllm_factory``: start extra servers with other options (``api_key=...``,
  ``reject_structured_outputs=True``, ``max_model_len=...``); stopped after the test.
- ``llama_server``: a real llama.cpp server with real weights (SmolLM2-135M), one per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.fake_vllm_client import FakeVLLM
from tests.support.llama_server import LlamaServer


@pytest.fixture(scope="session")
def fake_vllm_server() -> Iterator[FakeVLLM]:
    with FakeVLLM() as server:
        yield server


@pytest.fixture
def fake_vllm(fake_vllm_server: FakeVLLM) -> Iterator[FakeVLLM]:
    fake_vllm_server.reset()
    yield fake_vllm_server
    fake_vllm_server.reset()


@pytest.fixture
def fake_vllm_factory() -> Iterator[Callable[..., FakeVLLM]]:
    started: list[FakeVLLM] = []

    def start(**options: Any) -> FakeVLLM:
        server = FakeVLLM(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """One real llama.cpp server with SmolLM2-135M for the whole session (real-model tier)."""
    with LlamaServer() as server:
        yield server
