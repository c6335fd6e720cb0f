"""A GGUF model run in this process by llama.cpp's own server (the ``xllamacpp`` wheel).

``TABLECHAT_LLM_URL=gguf:/path/model.gguf`` (or ``connect(..., llm="gguf:...")``): tablechat
starts the server on 127.0.0.1 and a free port when the first question needs it, speaks to
it like any llama.cpp server, and stops it on ``close()``. Nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from ..config import Settings
from ..errors import ConfigurationError, LLMUnavailableError
from .base import ServerInfo
from .llamacpp import LlamaCppBackend

GGUF_PREFIX = "gguf:"
EMBEDDED_N_CTX = 4096


def gguf_path(url: str) -> Path:
    """The model file of a ``gguf:`` URL; a clear error when it is not there."""
    path = Path(url[len(GGUF_PREFIX):]).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"no GGUF model file at {path}")
    return path


def start_server(path: str | Path, *, n_ctx: int = EMBEDDED_N_CTX, threads: int = 2,
                 slots: int = 1, metrics: bool = False) -> Any:
    """llama.cpp's server for ``path`` on 127.0.0.1 and a free port (``.listening_address``).

    It runs until the returned object is deleted.
    """
    try:
        import xllamacpp
    except ImportError as exc:
        raise ConfigurationError("a gguf: model needs the xllamacpp package: "
                                 "pip install 'tablechat[local]'") from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx
    params.n_parallel = slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.port = 0  # a free port, chosen by the server
    params.endpoint_slots = True
    params.endpoint_metrics = metrics
    params.verbosity = -1  # its log would fill the person's terminal
    return xllamacpp.Server(params)


class EmbeddedBackend(LlamaCppBackend):
    """llama.cpp in-process: started on first use, one call at a time (one slot)."""

    kind: ClassVar[str] = "embedded"

    def __init__(self, settings: Settings, base_url: str | None = None) -> None:
        super().__init__(settings, base_url="")
        self.path = gguf_path(settings.llm_url or "")
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load the model and serve it (once)."""
        with self._lock:
            if self._server is not None:
                return
            n_ctx = self.settings.max_model_len or EMBEDDED_N_CTX
            try:
                self._server = start_server(self.path, n_ctx=n_ctx,
                                            threads=self.settings.threads)
            except ConfigurationError:
                raise
            except Exception as exc:  # a corrupt or unsupported file
                raise LLMUnavailableError(f"could not load {self.path.name}: {exc}") from exc
            self.base_url = str(self._server.listening_address).rstrip("/") + "/v1"

    def close(self) -> None:
        """Stop the server and free the model's memory."""
        with self._lock:
            server, self._server = self._server, None
        del server

    @property
    def max_concurrency(self) -> int | None:
        """One slot: a second call would only wait in the server's queue past its timeout."""
        return 1

    def probe(self, timeout: float | None = None) -> ServerInfo:
        """Start the server if needed, then probe it like any llama.cpp server."""
        self.start()
        return super().probe(timeout)


__all__ = ["GGUF_PREFIX", "EmbeddedBackend", "gguf_path", "start_server"]
