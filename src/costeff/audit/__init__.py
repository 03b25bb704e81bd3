"""Signed, hash-chained, anchored append-only audit trail shared by the reaper, the ramp decider and flags."""

from costeff.audit.keys import Signer, Verifier, keygen, load_signer, load_verifier
from costeff.audit.log import AuditLog
from costeff.audit.verify import VerifyResult, verify

__all__ = ["AuditLog", "Signer", "Verifier", "VerifyResult", "keygen", "load_signer",
           "load_verifier", "verify"]
