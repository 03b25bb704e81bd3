"""Feature flags (serving precision, cost gates, reaper, pipeline pauses, deployed model), audited."""

from costeff.flags.spec import KNOWN, PRECISIONS, FlagSpec, parse_value, spec_for
from costeff.flags.store import FlagChange, FlagState, FlagStore

__all__ = ["FlagStore", "FlagChange", "FlagState", "FlagSpec", "KNOWN", "PRECISIONS", "parse_value", "spec_for"]
