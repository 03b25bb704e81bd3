"""A quantization report (`costeff quantize`): the variants, their fidelity and speed, and the selection.

Typed from what ``costeff.quantization.engine`` writes (``QuantizationReport`` and its
``VariantResult`` rows). Every figure a run may not have measured (a variant not timed, no
target rate, an older record) defaults to None or empty, never to zero.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from costeff.records import Part, Record
from costeff.records.fidelity import BatchFidelityPart, BatchInvariancePart, Fidelity, GateRow, ToleranceSet


class TrialRow(Part):
    """One fallback attempt: the nodes kept in higher precision and what it gave."""

    trial: int | None = None
    excluded_nodes: list[str] = []
    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None
    passed: bool = False
    failed_gates: list[str] = []


class StructureStep(Part):
    fraction: float | None = None
    sizes: list[int] = []
    params: int | None = None
    passed: bool = False
    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None
    failed_gates: list[str] = []
    seconds: float | None = None


class Structure(Part):
    """A structural probe (prune / lowrank): the sizes tried on calibration rows."""

    kind: str | None = None
    original_sizes: list[int] = []
    original_params: int | None = None
    steps: list[StructureStep] = []
    seconds: float | None = None
    chosen: StructureStep | None = None
    stopped: str = ""


class CostEstimatePart(Part):
    """``costeff.cost.CostEstimate``: one variant's price at its optimal batch."""

    instance: str | None = None
    usd_per_hour: float | None = None
    throughput_per_s: float | None = None
    usd_per_million: float | None = None
    target_rate_per_s: float | None = None
    max_utilisation: float | None = None
    instances_needed: int | None = None
    usd_per_day: float | None = None
    usd_per_month: float | None = None
    price_source: str | None = None


class GapLatency(Part):
    """Single calls after an idle gap (0: back to back)."""

    gap_ms: float
    calls: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


class OpenLoopPart(Part):
    """Poisson arrivals at the target rate, greedily batched up to the optimal batch."""

    rate_per_s: float | None = None
    max_batch: int | None = None
    requests: int | None = None
    duration_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None
    achieved_per_s: float | None = None
    saturated: bool | None = None
    instances: int | None = None
    target_rate_per_s: float | None = None
    saturated_runs: int | None = None
    runs: int | None = None


class AtTarget(Part):
    """What selection compares at the target rate: instances, dollars per day, the budget verdict."""

    instances: int  # always written together: a variant timed at the target rate has both
    usd_per_day: float
    instances_worst: int | None = None
    meets_budget: bool | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    over_budget_runs: int | None = None
    open_loop_runs: int | None = None


class PairedRound(Part):
    """One round against fp32 of the same round; clean when neither was disturbed."""

    round: int | None = None
    speedup: float | None = None
    answer_time_ratio: float | None = None
    clean: bool = False


class NoiseVerdict(Part):
    clean_rounds: int = 0
    capacity: bool = False
    answer_time: bool = False
    capacity_needed: float | None = None
    answer_time_ratio_needed: float | None = None


class Variant(Part):
    """One variant (``costeff.quantization.records.VariantResult``)."""

    name: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    runtime: dict[str, Any] = {}
    not_tried: str | None = None
    path: str | None = None
    sha256: str | None = None
    built: bool = True  # records older than the field listed built variants only
    error: str | None = None
    baseline: bool = False
    recipe: str | None = None
    session_config: dict[str, str] = {}
    derived_from: str | None = None
    excluded_nodes: list[str] = []
    fp32_op_types: list[str] = []
    notes: list[str] = []
    size_bytes: int | None = None
    size_reduction_pct: float | None = None
    fidelity: Fidelity | None = None  # at the largest served batch, every held-out row
    gates: list[GateRow] = []
    passed: bool = False
    fidelity_by_batch: dict[str, BatchFidelityPart] = {}  # "1", "<largest served>"
    batch_invariance: BatchInvariancePart | None = None
    trials: list[TrialRow] = []
    structure: Structure | None = None
    settings_of: str | None = None
    settings: dict[str, Any] = {}
    throughput_per_s: dict[int, float] = {}
    throughput_range_per_s: dict[int, tuple[float, float]] = {}
    latency_p99_ms: dict[int, float] = {}
    optimal_batch: int | None = None
    optimal_throughput_per_s: float | None = None
    throughput_at_baseline_batch_per_s: float | None = None
    speedup: float | None = None  # own optimal batch vs fp32 at its optimal batch
    speedup_at_baseline_batch: float | None = None
    cost: CostEstimatePart | None = None
    latency_by_gap: list[GapLatency] = []
    open_loop: OpenLoopPart | None = None
    open_loop_p50_range_ms: tuple[float, float] | None = None
    at_target: AtTarget | None = None
    paired_rounds: list[PairedRound] = []
    noise_verdict: NoiseVerdict | None = None
    over_budget_runs: tuple[int, int] | None = None
    speed_measurements: dict[str, int] | None = None

    def worst(self, metric: str) -> float | None:
        """``metric`` (a fidelity field) at the batch size where it is worst, else at the largest batch.

        Triton forms batches of every size up to the largest, so served decisions are only as good
        as the worst of those judged."""
        values = [x for x in (getattr(b.fidelity, metric, None) for b in self.fidelity_by_batch.values())
                  if isinstance(x, (int, float))]
        if values:
            return float(max(values))
        x = getattr(self.fidelity, metric, None) if self.fidelity else None
        return float(x) if isinstance(x, (int, float)) else None


class KnobRow(Part):
    """A runtime setting of the selected variant, measured at the target."""

    setting: str
    optimal_batch: int | None = None
    throughput_per_s: float | None = None
    p50_ms_at_target: float | None = None
    p99_ms_at_target: float | None = None
    instances: int | None = None
    meets_budget: bool | None = None
    beats_default: bool | None = None
    adopted: bool = False


class Traffic(Part):
    target_rate_per_s: float | None = None
    latency_budget_ms: float | None = None


class Selected(Part):
    """The variant to serve and why (``costeff.quantization.select.choose``); no name: none was recorded."""

    name: str | None = None
    reason: str = ""
    passed_any: bool | None = None
    load: str | None = None  # "light" or "batched" traffic, with a target rate
    budget_met: bool | None = None
    knobs: list[KnobRow] = []
    backend: str = "onnxruntime"
    precision: str | None = None
    runtime: dict[str, Any] = {}
    traffic: Traffic = Traffic()
    path: str | None = None
    sha256: str | None = None
    speedup: float | None = None  # the selected variant's, vs fp32 (older records: taken from its row)


class QuantConfigPart(Part):
    """The resolved ``QuantizeConfig`` the run used (every field is kept; these are the ones read)."""

    tolerances: ToleranceSet = ToleranceSet()
    provider: str | None = None
    batch_sizes: list[int] = []
    backends: list[str] = []
    target_rate: float | None = None
    latency_budget_ms: float | None = None
    min_speedup: float | None = None
    max_utilisation: float | None = None
    speed_rounds: int | None = None
    seed: int | None = None
    name: str | None = None


class Split(Part):
    calibration_rows: int | None = None
    evaluation_rows: int | None = None
    seed: int | None = None
    observations_rows: int | None = None
    observations_sha256: str | None = None


class RecipeEvidence(Part):
    recipe: str
    session_config: dict[str, str] = {}
    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    kl_mean: float | None = None
    error: str | None = None
    note: str | None = None


class RecipeInfo(Part):
    name: str | None = None
    reason: str | None = None
    evidence: list[RecipeEvidence] = []
    settings: dict[str, Any] = {}


class CostSummary(Part):
    """Before (fp32) and after (the selected variant), at the target rate."""

    instance: str | None = None
    instance_price: dict[str, Any] = {}
    target_rate_per_s: float | None = None
    selected: str | None = None
    before: CostEstimatePart | None = None
    after: CostEstimatePart | None = None


class NoiseFloor(Part):
    """fp32 against itself (A/A): what a winner must beat, per round."""

    method: str = ""
    capacity_ratios: list[float] = []
    answer_time_ratios: list[float] = []
    capacity: float | None = None
    answer_time: float | None = None
    rounds_used: int | None = None
    rounds_disturbed: int | None = None
    only_disturbed: bool | None = None


class LoadBlock(Part):
    """The machine's load while one measurement ran."""

    wall_s: float | None = None
    cores: float | None = None
    own_cpu_s: float | None = None
    other_cpu_s: float | None = None
    steal_s: float | None = None
    other_share: float | None = None
    steal_share: float | None = None
    loadavg_1m: float | None = None
    disturbed: bool = False


class Measurement(Part):
    optimal_throughput_per_s: float | None = None
    answer_ms: float | None = None
    open_loop_over_budget: bool | None = None
    load: LoadBlock | None = None


class SpeedRound(Part):
    """Every measurement of one interleaved round, with its load block."""

    round: int | None = None
    kind: str = "full"  # "screen": a short first round that only decides who is timed fully
    order: list[str] = []
    repeats: int = 0
    discarded: dict[str, Any] = {}
    disturbed: list[str] = []
    measurements: dict[str, Measurement] = {}
    decisive: bool = False  # a first full round that decided alone: no second round was taken


class CacheInfo(Part):
    root: str | None = None
    key: str | None = None
    reused: bool = False
    reason: str | None = None
    variants_reused: int | None = None
    stored: bool | None = None


class QuantRecord(Record):
    """The fields readers use; every other field is kept as written."""

    model_path: str | None = None
    model_name: str | None = None
    config: QuantConfigPart = QuantConfigPart()
    split: Split = Split()
    recipe: RecipeInfo = RecipeInfo()
    preprocessing: str | None = None
    variants: list[Variant] = []
    selected: Selected = Selected()
    passed_any: bool | None = None
    cost: CostSummary = CostSummary()
    speed_method: str | None = None
    report_dir: str | None = None
    noise_floor: NoiseFloor | None = None
    speed_rounds: list[SpeedRound] = []
    cache: CacheInfo | None = None

    @model_validator(mode="after")
    def _selected_speedup(self) -> "QuantRecord":
        """Records older than ``selected.speedup`` carry it on the selected variant only: take it from there."""
        sel = self.selected
        row = self.selected_variant if sel.speedup is None else None
        if row is not None and row.speedup is not None:
            sel.speedup = row.speedup
        return self

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def selected_variant(self) -> Variant | None:
        """The row of the variant it selected (its fidelity, speed and cost)."""
        return self.variant(self.selected.name) if self.selected.name is not None else None

    @property
    def baseline(self) -> Variant | None:
        return next((v for v in self.variants if v.baseline), None)
