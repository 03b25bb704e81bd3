"""Packs: one signed, verifiable tarball of the latest report of every stage, with a generated summary."""

from costeff.pack.bundle import PackResult, pack
from costeff.pack.check import VerifyReport, verify_pack

__all__ = ["PackResult", "VerifyReport", "pack", "verify_pack"]
