"""Run every benchmark module in turn and print a goal table at the end."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> int:
    wanted = set(argv)
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    goals = []
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        result = importlib.import_module(f"benchmarks.{name}").main() or {}
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
        goals += [dict(g, bench=name) for g in result.get("goals", [])]
    print("\n=== goals ===")
    for g in goals:
        mark = "PASS" if g["passed"] else "FAIL"
        print(f"{mark}  {g['bench']}: {g['name']}: observed {g['observed']} {g['comparator']} {g['threshold']}")
    return 0 if all(g["passed"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
