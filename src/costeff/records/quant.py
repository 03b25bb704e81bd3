"""A quantization report (`costeff quantize`): the variants, their fidelity and speed, and the selection."""

from __future__ import annotations

from costeff.records import Part, Record


class Fidelity(Part):
    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None


class Gate(Part):
    name: str
    verdict: str | None = None


class Cost(Part):
    """What serving at the measured throughput costs on one instance type (``costeff.cost.estimate``)."""

    instance: str | None = None
    usd_per_million: float | None = None
    usd_per_day: float | None = None
    instances_needed: int | None = None
    target_rate_per_s: float | None = None


class AtTarget(Part):
    """Instances and $/day at the target rate: what selection compares."""

    instances: int
    usd_per_day: float


class Variant(Part):
    name: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    sha256: str | None = None
    baseline: bool = False
    passed: bool = False
    not_tried: str | None = None
    error: str | None = None
    fidelity: Fidelity | None = None
    gates: list[Gate] = []
    size_reduction_pct: float | None = None
    speedup: float | None = None
    optimal_batch: int | None = None
    optimal_throughput_per_s: float | None = None
    throughput_per_s: dict[int, float] = {}
    throughput_range_per_s: dict[int, tuple[float, float]] = {}
    cost: Cost | None = None
    at_target: AtTarget | None = None


class Traffic(Part):
    target_rate_per_s: float | None = None
    latency_budget_ms: float | None = None


class Selected(Part):
    name: str | None = None
    reason: str = ""
    sha256: str | None = None
    traffic: Traffic = Traffic()


class Split(Part):
    evaluation_rows: int | None = None


class Tolerances(Part):
    action_drift_pct: float | None = None


class QuantConfig(Part):
    tolerances: Tolerances = Tolerances()


class QuantCost(Part):
    instance: str | None = None
    target_rate_per_s: float | None = None
    before: Cost | None = None
    after: Cost | None = None


class QuantRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    variants: list[Variant] = []
    selected: Selected = Selected()
    config: QuantConfig = QuantConfig()
    split: Split = Split()
    cost: QuantCost = QuantCost()

