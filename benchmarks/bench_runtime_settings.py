"""A policy without redundancy: only fp32 (and perhaps fp16) decide like fp32; what is left is runtime settings.

The policy is built here: a randomly initialised 64 -> 1632 -> 1632 -> 512 tanh MLP
(3.6 M parameters, about the default policy's widened size), 9 actions with small
logits (many near-ties) and a value head, fed heavy-tailed (Student-t, 3 degrees
of freedom) observations. Nothing is widened, so nothing can be pruned.

Goals: no structural or int8 variant is selected unless it passes at every
served batch size; each structural probe gives up within its 60 s budget; the
selection is fp32 or fp16 under the runtime settings that won the rounds
(fp32@threads=1, fp32@nospin ... timed beside fp32 in the same interleaved
rounds). Traffic: 20 requests/s with a 2 ms p99 budget (light: every variant
idles, answer time decides). The host is shared: read the min-max spreads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROWS, SEED = 4096, 31
WIDTHS = (64, 1632, 1632, 512)
ACTIONS = 9
RATE, BUDGET_MS = 20.0, 2.0
VARIANTS = ("fp16", "int8-dynamic", "int8-static", "ov-fp32", "ov-int8", "ov-w8", "prune", "lowrank",
            "prune+int8-dynamic", "fp32@threads=1", "fp32@nospin", "fp16@threads=1", "fp16@nospin",
            "ov-fp32@hint=throughput")


def random_policy(path: Path) -> int:
    """Write the random MLP to ``path``; returns its parameter count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    nodes, inits, x = [], [], "obs"
    for i, (a, b) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(b)).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"z{i}"], name=f"dense{i}"),
                  helper.make_node("Tanh", [f"z{i}"], [f"h{i}"], name=f"tanh{i}")]
        x = f"h{i}"
    for name, n, scale in (("logits", ACTIONS, 0.5), ("value", 1, 1.0)):  # small logits: near-ties
        w = (scale * rng.standard_normal((WIDTHS[-1], n)) / np.sqrt(WIDTHS[-1])).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w_{name}"), numpy_helper.from_array(np.zeros(n, np.float32),
                                                                                   f"b_{name}")]
        nodes.append(helper.make_node("Gemm", [x, f"w_{name}", f"b_{name}"], [name], name=f"head_{name}"))
    graph = helper.make_graph(nodes, "random_policy",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", WIDTHS[0]])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", k])
                               for n, k in (("logits", ACTIONS), ("value", 1))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return int(sum(np.prod(i.dims) for i in inits))


def main() -> dict[str, Any]:
    from costeff.quantization import QuantizeConfig, quantize
    from costeff.quantization.structural import PROBE_BUDGET_S

    with tempfile.TemporaryDirectory(prefix="costeff-bench-rv-") as tmp:
        path = Path(tmp) / "random_policy.onnx"
        params = random_policy(path)
        obs = np.random.default_rng(SEED + 1).standard_t(3.0, size=(ROWS, WIDTHS[0])).astype(np.float32)
        print(f"random policy: {params:,} parameters, widths {list(WIDTHS)}, Student-t(3) inputs")
        config = QuantizeConfig(variants=VARIANTS, batch_sizes=(1, 64, 256), window_s=0.5, speed_rounds=3,
                                target_rate=RATE, latency_budget_ms=BUDGET_MS, name="random_policy")
        report = quantize(path, obs, config, out_dir=Path(tmp) / "q")
        _print(report)
        md = (Path(tmp) / "q" / "quantization_report.md").read_text()
        for head in ("\n### Runtime settings", "\n## Runtime settings"):  # rows at the target; every setting
            print(md[md.index(head):].split("\n\n#")[0] if head in md else "")
    return {"selected": report.selected["name"], "goals": _goals(report, PROBE_BUDGET_S)}


def _goals(report: Any, budget_s: float) -> list[dict[str, Any]]:
    sel = report.variant(report.selected["name"])
    at_every = all(b.passed for b in sel.fidelity_by_batch.values())
    plain = sel.precision in ("fp32", "fp16") and sel.structure is None  # neither int8 nor pruned / low-rank
    goals = [_goal("selected decides like fp32 at every served batch size", at_every, "==", True),
             _goal("selected is fp32 or fp16 (any runtime, any runtime settings)", plain, "==", True)]
    for kind in ("prune", "lowrank"):
        s = report.variant(kind).structure or {}
        goals.append(_goal(f"{kind} probe seconds", s.get("seconds"), "<=", budget_s))
    timed = [v for v in report.variants if v.settings_of == "fp32"]
    goals.append(_goal("fp32's runtime settings timed beside it", all(v.speedup for v in timed) and bool(timed),
                       "==", True))
    return goals


def _print(report: Any) -> None:
    print(f"selected {report.selected['name']}: {report.selected['reason']}")
    for v in report.variants:
        f = v.fidelity
        print(f"{v.name}: built={v.built} passed={v.passed} {v.error or v.not_tried or ''}"
              + (f" drift@largest {f.action_drift_pct:.3f} %" if f else ""))
        for b, tp in sorted(v.throughput_per_s.items()):
            lo, hi = v.throughput_range_per_s[b]
            print(f"  batch {b}: {tp:,.0f}/s ({lo:,.0f}-{hi:,.0f})")
        if v.latency_by_gap:
            print("  batch-1 p50 after gaps: " + ", ".join(f"{g['gap_ms']:g} ms -> {g['p50_ms']:.3f} ms"
                                                           for g in v.latency_by_gap))
        if v.open_loop:
            lo, hi = v.open_loop_p50_range_ms or (None, None)
            print(f"  open loop at {RATE:g}/s: p50 {v.open_loop['p50_ms']:.3f} ms ({lo}-{hi}), "
                  f"p99 {v.open_loop['p99_ms']:.3f} ms")
        if v.structure:
            print(f"  probe {v.structure['seconds']:.1f} s, ended: {v.structure['stopped']}")


def _goal(name: str, observed: Any, comparator: str, threshold: Any) -> dict[str, Any]:
    ok = observed is not None and (observed == threshold if comparator == "==" else
                                   observed <= threshold if comparator == "<=" else observed >= threshold)
    return {"name": name, "observed": observed, "comparator": comparator, "threshold": threshold, "passed": ok}
