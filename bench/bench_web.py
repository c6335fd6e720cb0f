"""The web server under load: 32 concurrent clients asking through ``POST /api/ask``.

The server runs in its own process (``tablechat.web.server.create_app`` under uvicorn on
127.0.0.1) with a scripted chat model that takes a fixed 200 ms (asynchronously) per call, so
the numbers measure the server, not a model. Ideal throughput is 32 / the latency of one
question asked alone; the goal is at least 90 % of it with zero errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import Row, p50, percentile

CLIENTS = 32
ROUNDS = 8  # questions per client in one loaded trial
TRIALS = 2
SOLO = 8  # questions asked alone, for the single-question latency
LATENCY = 0.2  # seconds per model call
QUESTION = "How many customers are there?"
ROOT = Path(__file__).resolve().parents[1]


def _model(answer: str = "There are 5,000 customers.", echo_sql: bool = False,
           latency: float = LATENCY) -> Any:
    """A chat model that answers by the prompt's kind after ``latency`` seconds, like a steady
    server. ``echo_sql``: a question holding ``SQL:<text>`` is "answered" with that SQL (the
    hostile model of bench_attack), so a client can make it write any SQL."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    def reply(messages: list[BaseMessage]) -> str:
        last = str(messages[-1].content)
        if "You route messages" in last:
            return "data"
        if "SQL that was run" in last:
            return answer
        if "Rewrite the latest message" in last:
            return QUESTION
        if echo_sql:
            text = "\n".join(str(m.content) for m in messages)
            marker = text.rfind("SQL:")
            if marker >= 0:
                return text[marker + 4:].split("\n", 1)[0]
        return "SELECT count(*) AS customers FROM customers"

    class FixedLatencyModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "fixed-latency"

        def _generate(self, messages: list[BaseMessage], stop: Any = None,
                      run_manager: Any = None, **kwargs: Any) -> ChatResult:
            time.sleep(latency)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(reply(messages)))])

        async def _agenerate(self, messages: list[BaseMessage], stop: Any = None,
                             run_manager: Any = None, **kwargs: Any) -> ChatResult:
            await asyncio.sleep(latency)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(reply(messages)))])

        async def _astream(self, messages: list[BaseMessage], stop: Any = None,
                           run_manager: Any = None, **kwargs: Any
                           ) -> AsyncIterator[ChatGenerationChunk]:
            await asyncio.sleep(latency)
            for word in reply(messages).split(" "):
                yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))

    return FixedLatencyModel()


def serve(port: int) -> None:
    """Run the server (in the child process)."""
    import tablechat
    from tablechat.web.server import serve as serve_web

    tc = tablechat.connect(llm=_model())
    serve_web(tc, host="127.0.0.1", port=port, log_level="warning")  # as `tablechat serve`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Conn:
    """A keep-alive HTTP/1.1 connection, as lean as a load generator should be (httpx costs
    the client ~5 ms of CPU per request, which on a small machine competes with the server)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"\r\n{k}: {v}" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(data)}{self.extra}\r\n\r\n").encode()
        self.writer.write(head + data)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(payload)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def reset(self) -> None:
        """Close; the next request opens a new connection."""
        await self.close()
        self.reader = self.writer = None


async def _ask(conn: _Conn, latencies: list[float], errors: list[str],
               calls: list[int] | None = None) -> None:
    """Ask QUESTION on ``conn``, as every load generator here does: its latency goes in
    ``latencies`` when the answer is right (``rows == [[5000]]``), else what went wrong in
    ``errors`` (after a transport error the connection is dropped and the next question opens
    a new one); the model calls it made (``usage.llm_calls``) in ``calls`` when given."""
    start = time.perf_counter()
    try:
        status, body = await conn.post_json("/api/ask", {"question": QUESTION})
    except Exception as exc:  # count it, keep measuring
        errors.append(f"{type(exc).__name__}: {exc}")
        await conn.reset()
        return
    if status != 200 or body.get("error") or body.get("rows") != [[5000]]:
        errors.append(f"{status}: {body.get('error')}")
        return
    latencies.append(time.perf_counter() - start)
    if calls is not None:
        calls.append(int((body.get("usage") or {}).get("llm_calls") or 0))


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of a process so far (Linux /proc; NaN elsewhere)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(port: int, server_pid: int) -> dict[str, Any]:
    conns = [_Conn("127.0.0.1", port) for _ in range(CLIENTS)]
    try:
        for _ in range(3):  # the first questions build caches
            await _ask(conns[0], [], [])
        solo: list[float] = []
        errors: list[str] = []
        for _ in range(SOLO):
            await _ask(conns[0], solo, errors)
        trials = []
        server_cpu = client_cpu = 0.0
        for _ in range(TRIALS):  # the machine is shared: keep the least disturbed trial
            loaded: list[float] = []

            async def worker(conn: _Conn, out: list[float]) -> None:
                for _ in range(ROUNDS):
                    await _ask(conn, out, errors)

            cpu0, own0 = _cpu_seconds(server_pid), _cpu_seconds()
            start = time.perf_counter()
            await asyncio.gather(*(worker(c, loaded) for c in conns))
            trials.append((time.perf_counter() - start, loaded))
            server_cpu += _cpu_seconds(server_pid) - cpu0
            client_cpu += _cpu_seconds() - own0
    finally:
        for c in conns:
            await c.close()
    elapsed, loaded = min(trials, key=lambda t: t[0] / max(len(t[1]), 1))
    asked = max(sum(len(t[1]) for t in trials), 1)
    return {"solo": solo, "loaded": loaded, "errors": errors, "elapsed": elapsed,
            "trials": [len(t[1]) / t[0] for t in trials],
            "server_cpu": server_cpu / asked, "client_cpu": client_cpu / asked}


def run() -> list[Row]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "TABLECHAT_LLM_URL": "", "TABLECHAT_AUTH": "",
        "TABLECHAT_API_KEYS": ""}
    proc = subprocess.Popen(  # our own interpreter and module
        [sys.executable, "-c", f"import bench.bench_web as b; b.serve({port})"],
        cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        data = asyncio.run(_measure(port, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    single = p50(data["solo"])
    ideal = CLIENTS / single
    throughput = len(data["loaded"]) / data["elapsed"]
    share = 100 * throughput / ideal
    p95 = percentile(data["loaded"], 95) * 1000 if data["loaded"] else float("nan")
    n_errors = len(data["errors"])
    if data["errors"]:
        print(f"bench_web errors (first 3): {data['errors'][:3]}", file=sys.stderr)
    trials = ", ".join(f"{t:.1f}" for t in data["trials"])
    print(f"bench_web: single-question latency {single * 1000:.0f} ms, ideal {ideal:.1f} q/s; "
          f"{CLIENTS} clients x {ROUNDS} questions, trials {trials} q/s; CPU per question: "
          f"server {data['server_cpu'] * 1000:.1f} ms, load generator "
          f"{data['client_cpu'] * 1000:.1f} ms", file=sys.stderr)
    return [
        Row(f"web /api/ask: throughput, {CLIENTS} clients (share of ideal)", share, "%",
            goal=">= 90%", ok=share >= 90),
        Row(f"web /api/ask: throughput, {CLIENTS} clients", throughput, "q/s", theirs=ideal,
            alternative=f"ideal: {CLIENTS} / single-question latency"),
        Row(f"web /api/ask: p95 latency, {CLIENTS} clients", p95, "ms",
            theirs=single * 1000, alternative="one question alone (p50)"),
        Row(f"web /api/ask: server CPU per question, {CLIENTS} clients",
            data["server_cpu"] * 1000, "ms", theirs=data["client_cpu"] * 1000,
            alternative="the load generator's CPU per question"),
        Row(f"web /api/ask: errors, {CLIENTS} clients", float(n_errors), "",
            goal="0", ok=n_errors == 0),
    ]


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start in 60 s")


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

