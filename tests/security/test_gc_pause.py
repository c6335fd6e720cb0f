"""Under load, full garbage collections froze the whole server: every ~7 s one walked the
~1M objects made at start-up (Gradio, pandas, LangChain, sqlglot, the schema), collected
almost nothing, and held the GIL for 0.5-1.7 s on the shared 2-core machine (found by
profiling bench_attack: its "under attack" phase was 2.2-2.7x its quiet one with the hostile
clients sending nothing). A served app now settles its start-up heap (``web/heap.py``:
``gc.freeze()``) before it listens.

Run in a child process: freezing the test process's heap would keep its cyclic garbage for
the rest of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import gc, sys, time
import tablechat
from tablechat.web.server import BackgroundServer, create_app
from tests.test_web_support import ScriptedChatModel, free_port

tc = tablechat.connect(sys.argv[1], llm=ScriptedChatModel())
for settle in (False, True):
    before = gc.get_freeze_count()
    server = BackgroundServer(create_app(tc, settle_heap=settle), host="127.0.0.1",
                              port=free_port(), log_level="warning")
    future = server.start()
    while not server.started:  # listening: the app's start-up has run
        assert not future.done(), future.result()
        time.sleep(0.02)
    print(settle, gc.get_freeze_count() - before, len(gc.get_objects()), flush=True)
    server.stop()
tc.close()
"""


def test_a_served_app_settles_its_start_up_heap_before_it_listens(demo_db: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), str(ROOT)])}
    run = subprocess.run([sys.executable, "-c", CHILD, str(demo_db)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    frozen, tracked = map(int, lines["False"].split())
    assert frozen == 0  # create_app alone (as the tests use it) leaves the collector be
    frozen, tracked = map(int, lines["True"].split())
    # nearly everything alive is out of the collector's way (well over 100,000 objects)
    assert frozen > 100_000 and tracked < frozen / 5, (frozen, tracked)
