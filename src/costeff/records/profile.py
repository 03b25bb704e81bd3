"""A profile (`costeff profile`): per-batch-size throughput, latency and utilisation, and its cost."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class Optimal(Part):
    """The chosen point (``costeff.profiling.analysis.select_optimal``)."""

    batch_size: int | None = None
    throughput_per_s: float | None = None
    latency_p99_ms: float | None = None


class Cost(Part):
    """The price of serving at the optimal point on the matched catalog instance."""

    instance: str | None = None
    usd_per_million: float | None = None
    target_rate_per_s: float | None = None
    instances_needed: int | None = None
    usd_per_day: float | None = None


class Latency(Part):
    """Per-request latency of one point, in milliseconds."""

    p99: float | None = None


class Window(Part):
    """One measurement window of a point."""

    throughput_per_s: float | None = None


class Point(Part):
    """One measured batch size at one client concurrency."""

    batch_size: int
    throughput_per_s: float | None = None
    latency_ms: Latency | None = None
    stable: bool | None = None
    windows: list[Window] = []


class ProfileRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    provider: str | None = None
    # Where the batches came from: {"source", "tensors", "runtime"} (not record hashes).
    inputs: dict[str, Any] = {}
    points: list[Point] = []
    optimal: Optimal | None = None
    cost: Cost | None = None
