"""A profile (`costeff profile`): per-batch-size throughput, latency and utilisation, and its cost."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AliasPath, BeforeValidator, Field

from costeff.records import Part, Record


def _finite(value: Any) -> float | None:
    """A finite JSON number (NaN, infinities, strings and booleans are refused), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _finite_non_negative(value: Any) -> float | None:
    number = _finite(value)
    if number is not None and number < 0:
        raise ValueError("expected a finite number >= 0")
    return number


def _object(value: Any) -> Any:
    return {} if value is None else value


# A number a profile measured: finite or absent (a record never holds NaN or an infinity).
Finite = Annotated[float | None, BeforeValidator(_finite)]
Rate = Annotated[float | None, BeforeValidator(_finite_non_negative)]


class Latency(Part):
    """Per-request latency of one point, in milliseconds."""

    mean: Finite = None
    p50: Finite = None
    p90: Finite = None
    p95: Finite = None
    p99: Finite = None


class GpuUse(Part):
    """NVML's view of the GPU during one point."""

    index: int | None = None
    name: str | None = None
    sm_util_pct: Finite = None
    memory_used_mb: Finite = None
    memory_total_mb: Finite = None
    power_w: Finite = None


class Window(Part):
    """One measurement window of a point (read by pack/report: its spread beside the interleaved rounds')."""

    throughput_per_s: Rate = None


class Point(Part):
    """One measured batch size at one client concurrency."""

    batch_size: int = Field(strict=True, ge=1)
    concurrency: int = 1  # absent: a plain sequential measurement
    throughput_per_s: Rate = None
    requests_per_s: Rate = None
    latency_ms: Latency | None = None
    stable: bool | None = None
    trials: int | None = None
    requests: int | None = None
    request_rate: Rate = None
    cpu_util_pct: Finite = None
    rss_peak_mb: Finite = None
    gpu: GpuUse | None = None
    gpu_null_reason: str | None = None
    extra: dict[str, Any] = {}

    # read by pack/report
    windows: list[Window] = []


class Optimal(Part):
    """The chosen point (``costeff.profiling.analysis.select_optimal``)."""

    batch_size: int | None = None
    concurrency: int | None = None
    throughput_per_s: Rate = None
    latency_p99_ms: Finite = None
    stable: bool | None = None
    within_budget: bool | None = None
    latency_budget_ms: Finite = None
    reason: str | None = None


class Cost(Part):
    """The price of serving at the optimal point on the matched catalog instance."""

    instance: str | None = None
    usd_per_hour: Finite = None
    throughput_per_s: Rate = None
    usd_per_million: Finite = None
    target_rate_per_s: Finite = None
    max_utilisation: Finite = None
    instances_needed: int | None = None
    usd_per_day: Finite = None
    usd_per_month: Finite = None
    price_source: str | None = None


class RightSizing(Part):
    """One row of the right-sizing table: a profile priced on its instance."""

    profile: str
    instance: str
    throughput_per_s: Rate = None
    usd_per_hour: Finite = None
    usd_per_million: Finite = None
    instances_needed: int | None = None
    usd_per_day: Finite = None
    batch_size: int | None = None


class GapLatency(Part):
    """Batch-1 latency after an idle gap (``gap_ms`` 0: back to back)."""

    gap_ms: Finite = None
    calls: int | None = None
    p50_ms: Finite = None
    p99_ms: Finite = None


class Settings(Part):
    """The sweep's settings (``costeff.profiling.ProfileConfig``) as far as readers use them."""

    batch_sizes: list[int] = []
    latency_budget_ms: Finite = None
    target_rate: Finite = None


class GpuInfo(Part):
    name: str | None = None
    memory_total_mb: Finite = None


class Hardware(Part):
    """The host a record was made on (``costeff.hardware.Hardware``)."""

    cpu_model: str | None = None
    cpu_count: int | None = None
    isa: list[str] = []
    memory_total_gb: Finite = None
    gpus: list[GpuInfo] = []


class Runtime(Part):
    """The runtime's settings for the sweep (``inputs.runtime``)."""

    backend: str | None = None
    threads: int | None = None


class ProfileRecord(Record):
    """The fields readers use; every other field is kept as written."""

    model_path: str | None = None
    provider: str | None = None  # the execution provider that ran, or "remote:<protocol>"
    config: Settings = Settings()
    # Where the batches came from: {"source", "tensors", "runtime"} (not record hashes).
    inputs: dict[str, Any] = {}
    points: list[Point] = []
    optimal: Optimal | None = None
    cost: Cost | None = None
    right_sizing: list[RightSizing] = []
    duration_s: Finite = None
    target: dict[str, Any] = {}
    latency_by_gap: list[GapLatency] = []

    # Typed views of blocks the header declares loosely; read from the same keys, never written twice.
    host: Annotated[Hardware, BeforeValidator(_object)] = Field(
        default_factory=Hardware, validation_alias="hardware", exclude=True)
    runtime: Annotated[Runtime, BeforeValidator(_object)] = Field(
        default_factory=Runtime, validation_alias=AliasPath("inputs", "runtime"), exclude=True)

    @property
    def on_gpu(self) -> bool:
        """Whether the points ran on a GPU execution provider (CUDA or TensorRT)."""
        return str(self.provider or "").lower().startswith(("cuda", "tensorrt"))
