"""Run every benchmark module and print one table."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time
from pathlib import Path

from bench import Row


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} {unit}" if value >= 10 else f"{value:,.3f} {unit}"


def print_table(rows: list[Row]) -> None:
    header = ("measure", "ours", "alternative", "theirs", "ratio", "goal", "met")
    lines = [header]
    for r in rows:
        ratio = f"{r.ratio:,.1f}x" if r.ratio is not None else "-"
        met = "-" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(
            (
                r.name,
                _fmt(r.ours, r.unit),
                r.alternative or "-",
                _fmt(r.theirs, r.unit),
                ratio,
                r.goal or "-",
                met,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("only", nargs="*", help="run only these modules (e.g. guard web)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="questions for the real-model benchmarks that ask a question set "
                        "(classic: default 3; grammar: default 20)")
    args = parser.parse_args()
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    rows: list[Row] = []
    failed = False
    for name in names:
        start = time.perf_counter()
        print(f"running {name} …", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        options = {}
        if args.limit is not None and "limit" in inspect.signature(module.run).parameters:
            options["limit"] = args.limit
        try:
            rows.extend(module.run(**options))
        except Exception as exc:  # one broken benchmark must not hide the others
            failed = True
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
