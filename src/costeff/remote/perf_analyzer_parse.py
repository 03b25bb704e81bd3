"""perf_analyzer's ``-f`` CSV and its printed sections, mapped into costeff's report points.

The CSV (``--verbose-csv``) has one row per load value: ``Concurrency`` or ``Request
Rate``, ``Inferences/Second`` (rows per second: requests x batch), the latency
breakdown (``Client Send`` ... ``Client Recv``) and ``p50``/``p90``/``p95``/``p99``/``Avg
latency``, all in microseconds. What the CSV leaves out comes from the printed section
of the same load value (``-v``): the measurement windows (``Pass [n]``), the request
count, and for request rates the send rate and share of delayed requests, which
perf_analyzer prints only when it fell behind its schedule, and its warning that
latency did not stabilise.

perf_analyzer exits non-zero rather than write a concurrency it could not stabilise;
``costeff.remote.perf_analyzer`` then measures that concurrency again without the gate
and the row is marked unstable with perf_analyzer's message. An open-loop row is marked unstable, with
the reasons, when perf_analyzer warned, when more than ``LATE_PCT_MAX`` % of its sends
were late, or when the achieved rate fell below ``ACHIEVED_MIN_PCT`` % of its send rate.
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from costeff.remote.openloop import ACHIEVED_MIN_PCT, LATE_PCT_MAX

BREAKDOWN = {"Client Send": "client_send", "Network+Server Send/Recv": "network_server_send_recv",
             "Server Queue": "server_queue", "Server Compute Input": "server_compute_input",
             "Server Compute Infer": "server_compute_infer", "Server Compute Output": "server_compute_output",
             "Client Recv": "client_recv"}
_SECTION = re.compile(r"^Request (concurrency|Rate): ([0-9.]+)( inference requests per seconds)?\s*$")
_SEND_RATE = re.compile(r"Avg send request rate: ([0-9.]+)")
_DELAYED = re.compile(r"([0-9.]+)% of the requests were delayed")
_COUNT = re.compile(r"^\s*Request count: (\d+)")


def sections(stdout: str) -> dict[float, dict[str, Any]]:
    """Per load value: windows run, request count, send rate, delayed %, and the stability warning."""
    found: dict[float, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in stdout.splitlines():
        head = _SECTION.match(line.strip())
        if head:
            current = found.setdefault(float(head.group(2)), {"passes": 0, "requests": None, "send_rate": None,
                                                               "delayed_pct": None, "warning": None})
            continue
        if current is None:
            continue
        if line.strip().startswith("Pass ["):
            current["passes"] += 1
        elif "not stabilizing" in line or "Failed to obtain stable" in line:
            current["warning"] = line.strip()
        elif (m := _COUNT.match(line)) and current["requests"] is None:
            current["requests"] = int(m.group(1))
        elif m := _SEND_RATE.search(line):
            current["send_rate"] = float(m.group(1))
        if m := _DELAYED.search(line):
            current["delayed_pct"] = float(m.group(1))
    return found


def read_rows(text: str) -> list[dict[str, str]]:
    return [row for row in csv.DictReader(io.StringIO(text)) if any(v.strip() for v in row.values() if v)]


def points_from_run(run: Any, config: Any) -> list[Any]:
    """One Point per CSV row of ``run`` (a ``perf_analyzer.Run``), in the CSV's order."""
    from costeff.errors import DependencyError

    rows = read_rows(run.csv_text)
    if not rows:
        raise DependencyError(f"perf_analyzer wrote no rows to its CSV ({run.csv_name}): {' '.join(run.command)}")
    found = sections(run.stdout)
    return [_point(row, run, _section(found, _load(row)), config) for row in rows]


def _load(row: dict[str, str]) -> float:
    return float(row.get("Concurrency") or row.get("Request Rate") or "nan")


def _section(found: dict[float, dict[str, Any]], value: float) -> dict[str, Any]:
    for key, section in found.items():
        if math.isclose(key, value, rel_tol=1e-6, abs_tol=1e-6):
            return section
    return {"passes": 0, "requests": None, "send_rate": None, "delayed_pct": None, "warning": None}


def _usec_ms(row: dict[str, str], column: str) -> float:
    text = (row.get(column) or "").strip()
    return float(text) / 1000.0 if text else math.nan


def _point(row: dict[str, str], run: Any, section: dict[str, Any], config: Any) -> Any:
    from costeff.profiling import Latency, Point

    batch = run.batch_size
    ips = float(row["Inferences/Second"])
    latency = Latency(_usec_ms(row, "Avg latency"), *(_usec_ms(row, f"p{q} latency") for q in (50, 90, 95, 99)))
    rate = float(row["Request Rate"]) if run.mode == "request_rate" else None
    requests = section["requests"] if section["requests"] is not None else \
        int(round(ips / batch * section["passes"] * config.window_s))
    reasons = _unstable_reasons(rate, ips / batch, section) if rate is not None else []
    if getattr(run, "unstable_note", None):
        reasons.insert(0, run.unstable_note)
    late_pct = (section["delayed_pct"] or 0.0) if rate is not None else None
    point = Point(batch_size=batch, concurrency=int(float(row["Concurrency"])) if rate is None else 0,
                  throughput_per_s=ips, requests_per_s=ips / batch, latency_ms=latency, stable=not reasons,
                  trials=section["passes"], requests=requests, windows=[], request_rate=rate,
                  late_requests=int(round((late_pct or 0.0) / 100.0 * requests)),
                  gpu_null_reason="remote server: GPU telemetry is the server's (not sampled by the client)")
    point.extra = {"load_generator": "perf_analyzer", "perf_analyzer_csv": run.csv_name,
                   "latency_breakdown_us": {key: _int(row.get(col)) for col, key in BREAKDOWN.items()},
                   "unstable_reasons": reasons}
    if rate is not None:
        point.extra.update(mode="open-loop Poisson (perf_analyzer --request-distribution poisson)",
                           asked_rate_per_s=rate, offered_rate_per_s=section["send_rate"],
                           achieved_rate_per_s=ips / batch, late_sends=point.late_requests,
                           late_send_pct=late_pct)
        if section["send_rate"] is None:
            point.extra["offered_rate_note"] = ("perf_analyzer prints its send rate only when it fell behind "
                                                "its schedule; none of its sends were delayed")
    return point


def _unstable_reasons(rate: float, achieved: float, section: dict[str, Any]) -> list[str]:
    reasons = []
    if section["warning"]:
        reasons.append(f"perf_analyzer: {section['warning']}")
    late = section["delayed_pct"] or 0.0
    if late > LATE_PCT_MAX:
        reasons.append(f"{late:g} % of sends were late (perf_analyzer could not keep its schedule; "
                       f"limit {LATE_PCT_MAX:g} %)")
    offered = section["send_rate"]
    if offered and achieved < offered * ACHIEVED_MIN_PCT / 100.0:
        reasons.append(f"achieved {achieved:.1f} requests/s < {ACHIEVED_MIN_PCT:g} % of the "
                       f"{offered:.1f}/s sent (asked {rate:g}/s)")
    return reasons


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(float(text)) if text else None
