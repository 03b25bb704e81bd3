"""The ledgers in one SQLite file: daily economics and daily infrastructure cost.

Economics has one row per day; cost has one row per day and component (serving,
training, ...), so a day's infrastructure cost is the sum of its components. An
import runs in one transaction: a duplicate day is refused unless the caller asks
to replace it, and then it is replaced, never added a second time.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Sequence

from costeff.artifacts import iso_utc
from costeff.errors import InputError
from costeff.ledger.csvio import COST, ECONOMICS, CostRow, EconomicsRow
from costeff.numbers import MAX_USD, finite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS economics (
    date TEXT PRIMARY KEY, gross_pnl_usd REAL NOT NULL, signals INTEGER NOT NULL,
    trades INTEGER NOT NULL, influence_pct REAL NOT NULL, source TEXT NOT NULL, imported_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cost (
    date TEXT NOT NULL, component TEXT NOT NULL, usd REAL NOT NULL, source TEXT NOT NULL,
    instance TEXT, instance_hours REAL, imported_at TEXT NOT NULL, PRIMARY KEY (date, component));
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, imported_at TEXT NOT NULL, kind TEXT NOT NULL, file TEXT NOT NULL,
    details TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ImportResult:
    ledger: str
    file: str
    kind: str
    rows: int
    inserted: int
    replaced: int
    first_date: str
    last_date: str


@dataclass(frozen=True)
class Coverage:
    kind: str
    days: int
    first_date: str | None
    last_date: str | None
    sources: list[str]


class Ledger:
    """The SQLite ledger at ``path`` (created on first import)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def import_rows(self, kind: str, rows: Sequence[Any], *, replace: bool = False,
                    file: str = "") -> ImportResult:
        return self.import_batches([(kind, rows, file)], replace=replace)[0]

    def import_batches(self, batches: Sequence[tuple[str, Sequence[Any], str]], *,
                       replace: bool = False, details: dict[str, Any] | None = None) -> list[ImportResult]:
        """Load several (kind, rows, file) batches in one transaction: all of them or none.

        ``details`` (source, row counts, filters) is recorded in the ``imports`` table
        in the same transaction, so the ledger says where every imported day came from.
        """
        results, created = [], not self.path.exists()
        try:
            with closing(self._connect(create=True)) as conn:
                conn.execute("BEGIN IMMEDIATE")  # hold the write lock from the duplicate check to the commit
                try:
                    for kind, rows, file in batches:
                        results.append(self._import(conn, kind, rows, replace, file))
                    if details is not None:
                        _record(conn, batches, results, details)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            if created:  # a failed first import leaves no empty ledger behind
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            raise
        return results

    def _import(self, conn: sqlite3.Connection, kind: str, rows: Sequence[Any], replace: bool,
                file: str) -> ImportResult:
        key = _key(kind)
        _check_amounts(kind, rows, file)
        clashes = _existing(conn, kind, [key(r) for r in rows])
        if clashes and not replace:
            raise InputError(_clash_message(self.path, file, kind, clashes))
        _delete(conn, kind, clashes)
        _insert(conn, kind, rows, iso_utc())
        dates = sorted(r.date for r in rows)
        return ImportResult(str(self.path), file, kind, len(rows), len(rows) - len(clashes), len(clashes),
                            dates[0], dates[-1])

    def economics(self, start: date | None = None, end: date | None = None) -> list[EconomicsRow]:
        sql = "SELECT date, gross_pnl_usd, signals, trades, influence_pct, source FROM economics"
        return [EconomicsRow(*r) for r in self._select(sql, start, end)]

    def costs(self, start: date | None = None, end: date | None = None) -> list[CostRow]:
        sql = "SELECT date, component, usd, source, instance, instance_hours FROM cost"
        return [CostRow(*r) for r in self._select(sql, start, end, order="date, component")]

    def imports(self) -> list[dict[str, Any]]:
        """Recorded imports, oldest first: when, what kind, which file, and the importer's details."""
        rows = self._query("SELECT id, imported_at, kind, file, details FROM imports ORDER BY id")
        return [{"id": r[0], "imported_at": r[1], "kind": r[2], "file": r[3], **json.loads(r[4])} for r in rows]

    def coverage(self) -> list[Coverage]:
        out = []
        for kind in (ECONOMICS, COST):
            sql = f"SELECT COUNT(DISTINCT date), MIN(date), MAX(date) FROM {kind}"
            rows = self._query(sql)
            days, first, last = rows[0] if rows else (0, None, None)
            sources = [r[0] for r in self._query(f"SELECT DISTINCT source FROM {kind} ORDER BY source")]
            out.append(Coverage(kind, days, first, last, sources))
        return out

    def _select(self, sql: str, start: date | None, end: date | None, order: str = "date") -> list[tuple]:
        clauses, params = [], []
        if start is not None:
            clauses.append("date >= ?")
            params.append(start.isoformat())
        if end is not None:
            clauses.append("date <= ?")
            params.append(end.isoformat())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(f"{sql}{where} ORDER BY {order}", params)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        return read_only_query(self.path, sql.split(" FROM ", 1)[1].split()[0], sql, params)

    def _connect(self, create: bool) -> sqlite3.Connection:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a costeff ledger ({exc})") from None
        return conn


LEDGER_TABLES = {"economics", "cost", "imports", "drift_windows"}


def read_only_query(path: Path, table: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Rows from an existing ledger, opened read-only: reading never creates, repairs or alters it.

    A ledger truncated to 0 bytes, or a SQLite file without any ledger table, is an InputError
    (SQLite itself would take an empty file for a new database). ``table``, the one ``sql`` reads, has
    no rows when it is not there yet (a ledger of drift windows only has no economics).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: 0 bytes: an empty (truncated?) ledger; restore it from a backup or re-import "
                         f"with `costeff ledger import` (reading never recreates it)")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables & LEDGER_TABLES:
                raise InputError(f"{path}: a SQLite file without any ledger table "
                                 f"({', '.join(sorted(LEDGER_TABLES))}); not a costeff ledger")
            if table not in tables:
                return []
            return conn.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a costeff ledger ({exc})") from None


def _key(kind: str):
    if kind == ECONOMICS:
        return lambda r: (r.date,)
    if kind == COST:
        return lambda r: (r.date, r.component)
    raise InputError(f"ledger kind {kind!r} is not one of economics, cost")


def _check_amounts(kind: str, rows: Sequence[Any], file: str) -> None:
    """The last guard before the ledger: every amount finite and within ``MAX_USD`` (whatever the importer)."""
    fields = ("gross_pnl_usd", "influence_pct") if kind == ECONOMICS else ("usd", "instance_hours")
    for row in rows:
        for name in fields:
            value = getattr(row, name)
            if value is not None and (finite(value) is None or abs(value) > MAX_USD):
                raise InputError(f"{file or 'import'}: {kind} day {row.date}: {name} = {value!r}; expected a finite "
                                 f"amount within {MAX_USD:g} (nothing was imported)")


def _existing(conn: sqlite3.Connection, kind: str, keys: list[tuple]) -> list[tuple]:
    cols = "date" if kind == ECONOMICS else "date, component"
    present = {tuple(r) for r in conn.execute(f"SELECT {cols} FROM {kind}")}
    return [k for k in keys if k in present]


def _delete(conn: sqlite3.Connection, kind: str, keys: list[tuple]) -> None:
    where = "date = ?" if kind == ECONOMICS else "date = ? AND component = ?"
    conn.executemany(f"DELETE FROM {kind} WHERE {where}", keys)


def _insert(conn: sqlite3.Connection, kind: str, rows: Sequence[Any], now: str) -> None:
    if kind == ECONOMICS:
        conn.executemany("INSERT INTO economics VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(r.date, r.gross_pnl_usd, r.signals, r.trades, r.influence_pct, r.source, now)
                          for r in rows])
    else:
        conn.executemany("INSERT INTO cost VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(r.date, r.component, r.usd, r.source, r.instance, r.instance_hours, now)
                          for r in rows])


def _record(conn: sqlite3.Connection, batches: Sequence[tuple[str, Sequence[Any], str]],
            results: list[ImportResult], details: dict[str, Any]) -> None:
    for (kind, _, file), result in zip(batches, results, strict=True):
        body = {**details, "rows": result.rows, "inserted": result.inserted, "replaced": result.replaced,
                "first_date": result.first_date, "last_date": result.last_date}
        conn.execute("INSERT INTO imports (imported_at, kind, file, details) VALUES (?, ?, ?, ?)",
                     (iso_utc(), kind, file, json.dumps(body, sort_keys=True)))


def _clash_message(path: Path, file: str, kind: str, clashes: list[tuple]) -> str:
    shown = ", ".join(" ".join(k) for k in clashes[:3]) + (f" and {len(clashes) - 3} more" if len(clashes) > 3 else "")
    return (f"{file or 'import'}: {len(clashes)} {kind} day(s) already in {path}: {shown}; "
            "pass --replace to replace them (nothing was imported)")
