"""Drift on live observations: the served variant vs the fp32 reference, per time window."""

from costeff.drift.check import DriftConfig, DriftReport, DriftWindow, check_drift

__all__ = ["DriftConfig", "DriftReport", "DriftWindow", "check_drift"]
