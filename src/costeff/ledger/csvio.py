"""Parse and validate ledger CSV files before anything touches the database.

Every row is checked (date, numbers, ranges, duplicate days inside the file) and
the first problems are reported with the file, line number and field, so an import
either loads the whole file or nothing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from costeff.errors import InputError
from costeff.hints import did_you_mean
from costeff.numbers import MAX_USD, is_number_text

ECONOMICS = "economics"
COST = "cost"
KINDS = (ECONOMICS, COST)
DEFAULT_COMPONENT = "serving"

_COLUMNS = {
    ECONOMICS: ({"date", "gross_pnl_usd", "signals", "trades", "influence_pct"}, {"source"}),
    COST: ({"date"}, {"usd", "instance", "instance_hours", "component", "source"}),
}


@dataclass(frozen=True)
class EconomicsRow:
    date: str
    gross_pnl_usd: float
    signals: int
    trades: int
    influence_pct: float
    source: str


@dataclass(frozen=True)
class CostRow:
    date: str
    component: str
    usd: float
    source: str
    instance: str | None = None
    instance_hours: float | None = None


class _RowError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")


def detect_kind(header: list[str]) -> str | None:
    if "gross_pnl_usd" in header:
        return ECONOMICS
    if "usd" in header or "instance_hours" in header:
        return COST
    return None


def read_csv(path: Path | str, kind: str | None = None, source: str | None = None,
             catalog_path: Path | str | None = None, text: str | None = None) -> tuple[str, list[Any]]:
    """Rows of ``path`` (or ``text``) as typed records; ``kind`` is inferred from the header when None."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{name}: cannot read CSV: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise InputError(f"{name}: empty file; expected a CSV header line")
    kind = kind or detect_kind(header)
    if kind not in KINDS:
        raise InputError(f"{name}: cannot tell the ledger kind from header {header}; pass --kind economics|cost")
    _check_header(name, kind, header)
    parse = _economics_parser(source or name) if kind == ECONOMICS else _cost_parser(source, catalog_path)
    rows = _parse_rows(name, reader, header, parse)
    _check_duplicates(name, kind, rows)
    return kind, rows


def _check_header(name: str, kind: str, header: list[str]) -> None:
    required, optional = _COLUMNS[kind]
    allowed = required | optional
    for col in header:
        if col not in allowed:
            raise InputError(f"{name}:1: unknown {kind} column {col!r}{did_you_mean(col, sorted(allowed))}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    missing = required - set(header)
    if missing:
        raise InputError(f"{name}:1: missing {kind} column(s) {', '.join(sorted(missing))}")
    if kind == COST and "usd" not in header and not {"instance", "instance_hours"} <= set(header):
        raise InputError(f"{name}:1: a cost CSV needs a 'usd' column, or 'instance' and 'instance_hours' "
                         "(priced from the catalog)")


def _parse_rows(name: str, reader: csv.DictReader, header: list[str], parse: Callable) -> list[Any]:
    rows, errors = [], []
    for lineno, raw in enumerate(reader, start=2):
        values = {k.strip(): (v or "").strip() for k, v in zip(header, raw.values(), strict=False)}
        if None in raw:  # DictReader files surplus cells under the key None
            errors.append(f"{name}:{lineno}: more cells than header columns")
            continue
        if not any(values.values()):
            continue
        try:
            rows.append(parse(values))
        except _RowError as exc:
            errors.append(f"{name}:{lineno}: {exc}")
    if errors:
        more = f" (and {len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)
    if not rows:
        raise InputError(f"{name}: no data rows after the header")
    return rows


def _check_duplicates(name: str, kind: str, rows: list[Any]) -> None:
    seen: dict[tuple[str, ...], int] = {}
    for i, row in enumerate(rows):
        key = (row.date,) if kind == ECONOMICS else (row.date, row.component)
        if key in seen:
            what = row.date if kind == ECONOMICS else f"{row.date} component {row.component}"
            raise InputError(f"{name}: day {what} appears twice in the file (data rows {seen[key] + 1} and {i + 1})")
        seen[key] = i


def _economics_parser(default_source: str) -> Callable[[dict[str, str]], EconomicsRow]:
    def parse(v: dict[str, str]) -> EconomicsRow:
        return EconomicsRow(_date(v["date"]), _number(v, "gross_pnl_usd"), _count(v, "signals"),
                            _count(v, "trades"), _number(v, "influence_pct", 0.0, 100.0),
                            v.get("source") or default_source)
    return parse


def _cost_parser(source: str | None, catalog_path: Path | str | None) -> Callable[[dict[str, str]], CostRow]:
    catalog = None

    def parse(v: dict[str, str]) -> CostRow:
        nonlocal catalog
        day, component = _date(v["date"]), v.get("component") or DEFAULT_COMPONENT
        if v.get("usd"):
            return CostRow(day, component, _number(v, "usd", 0.0), v.get("source") or source or "billing")
        if not v.get("instance") or not v.get("instance_hours"):
            raise _RowError("usd", "empty; give usd, or instance and instance_hours")
        if catalog is None:
            from costeff.cost import load_catalog
            catalog = load_catalog(catalog_path)
        try:
            inst = catalog.get(v["instance"])
        except InputError as exc:
            raise _RowError("instance", str(exc)) from None
        hours = _number(v, "instance_hours", 0.0)
        origin = v.get("source") or source or f"cost-model: {inst.name} at ${inst.usd_per_hour}/h ({inst.as_of})"
        return CostRow(day, component, hours * inst.usd_per_hour, origin, inst.name, hours)
    return parse


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise _RowError("date", f"{text!r} is not a date; expected YYYY-MM-DD") from None


def _number(v: dict[str, str], field: str, lo: float | None = None, hi: float | None = None) -> float:
    text = v.get(field, "")
    if not is_number_text(text):  # float() would take "0_0", "٠", "nan" and "inf"
        raise _RowError(field, f"{text!r} is not a number; expected ASCII digits such as 12.5")
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_USD:
        raise _RowError(field, f"{text!r} is not finite or beyond {MAX_USD:g}; expected a finite amount")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise _RowError(field, f"{text} is out of range; expected {bounds}")
    return value


def _count(v: dict[str, str], field: str) -> int:
    text = v.get(field, "")
    if not re.fullmatch(r"[+-]?[0-9]+", text):  # int() would take "1_000" and other scripts' digits
        raise _RowError(field, f"{text!r} is not a whole number; expected ASCII digits")
    value = int(text)
    if value < 0:
        raise _RowError(field, f"{value} is negative; expected a count >= 0")
    if value > _SQLITE_MAX_INT:
        raise _RowError(field, f"{text} is too large; expected a count up to {_SQLITE_MAX_INT} (SQLite's INTEGER)")
    return value


_SQLITE_MAX_INT = 2**63 - 1
