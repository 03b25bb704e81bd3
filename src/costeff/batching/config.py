"""Batcher and optimizer configurations: frozen, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from costeff.batching.arrivals import MAX_REQUESTS
from costeff.errors import InputError

POLICIES = ("triton", "mlserver")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: must be an integer >= 1, got {value!r}")


def _non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"{name}: must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class BatcherConfig:
    """One batcher setting, in the units of Triton's ``config.pbtxt``.

    ``policy="triton"``: ``max_batch_size`` and ``preferred_batch_sizes`` count rows
    (the batch dimension), ``max_queue_delay_us`` is ``max_queue_delay_microseconds``
    and ``default_timeout_us`` / ``max_queue_size`` are the default queue policy
    (timeout action REJECT; 0 disables each). An empty preferred list behaves like
    Triton's normalised config: the preferred size is ``max_batch_size``.

    ``policy="mlserver"``: adaptive batching, ``max_batch_size`` counts requests and
    ``max_queue_delay_us`` is ``max_batch_time``; preferred sizes and the queue policy
    do not exist there and must be left empty / 0.
    """

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: float = 0.0
    instances: int = 1
    policy: str = "triton"
    default_timeout_us: float = 0.0
    max_queue_size: int = 0

    def __post_init__(self) -> None:
        _positive_int("max_batch_size", self.max_batch_size)
        _positive_int("instances", self.instances)
        _non_negative("max_queue_delay_us", self.max_queue_delay_us)
        _non_negative("default_timeout_us", self.default_timeout_us)
        if isinstance(self.max_queue_size, bool) or not isinstance(self.max_queue_size, int) \
                or self.max_queue_size < 0:
            raise InputError(f"max_queue_size: must be an integer >= 0, got {self.max_queue_size!r}")
        if self.policy not in POLICIES:
            raise InputError(f"policy: {self.policy!r} is not one of {', '.join(POLICIES)}")
        prefs = tuple(sorted(set(self.preferred_batch_sizes)))
        for p in prefs:
            _positive_int("preferred_batch_sizes", p)
            if p > self.max_batch_size:
                raise InputError(f"preferred_batch_sizes: {p} exceeds max_batch_size {self.max_batch_size}")
        object.__setattr__(self, "preferred_batch_sizes", prefs)
        if self.policy == "mlserver" and (prefs or self.default_timeout_us or self.max_queue_size):
            raise InputError("policy mlserver: preferred_batch_sizes, default_timeout_us and max_queue_size "
                             "do not exist in MLServer's adaptive batching; leave them empty / 0")

    @property
    def effective_preferred(self) -> tuple[int, ...]:
        """The preferred sizes Triton acts on (empty means ``max_batch_size``)."""
        return self.preferred_batch_sizes or (self.max_batch_size,)

    def label(self) -> str:
        prefs = ",".join(map(str, self.preferred_batch_sizes)) or "-"
        return (f"{self.policy} mbs={self.max_batch_size} pref={prefs} "
                f"delay={self.max_queue_delay_us:g}us x{self.instances}")


@dataclass(frozen=True)
class OptimizeConfig:
    """What ``optimize`` searches and the SLO it must meet.

    Empty search lists mean "derive from the profile": max batch sizes are the
    measured batch sizes (the simulator never trusts extrapolated service times
    for a recommendation), delays a fixed ladder below the SLO.
    """

    rate_per_s: float | None
    p99_ms: float
    requests: int = 20_000
    policy: str = "triton"
    instance: str | None = None
    max_instances: int = 8
    seed: int = 0
    trace: Path | None = None
    rows_per_request: int = 1
    jitter: bool = True
    max_batch_sizes: tuple[int, ...] = ()
    queue_delays_us: tuple[float, ...] = ()
    top: int = 10
    verify_factor: int = 4
    catalog: Path | None = None
    server_costs: Path | None = None  # server_costs.json: service times from the server's own statistics

    def __post_init__(self) -> None:
        if self.rate_per_s is None and self.trace is None:
            raise InputError("rate_per_s: required unless a trace is replayed")
        for name in ("rate_per_s", "p99_ms"):
            value = getattr(self, name)
            if name == "rate_per_s" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise InputError(f"{name}: must be a number > 0, got {value!r}")
        for name in ("requests", "max_instances", "rows_per_request", "top", "verify_factor"):
            _positive_int(name, getattr(self, name))
        if self.requests < 1000:
            raise InputError(f"requests: at least 1000 are needed for a p99, got {self.requests}")
        if self.requests * self.verify_factor > MAX_REQUESTS:
            raise InputError(f"--requests: {self.requests} is too many; expected at most "
                             f"{MAX_REQUESTS // self.verify_factor:,} (finalists are re-checked on "
                             f"{self.verify_factor}x as many, at most {MAX_REQUESTS:,})")
        if self.policy not in POLICIES:
            raise InputError(f"policy: {self.policy!r} is not one of {', '.join(POLICIES)}")
        for b in self.max_batch_sizes:
            _positive_int("max_batch_sizes", b)
        for d in self.queue_delays_us:
            _non_negative("queue_delays_us", d)
