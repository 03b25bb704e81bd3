"""Profiler speed: harness overhead vs a bare ``session.run`` loop, and a full default sweep.

Overhead is measured on one session, alternating profiler and bare loop (ABBA
order, several rounds), as the median of the per-round ratios: on a shared machine two passes a
minute apart differ by more than the 3 % being measured, so only interleaved
runs are comparable.
"""

from __future__ import annotations

import functools
import statistics
import time

ROUNDS = 10
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


def overhead_ratio(session, feed: dict, batch: int) -> dict:
    run = functools.partial(session.run, None, feed)
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

    artifact = default_policy("default")  # trained and cached before the clock starts
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
    for batch in sorted({1, report.optimal.batch_size}):
        r = overhead_ratio(session, build_feed(sig, batch, rows), batch)
        results.append(r)
        print(f"overhead at batch {batch}: profiler/bare = {r['ratio']:.3f} (median of {ROUNDS} interleaved "
              f"rounds; per-round {r['round_ratio_min']:.3f}-{r['round_ratio_max']:.3f}; "
              f"{r['profiler_median_per_s']:,.0f} vs {r['bare_median_per_s']:,.0f} inferences/s)")
    goals = [{"name": f"profiler throughput / bare session.run at batch {r['batch_size']}",
              "observed": round(r["ratio"], 3), "threshold": 0.97, "comparator": ">=", "passed": r["ratio"] >= 0.97}
             for r in results]
    goals.append({"name": "full default sweep of the default policy (s)", "observed": round(sweep_s, 1),
                  "threshold": 60, "comparator": "<=", "passed": sweep_s <= 60})
    return {"goals": goals, "overhead": results, "sweep_s": sweep_s}


if __name__ == "__main__":
    main()
