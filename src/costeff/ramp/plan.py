"""The ramp plan: ordered influence steps, each with its cost cap and promotion requirements."""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from costeff.errors import InputError

_TOP = {"window_days", "defaults", "quantization", "steps"}
_STEP = {"cost_ratio_cap_pct": float, "min_days": int, "min_trades": int,
         "max_drawdown_usd": float, "max_net_loss_usd": float}
_QUANT = {"max_action_drift_pct": float, "max_entropy_drift_pct": float}
# What a plan file may leave out (DESIGN.md section 4 tolerances; the original program's 30 % cap).
BUILTIN_DEFAULTS = {"cost_ratio_cap_pct": 30.0, "min_days": 7, "min_trades": 1000,
                    "max_drawdown_usd": 10000.0, "max_net_loss_usd": 5000.0}
BUILTIN_QUANT = {"max_action_drift_pct": 0.5, "max_entropy_drift_pct": 0.5}


@dataclass(frozen=True)
class Step:
    influence_pct: float
    cost_ratio_cap_pct: float
    min_days: int
    min_trades: int
    max_drawdown_usd: float
    max_net_loss_usd: float


@dataclass(frozen=True)
class RampPlan:
    steps: tuple[Step, ...]
    window_days: int
    max_action_drift_pct: float
    max_entropy_drift_pct: float
    source: str

    def index_of(self, influence_pct: float) -> int:
        for i, step in enumerate(self.steps):
            if math.isclose(step.influence_pct, influence_pct, abs_tol=1e-9):
                return i
        raise InputError(f"influence {influence_pct:g} % in the ledger is not a step of {self.source}; "
                         f"steps: {', '.join(f'{s.influence_pct:g}' for s in self.steps)}")


def load_plan(path: Path | str | None = None) -> RampPlan:
    """The shipped plan, or ``path`` (same format); every key validated."""
    if path is None:
        text, where = (resources.files("costeff.ramp") / "plan.toml").read_text(encoding="utf-8"), "costeff/ramp/plan.toml"
    else:
        try:
            text, where = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ramp plan: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None
    return _plan(data, where)


def _plan(data: dict[str, Any], where: str) -> RampPlan:
    _known(data, _TOP, where, "")
    defaults = {**BUILTIN_DEFAULTS, **_table(data, "defaults", _STEP, where)}
    quant = {**BUILTIN_QUANT, **_table(data, "quantization", _QUANT, where)}
    window = _value(data.get("window_days", 14), int, f"{where}: window_days", lo=1)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or len(raw_steps) < 2:
        raise InputError(f"{where}: steps: expected at least two [[steps]] tables")
    steps = tuple(_step(i, s, defaults, where) for i, s in enumerate(raw_steps))
    levels = [s.influence_pct for s in steps]
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise InputError(f"{where}: steps: influence_pct must increase strictly, got {levels}")
    return RampPlan(steps, window, quant["max_action_drift_pct"], quant["max_entropy_drift_pct"], where)


def _step(i: int, raw: Any, defaults: dict[str, Any], where: str) -> Step:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: steps[{i}]: expected a table")
    _known(raw, set(_STEP) | {"influence_pct"}, where, f"steps[{i}].")
    if "influence_pct" not in raw:
        raise InputError(f"{where}: steps[{i}].influence_pct is missing")
    values = {**defaults, **{k: _value(v, _STEP[k], f"{where}: steps[{i}].{k}", lo=0)
                             for k, v in raw.items() if k in _STEP}}
    influence = _value(raw["influence_pct"], float, f"{where}: steps[{i}].influence_pct", lo=0, hi=100)
    return Step(influence_pct=influence, **values)


def _table(data: dict[str, Any], name: str, fields: dict[str, type], where: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise InputError(f"{where}: {name}: expected a table")
    _known(table, set(fields), where, f"{name}.")
    return {k: _value(v, fields[k], f"{where}: {name}.{k}", lo=0) for k, v in table.items()}


def _known(table: dict[str, Any], allowed: set[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise InputError(f"{where}: unknown key {prefix}{key}{hint}; allowed: {', '.join(sorted(allowed))}")


def _value(v: Any, kind: type, field: str, lo: float | None = None, hi: float | None = None) -> Any:
    ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (kind is float and not math.isfinite(v)):
        raise InputError(f"{field}: {v!r} is not {'a whole number' if kind is int else 'a number'}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{field}: {v} is out of range; expected {'>= ' + str(lo) if hi is None else f'{lo}..{hi}'}")
    return kind(v)
