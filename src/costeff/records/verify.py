"""A verify report (the `verify` stage): the batcher's predictions beside real Triton's measurements."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class Predicted(Part):
    """The batching simulator's prediction at the target rate."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None


class Measured(Part):
    """What the real server did at the target rate."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    errors: int | None = None


class Ratios(Part):
    """measured / predicted; None where either side is missing."""

    p50: float | None = None
    p99: float | None = None
    mean_batch: float | None = None


class VerifyRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    rate_per_s: float | None = None
    predicted: Predicted | None = None
    measured: Measured | None = None
    server: dict[str, Any] = {}
    skipped: str | None = None  # why nothing was measured (Triton could not start here)
    load_average: list[float] = []
    ratios: Ratios = Ratios()
