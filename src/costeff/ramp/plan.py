"""The ramp plan: ordered influence steps, each with its cost cap and promotion requirements.

The file is read into pydantic models (strict types, unknown keys refused with a did-you-mean),
then resolved into the frozen ``RampPlan`` the decider uses.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, StrictFloat, StrictInt

from costeff.configfile import STRICT_MODEL, read_toml, validate
from costeff.errors import InputError

# What a plan file may leave out (docs/architecture.md#fidelity-metrics tolerances; the original program's 30 % cap).
BUILTIN_DEFAULTS = {"cost_ratio_cap_pct": 30.0, "min_days": 7, "min_trades": 1000,
                    "max_drawdown_usd": 10000.0, "max_net_loss_usd": 5000.0}
BUILTIN_QUANT = {"max_action_drift_pct": 0.5, "max_entropy_drift_pct": 0.5}

Amount = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0)]


class StepLimits(BaseModel):
    """What a step requires; in [defaults] every field, in [[steps]] any field, may be given."""

    model_config = STRICT_MODEL
    cost_ratio_cap_pct: Amount | None = None
    min_days: Count | None = None
    min_trades: Count | None = None
    max_drawdown_usd: Amount | None = None
    max_net_loss_usd: Amount | None = None


class StepFile(StepLimits):
    influence_pct: Annotated[StrictFloat, Field(ge=0, le=100, allow_inf_nan=False)]


class QuantizationFile(BaseModel):
    model_config = STRICT_MODEL
    max_action_drift_pct: Amount = BUILTIN_QUANT["max_action_drift_pct"]
    max_entropy_drift_pct: Amount = BUILTIN_QUANT["max_entropy_drift_pct"]


class PlanFile(BaseModel):
    """The plan file as written (``plan.toml``)."""

    model_config = STRICT_MODEL
    window_days: Annotated[StrictInt, Field(ge=1)] = 14
    defaults: StepLimits = StepLimits()
    quantization: QuantizationFile = QuantizationFile()
    steps: Annotated[list[StepFile], Field(min_length=2)]


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
    """The shipped plan, or ``path`` (same format); every key validated, errors name file and key."""
    if path is None:
        where = "costeff/ramp/plan.toml"
        try:
            data = tomllib.loads((resources.files("costeff.ramp") / "plan.toml").read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{where}: not valid TOML: {exc}") from None
    else:
        where, data = str(path), read_toml(path, "ramp plan")
    return _plan(validate(PlanFile, data, where), where)


def _plan(plan: PlanFile, where: str) -> RampPlan:
    defaults = {**BUILTIN_DEFAULTS, **plan.defaults.model_dump(exclude_none=True)}
    steps = tuple(Step(influence_pct=s.influence_pct, **{**defaults, **s.model_dump(exclude_none=True,
                                                                                      exclude={"influence_pct"})})
                  for s in plan.steps)
    levels = [s.influence_pct for s in steps]
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise InputError(f"{where}: steps: influence_pct must increase strictly, got {levels}")
    return RampPlan(steps, plan.window_days, plan.quantization.max_action_drift_pct,
                    plan.quantization.max_entropy_drift_pct, where)
