"""Which figure the completion summary shows for a measured quantity: one measurement, used everywhere.

Throughput, speedup and $/day of the served variant and of fp32 come from the
interleaved rounds of the quantization report when it timed them; a dedicated
profile that disagrees with those rounds is named, not shown as a second figure.
"""

from __future__ import annotations

from typing import Any

PROFILE, PROFILE_FP32 = "profile/gpu_profile.json", "profile_fp32/gpu_profile.json"
QUANT = "quant/quantization_report.json"


def selected_entry(quant: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quantization report's entry for the variant it selected."""
    if not quant:
        return None
    name = (quant.get("selected") or {}).get("name")
    return next((v for v in quant.get("variants", []) if v.get("name") == name), None)


def timed_entry(quant: dict[str, Any] | None, profile: dict[str, Any] | None, label: str) -> dict[str, Any] | None:
    """The quantization report's entry for the profiled model (by hash; fp32 by baseline) when it was timed."""
    if not quant or not profile:
        return None
    for v in quant.get("variants", []):
        same = v.get("sha256") == profile.get("model_sha256") or (label == "fp32 baseline" and v.get("baseline"))
        if same and v.get("optimal_throughput_per_s"):
            return v
    return None


def disagreements(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Pairs of throughput measurements of the same variant and batch whose measured ranges do not overlap.

    The profile's range is its measurement windows (min-max); the quantization
    report's is its interleaved speed rounds. Ranges that do not overlap mean the
    machine changed between the two (other load, frequency scaling), not noise.
    """
    out = []
    for label, path in (("served variant", PROFILE), ("fp32 baseline", PROFILE_FP32)):
        p = r["fp32"] if path == PROFILE_FP32 else r["profile"]
        found = _pair(p, r["quant"])
        if found and found["profile_range"][1] < found["quant_range"][0] or \
                found and found["quant_range"][1] < found["profile_range"][0]:
            out.append({**found, "label": label, "profile_file": path})
    return out


def _pair(profile: dict[str, Any] | None, quant: dict[str, Any] | None) -> dict[str, Any] | None:
    if not profile or not quant:
        return None
    variant = next((v for v in quant.get("variants", []) if v.get("sha256") == profile.get("model_sha256")), None)
    batch = (profile.get("optimal") or {}).get("batch_size")
    point = next((x for x in profile.get("points", []) if x.get("batch_size") == batch), None)
    if not variant or not point or str(batch) not in (variant.get("throughput_range_per_s") or {}):
        return None
    windows = [w["throughput_per_s"] for w in point.get("windows", []) if w.get("throughput_per_s")]
    if not windows:
        return None
    return {"variant": variant["name"], "batch": batch, "profile_per_s": point["throughput_per_s"],
            "profile_range": (min(windows), max(windows)),
            "quant_per_s": (variant.get("throughput_per_s") or {}).get(str(batch)),
            "quant_range": tuple(variant["throughput_range_per_s"][str(batch)])}


def day_costs(r: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """fp32's and the served variant's $/day at the target: from the interleaved rounds (the same measurement
    as the speedup) when the quantization report has them, else from the two dedicated profiles."""
    q = r["quant"] or {}
    base = next((v for v in q.get("variants", []) if v.get("baseline")), None)
    sel = selected_entry(q)
    if base and sel and base.get("at_target") and sel.get("at_target"):
        rate, inst = (q.get("cost") or {}).get("target_rate_per_s"), (q.get("cost") or {}).get("instance")
        day = lambda v: {"usd_per_day": v["at_target"]["usd_per_day"], "target_rate_per_s": rate,  # noqa: E731
                         "instances_needed": v["at_target"]["instances"], "instance": inst}
        return day(base), day(sel), f"`{QUANT}`"
    before, after = ((r["fp32"] or {}).get("cost") or {}), ((r["profile"] or {}).get("cost") or {})
    if r["fp32"] and before.get("usd_per_day") is not None and after.get("usd_per_day") is not None:
        return before, after, f"`{PROFILE_FP32}`, `{PROFILE}`"
    return None, None, ""
