"""Arrival processes: seeded Poisson, or a replayed trace of request timestamps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from costeff import poisson
from costeff.errors import InputError

# Requests one simulation may draw: 5 M arrivals (40 MB of times) already give a p99 to four digits;
# beyond that the run only costs memory and minutes.
MAX_REQUESTS = 5_000_000


def poisson_arrivals(rate_per_s: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` arrival times in seconds of the seeded Poisson process ``costeff.poisson`` (the first one gap after 0),
    the same times the open-loop harnesses use for that seed and rate."""
    if not rate_per_s > 0:
        raise InputError(f"rate: must be > 0 requests/s, got {rate_per_s!r}")
    if not 1 <= n <= MAX_REQUESTS:
        raise InputError(f"--requests: {n!r} is out of range; expected 1 to {MAX_REQUESTS:,} per simulation")
    return poisson.poisson_arrivals(rate_per_s, n, seed)


def load_trace(path: Path | str) -> np.ndarray:
    """Request timestamps in seconds, shifted so the first request arrives at 0.

    The file holds one number per line, or CSV with a ``timestamp`` column (other
    columns ignored). Blank lines are skipped. Timestamps must be finite and
    sorted (equal neighbours are fine: requests arriving together).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(enumerate(csv.reader(fh), start=1))
    except FileNotFoundError:
        raise InputError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read trace: {exc}") from None
    rows = [(ln, r) for ln, r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: empty trace; expected one timestamp (seconds) per line")
    column, rows = _column(path, rows)
    values = np.empty(len(rows))
    previous = -math.inf
    for k, (ln, r) in enumerate(rows):
        values[k] = previous = _timestamp(path, ln, r, column, previous)
    return values - values[0]


def _column(path: Path, rows: list) -> tuple[int, list]:
    header = [c.strip().lower() for c in rows[0][1]]
    if "timestamp" in header:
        return header.index("timestamp"), rows[1:]
    if len(header) > 1:
        raise InputError(f"{path}: line {rows[0][0]}: several columns but none named 'timestamp'")
    return 0, rows


def _timestamp(path: Path, line: int, row: list, column: int, previous: float) -> float:
    try:
        value = float(row[column])
    except (ValueError, IndexError):
        cell = row[column] if column < len(row) else ""
        raise InputError(f"{path}: line {line}: {cell.strip()!r} is not a timestamp in seconds") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: line {line}: timestamp {value} is not finite")
    if value < previous:
        raise InputError(f"{path}: line {line}: timestamp {value!r} is earlier than the line before "
                         f"({previous!r}); the trace must be sorted")
    return value
