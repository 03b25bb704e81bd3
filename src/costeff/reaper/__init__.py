"""Idle resource reaper: signals -> idle decision -> actions -> audit trail.

``reap_trace(path, config, out)`` replays a trace and writes ``reaper_report.json``;
``tick``/``watch`` act live on Prometheus signals; ``restore_all`` undoes applied
actions from the audit trail. Dry run is the default everywhere.
"""

from costeff.reaper.config import ReaperConfig, Target, load_config
from costeff.reaper.decision import Verdict, decide
from costeff.reaper.run import reap_trace
from costeff.reaper.signals import Sample, Trace, load_trace

__all__ = ["ReaperConfig", "Target", "load_config", "Verdict", "decide", "reap_trace", "Sample", "Trace",
           "load_trace"]
