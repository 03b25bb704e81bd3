"""The measurement harness on the real clock: does it report what a known workload costs?

The unit tests check the harness's rules on a controlled clock (tests/fake_clock.py); these are
the claims that need an unloaded machine: a 2 ms busy-wait is measured at ~2 ms and found stable,
four client threads over a GIL-releasing call give more than twice one thread's throughput, and
a paced client sends at the rate asked.
"""

from __future__ import annotations

import sys
import time

FAST = {"warmup_s": 0.05, "window_s": 0.2, "min_requests": 3}


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _goal(name: str, observed: float, comparator: str, threshold: float) -> dict:
    ok = {"<=": observed <= threshold, ">=": observed >= threshold, ">": observed > threshold}[comparator]
    return {"name": name, "observed": round(observed, 3), "comparator": comparator, "threshold": threshold,
            "passed": bool(ok)}


def main() -> dict:
    from costeff.profiling import MeasureConfig, measure

    busy = measure(lambda: _busy(0.002), batch_size=4, config=MeasureConfig(max_trials=20, **FAST))
    one = measure(lambda: time.sleep(0.002), 1, MeasureConfig(max_trials=3, **FAST))
    four = measure(lambda: time.sleep(0.002), 1, MeasureConfig(max_trials=3, concurrency=4, **FAST))
    paced = measure(lambda: None, 1, MeasureConfig(max_trials=3, request_rate=200.0, **FAST))
    print(f"2 ms busy-wait: p50 {busy.latency_ms.p50:.3f} ms, stable {busy.stable} after {busy.trials} windows, "
          f"{busy.requests_per_s:.0f} requests/s (1000/mean latency = {1000 / busy.latency_ms.mean:.0f})")
    print(f"2 ms sleep: 1 thread {one.throughput_per_s:.0f}/s, 4 threads {four.throughput_per_s:.0f}/s")
    print(f"paced at 200/s: {paced.requests_per_s:.1f}/s, {paced.late_requests} late")
    return {"goals": [
        _goal("2 ms workload: p50 off by (%)", abs(busy.latency_ms.p50 - 2.0) / 2.0 * 100, "<=", 50),
        _goal("2 ms workload: stable (windows run)", busy.trials if busy.stable else 99, "<=", 20),
        _goal("requests/s vs 1000/mean latency off by (%)",
              abs(busy.requests_per_s * busy.latency_ms.mean / 1000 - 1) * 100, "<=", 30),
        _goal("4 threads / 1 thread throughput", four.throughput_per_s / one.throughput_per_s, ">", 2.0),
        _goal("paced 200/s: rate off by (%)", abs(paced.requests_per_s / 200.0 - 1) * 100, "<=", 30),
    ]}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)
