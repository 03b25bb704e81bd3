"""Signals the reaper decides on: a replayable trace, Prometheus (PromQL, in ``prometheus.py``), or NVML.

Every source yields the same ``Sample`` per resource and time. A value of ``None``
means the metric was missing for that sample; the decision treats it as "not
idle", never as zero (an empty Prometheus result is not zero).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from costeff.errors import DependencyError, InputError
from costeff.numbers import finite, is_number_text

REQUIRED = ("timestamp", "resource", "gpu_util_pct", "requests", "influence_pct")
OPTIONAL = ("gpus", "fb_used_mb", "power_w")
COLUMNS = REQUIRED + OPTIONAL


@dataclass(slots=True)
class Sample:
    """What one resource looked like over the interval ending at ``ts`` (UTC epoch seconds)."""

    ts: float
    resource: str
    gpu_util_pct: float | None
    requests: float | None  # requests served in the interval (count, not a rate)
    influence_pct: float | None
    gpus: float = 1.0  # GPUs the resource holds while up
    fb_used_mb: float | None = None
    power_w: float | None = None
    interval_s: float | None = None  # length of the interval ``requests`` were counted over

    @property
    def requests_per_s(self) -> float | None:
        """``requests`` as a rate (thresholds are per second); a count over an unknown interval stays as is."""
        if self.requests is None or not self.interval_s:
            return self.requests
        return self.requests / self.interval_s


@dataclass(frozen=True)
class Trace:
    path: str
    samples: dict[str, list[Sample]]  # by resource, time-ordered
    rows: int

    @property
    def resources(self) -> list[str]:
        return sorted(self.samples)

    @property
    def start_ts(self) -> float:
        return min(s[0].ts for s in self.samples.values())

    @property
    def end_ts(self) -> float:
        return max(s[-1].ts for s in self.samples.values())


# ---------------------------------------------------------------- trace files

def load_trace(path: Path | str) -> Trace:
    """Read a CSV (optionally .gz), JSON array or JSON-lines trace; any bad row is named, nothing is guessed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such trace file")
    if _is_json(path):
        samples: Iterable[Sample] = (parse_row(row, f"{path}: {where}") for where, row in _json_rows(path))
    else:
        samples = _csv_samples(path)
    by_resource: dict[str, list[Sample]] = {}
    count = 0
    for sample in samples:
        by_resource.setdefault(sample.resource, []).append(sample)
        count += 1
    if not count:
        raise InputError(f"{path}: no samples; expected a header and at least one row with columns {list(REQUIRED)}")
    for resource, samples in by_resource.items():
        _check_order(path, resource, samples)
        _set_intervals(samples)
    return Trace(str(path), by_resource, count)


def _set_intervals(samples: list[Sample]) -> None:
    """Each sample's requests were counted since the one before it (the first: over the next step)."""
    for before, sample in zip(samples, samples[1:], strict=False):
        sample.interval_s = sample.ts - before.ts or None
    if len(samples) > 1:
        samples[0].interval_s = samples[1].interval_s


def _is_json(path: Path) -> bool:
    return path.name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz"))


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _csv_samples(path: Path) -> Iterator[Sample]:
    """CSV rows as samples. The fast path handles well-formed rows (a 30-day trace has ~350k);
    any row it cannot take goes through ``parse_row``, which names the line and field."""
    stamps: dict[str, float] = {}
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise InputError(f"{path}: line 1: header lacks column(s) {missing}; expected {list(REQUIRED)} "
                                 f"(optional {list(OPTIONAL)})")
            index = [header.index(c) for c in REQUIRED]
            extras = [header.index(c) if c in header else None for c in OPTIONAL]
            for row in reader:
                yield _fast_sample(row, index, extras, stamps) or parse_row(dict(zip(header, row, strict=False)),
                                                                     f"{path}: line {reader.line_num}")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read trace: {exc}") from None


def _fast_sample(row: list[str], index: list[int], extras: list[int | None],
                 stamps: dict[str, float]) -> Sample | None:
    if "_" in (joined := ",".join(row)) or not joined.isascii():
        return None  # float() reads "0_0" and other scripts' digits: the strict parser names the cell
    try:
        ts_text = row[index[0]]
        ts = stamps.get(ts_text)
        if ts is None:
            ts = stamps[ts_text] = datetime.fromisoformat(ts_text).timestamp() if ts_text.endswith("Z") \
                else float(ts_text)
        util, requests, influence = (float(row[i]) for i in index[2:5])
        extra = [float(row[i]) if i is not None else None for i in extras]
    except (ValueError, IndexError):
        return None
    if not (EARLIEST_TS <= ts <= LATEST_TS and 0 <= util <= 100 and 0 <= influence <= 100
            and 0 <= requests < math.inf and row[index[1]]
            and all(v is None or 0 <= v < math.inf for v in extra)):
        return None
    return Sample(ts, row[index[1]], util, requests, influence, 1.0 if extra[0] is None else extra[0],
                  extra[1], extra[2])


def _json_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read trace: {exc}") from None
    if ".jsonl" in path.name:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield f"line {lineno}", _json_obj(path, line, f"line {lineno}")
        return
    data = _json_obj(path, text, "document")
    items = data.get("samples") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array of samples or {{\"samples\": [...]}}")
    for i, item in enumerate(items):
        yield f"sample {i}", item


def _json_obj(path: Path, text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: {where}: not valid JSON ({exc.msg})") from None


def parse_row(row: Any, where: str) -> Sample:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected an object with fields {list(REQUIRED)}")
    for column in REQUIRED:
        if column not in row or (column in ("timestamp", "resource") and row[column] in (None, "")):
            raise InputError(f"{where}: field {column!r} is missing")
    gpus = _number(row.get("gpus"), "gpus", where)
    return Sample(
        ts=parse_timestamp(row["timestamp"], where),
        resource=str(row["resource"]),
        gpu_util_pct=_number(row["gpu_util_pct"], "gpu_util_pct", where, upper=100.0),
        requests=_number(row["requests"], "requests", where),
        influence_pct=_number(row["influence_pct"], "influence_pct", where, upper=100.0),
        gpus=1.0 if gpus is None else gpus,
        fb_used_mb=_number(row.get("fb_used_mb"), "fb_used_mb", where),
        power_w=_number(row.get("power_w"), "power_w", where),
    )


def _number(value: Any, name: str, where: str, upper: float | None = None) -> float | None:
    """A non-negative finite number; empty means missing (None), anything else unparsable is an error."""
    if value is None or value == "":
        return None
    number = finite(value)
    if number is None and not _nonfinite_text(value):
        # booleans, "0_0", other scripts' digits: float() would read them; a reading never is one
        raise InputError(f"{where}: field {name!r}: {value!r} is not a number; expected ASCII digits") from None
    if number is None or number < 0 or (upper is not None and number > upper):
        bound = f"0..{upper:g}" if upper is not None else ">= 0"
        raise InputError(f"{where}: field {name!r}: {value!r} is out of range; expected {bound}")
    return number


def _nonfinite_text(value: Any) -> bool:
    """NaN, an infinity or an overflowing number: a number, but out of every range."""
    if isinstance(value, float):
        return True
    text = value.strip().lower().lstrip("+-") if isinstance(value, str) else ""
    return text in ("nan", "inf", "infinity") or (is_number_text(text) and not math.isfinite(float(text)))


# A sample's time lies in 1970-01-01 .. 2100-01-01 UTC (reports turn every time into a date).
EARLIEST_TS, LATEST_TS = 0.0, 4102444800.0


def parse_timestamp(value: Any, where: str) -> float:
    """ISO 8601 with a zone (``2025-03-12T13:30:00Z``) or epoch seconds, in 1970 .. 2100."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: field 'timestamp': {value!r} is not ISO 8601 or epoch seconds")
    text = str(value).strip()
    number = finite(value)
    if number is None and text.isascii() and not _nonfinite_text(value):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{where}: field 'timestamp': {text!r} is not ISO 8601 or epoch seconds") from None
        if moment.tzinfo is None:
            raise InputError(f"{where}: field 'timestamp': {text!r} has no time zone; write it in UTC with 'Z'")
        number = moment.timestamp()
    if number is None or not EARLIEST_TS <= number <= LATEST_TS:
        raise InputError(f"{where}: field 'timestamp': {text!r} is not a time from 1970 to 2100 "
                         "(ISO 8601 with a zone, or epoch seconds)")
    return number


def _check_order(path: Path, resource: str, samples: list[Sample]) -> None:
    for prev, cur in zip(samples, samples[1:], strict=False):
        if cur.ts <= prev.ts:
            raise InputError(f"{path}: resource {resource!r}: timestamp {iso(cur.ts)} is not after {iso(prev.ts)}; "
                             f"rows of one resource must be in increasing time order without duplicates")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_trace(path: Path | str, samples: Iterable[Sample]) -> Path:
    """Write samples as CSV (gzip when the name ends in .gz), the format ``load_trace`` reads."""
    path = Path(path)
    with open_text_out(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for s in samples:
            writer.writerow([iso(s.ts), s.resource, _fmt(s.gpu_util_pct), _fmt(s.requests), _fmt(s.influence_pct),
                             _fmt(s.gpus), _fmt(s.fb_used_mb), _fmt(s.power_w)])
    return path


def open_text_out(path: Path) -> io.TextIOBase:
    """A text file for writing; gzip (with a fixed mtime, so output is reproducible) when the name ends .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        raw = gzip.GzipFile(path, "wb", mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# ---------------------------------------------------------------- NVML

def nvml_samples(resource_prefix: str = "gpu") -> list[Sample]:
    """One sample per local GPU, read through NVML (utilisation, memory, power)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise DependencyError(f"NVML is not available: {exc}") from None
    try:
        now = _time.time()
        return [_nvml_sample(pynvml, i, f"{resource_prefix}{i}", now) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _nvml_sample(pynvml: Any, index: int, resource: str, now: float) -> Sample:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    try:
        power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
    except pynvml.NVMLError:
        power = None  # some boards do not report power; missing, not zero
    # NVML knows nothing of requests or influence: those stay missing, so NVML alone never reaps.
    return Sample(ts=now, resource=resource, gpu_util_pct=float(util), requests=None, influence_pct=None,
                  fb_used_mb=memory, power_w=power)



__all__ = ["COLUMNS", "Sample", "Trace", "iso", "load_trace", "nvml_samples", "parse_row",
           "parse_timestamp", "write_trace"]
