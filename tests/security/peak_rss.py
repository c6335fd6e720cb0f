"""Run a snippet in a child Python process and report its peak memory: a bound, not a timing.

The child reports its own peak: ``VmHWM`` of ``/proc/self/status`` as it finishes, the high-water
mark of its own address space (every thread DuckDB ran included). Not ``ru_maxrss``: Linux
carries the old address space's high-water mark across ``exec``, and Python's subprocess may
``vfork``, so a child's ``ru_maxrss`` starts at the pytest process's own peak (584 MB seen for
a refusal that peaks at 160 MB alone). Nor ``RUSAGE_CHILDREN`` in the parent, which is the
largest of every child this process ever waited for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parents[2] / "app"
ROOT = APP.parent


@dataclass(frozen=True)
class ChildRun:
    """What the child printed last (a JSON object), its peak RSS and its wall time."""

    out: dict[str, Any]
    peak_mb: float
    elapsed_s: float


def run_child(code: str, timeout: float = 300.0) -> ChildRun:
    """Run ``code`` (which prints one JSON object as its last line) with tablechat importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APP), str(ROOT)])}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        elapsed = time.monotonic() - start
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    return ChildRun(result, float(result["peak_mb"]), elapsed)


PEAK = """
import json as _json
def report(**fields):
    with open("/proc/self/status") as _status:
        _hwm = next(line for line in _status if line.startswith("VmHWM:"))
    fields["peak_mb"] = int(_hwm.split()[1]) / 1024
    print(_json.dumps(fields))
"""
"""Prepend to a child's code: ``report(**fields)`` prints its fields and its peak RSS."""
