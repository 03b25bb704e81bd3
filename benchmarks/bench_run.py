"""`costeff run` end to end on the default policy: a cold run, a warm run and a second run.

* cold: no built variants (an empty variant cache); the trained policy and the Triton
  environment are taken from the usual cache when they are there (training and installing are
  first-use costs of their own, not of the run);
* warm: built variants and their fidelity reused, the finalists not known (a screening round);
* second: the same again, the finalists known from the warm run's screening.

Goals: cold <= 120 s, warm <= 90 s, second <= 45 s. The machine may be shared: each run prints the
load average before and after it, its stage seconds and its work (worker processes started, screening
and full rounds), so two runs can be compared by work as well as by wall time.

``COSTEFF_BENCH_BUSY=1`` adds the busy-machine check: three warm runs under two CPU-bound busy
processes must each select what the quiet run selected, or fp32 with the reason saying the
rounds were disturbed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOALS_S = {"cold": 120.0, "warm": 90.0, "second": 45.0}
BUSY_RUNS = 3


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="costeff-bench-run-") as tmp:
        cache = _cache(Path(tmp))
        runs = {}
        for kind in ("cold", "warm", "second"):
            if kind == "warm":  # built variants stay; the remembered finalists go: the warm run screens
                for hint in (cache / "variants").glob("*.finalists.json"):
                    hint.unlink()
            runs[kind] = _run(Path(tmp), cache, kind)
        goals = [{"name": f"costeff run, {kind} (s)", "observed": r["wall_s"], "threshold": GOALS_S[kind],
                  "comparator": "<=", "passed": r["wall_s"] <= GOALS_S[kind] and r["exit"] == 0}
                 for kind, r in runs.items()]
        if os.environ.get("COSTEFF_BENCH_BUSY"):
            goals.append(_busy(Path(tmp), cache, runs["warm"]["selected"]))
    return {"goals": goals}


def _cache(tmp: Path) -> Path:
    """A cache root without built variants; the trained policy and the Triton environment linked in."""
    from costeff.cli._common import home

    cache = tmp / "cache"
    cache.mkdir()
    for part in ("policy", "triton"):
        if (home().cache / part).is_dir():
            (cache / part).symlink_to(home().cache / part)
    return cache


def _run(tmp: Path, cache: Path, tag: str) -> dict[str, Any]:
    out = tmp / f"run-{tag}"
    env = dict(os.environ, COSTEFF_CACHE=str(cache))
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "costeff", "run", "--out", str(out), "--json"], env=env,
                          cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout) if done.stdout.strip() else {"stages": []}
    work = _work(out)
    print(f"costeff run ({tag}): {wall:.1f} s, exit {done.returncode}; loadavg {_load(load_before)} -> "
          f"{_load(os.getloadavg())}; {work['line']}")
    for stage in report["stages"]:
        print(f"  {stage['name']:<17} {stage['status']:<8} {stage['seconds']:6.1f} s  "
              f"{(stage['error'] or stage['summary'])[:150]}")
    return {"wall_s": round(wall, 1), "exit": done.returncode, "selected": work["selected"],
            "reason": work["reason"]}


def _work(out: Path) -> dict[str, Any]:
    """Worker processes started and rounds, from the run's quantization report."""
    found = sorted(out.glob("cost/quant/*/quantization_report.json"))
    if not found:
        return {"line": "no quantization report", "selected": None, "reason": ""}
    q = json.loads(found[-1].read_text())
    rounds = q.get("speed_rounds") or []
    workers = sum(len(r["measurements"]) + r["repeats"] for r in rounds)
    kinds = [r.get("kind", "full") for r in rounds]
    sel = q.get("selected") or {}
    cache = q.get("cache") or {}
    line = (f"{workers} worker processes in {len(rounds)} rounds ({', '.join(kinds)}), "
            f"{sum(len(r['disturbed']) for r in rounds)} disturbed; "
            f"variants {'reused' if cache.get('reused') else 'built'}; selected {sel.get('name')}")
    return {"line": line, "selected": sel.get("name"), "reason": sel.get("reason", "")}


def _busy(tmp: Path, cache: Path, quiet: str | None) -> dict[str, Any]:
    """Three runs under two busy processes: the quiet selection, or fp32 saying the rounds were disturbed."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = [_run(tmp, cache, f"busy-{i + 1}") for i in range(BUSY_RUNS)]
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    ok = [r["selected"] == quiet or (r["selected"] == "fp32" and "disturbed" in r["reason"]) for r in runs]
    return {"name": f"busy machine: {BUSY_RUNS} runs select {quiet} or fp32 saying 'disturbed'",
            "observed": [r["selected"] for r in runs], "threshold": quiet, "comparator": "==",
            "passed": all(ok)}


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
