"""A verify report (the `verify` stage): the batcher's predictions beside real Triton's measurements."""

from __future__ import annotations

from costeff.records import Part, Record


class Figures(Part):
    """Latency and batching on the real server (measured) or in the simulator (predicted)."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    errors: int | None = None


class Server(Part):
    triton: str | None = None  # the server's version


class VerifyRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    skipped: str | None = None
    rate_per_s: float | None = None
    predicted: Figures | None = None
    measured: Figures | None = None
    ratios: dict[str, float | None] = {}
    server: Server = Server()
    load_average: list[float] = []
