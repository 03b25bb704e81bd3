"""Precision lowering on the embedded ``default`` policy, onnxruntime only (the cross-backend
search and its regimes are ``bench_backends``).

Goal: the selected variant is >= 1.5x fp32 throughput at its optimal batch with
action drift <= 0.5 % and entropy drift <= 0.5 % on held-out observations.
Side by side, in the same run: what ``quantize_dynamic(model_in, model_out)``
with onnxruntime's defaults gives, judged by the same gates and measured in the
same interleaved profiling pass as fp32 and the selected variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEEDUP_GOAL = 1.5
ROWS, SEED = 4096, 20_000


def main() -> dict[str, Any]:
    from costeff.artifacts import Layout
    from costeff.policy import default_policy, generate_observations
    from costeff.cli._common import home
    from costeff.quantization import QuantizeConfig, quantize
    from costeff.quantization.records import to_markdown

    art = default_policy("default", cache=home().cache)
    obs = generate_observations(ROWS, seed=SEED, preset="default")
    config = QuantizeConfig(batch_sizes=(1, 16, 64, 256), window_s=1.0, speed_rounds=2, name="policy_default",
                            backends=("onnxruntime",))
    out = Layout.default().run_dir("quant")
    report = quantize(art.onnx_path, obs, config, out_dir=out)
    print(to_markdown(report))
    defaults = _ort_defaults(Path(art.onnx_path), obs, report, config, out)
    _print_side_by_side(report, defaults)
    return {"goals": _goals(report), "report": str(out / "quantization_report.json"), "ort_defaults": defaults}


def _ort_defaults(model: Path, obs: Any, report: Any, config: Any, out: Path) -> dict[str, Any]:
    """quantize_dynamic with defaults vs fp32 and the selected variant: same rows, same gates, one pass."""
    from onnxruntime.quantization import quantize_dynamic

    from costeff.observations import split
    from costeff.quantization import compare, gates
    from costeff.quantization.fidelity import run_policy
    from costeff.quantization.records import VariantResult
    from costeff.quantization.speed import measure_all

    path = out / "ort_defaults_int8.onnx"
    quantize_dynamic(str(model), str(path))
    s = report.split
    held_out = split(obs, s["calibration_fraction"], s["seed"], s["min_calibration"], s["min_evaluation"]).evaluation
    fid = compare(run_policy(model, held_out, "logits", "value"), run_policy(path, held_out, "logits", "value"))
    sel = report.variant(report.selected["name"])
    paths = {"fp32": model, "ort-defaults": path}
    if sel.name != "fp32":
        paths[f"selected ({sel.name})"] = Path(sel.path)
    timed = [VariantResult(name, path=str(p), session_config=report.variant(sel.name).session_config
                           if name.startswith("selected") else {}) for name, p in paths.items()]
    speeds = measure_all(timed, config, obs)
    base = speeds["fp32"].optimal_throughput_per_s
    return {"fidelity": fid, "gates": gates(fid, config.tolerances),
            "speedup": {k: v.optimal_throughput_per_s / base for k, v in speeds.items()},
            "throughput_per_s": {k: v.throughput_per_s for k, v in speeds.items()},
            "optimal_batch": {k: v.optimal_batch for k, v in speeds.items()}}


def _print_side_by_side(report: Any, d: dict[str, Any]) -> None:
    f = d["fidelity"]
    verdict = "PASS" if all(g.passed for g in d["gates"]) else "FAIL"
    print("\n== quantize_dynamic(model_in, model_out) with onnxruntime defaults, same held-out rows ==")
    print(f"action drift {f.action_drift_pct:.3f} %, entropy drift {f.entropy_drift_pct:.3f} %, "
          f"correlation {f.action_correlation:.5f}, KL p99 {f.kl_p99:.2e}, value err {f.value_max_abs_err:.4f}: "
          f"gates {verdict} ({', '.join(f'{g.name} {g.verdict.value}' for g in d['gates'])})")
    for name, sp in d["speedup"].items():
        print(f"  {name:28s} speedup {sp:.2f}x at batch {d['optimal_batch'][name]}  "
              f"throughput/s {({b: round(t) for b, t in d['throughput_per_s'][name].items()})}")
    print(f"selected by costeff: {report.selected['name']} ({report.selected['reason']})")


def _goals(report: Any) -> list[dict[str, Any]]:
    sel = report.variant(report.selected["name"])
    f = sel.fidelity
    return [
        {"name": f"selected variant ({sel.name}) speedup vs fp32 at its optimal batch",
         "observed": round(sel.speedup or 0, 3), "threshold": SPEEDUP_GOAL, "comparator": ">=",
         "passed": (sel.speedup or 0) >= SPEEDUP_GOAL},
        {"name": "selected variant action drift % (held-out)", "observed": round(f.action_drift_pct, 4),
         "threshold": 0.5, "comparator": "<=", "passed": f.action_drift_pct <= 0.5},
        {"name": "selected variant entropy drift % (held-out)", "observed": round(f.entropy_drift_pct or 0, 4),
         "threshold": 0.5, "comparator": "<=", "passed": f.entropy_drift_pct is not None and f.entropy_drift_pct <= 0.5},
    ]


if __name__ == "__main__":
    import sys
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)
