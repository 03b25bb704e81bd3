"""A batching report (`costeff batching optimize`): the searched settings, the simulated latencies, the choice."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class Predicted(Part):
    """The simulator's figures for one batcher configuration."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None


class Chosen(Part):
    max_batch_size: int
    preferred_batch_size: list[int] = []
    max_queue_delay_us: float
    instances: int
    predicted: Predicted = Predicted()


class BatchingRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    chosen: Chosen | None = None
    binding: dict[str, Any] | None = None  # why no configuration met the SLO
