"""Tamper-evident, append-only audit trail shared by the reaper, the ramp decider and flags."""

from costeff.audit.log import AuditLog, VerifyResult, default_log, verify

__all__ = ["AuditLog", "VerifyResult", "default_log", "verify"]
