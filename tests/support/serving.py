"""``tablechat serve`` as a real process on a free port of 127.0.0.1, for the tests that need
the command itself (its process manager, signals, several processes)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.test_web_support import free_port


@contextmanager
def serving(demo_db: Path, env: dict[str, str], *extra: str
            ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``tablechat serve`` on a free port, until it answers ``/healthz``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tablechat", "serve", "--db", str(demo_db), "--host",
         "127.0.0.1", "--port", str(port), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "tablechat serve did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
