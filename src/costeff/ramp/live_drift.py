"""Live drift for the ramp: the ledger's drift windows of the deployed model over the last hours.

The offline quantization report says how a variant decided on held-out rows before it
shipped; these windows say how it decides on the rows it sees now. No window for the
deployed bytes in the period is no evidence, and the gates built on it fail closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from costeff.artifacts import iso_utc, utc_now

DEFAULT_HOURS = 24.0


@dataclass(frozen=True)
class LiveDrift:
    since: str
    until: str
    windows: int
    windows_failed: int
    rows: int
    action_drift_pct_max: float | None
    entropy_drift_pct_max: float | None
    detail: str


def reference_time(as_of: date | None) -> datetime:
    """Now for a decision as of today; the start of ``as_of`` (UTC) for one replayed on an earlier day."""
    now = utc_now()
    if as_of is None or as_of >= now.date():
        return now
    return datetime.combine(as_of, time(0), timezone.utc)


def live_drift(ledger: Path, served_sha256: str | None, until: datetime, hours: float) -> LiveDrift:
    from costeff.ledger.drift import DriftLedger

    since = until - timedelta(hours=hours)
    if served_sha256 is None:
        return LiveDrift(iso_utc(since), iso_utc(until), 0, 0, 0, None, None, "the deployed model is unknown")
    rows = [w for w in DriftLedger(ledger).windows(since, served_sha256) if w.window_end <= iso_utc(until)]
    where = f"drift windows of {served_sha256[:12]}… ending {iso_utc(since)}..{iso_utc(until)}"
    if not rows:
        return LiveDrift(iso_utc(since), iso_utc(until), 0, 0, 0, None, None,
                         f"no {where} in {ledger}; run `costeff drift check` or `costeff drift watch`")
    failed = sum(not w.passed for w in rows)
    return LiveDrift(iso_utc(since), iso_utc(until), len(rows), failed, sum(w.rows for w in rows),
                     _worst([w.action_drift_pct for w in rows]), _worst([w.entropy_drift_pct for w in rows]),
                     f"worst of {len(rows)} {where} ({failed} failed, {sum(w.rows for w in rows)} rows)")


def _worst(values: list[float | None]) -> float | None:
    # A window whose metric is missing cannot vouch for the model: the worst case is unknown.
    if any(v is None for v in values):
        return None
    return max(values)  # type: ignore[type-var]
