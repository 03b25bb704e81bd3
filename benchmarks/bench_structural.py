"""Structural variants on the embedded ``default`` policy (a 256/256/64 network widened to 2048/2048/512).

Goals: ``prune`` passes every held-out gate, its search stays within the
probe budget, and it is >= 4x fp32's throughput at batch 1 and at batch 64.
Speed: each variant in its own process, interleaved rounds, medians with the
min-max spread over rounds (the host is shared: read the spread).
"""

from __future__ import annotations

from typing import Any

ROWS, SEED = 4096, 20_000
SPEEDUP_GOAL = 4.0
BATCHES = (1, 64, 256)


def main() -> dict[str, Any]:
    from costeff.artifacts import Layout
    from costeff.policy import default_policy, generate_observations
    from costeff.cli._common import home
    from costeff.quantization import QuantizeConfig, quantize
    from costeff.quantization.structural import PROBE_BUDGET_S

    art = default_policy("default", cache=home().cache)
    obs = generate_observations(ROWS, seed=SEED, preset="default")
    config = QuantizeConfig(variants=("prune", "lowrank", "prune+int8-dynamic"), backends=("onnxruntime",),
                            batch_sizes=BATCHES, window_s=1.0, speed_rounds=5, finalists=None,
                            name="policy_default", tune_knobs=False)
    report = quantize(art.onnx_path, obs, config, out_dir=Layout.default().run_dir("quant"))
    base = report.variant("fp32")
    for v in report.variants:
        _print(v, base)
    prune = report.variant("prune")
    probe_s = (prune.structure or {}).get("seconds")
    return {"selected": report.selected["name"], "goals": [
        _goal("prune passes every held-out gate", prune.passed, "==", True),
        _goal("prune probe seconds", probe_s, "<=", PROBE_BUDGET_S),
        *[_goal(f"prune speedup at batch {b}", _ratio(prune, base, b), ">=", SPEEDUP_GOAL) for b in (1, 64)]]}


def _ratio(v: Any, base: Any, batch: int) -> float | None:
    if batch not in v.throughput_per_s or batch not in base.throughput_per_s:
        return None
    return round(v.throughput_per_s[batch] / base.throughput_per_s[batch], 2)


def _print(v: Any, base: Any) -> None:
    f, s = v.fidelity, v.structure or {}
    print(f"{v.name}: built={v.built} passed={v.passed} {v.error or v.not_tried or ''}")
    if f:
        print(f"  held-out: action drift {f.action_drift_pct:.3f} %, entropy drift {f.entropy_drift_pct:.3f} %, "
              f"correlation {f.action_correlation:.5f}")
    for t in s.get("steps", []):
        print(f"  tried {t['sizes']} ({t['params']:,} params): {'pass' if t['passed'] else 'fail'} "
              f"on calibration, {t['seconds']:.1f} s")
    if s:
        print(f"  search {s['seconds']:.1f} s, ended: {s['stopped']}")
    for b, tp in sorted(v.throughput_per_s.items()):
        lo, hi = v.throughput_range_per_s[b]
        print(f"  batch {b}: {tp:,.0f}/s ({lo:,.0f}-{hi:,.0f}), {_ratio(v, base, b)}x fp32")


def _goal(name: str, observed: Any, comparator: str, threshold: Any) -> dict[str, Any]:
    ok = observed is not None and (observed == threshold if comparator == "==" else
                                   observed <= threshold if comparator == "<=" else observed >= threshold)
    return {"name": name, "observed": observed, "comparator": comparator, "threshold": threshold, "passed": ok}
