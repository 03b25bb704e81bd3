"""Inference profiling: perf_analyzer-style measurement, optimal batch, cost.

Public API::

    from costeff.profiling import profile, ProfileConfig, ProfileReport
    report = profile("policy.onnx", ProfileConfig(batch_sizes=(1, 8, 64), latency_budget_ms=5.0,
                     target_rate=2000, provider="cpu"), observations=obs)
    report.optimal.batch_size, report.point(8).latency_ms.p99, report.cost["usd_per_million"]
    report.write(out_dir)   # gpu_profile.json, gpu_profile.md, throughput_vs_batch.png, p99_vs_batch.png

The measurement core (``measure``, ``MeasureConfig``, ``Point``) is generic over an
``infer()`` callable, so remote profiling applies the same warm-up, window and
stability rules; ``assemble_report`` turns its points into a ``ProfileReport``.
See ``costeff.profiling.measure`` for the rules.
"""

from costeff.profiling.analysis import Optimal, Recommendation, select_optimal
from costeff.profiling.config import DEFAULT_BATCH_SIZES, ProfileConfig
from costeff.profiling.engine import assemble_report, build_feed, check_observations, profile
from costeff.profiling.measure import Latency, MeasureConfig, Point, Window, is_stable, latency_stats, measure
from costeff.profiling.report import JSON_NAME, MD_NAME, PLOTS, ProfileReport
from costeff.profiling.resources import GpuStats, ResourceSampler, ResourceStats

__all__ = ["profile", "ProfileConfig", "ProfileReport", "DEFAULT_BATCH_SIZES", "assemble_report", "build_feed",
           "check_observations", "measure", "MeasureConfig", "Point", "Window", "Latency", "is_stable",
           "latency_stats", "select_optimal", "Optimal", "Recommendation", "ResourceSampler", "ResourceStats",
           "GpuStats", "JSON_NAME", "MD_NAME", "PLOTS"]
