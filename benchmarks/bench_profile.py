"""Profiler speed: harness overhead vs a bare loop for every backend, and a full default sweep.

onnxruntime: the profiler vs a bare ``session.run`` loop. OpenVINO: the profiler vs a
bare ``request.infer()`` loop on the bf16-compiled IR (f32 on a CPU without bf16), in a
process of its own so the two runtimes' thread pools do not disturb each other.

Overhead is measured on one session, alternating profiler and bare loop (ABBA
order, several rounds), as the median of the per-round ratios: on a shared machine two passes a
minute apart differ by more than the 3 % being measured, so only interleaved
runs are comparable.
"""

from __future__ import annotations

import functools
import statistics
import time

ROUNDS = int(__import__("os").environ.get("COSTEFF_BENCH_ROUNDS", "10"))
SECONDS = 1.0  # per profiler point and per bare loop, after warm-up


def _bare(run, seconds: float, batch: int) -> float:
    """Back-to-back ``run()`` with no timing per call: the best a client loop can do."""
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:  # the same warm-up the profiler gets
        run()
    calls, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(8):  # check the clock every 8 calls, so the loop itself costs ~nothing
            run()
        calls += 8
        now = time.perf_counter()
        if now >= end:
            return calls * batch / (now - start)


def _profiled(run, seconds: float, batch: int) -> float:
    from costeff.profiling import MeasureConfig, measure

    # Three windows that cover `seconds`, pooled exactly as a stable point's numbers are.
    cfg = MeasureConfig(warmup_s=0.2, window_s=seconds / 3, max_trials=3)
    return measure(run, batch, cfg).throughput_per_s


def overhead_ratio(run, batch: int) -> dict:
    prof, bare = [], []
    for i in range(ROUNDS):
        order = (_profiled, _bare) if i % 2 == 0 else (_bare, _profiled)
        for fn in order:
            (prof if fn is _profiled else bare).append(fn(run, SECONDS, batch))
    # Each round's two runs are adjacent in time, so the per-round ratio cancels the
    # machine's slow drifts; the median discards rounds hit by a neighbour's burst.
    per_round = sorted(p / b for p, b in zip(prof, bare))
    ratio = statistics.median(per_round)
    return {"batch_size": batch, "ratio": ratio, "profiler_median_per_s": statistics.median(prof),
            "bare_median_per_s": statistics.median(bare), "round_ratio_min": per_round[0],
            "round_ratio_max": per_round[-1]}


def _default_model():
    from costeff.policy import default_policy, generate_observations
    from costeff.cli._common import home

    artifact = default_policy("default", cache=home().cache)  # trained and cached before the clock starts
    return artifact.onnx_path, generate_observations(1024, seed=0, preset="default")


def main() -> dict:
    from costeff.modelio import create_session, read_signature
    from costeff.profiling import ProfileConfig, build_feed, check_observations, profile

    model, obs = _default_model()
    started = time.perf_counter()
    report = profile(model, ProfileConfig(provider="cpu"), obs, observations_source="generated observations")
    sweep_s = time.perf_counter() - started
    print(f"default sweep: {sweep_s:.1f} s for {len(report.points)} points "
          f"({sum(not p.stable for p in report.points)} unstable); optimal batch {report.optimal.batch_size}")

    sig = read_signature(model)
    rows = check_observations(sig, obs, "generated observations")
    session = create_session(model, "cpu")
    results = []
    batches = sorted({1, report.optimal.batch_size})
    for batch in batches:
        r = overhead_ratio(functools.partial(session.run, None, build_feed(sig, batch, rows)), batch)
        results.append(dict(r, backend="onnxruntime"))
        _print_overhead("onnxruntime session.run", r)
    del session
    results += _openvino_overheads(model, batches)
    goals = [{"name": f"profiler throughput / bare loop, {r['backend']}, batch {r['batch_size']}",
              "observed": round(r["ratio"], 3), "threshold": 0.97, "comparator": ">=", "passed": r["ratio"] >= 0.97}
             for r in results]
    goals.append({"name": "full default sweep of the default policy (s)", "observed": round(sweep_s, 1),
                  "threshold": 60, "comparator": "<=", "passed": sweep_s <= 60})
    return {"goals": goals, "overhead": results, "sweep_s": sweep_s}


def _print_overhead(what: str, r: dict) -> None:
    print(f"overhead at batch {r['batch_size']} ({what}): profiler/bare = {r['ratio']:.3f} (median of {ROUNDS} "
          f"interleaved rounds; per-round {r['round_ratio_min']:.3f}-{r['round_ratio_max']:.3f}; "
          f"{r['profiler_median_per_s']:,.0f} vs {r['bare_median_per_s']:,.0f} inferences/s)")


def _openvino_overheads(model, batches: list[int]) -> list[dict]:
    """The OpenVINO half in a fresh process; nothing when OpenVINO is not installed."""
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("openvino") is None:
        print("OpenVINO is not installed: its harness overhead is not measured")
        return []
    code = f"from benchmarks.bench_profile import openvino_main; openvino_main({str(model)!r}, {batches!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in results:
        _print_overhead(f"OpenVINO request.infer, {r['precision']}", r)
    return results


def openvino_main(model: str, batches: list[int]) -> None:
    import json
    import tempfile
    from pathlib import Path

    from costeff.policy import generate_observations
    from costeff.quantization.openvino import convert
    from costeff.runtimes import RuntimeOptions, open_runner
    from costeff.runtimes.ov import host_has_bf16

    precision = "bf16" if host_has_bf16() else "f32"
    obs = generate_observations(1024, seed=0, preset="default")
    with tempfile.TemporaryDirectory() as tmp:
        ir = Path(tmp) / "policy.xml"
        convert(Path(model), ir)
        runner = open_runner(ir, options=RuntimeOptions(precision=precision))
        out = [dict(overhead_ratio(runner.bind(obs[:b]), b), backend="openvino", precision=precision)
               for b in batches]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
