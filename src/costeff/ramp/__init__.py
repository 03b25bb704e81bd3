"""The economic ramp decider: ledgers + plan + quantization evidence -> PROMOTE / HOLD / ROLLBACK."""

from costeff.ramp.decide import HOLD, PROMOTE, ROLLBACK, DecideConfig, RampDecision, decide
from costeff.ramp.plan import RampPlan, Step, load_plan
from costeff.ramp.report import write

__all__ = ["decide", "DecideConfig", "RampDecision", "RampPlan", "Step", "load_plan", "write",
           "PROMOTE", "HOLD", "ROLLBACK"]
