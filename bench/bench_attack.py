"""The server under attack: 32 normal clients asking while 8 hostile clients attack (issue 11).

One server process (``tablechat.web.server.serve``, as ``tablechat serve``) with a scripted
model that takes 200 ms per call and, for a question starting ``SQL:``, "writes" the SQL after
the prefix: the hostile clients use it to send the model SQL of the outside test (a 45,000-branch
UNION, ``repeat('x', 2e9)``, a 1 GB result, table functions behind LATERAL, 3,000 nested
parentheses), and send the same SQL to the UI's SQL editor (``/gradio_api/call/run_sql``). They
also send a Parquet decompression bomb and a 3,000-column Parquet (into a server-issued REST
session, as the API is now, and without one), Gradio events naming server files,
``/gradio_api/file=`` of a URL, a ``/healthz`` flood, malformed bodies, a 5 MB chat message,
wrong bearer tokens, a flood of REST sessions, and UI sessions that upload a CSV and never
unload.

The hostile clients connect from addresses of their own (127.0.0.2-9): failed credentials are
limited per client address, and an attacker sharing the normal clients' address would lock
them out by design (docs/security.md, "Proxies").

Reported: the normal clients' p95 latency under attack beside the quiet p95 (goal: within
1.5x), their errors (goal: 0), the server's peak RSS beside the configured memory budget, and
what the attacks got back (any 5xx is counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import Row, bench_web, percentile
from bench.bench_web import _Conn, _free_port, _wait

CLIENTS = 32
HOSTILE = 8
ROUNDS = 6  # questions per normal client in one trial
QUESTION = bench_web.QUESTION  # the normal clients ask it (bench_web._ask)
ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = "1GB"  # the DuckDB memory_limit the server runs with
BUDGET_MB = 1024 + 512  # what the issue allows: memory_limit + 512 MB over the idle server
API_KEY = "bench-normal-key"
ATTACK_SECONDS = 60.0  # an attack still unanswered after this counts as "TimeoutError"
# the hostile clients are logged-in users of the UI too (the attacks work for any)
UI_USER, UI_PASSWORD = "mallory", "bench-ui-password"


def _model() -> Any:
    """bench_web's scripted model (200 ms per call) whose ``SQL:<text>`` questions come back
    as that SQL: the hostile model."""
    return bench_web._model(answer="Here is the result.", echo_sql=True)


def serve(port: int) -> None:
    """Run the server (in the child process)."""
    import tablechat
    from tablechat.web.server import serve as serve_web

    tc = tablechat.connect(llm=_model(), memory_limit=MEMORY_LIMIT, query_timeout=5)
    serve_web(tc, host="127.0.0.1", port=port, log_level="critical")


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _load() -> str:
    """The machine's load averages (1, 5, 15 min) and its cores: the bench shares them."""
    try:
        loads = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return f"{loads} on {os.cpu_count()} cores"
    except OSError:
        return "?"


def _files(folder: Path) -> dict[str, bytes]:
    """The bomb and the wide Parquet, built once with DuckDB."""
    import duckdb

    bomb, wide = folder / "bomb.parquet", folder / "wide.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 7::BIGINT AS x FROM range(100000000)) TO '{bomb}' "
                "(FORMAT parquet, COMPRESSION zstd)")
    cols = ", ".join(f"i AS c{n}" for n in range(3000))
    con.execute(f"COPY (SELECT {cols} FROM range(50) t(i)) TO '{wide}' (FORMAT parquet)")
    con.close()
    return {"bomb.parquet": bomb.read_bytes(), "wide.parquet": wide.read_bytes()}


def _attacks(port: int, files: dict[str, bytes], sink_port: int) -> list[tuple[str, Any]]:
    union = "SELECT id FROM regions" + " UNION ALL SELECT id FROM regions" * 45_000
    nested = "SELECT " + "(" * 3000 + "1" + ")" * 3000
    sql = [
        union,
        "SELECT length(repeat('x',2000000000))",
        "SELECT id, repeat('y',1000000) FROM range(1000) t(id)",
        "SELECT * FROM LATERAL json_execute_serialized_sql(json_serialize_sql("
        "'SELECT name, value FROM duckdb_settings()'))",
        "SELECT * FROM LATERAL duckdb_databases()",
        nested,
    ]
    deep = "[" * 100_000 + "]" * 100_000
    bodies = [
        ("/api/ask", deep.encode()),
        ("/api/ask", b'{"question": ' + b"9" * 100_000 + b"}"),
        ("/api/ask", b'{"question": "\\ud800"}'),
        ("/v1/chat/completions", json.dumps(
            {"model": "x", "messages": [{"role": "user", "content": "a" * 5_000_000}]}).encode()),
    ]
    out: list[tuple[str, Any]] = [(f"model SQL #{n}", ("ask", "SQL:" + s)) for n, s in
                                  enumerate(sql)]
    out += [(f"SQL editor #{n}", ("run_sql", s)) for n, s in enumerate(sql)]
    out += [(f"upload {name}", ("upload", name, data)) for name, data in files.items()]
    out += [(f"session upload {name}", ("session_upload", name, data))
            for name, data in files.items()]
    out += [(f"body {path} #{n}", ("raw", path, body)) for n, (path, body) in enumerate(bodies)]
    out += [
        ("gradio upload /etc/passwd", ("gradio_file", "/etc/passwd")),
        ("gradio upload /proc/self/environ", ("gradio_file", "/proc/self/environ")),
        ("gradio file=URL", ("get", f"/gradio_api/file=http://127.0.0.1:{sink_port}/x")),
        ("healthz", ("get", "/healthz")),
        ("wrong bearer", ("bearer", "wrong-key")),
        ("REST session flood", ("sessions", 20)),
        ("UI session, never unloads", ("ui_session",)),
    ]
    return out


async def _sse_last(client: Any, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """A Gradio ``/call/`` event's stream: its status, and its last event name."""
    last = ""
    async with client.stream("GET", path, headers=headers) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                last = line[6:].strip()
    return reply.status_code, last


async def _attack(client: Any, attack: Any, n: str, good: dict[str, str]) -> str:
    """Send one attack; what it got back (a status, and for Gradio events the last event).
    ``n`` is unique to this attack: it names its Gradio session (with names reused across
    the hostile clients, a run once waited for ever on a Gradio event stream)."""
    kind = attack[0]
    if kind == "ask":
        r = await client.post("/api/ask", json={"question": attack[1]}, headers=good)
    elif kind == "run_sql":
        r = await client.post("/gradio_api/call/run_sql", headers=good,
                              json={"data": [attack[1]], "session_hash": f"h{n}"})
        if r.status_code == 200:
            status, last = await _sse_last(
                client, f"/gradio_api/call/run_sql/{r.json()['event_id']}", good)
            return f"{status} {last}"
    elif kind == "upload":
        r = await client.post("/api/upload", headers=good,
                              files={"file": (attack[1], attack[2])})
        if r.status_code == 200:  # it was handed a session: end it as a client would not
            return f"{r.status_code} (accepted!)"
    elif kind == "session_upload":
        r = await client.post("/api/sessions", headers=good)
        if r.status_code in (200, 201):
            r = await client.post("/api/upload", headers=good, data={
                "session": r.json()["session"]}, files={"file": (attack[1], attack[2])})
    elif kind == "raw":
        r = await client.post(attack[1], content=attack[2], headers={
            **good, "content-type": "application/json"})
    elif kind == "gradio_file":
        r = await client.post("/gradio_api/call/upload", headers=good, json={
            "data": [{"path": attack[1], "meta": {"_type": "gradio.FileData"}}],
            "session_hash": f"x{n}"})
        if r.status_code == 200:
            event = r.json().get("event_id")
            r = await client.get(f"/gradio_api/call/upload/{event}", headers=good)
    elif kind == "get":
        r = await client.get(attack[1], headers=good)
    elif kind == "sessions":  # many sessions, none ever used or ended
        statuses = Counter()
        for _ in range(attack[1]):
            statuses[(await client.post("/api/sessions", headers=good)).status_code] += 1
        return " ".join(f"{k}x{v}" for k, v in sorted(statuses.items()))
    elif kind == "ui_session":  # a scripted UI session: uploads a CSV, never unloads
        body = f"a,b\n{n},{n}\n".encode()
        r = await client.post("/gradio_api/upload", headers=good,
                              files={"files": (f"t{n}.csv", body, "text/csv")})
        if r.status_code == 200:
            r = await client.post("/gradio_api/call/upload", headers=good, json={
                "data": [{"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}],
                "session_hash": f"ui{n}"})
            if r.status_code == 200:
                status, last = await _sse_last(
                    client, f"/gradio_api/call/upload/{r.json()['event_id']}", good)
                return f"{status} {last}"
    else:
        r = await client.post("/api/ask", json={"question": QUESTION},
                              headers={"Authorization": f"Bearer {attack[1]}"})
    return str(r.status_code)


async def _hostile(port: int, attacks: list[tuple[str, Any]], stop: asyncio.Event,
                   outcomes: Counter[str], offset: int, address: str) -> None:
    import httpx

    good = {"Authorization": f"Bearer {API_KEY}"}
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                 transport=transport) as client:
        # Gradio's login cookie, for the UI's events (a bearer key opens /api and /v1 only)
        login = await client.post("/login", data={"username": UI_USER, "password": UI_PASSWORD})
        outcomes[f"login: {login.status_code}"] += 1
        n = offset
        while not stop.is_set():
            label, attack = attacks[n % len(attacks)]
            n += 1
            try:
                got = await asyncio.wait_for(_attack(client, attack, f"{offset}-{n}", good),
                                             ATTACK_SECONDS)
                outcomes[f"{label}: {got}"] += 1
            except (httpx.HTTPError, TimeoutError) as exc:
                outcomes[f"{label}: {type(exc).__name__}"] += 1


async def _normal(port: int, rounds: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    conns = [_Conn("127.0.0.1", port, headers={"Authorization": f"Bearer {API_KEY}"})
             for _ in range(CLIENTS)]

    async def worker(conn: _Conn) -> None:
        for _ in range(rounds):
            await bench_web._ask(conn, latencies, errors)

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return latencies, errors


async def _sink() -> tuple[asyncio.Server, int, list[bytes]]:
    """A local HTTP server that records any request: the server must make none to it."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(1024))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def _hostile_process(port: int, files: dict[str, bytes], sink_port: int, ready: Any,
                     stop: Any, results: Any) -> None:
    """The hostile clients, in a process of their own (see :func:`_measure`)."""

    async def main() -> Counter[str]:
        halt = asyncio.Event()
        outcomes: Counter[str] = Counter()
        attacks = _attacks(port, files, sink_port)
        hostile = [asyncio.create_task(_hostile(port, attacks, halt, outcomes,
                                                k * len(attacks) // HOSTILE, f"127.0.0.{k + 2}"))
                   for k in range(HOSTILE)]
        while sum(n for k, n in outcomes.items() if k.startswith("login:")) < HOSTILE:
            await asyncio.sleep(0.05)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        halt.set()
        await asyncio.gather(*hostile, return_exceptions=True)
        return outcomes

    results.put(dict(asyncio.run(main())))


async def _measure(port: int, pid: int, files: dict[str, bytes]) -> dict[str, Any]:
    """The normal clients quiet, then under attack. The hostile clients run in a process of
    their own: sharing the measuring event loop, their own client-side work (httpx, 5 MB
    bodies, multipart uploads) delayed the normal clients' timings, which then measured the
    load generator as much as the server."""
    import multiprocessing

    sink, sink_port, seen = await _sink()
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    attackers = ctx.Process(target=_hostile_process,
                            args=(port, files, sink_port, ready, stop, results))
    try:
        await _normal(port, 1)  # warm-up
        phases: dict[str, str] = {}
        mark = (time.perf_counter(), _cpu_seconds(pid))
        quiet, quiet_errors = await _normal(port, ROUNDS)
        phases["quiet"] = _phase(mark, pid)
        idle_rss = _rss_mb(pid, "VmRSS")
        attackers.start()
        if not await asyncio.to_thread(ready.wait, 120):
            raise RuntimeError("the hostile clients did not log in")
        mark = (time.perf_counter(), _cpu_seconds(pid))
        loaded, loaded_errors = await _normal(port, ROUNDS)
        phases["under attack"] = _phase(mark, pid)
        stop.set()
        outcomes: Counter[str] = Counter(await asyncio.to_thread(results.get, True, 300))
        await asyncio.to_thread(attackers.join, 30)
    finally:
        stop.set()
        if attackers.is_alive():
            attackers.terminate()
        sink.close()
    return {"quiet": quiet, "loaded": loaded, "errors": quiet_errors + loaded_errors,
            "outcomes": outcomes, "idle_rss": idle_rss, "peak_rss": _rss_mb(pid),
            "outbound": len(seen), "phases": phases}


def _phase(mark: tuple[float, float], pid: int) -> str:
    """How long a phase took, the server's CPU in it, and the machine's load at its end."""
    wall = time.perf_counter() - mark[0]
    cpu = _cpu_seconds(pid) - mark[1]
    return (f"{wall:.1f} s, server CPU {cpu:.1f} s ({cpu / wall:.0%} of a core), "
            f"load {_load()}")


def _is_5xx(outcome: str) -> bool:
    """A reply of the 5xx class (``500``, ``200 error`` is a refused event, ``5x429`` is not)."""
    return outcome[:1] == "5" and outcome[1:3].isdigit()


def run() -> list[Row]:
    import subprocess

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "TABLECHAT_LLM_URL": "", "TABLECHAT_AUTH": f"{UI_USER}:{UI_PASSWORD}",
        "TABLECHAT_API_KEYS": API_KEY}
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-c", f"import bench.bench_attack as b; b.serve({port})"],
            cwd=ROOT, env=env)
        try:
            _wait(f"http://127.0.0.1:{port}", proc)
            data = asyncio.run(_measure(port, proc.pid, files))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    quiet = percentile(data["quiet"], 95) * 1000
    loaded = percentile(data["loaded"], 95) * 1000
    ratio = loaded / quiet if quiet else float("inf")
    errors = len(data["errors"])
    server_errors = sum(n for k, n in data["outcomes"].items() if _is_5xx(k.rsplit(": ", 1)[1]))
    for name, phase in data["phases"].items():
        print(f"bench_attack: {name}: {phase}", file=sys.stderr)
    print("bench_attack: what the attacks got back:", file=sys.stderr)
    for key, count in sorted(data["outcomes"].items()):
        print(f"  {count:5d}  {key}", file=sys.stderr)
    if data["errors"]:
        print(f"bench_attack normal-client errors (first 3): {data['errors'][:3]}",
              file=sys.stderr)
    growth = data["peak_rss"] - data["idle_rss"]
    return [
        Row(f"under attack: normal p95, {CLIENTS} clients + {HOSTILE} hostile", loaded, "ms",
            theirs=quiet, alternative=f"quiet p95, {CLIENTS} clients",
            goal="<= 1.5x quiet", ok=ratio <= 1.5),
        Row("under attack: normal clients' errors", float(errors), "", goal="0", ok=errors == 0),
        Row("under attack: server peak RSS over idle", growth, "MB", theirs=float(BUDGET_MB),
            alternative=f"budget: memory_limit {MEMORY_LIMIT} + 512 MB",
            goal="<= budget", ok=growth <= BUDGET_MB),
        Row("under attack: 5xx replies to attacks", float(server_errors), "", goal="0",
            ok=server_errors == 0),
        Row("under attack: requests the server made to a visitor's URL",
            float(data["outbound"]), "", goal="0", ok=data["outbound"] == 0),
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
