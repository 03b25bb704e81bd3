"""Drift windows in the ledger's SQLite file, beside economics and cost.

One row per (served model, reference, source, window start): re-checking the same
log replaces its rows instead of counting them twice. The ramp reads the windows of
the last hours to gate on live drift; a window without timestamps is placed at the
time it was checked.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from costeff.artifacts import iso_utc
from costeff.errors import InputError
from costeff.ledger.store import read_only_query

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_windows (
    served_sha256 TEXT NOT NULL, reference_sha256 TEXT NOT NULL, source TEXT NOT NULL,
    window_start TEXT NOT NULL, window_end TEXT NOT NULL, timed INTEGER NOT NULL, rows INTEGER NOT NULL,
    action_drift_pct REAL, confident_agreement_pct REAL, action_correlation REAL, entropy_drift_pct REAL,
    kl_mean REAL, kl_p99 REAL, value_max_abs_err REAL, passed INTEGER NOT NULL, gates_failed TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (served_sha256, reference_sha256, source, window_start));
CREATE INDEX IF NOT EXISTS drift_windows_end ON drift_windows (window_end);
"""
COLUMNS = ("served_sha256", "reference_sha256", "source", "window_start", "window_end", "timed", "rows",
           "action_drift_pct", "confident_agreement_pct", "action_correlation", "entropy_drift_pct", "kl_mean",
           "kl_p99", "value_max_abs_err", "passed", "gates_failed", "recorded_at")


@dataclass(frozen=True)
class DriftRow:
    served_sha256: str
    reference_sha256: str
    source: str
    window_start: str  # ISO UTC
    window_end: str
    timed: bool  # False: the log had no timestamps, the window is the check's own time
    rows: int
    action_drift_pct: float | None
    confident_agreement_pct: float | None
    action_correlation: float | None
    entropy_drift_pct: float | None
    kl_mean: float | None
    kl_p99: float | None
    value_max_abs_err: float | None
    passed: bool
    gates_failed: list[str]
    recorded_at: str = ""


class DriftLedger:
    """The ``drift_windows`` table of the SQLite ledger at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def record(self, rows: Sequence[DriftRow]) -> int:
        now = iso_utc()
        values = [tuple(_value(r, c, now) for c in COLUMNS) for r in rows]
        with closing(self._connect(create=True)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT OR REPLACE INTO drift_windows ({', '.join(COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(COLUMNS))})", values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(values)

    def windows(self, since: datetime | None = None, served_sha256: str | None = None) -> list[DriftRow]:
        """Windows ending at or after ``since`` (oldest first), optionally of one served model only."""
        if not self.path.is_file():
            return []
        clauses, params = [], []
        if since is not None:
            clauses.append("window_end >= ?")
            params.append(iso_utc(since))
        if served_sha256 is not None:
            clauses.append("served_sha256 = ?")
            params.append(served_sha256)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(COLUMNS)} FROM drift_windows{where} ORDER BY window_end, window_start"
        found = read_only_query(self.path, "drift_windows", sql, params)
        return [_row(r) for r in found]

    def _connect(self, create: bool) -> sqlite3.Connection:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a costeff ledger ({exc})") from None
        return conn


def _value(row: DriftRow, column: str, now: str) -> Any:
    value = getattr(row, column)
    if column == "gates_failed":
        return json.dumps(value)
    if column in ("timed", "passed"):
        return int(value)
    if column == "recorded_at":
        return value or now
    return value


def _row(values: tuple) -> DriftRow:
    data = dict(zip(COLUMNS, values, strict=False))
    data.update(timed=bool(data["timed"]), passed=bool(data["passed"]), gates_failed=json.loads(data["gates_failed"]))
    return DriftRow(**data)
