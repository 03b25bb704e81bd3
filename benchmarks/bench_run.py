"""`costeff run` end to end on the default policy, from an empty policy cache: goal <= 3 minutes.

Runs the real command in a subprocess with its own artifact folder and cache, so the
time includes training the default policy at first use, every stage and the pack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 180.0


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="costeff-bench-run-") as tmp:
        env = dict(os.environ, COSTEFF_ARTIFACTS=f"{tmp}/artifacts", COSTEFF_CACHE=f"{tmp}/cache",
                   COSTEFF_MODEL_REPOSITORY=f"{tmp}/repo")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "costeff", "run", "--json"], env=env, cwd=tmp,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        report = json.loads(done.stdout) if done.stdout.strip() else {"stages": []}
        for stage in report["stages"]:
            print(f"  {stage['name']:<17} {stage['status']:<8} {stage['seconds']:6.1f} s  "
                  f"{stage['error'] or stage['summary']}")
        pack = Path(report["pack"]).name if report.get("pack") else None
    print(f"costeff run (default policy, empty cache): {elapsed:.1f} s, exit {done.returncode}, pack {pack}")
    return {"goals": [
        {"name": "costeff run on the default policy (s)", "observed": round(elapsed, 1), "threshold": GOAL_S,
         "comparator": "<=", "passed": elapsed <= GOAL_S},
        {"name": "costeff run exit code", "observed": done.returncode, "threshold": 0, "comparator": "==",
         "passed": done.returncode == 0},
    ]}


if __name__ == "__main__":
    main()
