"""Feature flags (cost gates, reaper, pipeline pauses, deployed model, served versions), audited."""

from costeff.flags.spec import KNOWN, FlagSpec, parse_value, spec_for
from costeff.flags.store import FlagChange, FlagState, FlagStore

__all__ = ["FlagStore", "FlagChange", "FlagState", "FlagSpec", "KNOWN", "parse_value", "spec_for"]
