"""Speed of every variant through the profiler, interleaved to cancel machine drift.

A shared machine drifts by tens of percent between passes, so variants are
profiled in alternating order over several rounds and each point is the median
over rounds: a ratio between variants then compares like with like.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff._jsonable import to_jsonable


@dataclass(frozen=True)
class Speed:
    throughput_per_s: dict[int, float]  # median over rounds, per batch size
    throughput_range_per_s: dict[int, tuple[float, float]]  # min-max over rounds
    optimal_batch: int
    optimal_throughput_per_s: float
    latency_p99_ms: dict[int, float]


def measure_all(paths: dict[str, Path], config: Any, observations: np.ndarray,
                tick: Callable[[], None] = lambda: None) -> dict[str, Speed]:
    """Profile each variant at the same batch sizes, ``config.speed_rounds`` interleaved passes."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(config.speed_rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            runs[name].append(_profile(paths[name], config, observations))
            tick()
    return {name: _summarise(reports, config.latency_budget_ms) for name, reports in runs.items()}


def _profile(path: Path, config: Any, observations: np.ndarray) -> dict[str, Any]:
    from costeff.profiling import ProfileConfig, profile

    pc = ProfileConfig(batch_sizes=tuple(config.batch_sizes), provider=config.provider,
                       window_s=config.window_s, warmup_s=min(0.2, config.window_s),
                       latency_budget_ms=config.latency_budget_ms, max_trials=3, stable_windows=2)
    return to_jsonable(profile(path, pc, observations=observations))


def _summarise(reports: list[dict[str, Any]], budget_ms: float | None) -> Speed:
    per_batch: dict[int, list[float]] = {}
    p99: dict[int, list[float]] = {}
    for rep in reports:
        for p in rep["points"]:
            per_batch.setdefault(p["batch_size"], []).append(p["throughput_per_s"])
            p99.setdefault(p["batch_size"], []).append(p["latency_ms"]["p99"])
    med = {b: statistics.median(v) for b, v in sorted(per_batch.items())}
    lat = {b: statistics.median(v) for b, v in sorted(p99.items())}
    eligible = [b for b in med if budget_ms is None or lat[b] <= budget_ms] or list(med)
    best = max(eligible, key=lambda b: med[b])
    return Speed(med, {b: (min(v), max(v)) for b, v in sorted(per_batch.items())}, best, med[best], lat)

