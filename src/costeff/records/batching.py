"""A batching report (`costeff batching optimize`): the searched settings, the simulated latencies, the choice."""

from __future__ import annotations

from costeff.records import Part, Record


class Predicted(Part):
    """The simulator's figures for one batcher setting."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None


class Candidate(Part):
    """One batcher setting and what the simulator predicts for it."""

    max_batch_size: int
    preferred_batch_size: list[int] = []
    max_queue_delay_us: float = 0.0
    instances: int = 1
    predicted: Predicted = Predicted()


class Binding(Part):
    """Why no setting met the SLO."""

    constraint: str | None = None
    detail: str | None = None


class BatchingRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    chosen: Candidate | None = None  # None when no setting meets the SLO
    binding: Binding | None = None
