"""FOCUS import: a 1,000,000-row SYNTHETIC export (CSV and parquet) into a fresh ledger, time and peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROWS = 1_000_000
# The import runs in a child process so its peak RSS is its own, not this benchmark's (which built the table);
# VmHWM, not ru_maxrss: Linux carries the forking parent's peak into ru_maxrss across exec.
_CHILD = """
import json, re, sys, time
from pathlib import Path
from costeff.ledger import Ledger, import_focus
from costeff.ledger.focus import FocusConfig
started = time.perf_counter()
days, result = import_focus(Ledger(sys.argv[2]), FocusConfig(Path(sys.argv[1]), tags=(("app", "policy-serving"),)))
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": time.perf_counter() - started, "days": result.rows, "matched": days.rows_matched,
                  "credits": days.rows_credit, "peak_rss_mib": peak_kib / 1024}))
"""


def main() -> dict:
    from costeff.ledger.focus_sample import synthetic_table, write_table

    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        table = synthetic_table(ROWS, datetime(2026, 1, 1, tzinfo=timezone.utc), resources=1400)
        for suffix in (".csv", ".parquet"):
            path = write_table(table, Path(tmp) / f"focus{suffix}")
            r = _import(path, Path(tmp) / f"ledger{suffix}.sqlite")
            print(f"{ROWS:,}-row FOCUS {suffix[1:]} ({path.stat().st_size / 2**20:,.0f} MiB): {r['seconds']:.2f} s, "
                  f"peak RSS {r['peak_rss_mib']:,.0f} MiB; {r['matched']:,} rows selected, {r['credits']} credits, "
                  f"{r['days']} days written")
            goals.append(_goal(f"1M-row FOCUS {suffix[1:]} import time (s)", round(r["seconds"], 2), "<=", 60.0))
            goals.append(_goal(f"1M-row FOCUS {suffix[1:]} import peak RSS (MiB)", round(r["peak_rss_mib"]),
                               "<=", 2048))
    return {"goals": goals}


def _import(path: Path, ledger: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(ledger)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _goal(name: str, observed: float, comparator: str, threshold: float) -> dict:
    passed = {">=": observed >= threshold, "<=": observed <= threshold}[comparator]
    return {"name": name, "observed": observed, "threshold": threshold, "comparator": comparator, "passed": passed}
