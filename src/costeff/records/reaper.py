"""A reaper report (`costeff reap`): the decisions of one replay or round, and the GPU-hours saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from costeff.records import Part, Record


class Source(Part):
    """The replayed trace: its span in UTC."""

    start: datetime | None = None
    end: datetime | None = None


class WakeUp(Part):
    wakeups: int | None = None
    requests_waited: float | None = None
    wait_s_max: float | None = None


class Action(Part):
    time: datetime
    resource: str
    action: str


class Resource(Part):
    resource: str


class ReaperRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by pack/report
    mode: str | None = None
    source: Source = Source()
    gpu_hours_without: float | None = None
    gpu_hours_with: float | None = None
    reduction_pct: float | None = None
    reaps_while_active: int | None = None
    savings: dict[str, Any] = {}  # instance, prices and the $ figures (every key with "usd" is a dollar amount)
    wake_up: WakeUp = WakeUp()
    actions: list[Action] = []
    resources: list[Resource] = []
