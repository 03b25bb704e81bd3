"""Latency under real traffic, which a back-to-back loop cannot see.

Two measurements, both on any runner (onnxruntime, OpenVINO):

* **latency by gap** (``gap_latency``): single calls spaced ``gap`` apart. A call
  after an idle pause pays for threads that went to sleep and caches that went
  cold; a tight loop never does. perf_analyzer and Model Analyzer report only the
  tight loop.
* **open loop at a rate** (``open_loop``): requests arrive as a Poisson process
  at the target rate whether or not the model has finished, and are batched
  the way Triton's dynamic batcher does with no queue delay: when the model is
  free it takes every request waiting, up to ``max_batch``. A request's latency
  runs from its arrival to the end of the call that served it, so queueing and
  cold calls both count. When the model cannot keep up, the queue grows and
  the p99 shows it (``saturated``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from costeff.errors import InputError
from costeff.poisson import poisson_arrivals

DEFAULT_GAPS_S = (0.0, 0.01, 0.1, 1.0)
SPIN_S = 0.0005  # the last half millisecond before an arrival is spun, not slept


@dataclass(frozen=True)
class GapLatency:
    gap_ms: float
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass(frozen=True)
class OpenLoop:
    rate_per_s: float
    max_batch: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    achieved_per_s: float
    saturated: bool  # waits grew over the run: the model did not keep up with the rate


def parse_gaps(text: str) -> tuple[float, ...]:
    """``"0,10ms,100ms,1s"`` -> seconds; bad items name themselves."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        scale = 1e-3 if item.endswith("ms") else 1e-6 if item.endswith("us") else 1.0
        number = item.removesuffix("ms").removesuffix("us").removesuffix("s")
        try:
            value = float(number) * scale
        except ValueError:
            raise InputError(f"--gaps: {item!r} is not a duration; expected e.g. 0,10ms,100ms,1s") from None
        if not math.isfinite(value) or value < 0 or value > 60:
            raise InputError(f"--gaps: {item!r} must be between 0 and 60 s")
        out.append(value)
    if not out:
        raise InputError("--gaps: no gaps given; expected e.g. 0,10ms,100ms,1s")
    return tuple(out)


def calls_for_gap(gap_s: float, budget_s: float = 2.0, min_calls: int = 12, max_calls: int = 200) -> int:
    """Enough calls for a p99 that means something, within a time budget per gap."""
    if gap_s <= 0:
        return max_calls
    return int(min(max_calls, max(min_calls, budget_s / gap_s)))


def gap_latency(infer: Callable[[], Any], gap_s: float, calls: int, warmup: int = 3) -> GapLatency:
    """Time ``calls`` single calls with ``gap_s`` of idleness before each."""
    for _ in range(warmup):
        infer()
    lat = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        if gap_s > 0:
            time.sleep(gap_s)
        t0 = clock()
        infer()
        lat[i] = clock() - t0
    ms = lat / 1e6
    return GapLatency(gap_s * 1e3, calls, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                      float(ms.mean()))


def open_loop(call: Callable[[int], Any], rate: float, max_batch: int, *, requests: int | None = None,
              max_duration_s: float = 2.0, min_requests: int = 40, seed: int = 0) -> OpenLoop:
    """Serve Poisson arrivals at ``rate`` with a greedy batcher; ``call(b)`` infers a batch of ``b``."""
    if not rate > 0 or max_batch < 1:
        raise InputError(f"open loop: rate {rate!r} and max_batch {max_batch!r} must be positive")
    n = requests or int(max(min_requests, min(rate * max_duration_s, 200_000)))
    arrivals = poisson_arrivals(rate, n, seed)
    for b in range(1, max_batch + 1):
        # Every batch size the batcher can form, once, before the clock starts: a runtime's first
        # call at a new shape pays for shape inference and kernel choice, once per server life.
        call(b)
    done = np.empty(n, dtype=np.float64)
    batches, i, clock = 0, 0, time.perf_counter
    t0 = clock()
    while i < n:
        now = clock() - t0
        if arrivals[i] > now:
            _wait(arrivals[i] - now)
            continue
        j = min(int(np.searchsorted(arrivals, now, side="right")), i + max_batch)
        call(j - i)
        done[i:j] = clock() - t0
        batches, i = batches + 1, j
    lat_ms = (done - arrivals) * 1e3
    duration = float(done[-1])
    return OpenLoop(rate, max_batch, n, duration, float(np.percentile(lat_ms, 50)),
                    float(np.percentile(lat_ms, 99)), n / batches, n / duration if duration > 0 else math.inf,
                    saturated=_saturated(arrivals, done))


def _wait(seconds: float) -> None:
    """Sleep most of the wait, then spin: the harness's own wake-up lateness (often a
    millisecond on a busy host) must not be counted as the model's latency."""
    if seconds > SPIN_S:
        time.sleep(seconds - SPIN_S)


def _saturated(arrivals: np.ndarray, done: np.ndarray) -> bool:
    """True when the last tenth of requests waited far longer than the first tenth: a growing queue."""
    k = max(1, len(arrivals) // 10)
    wait = done - arrivals
    return bool(np.median(wait[-k:]) > 4 * np.median(wait[:k]) + 1e-3)
