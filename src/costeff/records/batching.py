"""A batching report (`costeff batching optimize`): the searched settings, the simulated latencies, the choice."""

from __future__ import annotations

from costeff.records import Part, Record


class Predicted(Part):
    """What the simulator predicts for one batcher setting at the target rate."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    queue_mean_ms: float | None = None
    mean_batch_size: float | None = None
    utilisation: list[float] = []
    utilisation_mean: float | None = None
    throughput_per_s: float | None = None
    rejected: int | None = None
    requests: int | None = None
    batch_histogram: dict[str, int] = {}
    extrapolated_service_time: bool | None = None
    usd_per_hour: float | None = None
    usd_per_million: float | None = None


class Candidate(Part):
    """One batcher setting (Triton's ``dynamic_batching`` and instance count) and its prediction."""

    max_batch_size: int
    preferred_batch_size: list[int] = []
    max_queue_delay_us: float = 0.0
    instances: int = 1
    policy: str | None = None
    meets_slo: bool | None = None
    predicted: Predicted = Predicted()


class Target(Part):
    """The load the settings were chosen for."""

    rate_per_s: float | None = None
    p99_ms: float | None = None
    policy: str | None = None
    arrivals: str | None = None
    requests: int | None = None
    rows_per_request: int | None = None


class Instance(Part):
    """The priced instance one replica runs on."""

    name: str | None = None
    kind: str | None = None
    usd_per_instance_hour: float | None = None
    price_source: str | None = None


class ServiceTimes(Part):
    """The service times the simulator ran on (from the profile or a server's statistics)."""

    batch_sizes: list[int] = []
    mean_ms: list[float] = []
    lognormal_sigma: float | None = None
    extrapolated_above: int | None = None
    per_request_ms: float | None = None
    source: str | None = None


class Binding(Part):
    """Which constraint kept every setting above the SLO (only when none met it)."""

    constraint: str | None = None
    detail: str | None = None
    best_p99_ms: float | None = None
    service_floor_p99_ms: float | None = None
    capacity_rows_per_s: float | None = None


class ProfileRef(Part):
    """The profile the service times came from."""

    path: str | None = None
    model_sha256: str | None = None
    provider: str | None = None


class BatchingRecord(Record):
    """The fields readers use; every other field is kept as written."""

    profile: ProfileRef = ProfileRef()
    target: Target = Target()
    instance: Instance = Instance()
    service_times: ServiceTimes = ServiceTimes()
    feasible: bool | None = None
    chosen: Candidate | None = None  # None when no setting meets the SLO
    best_achievable: Candidate | None = None
    binding: Binding | None = None
    top: list[Candidate] = []
    evaluated: list[Candidate] = []
    notes: list[str] = []
    plots: list[str] = []
