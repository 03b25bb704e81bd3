"""The int8 recipe for this machine: a table keyed by CPU features, then measured.

On x86 without VNNI, onnxruntime's U8S8 kernels (VPMADDUBSW) add pairs of
u8*s8 products into 16 bits and can saturate. onnxruntime documents two remedies:
7-bit weights (``reduce_range``) and the slower U8U8 path through the session
option ``session.x64quantprecision``. Which one keeps the policy's decisions is
measured on the calibration rows (never the held-out ones) and the evidence
goes into the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costeff.quantization.build import Int8Recipe

X64_PRECISION = {"session.x64quantprecision": "1"}


@dataclass(frozen=True)
class RecipePlan:
    candidates: tuple[Int8Recipe, ...]
    reason: str


def plan(hw: Any) -> RecipePlan:
    """Candidate recipes for the detected hardware, best guess first, with the reason."""
    x86 = hw.machine.lower() in ("x86_64", "amd64", "i686")
    if not x86:
        return RecipePlan((Int8Recipe("s8s8", "QInt8", "QInt8"),),
                          f"{hw.machine}: not x86; onnxruntime's S8S8 kernels do not saturate there")
    if hw.has_vnni:
        return RecipePlan((Int8Recipe("s8s8", "QInt8", "QInt8"), Int8Recipe("u8s8")),
                          "x86 with VNNI: int8 dot products accumulate in 32 bits, S8S8 / U8S8 do not saturate")
    isa = "AVX-512 without VNNI" if hw.has_avx512 else ("AVX2 without VNNI" if "avx2" in hw.isa else "no AVX2")
    return RecipePlan(
        (Int8Recipe("u8s8-reduce-range", reduce_range=True),
         Int8Recipe("u8s8"),
         Int8Recipe("u8s8-x64quantprecision", session_config=dict(X64_PRECISION)),
         Int8Recipe("s8s8", "QInt8", "QInt8")),
        f"x86 {isa}: U8S8 products are summed pairwise into 16 bits (VPMADDUBSW) and can saturate; "
        "onnxruntime documents reduce_range (7-bit weights) and session.x64quantprecision (U8U8) as "
        "remedies; each candidate measured on the calibration rows")


def choose(evidence: list[dict[str, Any]]) -> int:
    """Index of the recipe to use: fewest action flips, then lowest KL; recipes that need a
    session option when served rank after those baked into the model at equal fidelity."""
    def key(i: int) -> tuple[float, bool, float]:
        e = evidence[i]
        if e.get("error"):
            return (float("inf"), True, float("inf"))
        return (round(e["action_drift_pct"], 6), bool(e["session_config"]), e["kl_mean"])

    return min(range(len(evidence)), key=key)
