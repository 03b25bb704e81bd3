"""A verify report (the `verify` stage): the batcher's predictions beside real Triton's measurements."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class Settings(Part):
    """The batcher settings the prediction is for (the batching report's choice)."""

    max_batch_size: int | None = None
    preferred_batch_size: list[int] = []
    max_queue_delay_us: float | None = None
    instances: int | None = None


class Predicted(Part):
    """The batching simulator's prediction at the target rate."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    utilisation_mean: float | None = None
    settings: Settings | None = None


class ServerTimes(Part):
    """Milliseconds per request inside Triton, from its own statistics."""

    queue: float | None = None
    compute_input: float | None = None
    compute_infer: float | None = None
    compute_output: float | None = None


class Measured(Part):
    """What the real Triton server did at the target rate."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    requests: int | None = None
    achieved_rate_per_s: float | None = None
    late_sends: int | None = None
    errors: int | None = None
    stable: bool | None = None
    server_ms_per_request: ServerTimes = ServerTimes()
    executions: int | None = None
    inferences: int | None = None


class Ratios(Part):
    """measured / predicted; None where either side is missing."""

    p50: float | None = None
    p99: float | None = None
    mean_batch: float | None = None


class VerifyRecord(Record):
    """The fields readers use; every other field is kept as written."""

    model_name: str | None = None
    repository: str | None = None
    rate_per_s: float | None = None
    predicted: Predicted | None = None
    measured: Measured | None = None
    server: dict[str, Any] = {}
    skipped: str | None = None  # why nothing was measured (Triton could not start here)
    load_average: list[float] = []
    provenance: dict[str, Any] = {}
    ratios: Ratios = Ratios()
