"""Every artifact kind, declared once: its folder under ``cost/``, its file and its typed record."""

from __future__ import annotations

from costeff.records import Kind
from costeff.records.batching import BatchingRecord
from costeff.records.build import BuildRecord
from costeff.records.drift import DriftRecord
from costeff.records.profile import ProfileRecord
from costeff.records.quant import QuantRecord
from costeff.records.ramp import RampRecord
from costeff.records.reaper import ReaperRecord
from costeff.records.verify import VerifyRecord

PROFILE = Kind("profile", None, "gpu_profile.json", ProfileRecord)
QUANT = Kind("quant", "quant", "quantization_report.json", QuantRecord)
BATCHING = Kind("batching", "batching", "batching_report.json", BatchingRecord)
REAPER = Kind("reaper", "reaper", "reaper_report.json", ReaperRecord)
RAMP = Kind("ramp", "ramp", "ramp_decision.json", RampRecord)
VERIFY = Kind("verify", "verify", "verify_report.json", VerifyRecord)
DRIFT = Kind("drift", "drift", "drift_report.json", DriftRecord)
# In a Triton repository entry (``<repository>/<model>/costeff_build.json``), not under ``cost/``.
BUILD = Kind("build", None, "costeff_build.json", BuildRecord)

KINDS: dict[str, Kind] = {k.name: k for k in (PROFILE, QUANT, BATCHING, REAPER, RAMP, VERIFY, DRIFT, BUILD)}
