"""The blocks fidelity records share (quantization and drift): gates, fidelity figures, tolerances."""

from __future__ import annotations

from typing import Any

from costeff.records import Part


class GateRow(Part):
    """A gate as written: ``(name, observed, threshold, comparator, verdict)`` with its detail."""

    name: str
    observed: Any = None
    threshold: Any = None
    comparator: str = ""
    verdict: str = "NO-DATA"  # PASS, FAIL or NO-DATA (costeff.gates.Verdict)
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


class Fidelity(Part):
    """A variant against fp32 on the same rows (``costeff.quantization.fidelity.Fidelity``)."""

    rows: int | None = None
    action_agreement_pct: float | None = None
    action_drift_pct: float | None = None
    confident_rows: int | None = None
    confident_agreement_pct: float | None = None
    action_correlation: float | None = None
    entropy_mean_fp32: float | None = None
    entropy_mean_variant: float | None = None
    entropy_drift_pct: float | None = None
    kl_mean: float | None = None
    kl_p99: float | None = None
    value_max_abs_err: float | None = None


class BatchFidelityPart(Part):
    batch_size: int | None = None
    rows: int | None = None
    fidelity: Fidelity = Fidelity()
    gates: list[GateRow] = []
    passed: bool = False


class BatchInvariancePart(Part):
    action_change_pct: float | None = None
    max_logit_diff: float | None = None
    batch_sizes: list[int] = []
    rows: int | None = None
    changed_rows: int | None = None


class ToleranceSet(Part):
    """``costeff.quantization.fidelity.Tolerances`` as configured."""

    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None
    kl_p99: float | None = None
    value_max_abs_err: float | None = None
    batch_action_change_pct: float | None = None
