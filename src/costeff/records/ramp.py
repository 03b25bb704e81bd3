"""A ramp decision (`costeff ramp decide`): the gates, the economics and the step."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class StepMove(Part):
    from_pct: float | None = None  # None: the ledger does not say which step the policy is at


class LedgerWindow(Part):
    """The days the decision read from the ledger."""

    end: str | None = None
    days: int | None = None


class RampGateRow(Part):
    name: str
    observed: Any = None
    threshold: Any = None
    comparator: str = ""
    verdict: str = "NO-DATA"


class LedgerRef(Part):
    path: str | None = None
    sources: list[str] = []


class DecisionProvenance(Part):
    ledger: LedgerRef = LedgerRef()


class LeverRow(Part):
    name: str
    usd_per_day_before: float | None = None
    usd_per_day_after: float | None = None
    saving_usd_per_day: float | None = None
    share_pct: float | None = None
    detail: str = ""
    assumption: str | None = None


class ToReachCap(Part):
    """What it takes to bring the projected cost ratio under the cap."""

    met: bool | None = None
    why: str | None = None
    cost_to_cut_usd_per_day: float | None = None
    pnl_needed_usd_per_day: float | None = None


class ProjectionPart(Part):
    """PROJECTED serving cost and cost ratio (``costeff.ramp.projection``), never a ledger number."""

    label: str = ""
    available: bool = False
    reason: str = ""
    instance: str | None = None
    target_rate_per_s: float | None = None
    baseline_serving_usd_per_day: float | None = None
    serving_usd_per_day: float | None = None
    levers: list[LeverRow] = []
    projected_cost_ratio_pct: float | None = None
    to_reach_cap: ToReachCap = ToReachCap()
    notes: list[str] = []


class RampRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    decision: str | None = None  # PROMOTE, HOLD or ROLLBACK
    step: StepMove = StepMove()
    window: LedgerWindow = LedgerWindow()
    cost_gates_enabled: bool | None = None
    notices: list[str] = []
    gates: list[RampGateRow] = []
    cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    cost_per_signal_usd: float | None = None
    cost_per_trade_usd: float | None = None
    cost_per_day_usd: float | None = None
    monthly_cost_usd: float | None = None
    provenance: DecisionProvenance = DecisionProvenance()
    projection: ProjectionPart | None = None
