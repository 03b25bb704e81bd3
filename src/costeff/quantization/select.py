"""Speedups, cost before and after, and the choice of the variant to serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from costeff._jsonable import to_jsonable
from costeff.quantization.records import VariantResult


def apply_speed(ctx: Any, model_path: Path, obs: np.ndarray, variants: list[VariantResult], progress: Any) -> str:
    """Profile every built variant and fill in throughput and speedups; returns how it was measured."""
    from costeff.quantization.speed import measure_all

    built = [v for v in variants if v.built and v.path]
    paths = {v.name: Path(v.path) for v in built}
    tick = (lambda: progress.advance(1, description="profiling")) if progress is not None else (lambda: None)
    speeds = measure_all(paths, ctx.config, obs, tick)
    base = speeds["fp32"]
    for v in built:
        s = speeds[v.name]
        v.throughput_per_s, v.throughput_range_per_s, v.latency_p99_ms = s.throughput_per_s, \
            s.throughput_range_per_s, s.latency_p99_ms
        v.optimal_batch, v.optimal_throughput_per_s = s.optimal_batch, s.optimal_throughput_per_s
        v.throughput_at_baseline_batch_per_s = s.throughput_per_s.get(base.optimal_batch)
        v.speedup = s.optimal_throughput_per_s / base.optimal_throughput_per_s
        if v.throughput_at_baseline_batch_per_s is not None:
            v.speedup_at_baseline_batch = v.throughput_at_baseline_batch_per_s / base.optimal_throughput_per_s
    return (f"costeff.profiling.profile, batch sizes {list(ctx.config.batch_sizes)}, {ctx.config.speed_rounds} "
            f"interleaved round(s), window {ctx.config.window_s} s per point, provider {ctx.config.provider}")


def choose(variants: list[VariantResult], min_speedup: float = 1.05) -> dict[str, Any]:
    """The fastest variant that passes every gate and beats fp32 by ``min_speedup``; fp32 otherwise.

    A lowered variant carries risk fp32 does not; a gain within measurement noise
    (a few percent on a shared machine) does not pay for it.
    """
    base = next(v for v in variants if v.baseline)
    passing = [v for v in variants if not v.baseline and v.built and v.passed]
    if not passing:
        return {"name": base.name, "reason": "no lowered variant passed every fidelity gate; fp32 stays",
                "passed_any": False}
    faster = [v for v in passing if (v.speedup or 0) >= min_speedup]
    if not faster:
        names = ", ".join(f"{v.name} ({v.speedup:.2f}x)" for v in passing if v.speedup is not None)
        return {"name": base.name, "passed_any": True,
                "reason": f"variants passed but none is at least {min_speedup:.2f}x fp32: {names}"}
    best = max(faster, key=lambda v: v.speedup)
    return {"name": best.name, "passed_any": True,
            "reason": f"fastest variant passing every gate: {best.speedup:.2f}x fp32 at batch {best.optimal_batch}"}


def select_and_cost(variants: list[VariantResult], config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    selected = choose(variants, config.min_speedup)
    cost = _costs(variants, config, selected["name"])
    return selected, cost


def _costs(variants: list[VariantResult], config: Any, selected: str) -> dict[str, Any]:
    """$ per million and instances needed for every variant at its optimal batch."""
    from costeff.cost import estimate, load_catalog
    from costeff.hardware import detect

    hw = detect()
    gpu = hw.gpus[0].name if hw.gpus and config.provider != "cpu" else None
    instance = load_catalog().for_hardware(gpu)
    for v in variants:
        if v.optimal_throughput_per_s:
            v.cost = to_jsonable(estimate(instance, v.optimal_throughput_per_s, config.target_rate))
    before = next(v for v in variants if v.baseline).cost
    after = next(v for v in variants if v.name == selected).cost
    return {"instance": instance.name, "target_rate_per_s": config.target_rate, "selected": selected,
            "before": before, "after": after}
