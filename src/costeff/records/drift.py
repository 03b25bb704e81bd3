"""A drift report (`costeff drift check`): the served model against its reference on logged observations.

Typed from ``costeff.drift.check.DriftReport``: the overall fidelity and gates, and each time window's.
"""

from __future__ import annotations

from costeff.records import Part, Record
from costeff.records.fidelity import BatchInvariancePart, Fidelity, GateRow, ToleranceSet


class ModelRef(Part):
    """One of the two models compared: its file, kind and bytes."""

    path: str | None = None
    kind: str | None = None
    sha256: str | None = None
    precision: str | None = None
    logits: str | None = None
    value: str | None = None


class DriftWindowRow(Part):
    start: str | None = None
    end: str | None = None
    timed: bool = False  # False: one window per file (rows without timestamps)
    source: str = ""
    rows: int | None = None
    fidelity: Fidelity = Fidelity()
    gates: list[GateRow] = []
    passed: bool = False


class DriftRecord(Record):
    """The fields readers use; every other field is kept as written."""

    reference: ModelRef = ModelRef()
    served: ModelRef = ModelRef()
    observations: str | None = None
    files: list[str] = []
    rows: int | None = None
    window_s: float | None = None
    tolerances: ToleranceSet = ToleranceSet()
    windows: list[DriftWindowRow] = []
    overall: Fidelity = Fidelity()
    action_drift_pct: float | None = None
    entropy_drift_pct: float | None = None
    action_correlation: float | None = None
    gates: list[GateRow] = []
    windows_failed: int | None = None
    passed: bool = False
    compute_s: float | None = None
    rows_per_minute: float | None = None
    ledger: str | None = None
    ledger_rows: int = 0
    batch_invariance: BatchInvariancePart | None = None
