"""Start and drive ``tests/support/fake_vllm.py`` from tests and benchmarks.

    with FakeVLLM() as llm:
        llm.script(replies=[{"content": "SELECT 42"}])
        model = ChatOpenAI(**llm.chat_openai_kwargs())
        ...
        assert llm.chat_requests()[0]["body"]["messages"][-1]["content"] == "..."

Control calls go through ``http.client`` straight to 127.0.0.1 (no proxy settings apply).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

SERVER_SCRIPT = Path(__file__).with_name("fake_vllm.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class FakeVLLMError(RuntimeError):
    pass


class FakeVLLM:
    """A fake vLLM server in a subprocess on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        model: str = "fake-sql-model",
        max_model_len: int = 8192,
        api_key: str | None = None,
        reject_structured_outputs: bool = False,
        startup_timeout: float = 20.0,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.api_key = api_key
        self.reject_structured_outputs = reject_structured_outputs
        self.startup_timeout = startup_timeout
        self.verbose = verbose
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------- lifecycle
    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (where /health, /metrics and /tokenize live)."""
        if self.port is None:
            raise FakeVLLMError("the fake vLLM server is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.base}/v1"

    @property
    def log_path(self) -> Path | None:
        return Path(self._tmp.name) / "server.log" if self._tmp else None

    def start(self) -> FakeVLLM:
        if self._proc is not None:
            return self
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-vllm-")
        port_file = Path(self._tmp.name) / "port"
        cmd = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--model",
            self.model,
            "--max-model-len",
            str(self.max_model_len),
        ]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        if self.reject_structured_outputs:
            cmd.append("--reject-structured-outputs")
        if self.verbose:
            cmd.append("--verbose")
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    raise FakeVLLMError(f"fake vLLM exited early:\n{self.server_log()}")
                if time.monotonic() > deadline:
                    raise FakeVLLMError(f"fake vLLM did not start:\n{self.server_log()}")
                if self.port is None and port_file.exists():
                    self.port = int(port_file.read_text())
                if self.port is not None:
                    with contextlib.suppress(OSError):
                        if self._call("GET", "/health", timeout=1.0)[0] == 200:
                            break
                time.sleep(0.02)
            self.reset()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.port = None

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def server_log(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path and path.exists() else ""

    # --------------------------------------------------------------- control
    def _call(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        if self.port is None:
            raise FakeVLLMError("the fake vLLM server is not running")
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, (json.loads(raw) if raw else None)

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self._call(method, f"/_control/{path}", body)
        if status != 200:
            raise FakeVLLMError(f"{method} /_control/{path} -> {status}: {payload}")
        return payload

    def script(
        self,
        replies: list[dict[str, Any]] | None = None,
        *,
        rules: list[dict[str, Any]] | None = None,
        default: dict[str, Any] | None = None,
        health_status: int = 200,
    ) -> None:
        """Replace the script (see the fake_vllm module docstring for the reply fields)."""
        self._control(
            "POST",
            "script",
            {
                "replies": replies or [],
                "rules": rules or [],
                "default": default or {},
                "health_status": health_status,
            },
        )

    def reset(self) -> None:
        """Forget script and request log; release hanging requests."""
        self._control("POST", "reset")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every request received (optionally only those to ``path``), oldest first."""
        log = self._control("GET", "requests")["requests"]
        return [r for r in log if path is None or r["path"] == path]

    def chat_requests(self) -> list[dict[str, Any]]:
        return self.requests("/v1/chat/completions")

    # --------------------------------------------------------------- helpers
    def chat_openai_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``langchain_openai.ChatOpenAI`` pointed at this server."""
        kwargs: dict[str, Any] = {
            "base_url": self.url,
            "api_key": self.api_key or "EMPTY",
            "model": self.model,
            "use_responses_api": False,
            "stream_usage": True,
            "max_retries": 0,
            "timeout": 30,
        }
        kwargs.update(overrides)
        return kwargs

    def openai_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``openai.OpenAI`` / ``openai.AsyncOpenAI``."""
        kwargs: dict[str, Any] = {
            "base_url": self.url,
            "api_key": self.api_key or "EMPTY",
            "max_retries": 0,
            "timeout": 30,
        }
        kwargs.update(overrides)
        return kwargs
