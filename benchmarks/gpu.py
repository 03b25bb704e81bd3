"""GPU measurements: the default and large policies, fp32 vs fp16, CUDA and TensorRT providers, NVML.

Needs an NVIDIA GPU, onnxruntime-gpu and nvidia-ml-py (the ``[gpu]`` extra)::

    python -m benchmarks.gpu --out DIR

Every result is appended to ``DIR/gpu_results.json`` as soon as it is measured, so a
run cut short still leaves what it measured; ``DIR/gpu_results.md`` is the table
view and ``DIR/profiles.tar.gz`` holds every ``gpu_profile.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ORIGINAL_FP16_SPEEDUP = 1.55  # what the original programme reported for fp16 on its GPU
ORIGINAL_GPU_UTIL_PCT = 1.0  # GPU compute utilisation it saw at its chosen batch size


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    from costeff.hardware import detect

    env: dict[str, Any] = {"python": platform.python_version(), "onnxruntime": ort.__version__,
                           "providers": ort.get_available_providers(), "hardware": detect().to_dict()}
    try:
        import torch
        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    except ImportError:
        pass
    env["nvidia_smi"] = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                                  "--format=csv,noheader"])
    head = (_command(["nvidia-smi"]) or "").splitlines()
    env["cuda_driver_version"] = next((line.split("CUDA Version:")[1].strip(" |") for line in head
                                       if "CUDA Version:" in line), None)
    return env


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    return done.stdout.strip() or done.stderr.strip()


class Results:
    """Appends each measurement and rewrites the JSON at once: partial runs keep their numbers."""

    def __init__(self, out: Path, command: str) -> None:
        self.out, self.data = out, {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                  time.gmtime()),
                                    "environment": None, "policies": [], "runs": [], "fidelity": [],
                                    "errors": []}

    def add(self, key: str, item: Any) -> None:
        from costeff._jsonable import to_jsonable

        self.data[key] = to_jsonable(item) if key == "environment" else self.data[key] + [to_jsonable(item)]
        (self.out / "gpu_results.json").write_text(json.dumps(self.data, indent=2, allow_nan=False))


def profile_variant(path: Path, provider: str, obs: np.ndarray, args: argparse.Namespace, out: Path) -> dict:
    from costeff.profiling import ProfileConfig, profile

    config = ProfileConfig(batch_sizes=tuple(args.batch_sizes), provider=provider, window_s=args.window_s,
                           max_trials=args.max_trials, latency_budget_ms=args.latency_budget_ms,
                           sample_interval_s=0.02)
    started = time.perf_counter()
    report = profile(path, config, observations=obs)
    report.write(out)
    points = [{"batch_size": p.batch_size, "throughput_per_s": p.throughput_per_s, "p99_ms": p.latency_ms.p99,
               "p50_ms": p.latency_ms.p50, "stable": p.stable,
               "gpu_util_pct": p.gpu.sm_util_pct if p.gpu else None,
               "gpu_memory_used_mb": p.gpu.memory_used_mb if p.gpu else None,
               "gpu_power_w": p.gpu.power_w if p.gpu else None} for p in report.points]
    return {"provider": report.provider, "seconds": time.perf_counter() - started, "points": points,
            "optimal": report.optimal, "cost": report.cost}


def fidelity(fp32: Path, variant: Path, provider: str, obs: np.ndarray, base_provider: str) -> dict:
    from dataclasses import asdict

    from costeff.quantization.fidelity import compare, run_policy

    ref = run_policy(fp32, obs, "logits", "value", provider=base_provider)
    var = run_policy(variant, obs, "logits", "value", provider=provider)
    return asdict(compare(ref, var))


def measure_preset(preset: str, args: argparse.Namespace, results: Results, work: Path) -> None:
    from costeff.errors import CosteffError
    from costeff.policy import default_policy, generate_observations
    from costeff.cli._common import home
    from costeff.quantization.build import build_fp16

    started = time.perf_counter()
    art = default_policy(preset, cache=home().cache)
    results.add("policies", {"preset": preset, "n_params": art.n_params, "sha256": art.sha256,
                             "build_seconds": time.perf_counter() - started, "train_device": art.train_device,
                             "confident_share": art.confident_share})
    obs = generate_observations(args.rows, seed=11, preset=preset)
    work.mkdir(parents=True, exist_ok=True)
    fp16 = work / f"{preset}_fp16.onnx"
    build_fp16(art.onnx_path, fp16)
    plan = [(args.provider, "fp32", art.onnx_path), (args.provider, "fp16", fp16)]
    if preset in args.tensorrt_presets:
        plan.append(("tensorrt", "fp32-model+trt-fp16", art.onnx_path))
    for provider, variant, path in plan:
        try:
            run = profile_variant(path, provider, obs, args, work / f"{preset}_{provider}_{variant}")
            results.add("runs", {"preset": preset, "variant": variant, "requested_provider": provider, **run})
        except CosteffError as exc:
            results.add("errors", {"preset": preset, "variant": variant, "provider": provider, "error": str(exc)})
            continue
        if variant != "fp32":
            fid = fidelity(art.onnx_path, path, provider, obs, args.provider)
            results.add("fidelity", {"preset": preset, "variant": variant, "provider": provider, **fid})


def speedups(data: dict) -> list[dict]:
    rows = []
    for preset in sorted({r["preset"] for r in data["runs"]}):
        runs = {r["variant"]: r for r in data["runs"] if r["preset"] == preset}
        base = runs.get("fp32")
        for name, run in runs.items():
            if name == "fp32" or base is None:
                continue
            b_opt, v_opt = base["optimal"], run["optimal"]
            at_base = next((p["throughput_per_s"] for p in run["points"]
                            if p["batch_size"] == b_opt["batch_size"]), None)
            rows.append({"preset": preset, "variant": name,
                         "speedup_at_own_optimal": v_opt["throughput_per_s"] / b_opt["throughput_per_s"],
                         "speedup_at_fp32_optimal_batch": at_base / b_opt["throughput_per_s"] if at_base else None,
                         "fp32_optimal_batch": b_opt["batch_size"], "variant_optimal_batch": v_opt["batch_size"]})
    return rows


def markdown(data: dict) -> str:
    env = data["environment"] or {}
    lines = [f"# GPU measurements\n\nCommand: `{data['command']}`  \nStarted {data['started']} (UTC).  \n"
             f"GPU: {env.get('nvidia_smi')}; CUDA (driver) {env.get('cuda_driver_version')}; onnxruntime "
             f"{env.get('onnxruntime')} with {', '.join(env.get('providers', []))}; torch {env.get('torch')} "
             f"(CUDA {env.get('torch_cuda')}); Python {env.get('python')}.\n"]
    lines.append("## Policies\n\n| preset | parameters | build s | trained on | confident share |\n|---|---|---|---|---|")
    lines += [f"| {p['preset']} | {p['n_params']:,} | {p['build_seconds']:.1f} | {p['train_device']} | "
              f"{100 * p['confident_share']:.1f} % |" for p in data["policies"]]
    for run in data["runs"]:
        lines.append(f"\n## {run['preset']} / {run['variant']} on {run['provider']}\n\n"
                     f"Optimal batch {run['optimal']['batch_size']} ({run['optimal']['throughput_per_s']:,.0f}/s, "
                     f"p99 {run['optimal']['latency_p99_ms']:.3f} ms). Sweep took {run['seconds']:.1f} s.\n\n"
                     "| batch | inferences/s | p50 ms | p99 ms | stable | GPU util % | GPU mem MB | power W |\n"
                     "|---|---|---|---|---|---|---|---|")
        lines += [f"| {p['batch_size']} | {p['throughput_per_s']:,.0f} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | "
                  f"{p['stable']} | {_fmt(p['gpu_util_pct'])} | {_fmt(p['gpu_memory_used_mb'])} | "
                  f"{_fmt(p['gpu_power_w'])} |" for p in run["points"]]
    lines.append("\n## fp16 speedup and fidelity vs fp32\n\n| preset | variant | speedup (own optimal) | "
                 "speedup (fp32's optimal batch) | action drift % | entropy drift % | correlation |\n|---|---|---|---|---|---|---|")
    fid = {(f["preset"], f["variant"]): f for f in data["fidelity"]}
    for s in data.get("speedups", []):
        f = fid.get((s["preset"], s["variant"]), {})
        lines.append(f"| {s['preset']} | {s['variant']} | {s['speedup_at_own_optimal']:.2f}x | "
                     f"{_fmt(s['speedup_at_fp32_optimal_batch'], '.2f')}x | {_fmt(f.get('action_drift_pct'), '.3f')} | "
                     f"{_fmt(f.get('entropy_drift_pct'), '.3f')} | {_fmt(f.get('action_correlation'), '.5f')} |")
    lines += [f"\n- {e['preset']} / {e['variant']} on {e['provider']}: **not measured**: {e['error']}"
              for e in data["errors"]]
    return "\n".join(lines) + "\n"


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--presets", default="default,large")
    parser.add_argument("--tensorrt-presets", default="default")
    parser.add_argument("--batch-sizes", default="1,8,32,128,512,2048")
    parser.add_argument("--window-s", type=float, default=0.3)
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--latency-budget-ms", type=float, default=None)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--provider", default="cuda", help="provider for the fp32 and fp16 sweeps (cpu: a dry run)")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.tensorrt_presets = set(filter(None, args.tensorrt_presets.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.gettempdir()) / "costeff-gpu-profiles"  # only the tarball goes to --out
    results = Results(args.out, "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:]))
    results.add("environment", environment())
    for preset in filter(None, args.presets.split(",")):
        try:
            measure_preset(preset, args, results, work)
        except Exception as exc:  # noqa: BLE001 - one preset's failure must not lose the other's numbers
            results.add("errors", {"preset": preset, "variant": "*", "provider": "*",
                                   "error": f"{type(exc).__name__}: {exc}"})
        finalise(results, work)
    return 0 if results.data["runs"] else 1


def finalise(results: Results, work: Path) -> None:
    results.data["speedups"] = speedups(results.data)
    results.data["original_programme"] = {"fp16_speedup": ORIGINAL_FP16_SPEEDUP,
                                          "gpu_util_pct_at_chosen_batch": ORIGINAL_GPU_UTIL_PCT}
    (results.out / "gpu_results.json").write_text(json.dumps(results.data, indent=2, allow_nan=False))
    (results.out / "gpu_results.md").write_text(markdown(results.data))
    with tarfile.open(results.out / "profiles.tar.gz", "w:gz") as tar:
        for f in sorted(work.rglob("gpu_profile.*")) if work.is_dir() else []:
            tar.add(f, arcname=str(f.relative_to(work)))


if __name__ == "__main__":
    sys.exit(main())
