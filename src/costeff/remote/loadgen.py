"""Which load generator measures a server (perf_analyzer or costeff's own client), and its record.

``auto`` picks perf_analyzer when it is installed (the Triton environment's, or
``--perf-analyzer PATH``) and the server says it is Triton: perf_analyzer reads
Triton's model configuration and statistics, which other Open Inference Protocol
servers (MLServer) do not serve. Otherwise costeff's own client measures, and the
report says which one did and why.

With perf_analyzer the report folder keeps ``perf_analyzer.csv`` (every run's rows
with the batch size and load in front, perf_analyzer's columns after) and, under
``perf_analyzer/``, each run's own CSV and the input data, so the recorded command
lines run again from that folder.
"""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path
from typing import Any

from costeff.errors import DependencyError, InputError

GENERATORS = ("auto", "perf_analyzer", "costeff")
CSV_NAME, RUNS_DIR = "perf_analyzer.csv", "perf_analyzer"


def choose(load_generator: str, perf_analyzer: Path | None, server: dict[str, Any],
           cache: Path | None = None) -> tuple[Any, str]:
    """(a ``PerfAnalyzer`` or None for costeff's client, the reason); an installed perf_analyzer is looked for
    in the Triton environment under ``cache``."""
    from costeff.remote.perf_analyzer import locate

    if load_generator not in GENERATORS:
        raise InputError(f"--load-generator: {load_generator!r}; expected one of {', '.join(GENERATORS)}")
    if load_generator == "costeff":
        return None, "asked for (--load-generator costeff)"
    pa = locate(perf_analyzer, cache)
    if load_generator == "perf_analyzer":
        if pa is None:
            raise DependencyError("--load-generator perf_analyzer: perf_analyzer is not installed; run "
                                  "`costeff triton env` (it installs it) or pass --perf-analyzer PATH")
        return pa, "asked for (--load-generator perf_analyzer)"
    if pa is None:
        return None, "perf_analyzer is not installed (`costeff triton env` installs it)"
    name = str(server.get("name") or "")
    if name.lower() != "triton":
        return None, (f"the server says it is {name or 'unnamed'!r}, not Triton: perf_analyzer needs Triton's "
                      "model configuration")
    return pa, "installed and the server is Triton"


def record(pa: Any, reason: str, runs: list[Any], max_in_flight: int) -> dict[str, Any]:
    if pa is None:
        from costeff.remote.openloop import LATE_GAP_FRACTION, LATE_MIN_MS

        return {"name": "costeff", "reason": reason, "max_in_flight": max_in_flight,
                "late_send_threshold": f"max({LATE_MIN_MS:g} ms, {LATE_GAP_FRACTION:.0%} of the mean gap)"}
    return {"name": "perf_analyzer", "reason": reason, "binary": str(pa.binary), "csv": CSV_NAME,
            "runs": [{"batch_size": r.batch_size, "mode": r.mode, "values": r.values,
                      "command": shlex.join(r.command), "cwd": RUNS_DIR, "csv": f"{RUNS_DIR}/{r.csv_name}"}
                     for r in runs]}


def merged_csv(runs: list[Any]) -> str:
    """Every run's rows in one CSV: Batch Size, Concurrency, Request Rate, then perf_analyzer's columns."""
    from costeff.remote.perf_analyzer_parse import read_rows

    columns: list[str] = []
    table = []
    for run in runs:
        for row in read_rows(run.csv_text):
            columns += [c for c in row if c not in columns and c not in ("Concurrency", "Request Rate")]
            table.append((run.batch_size, row))
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["Batch Size", "Concurrency", "Request Rate", *columns])
    for batch, row in table:
        out.writerow([batch, row.get("Concurrency", ""), row.get("Request Rate", ""),
                      *[row.get(c, "") for c in columns]])
    return buf.getvalue()


def write_runs(out: Path, runs: list[Any], input_data: bytes | None) -> None:
    """perf_analyzer.csv and the perf_analyzer/ folder (each run's CSV, the input data)."""
    from costeff.artifacts import atomic_write_bytes, atomic_write_text

    folder = out / RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for run in runs:
        atomic_write_text(folder / run.csv_name, run.csv_text)
    if input_data is not None:
        atomic_write_bytes(folder / "input_data.json", input_data)
    atomic_write_text(out / CSV_NAME, merged_csv(runs))


def markdown(load: dict[str, Any], points: list[Any]) -> str:
    lines = ["## Load generator", "", f"- {load.get('name')}: {load.get('reason')}"]
    for run in load.get("runs", []):
        lines.append(f"- batch {run['batch_size']}, {run['mode']} {run['values']}: `{run['command']}` "
                     f"(from `{run['cwd']}/`)")
    if load.get("name") == "costeff":
        lines.append(f"- in-flight cap {load['max_in_flight']}; a send is late after {load['late_send_threshold']}")
    open_points = [p for p in points if p.request_rate is not None]
    if open_points:
        lines += ["", "| batch | asked /s | offered /s | achieved /s | late sends | late % | stable | why not |",
                  "|---:|---:|---:|---:|---:|---:|:-:|---|"]
        for p in open_points:
            x = p.extra
            lines.append(f"| {p.batch_size} | {p.request_rate:g} | {_f(x.get('offered_rate_per_s'))} | "
                         f"{_f(x.get('achieved_rate_per_s'))} | {x.get('late_sends', '—')} | "
                         f"{_f(x.get('late_send_pct'))} | {'yes' if p.stable else '**no**'} | "
                         f"{'; '.join(x.get('unstable_reasons') or []) or '—'} |")
    return "\n".join(lines) + "\n"


def _f(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
