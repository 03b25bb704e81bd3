"""Measure one variant in a process of its own: ``python -m costeff.runtimes.worker < task.json``.

Two runtimes in one process disturb each other (their worker threads compete
and spin), so every variant is timed in a fresh process: the numbers then
describe the variant, not its neighbours. The task and the result are JSON;
the result is the last line on stdout.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

STABLE_WINDOWS = 2  # a point ends when two windows agree ...
MAX_TRIALS = 3  # ... or after three (the profiler's own defaults are stricter; a round is one of several)


@dataclass(frozen=True)
class SpeedTask:
    path: str
    backend: str
    options: dict[str, Any]
    observations: str  # .npy with float32 rows
    batch_sizes: tuple[int, ...]
    window_s: float = 0.3
    warmup_s: float = 0.1
    gaps_s: tuple[float, ...] = (0.0, 0.01)
    gap_budget_s: float = 2.0  # seconds of calls per idle gap (see profiling.traffic.calls_for_gap)
    target_rate: float | None = None
    latency_budget_ms: float | None = None
    max_utilisation: float = 0.8
    open_loop_s: float = 1.5


@dataclass
class SpeedResult:
    closed_loop: dict[int, dict[str, Any]] = field(default_factory=dict)  # batch -> throughput, p50, p99, point
    gaps: list[dict[str, float]] = field(default_factory=list)
    open_loop: dict[str, Any] | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    provider: str = ""  # the execution provider that ran ("OpenVINO CPU" for OpenVINO)
    seconds: float = 0.0  # measuring time, model load excluded


def run_task(task: SpeedTask) -> SpeedResult:
    from costeff.profiling.measure import MeasureConfig, measure
    from costeff.profiling.resources import sampler_for
    from costeff.profiling.traffic import calls_for_gap, gap_latency
    from costeff.runtimes import RuntimeOptions, open_runner

    fields: dict[str, Any] = {k: tuple(v.items()) if k == "session_config" else v for k, v in task.options.items()}
    options = RuntimeOptions(**fields)
    runner = open_runner(task.path, task.backend, options)
    obs = np.load(task.observations)
    used = getattr(runner, "provider", "OpenVINO CPU")
    result = SpeedResult(runtime={"backend": task.backend, **options.to_dict(task.backend),
                                  **getattr(runner, "properties", {})}, provider=used)
    started = time.perf_counter()
    cfg = MeasureConfig(warmup_s=task.warmup_s, window_s=task.window_s, stable_windows=STABLE_WINDOWS,
                        max_trials=MAX_TRIALS, sample_interval_s=1.0)
    with sampler_for(used, cfg.sample_interval_s) as sampler:  # process CPU exactly; the GPU where one runs
        for b in task.batch_sizes:
            p = measure(runner.bind(_rows(obs, b)), b, cfg, sampler=sampler)
            # the whole point too: a profile of this variant is assembled from these rounds, not measured again
            result.closed_loop[b] = {"throughput_per_s": p.throughput_per_s, "p50_ms": p.latency_ms.p50,
                                     "p99_ms": p.latency_ms.p99, "stable": p.stable, "point": asdict(p)}
    one = runner.bind(_rows(obs, 1))
    result.gaps = [asdict(gap_latency(one, g, calls_for_gap(g, task.gap_budget_s))) for g in task.gaps_s]
    if task.target_rate:
        result.open_loop = _open_loop(runner, obs, result, task)
    result.seconds = time.perf_counter() - started
    return result


def _rows(obs: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(obs[np.arange(n) % len(obs)])


def _open_loop(runner: Any, obs: np.ndarray, result: SpeedResult, task: SpeedTask) -> dict[str, Any]:
    """Open loop at the per-instance share of the target rate, batched up to the optimal batch."""
    from costeff.profiling.traffic import open_loop

    assert task.target_rate is not None  # the open loop runs only towards a target rate
    batch, capacity = optimal(result.closed_loop, task.latency_budget_ms)
    instances = max(1, math.ceil(task.target_rate / (capacity * task.max_utilisation)))
    rate = task.target_rate / instances
    calls = {b: runner.bind(_rows(obs, b)) for b in range(1, batch + 1)}
    ol = open_loop(lambda b: calls[b](), rate, batch, max_duration_s=task.open_loop_s)
    return {**asdict(ol), "instances": instances, "target_rate_per_s": task.target_rate}


def optimal(closed: dict[int, dict[str, float]], budget_ms: float | None) -> tuple[int, float]:
    """(batch, throughput): the highest throughput whose closed-loop p99 meets the budget."""
    ok = [b for b, p in closed.items() if budget_ms is None or p["p99_ms"] <= budget_ms] or [min(closed)]
    best = max(ok, key=lambda b: closed[b]["throughput_per_s"])
    return best, closed[best]["throughput_per_s"]


def main() -> int:
    from costeff.errors import CosteffError

    raw = json.loads(sys.stdin.read())
    task = SpeedTask(**{**raw, "batch_sizes": tuple(raw["batch_sizes"]), "gaps_s": tuple(raw["gaps_s"])})
    try:
        out = {"ok": True, "result": asdict(run_task(task))}
    except CosteffError as exc:
        out = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "exit_code": 3}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
