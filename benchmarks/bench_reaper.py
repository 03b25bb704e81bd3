"""Idle reaper replay: GPU-hours cut on the shipped sample day, and replay speed on a 30-day trace."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> dict:
    from costeff.reaper import reap_trace
    from costeff.reaper.sample import generate, sample_path

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("COSTEFF_ARTIFACTS", str(Path(tmp) / "artifacts"))
        day, _ = reap_trace(sample_path(), out=Path(tmp) / "day")
        trace = generate(Path(tmp) / "trace_30d.csv.gz", days=30, start=date(2025, 3, 3))
        started, cpu = time.perf_counter(), time.process_time()
        month, _ = reap_trace(trace, out=Path(tmp) / "month")
        month_s, month_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    print(f"sample day: GPU-hours {day.gpu_hours_without:.2f} -> {day.gpu_hours_with:.2f} "
          f"({day.reduction_pct:.1f} % less), reaps while active {day.reaps_while_active}, "
          f"wake-ups {day.wake_up['wakeups']}")
    print(f"30 days ({month.source['rows']} samples): {month_s:.2f} s end to end (load + replay "
          f"{month.replay_s:.2f} s, CPU {month_cpu_s:.2f} s on a shared machine), reduction {month.reduction_pct:.1f} %")
    return {"goals": [
        _goal("sample day GPU-hours reduction (%)", day.reduction_pct, ">=", 50.0),
        _goal("sample day reaps while influence > 0 or traffic", day.reaps_while_active, "==", 0),
        _goal("30-day 15 s trace replay time (s)", round(month_s, 2), "<=", 10.0),
    ]}


def _goal(name: str, observed: float, comparator: str, threshold: float) -> dict:
    passed = {">=": observed >= threshold, "<=": observed <= threshold, "==": observed == threshold}[comparator]
    return {"name": name, "observed": observed, "threshold": threshold, "comparator": comparator, "passed": passed}
