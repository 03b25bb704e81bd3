"""Per-batch and per-request cost of a real server, from Triton's statistics extension.

Triton's ``GET /v2/models/NAME/stats`` is cumulative: ``execution_count``,
``inference_count`` (rows), ``inference_stats`` (per request: count and summed ns of
success, queue, compute_input/infer/output) and ``batch_stats`` (per executed batch
size in rows: count and summed ns of compute_input/infer/output). Two snapshots
taken around a load phase give, for every batch size the server executed in that
phase, how many executions there were and their mean time.

A phase drives requests of a known row count, so an execution of ``R`` rows in a
phase of ``r``-row requests carried ``B = R / r`` requests. Over all phases the
execution time is fitted by non-negative weighted least squares as

    t(B requests, R rows) = a + b * R + c * B

``c`` is the per-request cost (a backend that handles requests one by one pays it
for every request of a batch; a server that concatenates rows pays only ``b``). One
request of ``R`` rows costs ``a + c + b * R``: that is the simulator's service time
table, and ``c`` is charged for every further request of a batch.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from costeff.errors import InputError

COMPUTE = ("compute_input", "compute_infer", "compute_output")
SCHEMA = "costeff.server_costs/1"


@dataclass(frozen=True)
class Sample:
    """The executions of one batch size within one load phase."""

    phase: str
    rows: int
    requests: float  # requests per execution: rows / rows per request
    executions: int
    mean_ms: float


@dataclass(frozen=True)
class CostFit:
    """``t = fixed_ms + per_row_ms * rows + per_request_ms * requests`` per execution."""

    fixed_ms: float
    per_row_ms: float
    per_request_ms: float
    rms_ms: float
    executions: int
    samples: list[Sample]

    def batch_ms(self, rows: float, requests: float) -> float:
        return self.fixed_ms + self.per_row_ms * rows + self.per_request_ms * requests

    def to_dict(self) -> dict[str, Any]:
        return {"model": "t = fixed_ms + per_row_ms * rows + per_request_ms * requests",
                "fixed_ms": self.fixed_ms, "per_row_ms": self.per_row_ms, "per_request_ms": self.per_request_ms,
                "rms_ms": self.rms_ms, "executions": self.executions,
                "samples": [s.__dict__ for s in self.samples]}


def _int(value: Any, where: str) -> int:
    """A counter: JSON number (HTTP) or decimal string (gRPC's JSON form of uint64)."""
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a non-negative integer, got {value!r}")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise InputError(f"{where}: expected a non-negative integer, got {value!r}")


def _duration(entry: Any, where: str) -> tuple[int, int]:
    if entry is None:
        return 0, 0  # Triton omits zero-valued entries in gRPC's JSON form
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: expected an object with count and ns")
    return _int(entry.get("count", 0), f"{where}.count"), _int(entry.get("ns", 0), f"{where}.ns")


def model_counters(snapshot: Any, model: str, where: str = "stats") -> dict[str, Any]:
    """One model's counters from a stats reply, summed over its versions.

    Returns ``{"executions", "rows", "requests", "queue_ns", "success_ns", "batches": {rows: (count, ns)}}``.
    """
    if not isinstance(snapshot, Mapping) or not isinstance(snapshot.get("model_stats"), list):
        raise InputError(f"{where}: expected Triton's statistics reply: an object with a 'model_stats' list")
    entries = [(i, m) for i, m in enumerate(snapshot["model_stats"]) if isinstance(m, Mapping)
               and m.get("name") == model]
    if not entries:
        names = sorted({str(m.get("name")) for m in snapshot["model_stats"] if isinstance(m, Mapping)})
        raise InputError(f"{where}: no statistics for model {model!r} (found: {', '.join(names) or 'none'})")
    out: dict[str, Any] = {"executions": 0, "rows": 0, "requests": 0, "queue_ns": 0, "success_ns": 0, "batches": {}}
    for i, m in entries:
        at = f"{where}.model_stats[{i}]"
        out["executions"] += _int(m.get("execution_count", 0), f"{at}.execution_count")
        out["rows"] += _int(m.get("inference_count", 0), f"{at}.inference_count")
        inf = m.get("inference_stats") or {}
        if not isinstance(inf, Mapping):
            raise InputError(f"{at}.inference_stats: expected an object")
        count, ns = _duration(inf.get("success"), f"{at}.inference_stats.success")
        out["requests"] += count
        out["success_ns"] += ns
        out["queue_ns"] += _duration(inf.get("queue"), f"{at}.inference_stats.queue")[1]
        _add_batches(out["batches"], m.get("batch_stats") or [], f"{at}.batch_stats")
    return out


def _add_batches(into: dict[int, tuple[int, int]], stats: Any, where: str) -> None:
    if not isinstance(stats, list):
        raise InputError(f"{where}: expected a list")
    for j, b in enumerate(stats):
        if not isinstance(b, Mapping):
            raise InputError(f"{where}[{j}]: expected an object")
        rows = _int(b.get("batch_size"), f"{where}[{j}].batch_size")
        count = ns = 0
        for key in COMPUTE:
            c, n = _duration(b.get(key), f"{where}[{j}].{key}")
            count, ns = max(count, c), ns + n
        old = into.get(rows, (0, 0))
        into[rows] = (old[0] + count, old[1] + ns)


def phase_delta(before: Any, after: Any, model: str, where: str = "phase") -> dict[str, Any]:
    """What the server did between two snapshots (counters must not go backwards)."""
    a = model_counters(before, model, f"{where}.before")
    b = model_counters(after, model, f"{where}.after")
    delta: dict[str, Any] = {k: b[k] - a[k] for k in ("executions", "rows", "requests", "queue_ns", "success_ns")}
    batches = {}
    for rows, (count, ns) in b["batches"].items():
        c0, n0 = a["batches"].get(rows, (0, 0))
        if count - c0 > 0:
            batches[rows] = (count - c0, ns - n0)
    delta["batches"] = batches
    if any(v < 0 for k, v in delta.items() if k != "batches") or any(n < 0 for _, n in batches.values()):
        raise InputError(f"{where}: counters went backwards between the snapshots (server restarted or "
                         "model reloaded?); take both snapshots from one running server")
    return delta


def phase_samples(phase: Mapping[str, Any], model: str, where: str) -> list[Sample]:
    """Per batch size samples of one phase ``{name, rows_per_request, before, after}``."""
    per = _int(phase.get("rows_per_request"), f"{where}.rows_per_request")
    if per < 1:
        raise InputError(f"{where}.rows_per_request: expected an integer >= 1, got {per}")
    delta = phase_delta(phase.get("before"), phase.get("after"), model, where)
    name = str(phase.get("name", where))
    return [Sample(name, rows, rows / per, count, ns / count / 1e6)
            for rows, (count, ns) in sorted(delta["batches"].items())]


def fit_costs(samples: list[Sample]) -> CostFit:
    """Non-negative weighted least squares of ``t = a + b R + c B`` (weights: executions)."""
    samples = [s for s in samples if s.executions > 0 and math.isfinite(s.mean_ms)]
    if not samples:
        raise InputError("server statistics: no executions between the snapshots; drive some load first")
    x = np.array([[1.0, s.rows, s.requests] for s in samples])
    y = np.array([s.mean_ms for s in samples])
    w = np.sqrt(np.array([s.executions for s in samples], float))
    best: tuple[float, np.ndarray] | None = None
    # Exhaustive active sets (three coefficients): the non-negative solution with the least residual.
    for keep in itertools.product((True, False), repeat=3):
        cols = [i for i in range(3) if keep[i]]
        coef = np.zeros(3)
        if cols:
            sub = x[:, cols] * w[:, None]
            if np.linalg.matrix_rank(sub) < len(cols):
                continue
            coef[cols] = np.linalg.lstsq(sub, y * w, rcond=None)[0]
        if np.any(coef < 0):
            continue
        resid = float(np.sum(((x @ coef - y) * w) ** 2))
        if best is None or resid < best[0] - 1e-15:
            best = (resid, coef)
    assert best is not None  # the all-zero model is always admissible
    coef = best[1]
    total = int(sum(s.executions for s in samples))
    rms = math.sqrt(best[0] / float(np.sum(w ** 2)))
    return CostFit(float(coef[0]), float(coef[1]), float(coef[2]), rms, total, samples)


def fit_phases(phases: Sequence[Mapping[str, Any]], model: str) -> CostFit:
    """Fit over phases; repeated phases (same name, e.g. rounds) are pooled per batch size by their median."""
    samples: list[Sample] = []
    for i, phase in enumerate(phases):
        if not isinstance(phase, Mapping):
            raise InputError(f"phases[{i}]: expected an object with name, rows_per_request, before, after")
        samples += phase_samples(phase, model, f"phases[{i}]")
    return fit_costs(pool_rounds(samples))


def pool_rounds(samples: list[Sample]) -> list[Sample]:
    """One sample per (phase, rows): the median of the rounds' means (a burst of other work on the host
    during one round is outvoted), with every round's executions counted."""
    groups: dict[tuple[str, int, float], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.phase, s.rows, s.requests), []).append(s)
    return [Sample(name, rows, requests, sum(s.executions for s in group),
                   float(np.median([s.mean_ms for s in group])))
            for (name, rows, requests), group in groups.items()]


def mean_batch_rows(before: Any, after: Any, model: str) -> float | None:
    """Rows per execution between two snapshots (None when nothing executed)."""
    d = phase_delta(before, after, model)
    return d["rows"] / d["executions"] if d["executions"] else None


def load_server_costs(path: Path | str) -> dict[str, Any]:
    """A ``server_costs.json`` written by ``costeff batching calibrate``, checked."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such server costs file (write one with `costeff batching calibrate`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read server costs: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("fit"), dict):
        raise InputError(f"{path}: expected an object with a 'fit' block (from `costeff batching calibrate`)")
    fit = data["fit"]
    for key in ("fixed_ms", "per_row_ms", "per_request_ms"):
        v = fit.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InputError(f"{path}: fit.{key}: expected a number >= 0, got {v!r}")
    if fit["fixed_ms"] + fit["per_row_ms"] + fit["per_request_ms"] <= 0:
        raise InputError(f"{path}: fit: every cost is 0; one execution must take some time")
    rows = data.get("batch_sizes")
    if rows is not None and (not isinstance(rows, list) or not rows
                             or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rows)):
        raise InputError(f"{path}: batch_sizes: expected a non-empty list of integers >= 1, got {rows!r}")
    data["_path"] = str(path)
    return data


def table_points(fit: Mapping[str, Any], sizes: list[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Service time of one request of each row count (``a + c + b R``)."""
    sizes = sorted(set(sizes))
    base = float(fit["fixed_ms"]) + float(fit["per_request_ms"])
    return tuple(sizes), tuple(base + float(fit["per_row_ms"]) * r for r in sizes)


def ladder(max_rows: int) -> list[int]:
    """1, 2, 4, ... up to ``max_rows`` (and ``max_rows`` itself)."""
    out, b = [], 1
    while b < max_rows:
        out.append(b)
        b *= 2
    return out + [max_rows]
