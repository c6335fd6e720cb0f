"""A served process's heap (``tablechat.web.heap.settle``): start-up objects kept out of
later collections, and the young generation collected less often (issue 15). In a process of
its own: the collector's settings are the whole process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, json
from tablechat.web.heap import THRESHOLDS, settle
before = gc.get_threshold()
skipped = settle()
print(json.dumps({"before": before, "after": gc.get_threshold(), "wanted": THRESHOLDS,
                  "skipped": skipped, "frozen": gc.get_freeze_count()}))
"""


def test_settle_freezes_the_start_up_heap_and_collects_the_young_less_often() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["skipped"] == got["frozen"] > 0
    assert tuple(got["after"]) == tuple(got["wanted"])
    assert got["after"][0] > got["before"][0]  # importing changed nothing; settling did
