"""A reaper report (`costeff reap --trace`): GPU-hours with and without the reaper, its actions and savings.

Typed from ``costeff.reaper.report.ReaperReport``; a figure the replay did not produce is None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from costeff.records import Part, Record


class ReplaySource(Part):
    """The trace replayed (``path``/``kind`` name a source other than a trace file)."""

    trace: str | None = None
    trace_sha256: str | None = None
    rows: int | None = None
    resources: list[str] = []
    start: datetime | None = None  # UTC
    end: datetime | None = None
    span_hours: float | None = None
    path: str | None = None
    kind: str | None = None


class SimulatedAction(Part):
    time: datetime  # UTC
    resource: str
    action: str  # "reap" or "restore"
    target: str | None = None
    reason: str = ""
    gpus: float | None = None
    usd_per_hour_saved: float | None = None
    idle_for_s: float | None = None


class Savings(Part):
    instance: str | None = None
    usd_per_gpu_hour: float | None = None
    price_source: str | None = None
    gpu_hours_saved: float | None = None
    usd_without: float | None = None
    usd_with: float | None = None
    usd_saved: float | None = None
    usd_saved_per_day: float | None = None
    usd_per_hour_saved_while_idle: float | None = None


class WakeUp(Part):
    wakeups: int | None = None
    requests_waited: float | None = None
    wait_s_max: float | None = None
    wait_s_mean_per_request: float | None = None
    request_wait_seconds: float | None = None
    restore_latency_s: float | None = None


class ResourceRow(Part):
    resource: str
    target: str | None = None
    excluded: str | None = None
    samples: int | None = None
    gpu_hours_without: float | None = None
    gpu_hours_with: float | None = None
    reduction_pct: float | None = None
    down_hours: float | None = None
    reaps: int | None = None
    reaps_while_active: int | None = None
    wakeups: int | None = None
    requests_waited: float | None = None


class AuditRef(Part):
    """Where the replay's simulated actions were audited."""

    log: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    head_sha256: str | None = None


class ReaperRecord(Record):
    """The fields readers use; every other field is kept as written."""

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
    config: dict[str, Any] = {}
    replay_s: float | None = None
    audit: AuditRef = AuditRef()
