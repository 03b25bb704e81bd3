"""The measured points as perf_analyzer's ``-f`` CSV, so spreadsheets made for perf_analyzer read them.

Columns and units are perf_analyzer's: latencies in microseconds, rows sorted by
increasing Inferences/Second, ``Request Rate`` instead of ``Concurrency`` for
open-loop points. The latency breakdown columns (client send, network, server
queue and compute, client receive) need a server's own statistics that a local
onnxruntime session or a client-side measurement does not have: they are left
empty, never filled with a guess. Three trailing columns carry what
perf_analyzer keeps outside the file: ``Avg latency`` (as in its verbose CSV),
``Batch Size`` (its ``-b``) and ``Stable``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

BREAKDOWN = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
             "Server Compute Infer", "Server Compute Output", "Client Recv")
LATENCIES = ("p50 latency", "p90 latency", "p95 latency", "p99 latency")
EXTRA = ("Avg latency", "Batch Size", "Stable")


def header(open_loop: bool) -> list[str]:
    return ["Request Rate" if open_loop else "Concurrency", "Inferences/Second", *BREAKDOWN, *LATENCIES, *EXTRA]


def rows(points: Sequence[Any]) -> list[list[Any]]:
    open_loop = any(getattr(p, "request_rate", None) is not None for p in points)
    body = [_row(p, open_loop) for p in sorted(points, key=lambda p: p.throughput_per_s)]
    return [header(open_loop), *body]


def _row(p: Any, open_loop: bool) -> list[Any]:
    lat = p.latency_ms
    load = _g(p.request_rate) if open_loop else p.concurrency
    return [load, _g(round(p.throughput_per_s, 1)), *[""] * len(BREAKDOWN),
            *[_usec(v) for v in (lat.p50, lat.p90, lat.p95, lat.p99)], _usec(lat.mean), p.batch_size,
            "yes" if p.stable else "no"]


def _usec(ms: float) -> Any:
    return "" if ms is None or math.isnan(ms) else int(round(ms * 1000.0))


def _g(value: float | None) -> Any:
    return "" if value is None else (int(value) if float(value).is_integer() else value)


def to_text(points: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows(points))
    return buf.getvalue()


def write_perf_csv(points: Sequence[Any], path: Path | str) -> Path:
    from costeff.artifacts import atomic_write_text

    return atomic_write_text(path, to_text(points))
