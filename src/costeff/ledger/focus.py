"""Infrastructure cost per day from a FOCUS 1.x billing export (CSV or parquet).

FOCUS (the FinOps Foundation's open billing format) gives one row per charge with
a period, a cost and the resource it is for. costeff keeps the rows of the
policy's resources (tags and/or resource-id patterns), splits every charge over
the UTC days its period covers in proportion to the hours in each day (a charge
from 22:00 to 02:00 is half one day, half the next), and sums per day. Credits
(negative costs) stay in: they lower what the policy really costs.

Only a handful of columns are read, through pyarrow, so a million-row export
needs neither pandas nor a row loop in Python; tag JSON is parsed once per
distinct value.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from costeff.errors import InputError
from costeff.hints import did_you_mean
from costeff.ledger.spans import check_spans
from costeff.numbers import MAX_USD

START, END, CATEGORY, CURRENCY = "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "BillingCurrency"
RESOURCE, TAGS = "ResourceId", "Tags"
COST_COLUMNS = ("EffectiveCost", "BilledCost", "ListCost", "ContractedCost")
LEDGER_CURRENCY = "USD"  # the ledger's money columns are USD; a bill in another currency needs converting first
DAY_S = 86400


@dataclass(frozen=True)
class FocusConfig:
    path: Path
    cost_column: str = "EffectiveCost"
    tags: tuple[tuple[str, str], ...] = ()  # every pair must match (AND)
    resource_ids: tuple[str, ...] = ()  # shell-style patterns; any may match (OR)
    component: str = "serving"

    def __post_init__(self) -> None:
        if self.cost_column not in COST_COLUMNS:
            raise InputError(f"--cost-column: {self.cost_column!r} is not a FOCUS cost column; "
                             f"expected one of {', '.join(COST_COLUMNS)}")
        if not self.component.strip():
            raise InputError("--component: empty; expected a name such as serving")

    def describe(self) -> str:
        tags = " and ".join(f"tag {k}={v}" for k, v in self.tags)
        resources = " or ".join(f"resource {p}" for p in self.resource_ids)
        return " or ".join(p for p in (tags, resources) if p) or "all rows"


@dataclass(frozen=True)
class FocusDays:
    """What a FOCUS file says the selected resources cost per UTC day (before anything touches the ledger)."""

    file: str
    cost_column: str
    selection: str
    currency: str
    rows_read: int
    rows_matched: int
    rows_other: int  # rows for other resources, left out
    rows_credit: int
    credits_usd: float
    rows_split: int  # matched charges whose period spans more than one UTC day
    categories: dict[str, int]
    days: dict[str, float]
    partial_days: list[str] = field(default_factory=list)  # the export covers these days only in part
    schema_version: int = 1


def parse_tag(text: str, option: str = "--tag") -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{option}: {text!r} is not KEY=VALUE, e.g. app=policy-serving")
    return key.strip(), value.strip()


def read_focus(config: FocusConfig) -> FocusDays:
    """Read, filter and split ``config.path``; raises InputError naming the file, column and row."""
    name = str(config.path)
    table = _read_table(config)
    n = table.num_rows
    if n == 0:
        raise InputError(f"{name}: no data rows; expected FOCUS charges")
    starts, ends = _seconds(table, START, name), _seconds(table, END, name)
    cost = _costs(table, config.cost_column, name)
    _check_periods(starts, ends, name)
    check_spans(starts, ends, name)
    mask = _selection(table, config, name)
    matched = int(mask.sum())
    if matched == 0:
        raise InputError(f"{name}: no row matches {config.describe()} among {n:,} rows; nothing to import")
    currency = _currency(table, mask, name)
    categories = _categories(table, mask)
    credit = _is_credit(table, mask)
    days, split = split_by_day(starts[mask], ends[mask], cost[mask])
    return FocusDays(name, config.cost_column, config.describe(), currency, n, matched, n - matched,
                     int(credit.sum()), float(cost[credit].sum()), split, categories, days,
                     partial_days_of(starts, ends, days))


def _read_table(config: FocusConfig):
    import pyarrow as pa

    path, name = Path(config.path), str(config.path)
    if not path.is_file():
        raise InputError(f"{name}: no such FOCUS file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    header = _parquet_header(path) if parquet else _csv_header(path)
    wanted = [START, END, CATEGORY, CURRENCY, config.cost_column]
    wanted += [RESOURCE] if config.resource_ids else []
    wanted += [TAGS] if config.tags else []
    missing = [c for c in wanted if c not in header]
    if missing:
        hints = [c + did_you_mean(c, header) for c in missing]
        raise InputError(f"{name}: missing FOCUS column(s) {', '.join(hints)}; a FOCUS 1.x export has "
                         f"{', '.join(wanted)}")
    try:
        return _parquet(path, wanted) if parquet else _csv(path, wanted, config.cost_column)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: {_arrow_message(exc, header)}") from None


def _csv_header(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        with pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(column_types={}, include_columns=[])) as r:
            return [c.strip() for c in r.schema.names]
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read as CSV: {exc}") from None


def _parquet_header(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read as parquet: {exc}") from None


def _csv(path: Path, wanted: list[str], cost_column: str):
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    # Strings first for the times: FOCUS allows offsets and fractional seconds, parsed below with one rule.
    types = {c: pa.string() for c in wanted}
    types[cost_column] = pa.float64()
    options = pa_csv.ConvertOptions(include_columns=wanted, column_types=types, strings_can_be_null=True)
    return pa_csv.read_csv(path, convert_options=options)


def _parquet(path: Path, wanted: list[str]):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=wanted)


def _arrow_message(exc: Exception, header: list[str]) -> str:
    text = str(exc)
    m = re.search(r"column #(\d+): (?:Row #(\d+): )?CSV conversion error to \w+: invalid value '([^']*)'", text)
    if m:
        index = int(m.group(1))
        col = header[index] if index < len(header) else f"#{index}"
        where = f"line {m.group(2)}: " if m.group(2) else ""
        return f"{where}column {col}: {m.group(3)!r} is not a number; expected a decimal cost"
    return f"not a readable FOCUS export: {text.splitlines()[0]}"


def _seconds(table, column: str, name: str):
    """UTC epoch seconds of a FOCUS datetime column (strings in ISO 8601, or parquet timestamps)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    if col.null_count:
        row = _first(pc.is_null(col))
        raise InputError(f"{name}: row {row + 1}: column {column} is empty; expected an ISO 8601 UTC datetime")
    if pa.types.is_timestamp(col.type):
        # through the integer count of the column's own unit: a safe cast to seconds refuses sub-second values
        per_second = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[col.type.unit]
        return pc.cast(col, pa.int64()).to_numpy().astype(np.int64) // per_second
    return _parse_times(col, column, name)


def _parse_times(col, column: str, name: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    # Arrow's ISO 8601 cast takes Z, offsets and fractional seconds (to ms); times without a zone are read as
    # UTC, which FOCUS requires them to be. A row-by-row scan runs only to name the first bad value.
    for target in (pa.timestamp("ms", tz="UTC"), pa.timestamp("ms")):
        try:
            return pc.cast(pc.cast(col, target), pa.int64()).to_numpy() // 1000
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    bad = _first_bad_time(col)
    raise InputError(f"{name}: row {bad[0] + 1}: column {column}: {bad[1]!r} is not an ISO 8601 UTC datetime "
                     "(expected e.g. 2025-06-01T00:00:00Z)")


def _first_bad_time(col) -> tuple[int, str]:
    for i, v in enumerate(col.to_pylist()):
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return i, v
    return 0, str(col[0])


def _costs(table, column: str, name: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type)):
        raise InputError(f"{name}: column {column} has type {col.type}; expected decimal costs")
    if col.null_count:
        row = _first(pc.is_null(col))
        raise InputError(f"{name}: row {row + 1}: column {column} is empty; FOCUS costs are never null")
    values = pc.cast(col, pa.float64()).to_numpy()
    _check_costs(values, column, name)
    return values


def _check_costs(values, column: str, name: str) -> None:
    """Every cost finite and at most ``MAX_USD`` either way (credits are negative): an infinite or absurd
    cost would pass or fail every gate downstream for the wrong reason."""
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > MAX_USD))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{name}: row {i + 1}: column {column}: {values[i]!r} is not a cost; expected a finite "
                         f"number from -{MAX_USD:g} to {MAX_USD:g} USD")


def _first(mask) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def _check_periods(starts, ends, name: str) -> None:
    import numpy as np

    bad = np.flatnonzero(ends < starts)
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{name}: row {i + 1}: {END} {_iso(ends[i])} is before {START} {_iso(starts[i])}")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selection(table, config: FocusConfig, name: str):
    import numpy as np

    if not config.tags and not config.resource_ids:
        return np.ones(table.num_rows, dtype=bool)
    mask = np.zeros(table.num_rows, dtype=bool)
    if config.tags:
        mask |= _by_distinct(table.column(TAGS), lambda v: _tags_match(v, config.tags, name))
    if config.resource_ids:
        mask |= _by_distinct(table.column(RESOURCE),
                             lambda v: v is not None and any(fnmatch.fnmatchcase(v, p) for p in config.resource_ids))
    return mask


def _by_distinct(col, predicate):
    """``predicate`` per row, evaluated once per distinct value (exports repeat tags and ids millions of times)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    verdicts = np.array([bool(predicate(v)) for v in encoded.dictionary.to_pylist()] + [False], dtype=bool)
    indices = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy()
    return verdicts[indices]


def _tags_match(text: str | None, wanted: tuple[tuple[str, str], ...], name: str) -> bool:
    if text is None or not text.strip():
        return False
    try:
        tags = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{name}: column {TAGS}: {text[:60]!r} is not JSON; FOCUS tags are a JSON object") from None
    if not isinstance(tags, dict):
        raise InputError(f"{name}: column {TAGS}: {text[:60]!r} is not a JSON object")
    return all(k in tags and str(tags[k]) == v for k, v in wanted)


def _currency(table, mask, name: str) -> str:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pc.filter(table.column(CURRENCY), pa.array(mask))
    found = sorted(v for v in pc.unique(col).to_pylist() if v is not None)
    if col.null_count:
        raise InputError(f"{name}: column {CURRENCY} is empty on {col.null_count} selected row(s)")
    if len(found) > 1:
        raise InputError(f"{name}: selected rows mix currencies {', '.join(found)}; the ledger holds one currency "
                         f"({LEDGER_CURRENCY}): split the export by currency or convert it first")
    if found[0] != LEDGER_CURRENCY:
        raise InputError(f"{name}: {CURRENCY} is {found[0]}; the ledger is in {LEDGER_CURRENCY}: convert the "
                         "export first")
    return found[0]


def _categories(table, mask) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = pc.value_counts(pc.filter(table.column(CATEGORY), pa.array(mask))).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def _is_credit(table, mask):
    import numpy as np
    import pyarrow.compute as pc

    category = pc.equal(table.column(CATEGORY), "Credit")
    return mask & np.asarray(pc.fill_null(category, False).to_numpy(zero_copy_only=False), dtype=bool)


def split_by_day(starts, ends, cost) -> tuple[dict[str, float], int]:
    """Cost per UTC day, each charge spread over its period by the share of its seconds in each day."""
    import numpy as np

    first = starts // DAY_S
    last = np.where(ends > starts, (ends - 1) // DAY_S, first)  # a period ending at midnight stops the day before
    base = int(first.min())
    totals = np.zeros(int(last.max()) - base + 1)
    hits = np.zeros(totals.size, dtype=np.int64)  # a day whose charges net to $0 is still a day with data
    single = first == last
    _add(totals, first[single] - base, cost[single])
    _add(hits, first[single] - base, None)
    multi = np.flatnonzero(~single)
    if multi.size:
        _spread(totals, hits, base, starts[multi], ends[multi], cost[multi], first[multi], last[multi])
    days = {_day(base + i): float(v) for i, v in enumerate(totals) if hits[i]}
    return days, int(multi.size)


def _spread(totals, hits, base: int, starts, ends, cost, first, last) -> None:
    import numpy as np

    length = (ends - starts).astype(np.float64)
    for k in range(int((last - first).max()) + 1):
        day = first + k
        live = day <= last
        lo = np.maximum(starts, day * DAY_S)
        hi = np.minimum(ends, (day + 1) * DAY_S)
        share = np.where(live, (hi - lo) / length, 0.0)
        _add(totals, (day - base)[live], (cost * share)[live])
        _add(hits, (day - base)[live], None)


def _add(totals, index, weights) -> None:
    import numpy as np

    # bincount, not np.add.at: an order of magnitude faster on a million rows
    totals += np.bincount(index, weights=weights, minlength=totals.size).astype(totals.dtype)


def _day(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * DAY_S, timezone.utc).date().isoformat()


def partial_days_of(starts, ends, days: dict[str, float]) -> list[str]:
    """Days at the edges of the export that it covers only in part (a month-to-date export ends mid-day)."""
    lo, hi = int(starts.min()), int(ends.max())
    out = []
    if lo % DAY_S and _day(lo // DAY_S) in days:
        out.append(_day(lo // DAY_S))
    if hi % DAY_S and _day(hi // DAY_S) in days:
        out.append(_day(hi // DAY_S))
    return sorted(set(out))


def as_rows(result: FocusDays, component: str) -> list[Any]:
    from costeff.ledger.csvio import CostRow

    source = f"focus:{Path(result.file).name} ({result.cost_column}; {result.selection})"
    return [CostRow(day, component, round(usd, 6), source) for day, usd in sorted(result.days.items())]
