"""Infrastructure cost per day from OpenCost's allocation API (``GET /allocation/compute``).

OpenCost answers ``{"code": 200, "data": [set, ...]}``: one allocation set per
``step``, each a map from allocation name to an allocation with ``window``
(``start``/``end``), ``properties`` (``labels`` among them) and ``totalCost``.
costeff asks for daily sets (``step=1d``, ``accumulate=false``), keeps the
allocations that match every ``--match KEY=VALUE`` (a label, or the allocation's
name when the query aggregates by that label), and spreads each one's
``totalCost`` over the UTC days of its window, as for FOCUS charges.

An error answer is bad input (exit 2): OpenCost writes a plain-text body for a
bad ``window`` and ``{"code": 4xx/5xx, "message": ...}`` otherwise. A server
that cannot be reached is a dependency failure (exit 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from costeff.errors import InputError
from costeff.ledger.spans import check_span, check_spans
from costeff.numbers import MAX_USD, finite

PATH = "/allocation/compute"
_WINDOW = re.compile(r"^(\d+[mhdw]|today|yesterday|week|lastweek|month|lastmonth|\S+,\S+)$")


@dataclass(frozen=True)
class OpencostConfig:
    url: str
    window: str = "7d"
    aggregate: str = "label:app"
    match: tuple[tuple[str, str], ...] = ()
    component: str = "serving"
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise InputError(f"--opencost: {self.url!r} is not an http(s) URL, e.g. http://opencost.opencost:9003")
        if not _WINDOW.match(self.window):
            raise InputError(f"--window: {self.window!r} is not an OpenCost window (e.g. 7d, 24h, lastweek, "
                             "or START,END in RFC 3339)")
        if not self.match:
            raise InputError("--match: give at least one KEY=VALUE (e.g. app=policy-serving); without it every "
                             "workload in the cluster would be charged to the policy")

    def params(self) -> dict[str, str]:
        return {"window": self.window, "aggregate": self.aggregate, "step": "1d", "accumulate": "false"}

    def describe(self) -> str:
        return " and ".join(f"{k}={v}" for k, v in self.match)


@dataclass(frozen=True)
class OpencostDays:
    url: str
    window: str
    aggregate: str
    selection: str
    sets: int
    allocations_read: int
    allocations_matched: int
    other_usd: float  # cost of allocations left out (other workloads, __unallocated__, __idle__)
    days: dict[str, float]
    partial_days: list[str] = field(default_factory=list)
    schema_version: int = 1


def fetch(config: OpencostConfig) -> dict[str, Any]:
    """The decoded JSON answer of ``/allocation/compute``; raises on an error answer or an unreachable server."""
    from costeff import httpget

    url = config.url.rstrip("/") + PATH
    # timeout_s is a deadline for the whole call; a trickling or bloated answer is refused (exit 3)
    resp = httpget.get(url, config.params(), config.timeout_s, "OpenCost")
    try:
        body = resp.json()
    except ValueError as exc:
        if resp.status_code == 200:
            raise InputError(f"OpenCost {url} answered HTTP 200 with a body that is not valid JSON ({exc}); "
                             "expected finite numbers") from None
        body = None
    if resp.status_code != 200 or not isinstance(body, dict) or body.get("code", 200) != 200:
        raise InputError(f"OpenCost {url} answered HTTP {resp.status_code}: {_message(resp.text, body)}")
    return body


def _message(text: str, body: Any) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"]).strip().splitlines()[0]
    first = (text or "").strip().splitlines()
    return first[0][:200] if first else "(empty body)"


def read_opencost(config: OpencostConfig, body: dict[str, Any] | None = None) -> OpencostDays:
    """Per-day cost of the matching allocations (``body`` given: parse it without asking the server)."""
    import numpy as np

    from costeff.ledger.focus import partial_days_of, split_by_day

    body = fetch(config) if body is None else body
    sets = _sets(body, config)
    rows, other, read = [], 0.0, 0
    for index, allocations in enumerate(sets):
        for name, alloc in allocations.items():
            read += 1
            start, end, cost = _allocation(alloc, name, index, config)
            if _matches(name, alloc, config):
                rows.append((start, end, cost))
            else:
                other += cost
    if not rows:
        raise InputError(f"OpenCost {config.url}: no allocation matches {config.describe()} in window "
                         f"{config.window} ({read} allocations in {len(sets)} sets, aggregate {config.aggregate}); "
                         "nothing to import")
    starts, ends, costs = (np.array(c) for c in zip(*rows, strict=True))
    check_spans(starts.astype(np.int64), ends.astype(np.int64), f"OpenCost {config.url}", "matching allocation")
    days, _ = split_by_day(starts.astype(np.int64), ends.astype(np.int64), costs.astype(float))
    return OpencostDays(config.url, config.window, config.aggregate, config.describe(), len(sets), read, len(rows),
                        other, days, partial_days_of(starts.astype(np.int64), ends.astype(np.int64), days))


def _sets(body: dict[str, Any], config: OpencostConfig) -> list[dict[str, Any]]:
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(s, dict) or s is None for s in data):
        raise InputError(f"OpenCost {config.url}{PATH}: 'data' is {type(data).__name__}; expected a list of "
                         "allocation sets (name -> allocation)")
    sets = [s for s in data if s]
    if not sets:
        raise InputError(f"OpenCost {config.url}: no allocation data in window {config.window}; nothing to import")
    return sets


def _allocation(alloc: Any, name: str, index: int, config: OpencostConfig) -> tuple[int, int, float]:
    where = f"OpenCost {config.url}{PATH}: data[{index}][{name!r}]"
    if not isinstance(alloc, dict):
        raise InputError(f"{where} is {type(alloc).__name__}; expected an allocation object")
    window = alloc.get("window") or {}
    start, end = alloc.get("start") or window.get("start"), alloc.get("end") or window.get("end")
    cost = alloc.get("totalCost")
    if not isinstance(cost, (int, float)) or isinstance(cost, bool):
        raise InputError(f"{where}.totalCost is {cost!r}; expected a number (OpenCost writes null when it "
                         "could not compute a cost)")
    if finite(cost) is None or not 0 <= cost <= MAX_USD:
        raise InputError(f"{where}.totalCost is {cost!r}; expected a finite cost from 0 to {MAX_USD:g} USD")
    first, last = _epoch(start, f"{where}.start"), _epoch(end, f"{where}.end")
    check_span(first, last, f"{where}.window")
    return first, last, float(cost)


def _epoch(text: Any, where: str) -> int:
    try:
        if not str(text).isascii():
            raise ValueError(text)
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp())
    except (ValueError, OverflowError):
        raise InputError(f"{where} is {text!r}; expected an RFC 3339 time") from None


def _matches(name: str, alloc: dict[str, Any], config: OpencostConfig) -> bool:
    labels = ((alloc.get("properties") or {}).get("labels")) or {}
    for key, value in config.match:
        by_name = config.aggregate == f"label:{key}" and name == value
        if not by_name and str(labels.get(key)) != value:
            return False
    return True


def as_rows(result: OpencostDays, component: str) -> list[Any]:
    from costeff.ledger.csvio import CostRow

    source = f"opencost:{result.url} ({result.aggregate}; {result.selection})"
    return [CostRow(day, component, round(usd, 6), source) for day, usd in sorted(result.days.items())]
