"""A ramp decision (`costeff ramp decide`): the gates, the economics and the step."""

from __future__ import annotations

from typing import Any

from costeff.records import Part, Record


class Gate(Part):
    name: str
    observed: Any = None
    threshold: Any = None
    comparator: str | None = None
    verdict: str | None = None


class Step(Part):
    from_pct: int | float | None = None


class Window(Part):
    """The days the decision read from the ledger."""

    end: str | None = None
    days: int | None = None


class Ledger(Part):
    path: str | None = None
    sources: list[str] = []


class Provenance(Part):
    ledger: Ledger = Ledger()


class Lever(Part):
    name: str
    usd_per_day_before: float | None = None
    usd_per_day_after: float | None = None
    saving_usd_per_day: float | None = None
    share_pct: float | None = None
    detail: str = ""
    assumption: str | None = None


class Reach(Part):
    """What it takes to bring the projected cost ratio under the cap."""

    met: bool | None = None
    cost_to_cut_usd_per_day: float | None = None
    pnl_needed_usd_per_day: float | None = None
    why: str = ""


class Projection(Part):
    """PROJECTED serving cost and cost ratio (``costeff.ramp.projection``), never a ledger number."""

    label: str | None = None
    available: bool = False
    reason: str | None = None
    instance: str | None = None
    target_rate_per_s: float | None = None
    baseline_serving_usd_per_day: float | None = None
    serving_usd_per_day: float | None = None
    projected_cost_ratio_pct: float | None = None
    levers: list[Lever] = []
    to_reach_cap: Reach = Reach()
    notes: list[str] = []


class RampRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    decision: str | None = None
    step: Step = Step()
    window: Window | None = None
    cost_gates_enabled: bool = False
    notices: list[str] = []
    gates: list[Gate] = []
    cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    cost_per_signal_usd: float | None = None
    cost_per_trade_usd: float | None = None
    cost_per_day_usd: float | None = None
    monthly_cost_usd: float | None = None
    provenance: Provenance = Provenance()
    projection: Projection | None = None
