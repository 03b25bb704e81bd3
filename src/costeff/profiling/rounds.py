"""A profile assembled from measurements already taken, not measured a second time.

``costeff run`` times fp32 and the finalists in interleaved rounds, each in a
process of its own (:mod:`costeff.quantization.speed`). Every worker measures
each batch size by the profiler's own rules (:func:`costeff.profiling.measure.measure`),
so the profiles of fp32 and of the served variant are those rounds, not a third
measurement that could disagree with the speedup the selection was made on:

* each number of a point (throughput, every latency percentile, CPU) is its
  median over the rounds, as the selection's speeds are;
* windows, requests and trials are pooled; a point is stable when at least half
  of its measurements settled (its median is then a settled number); the GPU
  block, which has no median, is the median measurement's;
* latency after idle gaps is the median over rounds per gap.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from pathlib import Path
from typing import Any, Callable

from costeff.profiling.config import ProfileConfig
from costeff.profiling.measure import Latency, Point, Window
from costeff.profiling.report import ProfileReport
from costeff.profiling.resources import GpuStats


def from_rounds(model_path: Path | str, results: list[dict[str, Any]], config: ProfileConfig,
                source: str) -> ProfileReport:
    """The profile of ``model_path`` from worker ``results`` (one per measurement, see
    :mod:`costeff.runtimes.worker`), described by ``config`` (the rounds' own rules); ``source``: where the
    rows came from, in words."""
    from costeff.modelio import read_signature
    from costeff.profiling.engine import assemble_report
    from costeff.profiling.resources import GPU_PROVIDERS, gpu_unused_reason

    if not results:
        raise ValueError("from_rounds: no measurements to assemble a profile from")
    provider = results[0]["provider"]
    reason = None if provider in GPU_PROVIDERS else gpu_unused_reason(provider)
    by_batch = [{int(b): m for b, m in r["closed_loop"].items()} for r in results]
    points = [_median([_point(r[b]["point"], reason) for r in by_batch if b in r])
              for b in sorted({b for r in by_batch for b in r})]
    sig = read_signature(model_path)
    inputs = {"source": f"{source}; the median of {len(results)} measurement(s) in interleaved rounds, each in a "
                        "process of its own (the rounds the variant was selected on, not measured again)",
              "tensors": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in sig.inputs],
              "runtime": results[0]["runtime"], "measurements": len(results)}
    report = assemble_report(points, config, model_path=model_path, provider=provider, inputs=inputs,
                             duration_s=sum(r.get("seconds", 0.0) for r in results))
    report.latency_by_gap = median_gaps(results)
    return report


def median_gaps(results: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Latency after each idle gap: the median over ``results`` per gap, calls summed."""
    out = []
    for i, first in enumerate(results[0]["gaps"]):
        rows = [r["gaps"][i] for r in results]
        out.append({"gap_ms": first["gap_ms"], "calls": sum(r["calls"] for r in rows),
                    "p50_ms": statistics.median(r["p50_ms"] for r in rows),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rows)})
        if all("mean_ms" in r for r in rows):  # a runner may report percentiles only
            out[-1]["mean_ms"] = statistics.median(r["mean_ms"] for r in rows)
    return out


def _point(data: dict[str, Any], gpu_null_reason: str | None) -> Point:
    fields = {**data, "latency_ms": Latency(**data["latency_ms"]),
              "windows": [Window(**w) for w in data["windows"]],
              "gpu": GpuStats(**data["gpu"]) if data.get("gpu") else None}
    if fields["gpu"] is None and not fields.get("gpu_null_reason"):
        fields["gpu_null_reason"] = gpu_null_reason
    return Point(**fields)


def _median(points: list[Point]) -> Point:
    def med(get: Callable[[Point], float | None]) -> Any:
        values = [v for v in map(get, points) if v is not None]
        return statistics.median(values) if values else None

    middle = sorted(points, key=lambda p: p.throughput_per_s)[(len(points) - 1) // 2]
    latency = Latency(*(med(functools.partial(_latency, key=k)) for k in ("mean", "p50", "p90", "p95", "p99")))
    peaks = [p.rss_peak_mb for p in points if p.rss_peak_mb is not None]
    return dataclasses.replace(
        middle, throughput_per_s=med(lambda p: p.throughput_per_s), requests_per_s=med(lambda p: p.requests_per_s),
        latency_ms=latency, stable=2 * sum(p.stable for p in points) >= len(points),
        trials=sum(p.trials for p in points), requests=sum(p.requests for p in points),
        windows=[w for p in points for w in p.windows],
        late_requests=sum(p.late_requests for p in points), cpu_util_pct=med(lambda p: p.cpu_util_pct),
        cpu_cores_busy=med(lambda p: p.cpu_cores_busy), rss_peak_mb=max(peaks) if peaks else None,
        extra={**middle.extra, "rounds": len(points)})


def _latency(point: Point, key: str) -> float:
    return getattr(point.latency_ms, key)
