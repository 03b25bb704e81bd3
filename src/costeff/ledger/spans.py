"""Bounds on the time a cost may cover, checked before anything is split into days.

A charge is spread over every UTC day of its period, so a period from year 1 to
9999 would mean millions of days of work for one row. Bounds (documented in the
README's ledger section):

- every time lies in 1970-01-01 .. 2100-01-01 (UTC);
- one FOCUS charge or OpenCost allocation covers at most ``MAX_CHARGE_DAYS`` (366) days;
- one import covers at most ``MAX_IMPORT_DAYS`` (3,660, about ten years) from its first to its last day.
"""

from __future__ import annotations

from datetime import datetime, timezone

from costeff.errors import InputError

DAY_S = 86400
MAX_CHARGE_DAYS = 366
MAX_IMPORT_DAYS = 3660
EARLIEST_S = 0  # 1970-01-01T00:00:00Z
LATEST_S = 4102444800  # 2100-01-01T00:00:00Z


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_span(start: int, end: int, where: str) -> None:
    """One period: inside the calendar bounds and at most ``MAX_CHARGE_DAYS`` long."""
    for moment in (start, end):
        if not EARLIEST_S <= moment <= LATEST_S:
            raise InputError(f"{where}: time {moment} s is outside 1970-01-01 .. 2100-01-01 (UTC)")
    if end - start > MAX_CHARGE_DAYS * DAY_S:
        raise InputError(f"{where}: period {_iso(start)} .. {_iso(end)} covers {(end - start) / DAY_S:,.0f} days; "
                         f"expected at most {MAX_CHARGE_DAYS}")


def check_spans(starts, ends, name: str, label: str = "row") -> None:
    """Every period of the arrays (numpy int64 epoch seconds) and the whole import; names the first bad one."""
    import numpy as np

    outside = np.flatnonzero((starts < EARLIEST_S) | (starts > LATEST_S) | (ends < EARLIEST_S) | (ends > LATEST_S))
    if outside.size:
        i = int(outside[0])
        raise InputError(f"{name}: {label} {i + 1}: charge period is outside 1970-01-01 .. 2100-01-01 (UTC)")
    long = np.flatnonzero(ends - starts > MAX_CHARGE_DAYS * DAY_S)
    if long.size:
        check_span(int(starts[long[0]]), int(ends[long[0]]), f"{name}: {label} {int(long[0]) + 1}")
    if starts.size and int(ends.max()) - int(starts.min()) > MAX_IMPORT_DAYS * DAY_S:
        raise InputError(f"{name}: charges run from {_iso(starts.min())} to {_iso(ends.max())}, more than "
                         f"{MAX_IMPORT_DAYS:,} days; import at most about ten years at a time")
