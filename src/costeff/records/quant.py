"""A quantization report (`costeff quantize`): the variants, their fidelity and speed, and the selection."""

from __future__ import annotations

from costeff.records import Part, Record


class FidelityPart(Part):
    """A variant's fidelity against fp32 on the held-out rows."""

    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None


class GateRow(Part):
    name: str
    verdict: str | None = None


class ToleranceSet(Part):
    action_drift_pct: float | None = None


class CostEstimatePart(Part):
    """``costeff.cost.CostEstimate``: one variant's price at its optimal batch."""

    instance: str | None = None
    usd_per_million: float | None = None
    target_rate_per_s: float | None = None
    instances_needed: int | None = None
    usd_per_day: float | None = None


class AtTarget(Part):
    """Instances and $/day at the target rate: what selection compares."""

    instances: int | None = None
    usd_per_day: float | None = None


class VariantRow(Part):
    name: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    not_tried: str | None = None
    sha256: str | None = None
    error: str | None = None
    baseline: bool = False
    size_reduction_pct: float | None = None
    fidelity: FidelityPart | None = None
    gates: list[GateRow] = []
    passed: bool = False
    throughput_per_s: dict[int, float] = {}
    throughput_range_per_s: dict[int, tuple[float, float]] = {}
    optimal_batch: int | None = None
    optimal_throughput_per_s: float | None = None
    speedup: float | None = None  # own optimal batch vs fp32 at its optimal batch
    cost: CostEstimatePart | None = None
    at_target: AtTarget | None = None


class Traffic(Part):
    target_rate_per_s: float | None = None
    latency_budget_ms: float | None = None


class Selected(Part):
    """The variant to serve and why."""

    name: str
    reason: str = ""
    traffic: Traffic = Traffic()
    sha256: str | None = None


class QuantConfigPart(Part):
    tolerances: ToleranceSet = ToleranceSet()


class Split(Part):
    evaluation_rows: int | None = None


class CostSummary(Part):
    instance: str | None = None
    target_rate_per_s: float | None = None
    before: CostEstimatePart | None = None
    after: CostEstimatePart | None = None


class QuantRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    config: QuantConfigPart = QuantConfigPart()
    split: Split = Split()
    variants: list[VariantRow] = []
    selected: Selected | None = None
    cost: CostSummary = CostSummary()
