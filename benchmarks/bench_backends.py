"""The cross-backend search in its two regimes, and on a second policy unlike the default one.

One ``costeff quantize`` run per regime: every variant (onnxruntime and
OpenVINO) is built, gated on the same held-out rows, and timed in its own
process over interleaved rounds, so every ratio below compares runs made side
by side. The plain alternatives a user would try by hand are rows of the same
tables: onnxruntime fp32 and int8, a plain OpenVINO ``compile_model`` with the
bf16 hint (``ov-bf16``) and a plain ``nncf.quantize`` (``ov-int8``, timed even
though it fails a gate).

Regimes (default policy):
- high rate: 20,000 requests/s (above one core's fp32 capacity), p99 budget 50 ms;
- sparse: 20 requests/s at batch 1, p99 budget 2 ms.
Second policy: tanh trunk, 9 actions with many near-ties, heavy-tailed (Student-t)
observations, at 20,000 requests/s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HIGH_RATE, HIGH_BUDGET_MS = 20_000.0, 50.0
SPARSE_RATE, SPARSE_BUDGET_MS = 20.0, 2.0
ROWS, SEED = 4096, 20_000
COMPARED = ("fp32", "int8-mixed", "ov-bf16", "ov-int8", "ov-int8-ac", "ov-int8-ac-bf16", "ov-w8", "ov-w8-bf16")


def main() -> dict[str, Any]:
    from costeff.hardware import detect
    from costeff.policy import default_policy, generate_observations
    from costeff.cli._common import home

    hw = detect()
    amx = any(f in hw.isa for f in ("amx_bf16", "amx_int8"))
    bf16 = any(f in hw.isa for f in ("amx_bf16", "avx512_bf16"))
    print(f"CPU: {hw.cpu_model}; ISA {', '.join(hw.isa)}")
    if not bf16:
        print("this CPU has neither amx_bf16 nor avx512_bf16: bf16 variants are not tried; the search goes on "
              "without them and the AMX goals below are not applicable here")
    art = default_policy("default", cache=home().cache)
    obs = generate_observations(ROWS, seed=SEED, preset="default")
    high = _search(art.onnx_path, obs, HIGH_RATE, HIGH_BUDGET_MS, (1, 16, 64, 128, 256), "default_high")
    # 160 requests at 20/s: a p99 that is not just the single slowest call
    sparse = _search(art.onnx_path, obs, SPARSE_RATE, SPARSE_BUDGET_MS, (1,), "default_sparse", open_loop_s=8.0)
    with tempfile.TemporaryDirectory(prefix="costeff-bench-") as tmp:
        model, obs2 = second_policy(Path(tmp))
        second = _search(model, obs2, HIGH_RATE, HIGH_BUDGET_MS, (1, 64, 256), "second_high")
    _print_regimes(high, sparse, second)
    _print_nncf_table(high, sparse)
    return {"goals": _goals(high, sparse, second, amx)}


def _search(model: Path, obs: np.ndarray, rate: float, budget: float, batches: tuple[int, ...], name: str,
            open_loop_s: float = 4.0) -> Any:
    from costeff.artifacts import Layout
    from costeff.quantization import QuantizeConfig, quantize

    cfg = QuantizeConfig(batch_sizes=batches, target_rate=rate, latency_budget_ms=budget, window_s=0.5,
                         speed_rounds=2, gaps_s=(0.0, 0.01, 0.05), name=f"bench_{name}", speed_of_failing=True,
                         finalists=None,
                         open_loop_s=open_loop_s)
    out = Layout.default().run_dir("quant") / name
    report = quantize(model, obs, cfg, out_dir=out)
    print(f"\n== {name}: {rate:g} req/s, p99 budget {budget:g} ms: selected {report.selected['name']} "
          f"({report.selected['backend']}, {report.selected['precision']}); {report.selected['reason']}")
    print(f"   report: {out / 'quantization_report.md'}")
    return report


def second_policy(folder: Path) -> tuple[Path, np.ndarray]:
    """A policy unlike the default one: wide tanh MLP, 9 actions, heavy-tailed inputs, many near-ties."""
    import torch

    torch.manual_seed(7)
    trunk = torch.nn.Sequential(torch.nn.Linear(48, 1024), torch.nn.Tanh(), torch.nn.Linear(1024, 1024),
                                torch.nn.Tanh(), torch.nn.Linear(1024, 512), torch.nn.Tanh())

    class Policy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.pi, self.v = trunk, torch.nn.Linear(512, 9), torch.nn.Linear(512, 1)

        def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.trunk(obs)
            return 0.5 * self.pi(h), self.v(h)  # small logits: many decisions are near-ties

    path = folder / "second_policy.onnx"
    torch.onnx.export(Policy().eval(), (torch.zeros(1, 48),), str(path), input_names=["obs"],
                      output_names=["logits", "value"], dynamic_axes={"obs": {0: "batch"}}, dynamo=False)
    rows = np.random.default_rng(11).standard_t(df=3, size=(ROWS, 48)).astype(np.float32)
    return path, rows


def _row(report: Any, name: str) -> Any:
    return next((v for v in report.variants if v.name == name), None)


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _print_regimes(high: Any, sparse: Any, second: Any) -> None:
    from costeff.quantization.records import _regime_md

    for title, rep in (("default policy, high rate", high), ("default policy, sparse", sparse),
                       ("second policy, high rate", second)):
        print(f"\n== regimes: {title} ==")
        print("\n".join(_regime_md(rep)))


def _print_nncf_table(high: Any, sparse: Any) -> None:
    print("\n== NNCF with accuracy control vs plain NNCF int8 vs onnxruntime int8-mixed vs OpenVINO bf16 ==")
    print("| variant | passed | action drift % | entropy drift % | x fp32 at its optimal batch (high rate) "
          "| batch 1 after 10 ms gaps p50 ms | open loop at 20/s p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for name in COMPARED:
        h, s = _row(high, name), _row(sparse, name)
        if h is None or h.not_tried:
            print(f"| {name} | not tried: {h.not_tried if h else 'absent'} | | | | | |")
            continue
        f = h.fidelity
        gap = next((g["p50_ms"] for g in (s.latency_by_gap if s else []) if g["gap_ms"] == 10.0), None)
        print(f"| {name} | {'yes' if h.passed else 'no'} | {_fmt(f and f.action_drift_pct)} | "
              f"{_fmt(f and f.entropy_drift_pct)} | {_fmt(h.speedup, '.2f')} | {_fmt(gap)} | "
              f"{_fmt(s.open_loop['p50_ms'] if s and s.open_loop else None)} |")


def _ratio(report: Any, name: str, base: str) -> float | None:
    v, b = _row(report, name), _row(report, base)
    if not v or not b or not v.optimal_throughput_per_s or not b.optimal_throughput_per_s:
        return None
    return v.optimal_throughput_per_s / b.optimal_throughput_per_s


def _goal(name: str, observed: Any, comparator: str, threshold: float) -> dict[str, Any]:
    ok = observed is not None and (observed >= threshold if comparator == ">=" else observed <= threshold)
    return {"name": name, "observed": None if observed is None else round(observed, 3),
            "comparator": comparator, "threshold": threshold, "passed": ok}


def _goals(high: Any, sparse: Any, second: Any, amx: bool) -> list[dict[str, Any]]:
    sel_h, sel_s, sel_2 = (r.selected["name"] for r in (high, sparse, second))
    drift = _row(high, sel_h).fidelity.action_drift_pct
    fp32_p50 = _row(sparse, "fp32").open_loop["p50_ms"]
    sel_p50 = _row(sparse, sel_s).open_loop["p50_ms"]
    # Its worst round against fp32's median: a selection within the noise of fp32 is fp32 itself.
    slowest = fp32_p50 if sel_s == "fp32" else max(_row(sparse, sel_s).open_loop_p50_range_ms or (sel_p50,))
    goals = [_goal(f"high rate: selected ({sel_h}) action drift % (held-out)", drift, "<=", 0.5),
             _goal(f"sparse: selected ({sel_s}) open-loop p50 / fp32's", sel_p50 / fp32_p50, "<=", 0.6),
             _goal(f"sparse: selected ({sel_s}) worst round never slower than fp32 open loop (p50 ratio)",
                   slowest / fp32_p50, "<=", 1.0)]
    if not amx:
        print("\nAMX goals not applicable: this CPU has no AMX")
        return goals
    second_sel = _row(second, sel_2)
    return goals + [
        _goal(f"high rate (AMX): selected ({sel_h}) throughput x onnxruntime fp32", _ratio(high, sel_h, "fp32"),
              ">=", 7.0),
        _goal(f"high rate (AMX): selected ({sel_h}) throughput x onnxruntime int8-mixed",
              _ratio(high, sel_h, "int8-mixed"), ">=", 2.0),
        _goal(f"second policy (AMX): selected ({sel_2}) is not fp32 and x fp32 at batch 64",
              (second_sel.throughput_per_s.get(64, 0) / _row(second, "fp32").throughput_per_s[64])
              if sel_2 != "fp32" else 0.0, ">=", 3.0),
    ]


if __name__ == "__main__":
    import sys
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)
