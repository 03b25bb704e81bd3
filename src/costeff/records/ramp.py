"""A ramp decision (`costeff ramp decide`): PROMOTE, HOLD or ROLLBACK, every gate, the economics, the projection.

Typed from ``costeff.ramp.decide.RampDecision`` and ``costeff.ramp.projection.Projection``. An
infinite cost ratio (gross PnL <= 0) is written as ``"inf"`` and reads back as ``float("inf")``.
"""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class StepMove(Part):
    """The influence step the decision moves from and to (percent of capital)."""

    from_pct: float | None = None  # None: the ledger does not say which step the policy is at
    to_pct: float | None = None
    from_index: int | None = None
    to_index: int | None = None
    steps_pct: list[float] = []


class LedgerWindow(Part):
    start: str | None = None
    end: str | None = None
    days: int | None = None
    covered_days: int | None = None
    missing_dates: list[str] = []


class RampGateRow(Part):
    name: str
    kind: str = ""  # data, cost, risk, promotion, quality, control
    observed: Any = None
    threshold: Any = None
    comparator: str = ""
    verdict: str = "NO-DATA"
    unit: str = ""
    detail: str = ""
    enforced: bool = True
    hard_breach: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


class FileRef(Part):
    path: str | None = None
    sha256: str | None = None


class LedgerRef(FileRef):
    sources: list[str] = []


class PlanRef(FileRef):
    window_days: int | None = None


class DeployedRef(Part):
    sha256: str | None = None
    source: str | None = None


class DecisionProvenance(Part):
    ledger: LedgerRef = LedgerRef()
    plan: PlanRef = PlanRef()
    quantization_report: FileRef | None = None
    deployed_model: DeployedRef = DeployedRef()
    model_sha256: str | None = None


class LeverRow(Part):
    name: str
    usd_per_day_before: float | None = None
    usd_per_day_after: float | None = None
    saving_usd_per_day: float | None = None
    share_pct: float | None = None
    detail: str = ""
    source: str = ""
    assumption: str | None = None


class ObservedWindow(Part):
    days: int | None = None
    infra_usd_per_day: float | None = None
    serving_usd_per_day: float | None = None
    other_usd_per_day: float | None = None
    gross_pnl_usd_per_day: float | None = None
    cost_ratio_pct: float | None = None
    serving_basis: str = ""
    serving_instances: list[str] = []


class ToReachCap(Part):
    met: bool | None = None
    why: str | None = None
    headroom_usd_per_day: float | None = None
    cost_to_cut_usd_per_day: float | None = None
    pnl_needed_usd_per_day: float | None = None
    serving_alone_exceeds_cap: bool | None = None


class Projection(Part):
    """PROJECTED serving cost and cost ratio from the measured levers; never a ledger number."""

    label: str = ""
    available: bool = False
    reason: str = ""
    instance: str | None = None
    target_rate_per_s: float | None = None
    baseline_serving_usd_per_day: float | None = None
    serving_usd_per_day: float | None = None
    levers: list[LeverRow] = []
    observed: ObservedWindow | None = None
    projected_infra_usd_per_day: float | None = None
    projected_cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    to_reach_cap: ToReachCap = ToReachCap()
    inputs: dict[str, str | None] = {}
    notes: list[str] = []


class RampRecord(Record):
    """The fields readers use; every other field is kept as written."""

    decision: str | None = None  # PROMOTE, HOLD or ROLLBACK
    as_of: str | None = None
    step: StepMove = StepMove()
    window: LedgerWindow = LedgerWindow()
    cost_gates_enabled: bool | None = None
    notices: list[str] = []
    reasons: list[str] = []
    gates: list[RampGateRow] = []
    cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    gross_pnl_usd: float | None = None
    infra_cost_usd: float | None = None
    net_pnl_usd: float | None = None
    signals: int | None = None
    trades: int | None = None
    cost_per_signal_usd: float | None = None
    cost_per_trade_usd: float | None = None
    cost_per_day_usd: float | None = None
    monthly_cost_usd: float | None = None
    days_at_step: int | None = None
    trades_at_step: int | None = None
    drawdown_usd: float | None = None
    provenance: DecisionProvenance = DecisionProvenance()
    audit_seq: int | None = None
    gates_failed: list[str] = []
    projection: Projection | None = None
