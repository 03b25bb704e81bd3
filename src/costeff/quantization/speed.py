"""Speed of every variant, each in a process of its own, interleaved to cancel machine drift.

Two runtimes in one process slow each other down (their thread pools compete
and spin), so every (variant, round) is timed in a fresh worker process
(:mod:`costeff.runtimes.worker`). A shared machine drifts by tens of percent
between passes, so variants are profiled in alternating order over several
rounds and each number is the median over rounds, with its min-max spread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff.errors import DependencyError

WORKER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Speed:
    throughput_per_s: dict[int, float]  # median over rounds, per batch size
    throughput_range_per_s: dict[int, tuple[float, float]]  # min-max over rounds
    optimal_batch: int
    optimal_throughput_per_s: float
    latency_p99_ms: dict[int, float]
    latency_by_gap: list[dict[str, float]]  # medians over rounds per gap
    open_loop: dict[str, Any] | None  # the median round's open-loop result
    open_loop_p50_range_ms: tuple[float, float] | None
    runtime: dict[str, Any]


def measure_all(variants: list[Any], config: Any, observations: np.ndarray,
                tick: Callable[[], None] = lambda: None) -> dict[str, Speed]:
    """Profile each variant at the same batch sizes, ``config.speed_rounds`` interleaved passes."""
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="costeff-speed-") as tmp:
        obs_path = Path(tmp) / "observations.npy"
        np.save(obs_path, np.ascontiguousarray(observations[:4096], dtype=np.float32))
        for r in range(config.speed_rounds):
            subset = variants if r == 0 else _finalists(variants, runs, config)
            for v in (subset if r % 2 == 0 else subset[::-1]):
                runs[v.name].append(run_isolated(_task(v, config, obs_path)))
                tick()
    return {name: summarise(results, config.latency_budget_ms) for name, results in runs.items()}


def _finalists(variants: list[Any], runs: dict[str, list[dict[str, Any]]], config: Any) -> list[Any]:
    """Who gets the later rounds: the baseline plus the best few of round one by capacity and by
    answer time (the two ways selection can break a tie); everyone when ``config.finalists`` is None."""
    keep = getattr(config, "finalists", None)
    if keep is None or len(variants) <= keep + 1:
        return variants
    first = {v.name: summarise(runs[v.name][:1], config.latency_budget_ms) for v in variants}
    by_capacity = sorted(variants, key=lambda v: -first[v.name].optimal_throughput_per_s)[:keep]
    by_latency = sorted(variants, key=lambda v: _answer_ms(first[v.name]))[:keep]
    chosen = {v.name for v in by_capacity + by_latency} | {v.name for v in variants if v.baseline}
    return [v for v in variants if v.name in chosen]


def _answer_ms(speed: Speed) -> float:
    if speed.open_loop:
        return speed.open_loop["p50_ms"]
    return min((g["p50_ms"] for g in speed.latency_by_gap), default=float("inf"))


KNOBS = {"onnxruntime": ("threads", "spinning"), "openvino": ("precision", "performance_hint", "streams",
                                                                 "threads", "pinning")}


def _task(v: Any, config: Any, obs_path: Path) -> dict[str, Any]:
    from costeff.quantization.variants import trt_fp16

    knobs = {k: v.runtime[k] for k in KNOBS[v.backend] if v.runtime.get(k) is not None}
    options = knobs if v.backend == "openvino" else {
        "provider": config.provider, "session_config": dict(v.session_config),
        "trt_fp16": trt_fp16(v.name, config.provider), **knobs}
    return {"path": v.path, "backend": v.backend, "options": options, "observations": str(obs_path),
            "batch_sizes": list(config.batch_sizes), "window_s": config.window_s,
            "warmup_s": min(0.2, config.window_s), "gaps_s": list(config.gaps_s),
            "target_rate": config.target_rate, "latency_budget_ms": config.latency_budget_ms,
            "max_utilisation": config.max_utilisation, "open_loop_s": config.open_loop_s}


def run_isolated(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement task in a fresh Python process; DependencyError when it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "costeff.runtimes.worker"], input=json.dumps(task),
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise DependencyError(f"{task['path']}: speed measurement ran past {WORKER_TIMEOUT_S} s") from None
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DependencyError(f"{task['path']}: the measuring process died (exit {proc.returncode}): {tail}") \
            from None
    if not out["ok"]:
        raise DependencyError(f"{task['path']}: {out['error']}")
    return out["result"]


def summarise(results: list[dict[str, Any]], budget_ms: float | None) -> Speed:
    per_batch: dict[int, list[float]] = {}
    p99: dict[int, list[float]] = {}
    for res in results:
        for b, p in res["closed_loop"].items():
            per_batch.setdefault(int(b), []).append(p["throughput_per_s"])
            p99.setdefault(int(b), []).append(p["p99_ms"])
    med = {b: statistics.median(v) for b, v in sorted(per_batch.items())}
    lat = {b: statistics.median(v) for b, v in sorted(p99.items())}
    eligible = [b for b in med if budget_ms is None or lat[b] <= budget_ms] or [min(med)]
    best = max(eligible, key=lambda b: med[b])
    ol, ol_range = _open_loop(results)
    return Speed(med, {b: (min(v), max(v)) for b, v in sorted(per_batch.items())}, best, med[best], lat,
                 _gaps(results), ol, ol_range, results[0]["runtime"])


def _gaps(results: list[dict[str, Any]]) -> list[dict[str, float]]:
    out = []
    for i, first in enumerate(results[0]["gaps"]):
        rows = [r["gaps"][i] for r in results]
        out.append({"gap_ms": first["gap_ms"], "calls": sum(r["calls"] for r in rows),
                    "p50_ms": statistics.median(r["p50_ms"] for r in rows),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rows)})
    return out


def _open_loop(results: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, tuple[float, float] | None]:
    rounds = [r["open_loop"] for r in results if r.get("open_loop")]
    if not rounds:
        return None, None
    by_p99 = sorted(rounds, key=lambda r: r["p99_ms"])
    median = by_p99[(len(by_p99) - 1) // 2]  # the lower median: a real round, not an average of two
    p50s = [r["p50_ms"] for r in rounds]
    return {**median, "saturated": any(r["saturated"] for r in rounds)}, (min(p50s), max(p50s))


def as_dict(speed: Speed) -> dict[str, Any]:
    return asdict(speed)
