"""A reaper report (`costeff reap`): the decisions of one replay or round, and the GPU-hours saved."""

from __future__ import annotations

from costeff.records import Part, Record


class ReplaySource(Part):
    """The replayed trace: its span (UTC, ISO 8601)."""

    start: str | None = None
    end: str | None = None


class SimulatedAction(Part):
    time: str | None = None
    resource: str | None = None
    action: str | None = None  # "reap" or "restore"


class Savings(Part):
    """The $ figures of the replay (every field named ``usd...`` is a dollar amount)."""

    instance: str | None = None


class WakeUp(Part):
    wakeups: int | None = None
    requests_waited: float | None = None
    wait_s_max: float | None = None


class ResourceRow(Part):
    resource: str


class ReaperRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    mode: str | None = None  # "replay"
    source: ReplaySource = ReplaySource()
    gpu_hours_without: float | None = None
    gpu_hours_with: float | None = None
    reduction_pct: float | None = None
    reaps_while_active: int | None = None
    actions: list[SimulatedAction] = []
    savings: Savings = Savings()
    wake_up: WakeUp = WakeUp()
    resources: list[ResourceRow] = []
