"""The measurement core: perf_analyzer's rules over any ``infer()`` callable.

A point (one batch size, one client concurrency) is measured as:

1. warm-up for ``warmup_s``: the first calls pay for allocator growth, thread-pool
   start-up and cache misses, which a serving process pays once, not per request;
2. back-to-back measurement windows of ``window_s`` (and at least ``min_requests``
   requests each), every call timed with ``perf_counter_ns`` into a preallocated
   array, statistics computed with numpy only after the window closes, so the
   harness adds one clock read and one array store per call;
3. the point is *stable* once the last ``stable_windows`` windows agree within
   ``stability_pct`` of their mean on both throughput and p99 latency; after
   ``max_trials`` windows without agreement the point is reported with
   ``stable=False`` and the numbers of its last windows (never hidden).

Reported numbers pool the last ``stable_windows`` windows: throughput is rows per
second (``batch_size`` rows per request), latencies are per request.

The core is generic so remote profiling (Open Inference Protocol) shares the rules::

    from costeff.profiling import MeasureConfig, measure
    point = measure(lambda: client.infer(model, inputs), batch_size=8,
                    config=MeasureConfig(window_s=0.5, concurrency=4))

With ``concurrency > 1`` the callable runs in that many threads at once; pass
``infer_factory=`` (called once per thread) when it is not thread-safe. With
``request_rate`` set, requests are issued on a fixed schedule (requests/s across
all threads) instead of back-to-back; a request that cannot start on time starts
late and is counted in ``Point.late_requests``. ``sampler=`` takes a
:class:`costeff.profiling.resources.ResourceSampler` (process CPU/RSS, NVML GPU).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from costeff.errors import InputError
from costeff.profiling.resources import GpuStats, ResourceSampler

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class MeasureConfig:
    warmup_s: float = 0.2
    window_s: float = 0.5
    stability_pct: float = 10.0
    stable_windows: int = 3
    max_trials: int = 8
    min_requests: int = 5
    concurrency: int = 1
    request_rate: float | None = None  # requests/s over all threads; None = closed loop
    sample_interval_s: float = 0.05

    def __post_init__(self) -> None:
        _positive("window_s", self.window_s)
        _positive("stability_pct", self.stability_pct)
        _positive("sample_interval_s", self.sample_interval_s)
        if self.request_rate is not None:
            _positive("request_rate", self.request_rate)
        if not self.warmup_s >= 0:
            raise InputError(f"warmup_s: {self.warmup_s!r} must be >= 0 seconds")
        for name in ("stable_windows", "min_requests", "concurrency"):
            _positive_int(name, getattr(self, name))
        if not isinstance(self.max_trials, int) or self.max_trials < self.stable_windows:
            raise InputError(f"max_trials: {self.max_trials!r} must be an integer >= stable_windows "
                             f"({self.stable_windows})")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: {value!r} must be a positive number")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{name}: {value!r} must be a positive integer")


@dataclass(frozen=True)
class Latency:
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Window:
    requests: int
    duration_s: float
    throughput_per_s: float
    latency_p99_ms: float


@dataclass
class Point:
    batch_size: int
    concurrency: int
    throughput_per_s: float  # inferences (rows) per second
    requests_per_s: float
    latency_ms: Latency  # per request
    stable: bool
    trials: int  # measurement windows run (warm-up excluded)
    requests: int  # requests pooled into the reported numbers
    windows: list[Window]
    request_rate: float | None = None
    late_requests: int = 0
    cpu_util_pct: float | None = None  # share of all cores, 0-100
    cpu_cores_busy: float | None = None
    rss_peak_mb: float | None = None
    gpu: GpuStats | None = None
    gpu_null_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def latency_stats(latencies_ns: np.ndarray) -> Latency:
    """Mean and percentiles in milliseconds (linear interpolation, as numpy's default)."""
    ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        nan = math.nan
        return Latency(nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    return Latency(float(ms.mean()), float(p50), float(p90), float(p95), float(p99))


def is_stable(windows: list[Window], count: int, pct: float) -> bool:
    """True when the last ``count`` windows are each within ``pct`` % of their mean
    on throughput and on p99 latency (perf_analyzer's rule)."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for values in ([w.throughput_per_s for w in last], [w.latency_p99_ms for w in last]):
        avg = sum(values) / count
        if not avg > 0 or any(abs(v - avg) > avg * pct / 100.0 for v in values):
            return False
    return True


class _Lane:
    """One client thread's infer callable and its preallocated latency buffer."""

    def __init__(self, infer: Callable[[], Any], capacity: int) -> None:
        self.infer = infer
        self.buf = np.empty(capacity, dtype=np.int64)

    def run(self, start_ns: int, deadline_ns: int, min_requests: int,
            slots: tuple[int, int] | None) -> tuple[int, int, int]:
        """Call until the deadline (and ``min_requests``); returns (requests, last end ns, late)."""
        if slots is not None:
            return self._run_paced(start_ns, deadline_ns, min_requests, slots)
        infer, buf, clock = self.infer, self.buf, time.perf_counter_ns
        n, cap, t1 = 0, len(buf), start_ns
        while True:
            t0 = clock()
            infer()
            t1 = clock()
            buf[n] = t1 - t0
            n += 1
            if n == cap:
                buf = self._grow()
                cap = len(buf)
            if t1 >= deadline_ns and n >= min_requests:
                return n, t1, 0

    def _run_paced(self, start_ns: int, deadline_ns: int, min_requests: int,
                   slots: tuple[int, int]) -> tuple[int, int, int]:
        offset_ns, period_ns = slots
        clock, n, late, t1 = time.perf_counter_ns, 0, 0, start_ns
        while True:
            due = start_ns + offset_ns + n * period_ns
            wait = due - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
            elif wait < -period_ns:
                late += 1  # the previous request overran its slot: the target rate is not met
            t0 = clock()
            self.infer()
            t1 = clock()
            self.buf[n] = t1 - t0
            n += 1
            if n == len(self.buf):
                self._grow()
            if t1 >= deadline_ns and n >= min_requests:
                return n, t1, late

    def _grow(self) -> np.ndarray:
        # Rare: only when a window holds more calls than warm-up predicted.
        self.buf = np.concatenate([self.buf, np.empty_like(self.buf)])
        return self.buf


@dataclass
class _WindowResult:
    window: Window
    latencies_ns: np.ndarray
    late: int


class _Runner:
    """Runs windows on one lane (caller's thread) or on ``concurrency`` threads."""

    def __init__(self, lanes: list[_Lane], config: MeasureConfig) -> None:
        self.lanes, self.config = lanes, config
        self.pool = ThreadPoolExecutor(len(lanes), thread_name_prefix="costeff-client") if len(lanes) > 1 else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def window(self, seconds: float, batch_size: int, min_requests: int) -> _WindowResult:
        start = time.perf_counter_ns()
        deadline = start + int(seconds * 1e9)
        per_lane = max(1, math.ceil(min_requests / len(self.lanes)))
        if self.pool is None:
            results = [self.lanes[0].run(start, deadline, per_lane, self._slots(0))]
        else:
            futures = [self.pool.submit(lane.run, start, deadline, per_lane, self._slots(i))
                       for i, lane in enumerate(self.lanes)]
            results = [f.result() for f in futures]  # re-raises a client thread's exception here
        return self._collect(results, start, batch_size)

    def _slots(self, lane: int) -> tuple[int, int] | None:
        rate = self.config.request_rate
        if rate is None:
            return None
        period = int(len(self.lanes) / rate * 1e9)
        return int(lane / rate * 1e9), period

    def _collect(self, results: list[tuple[int, int, int]], start: int, batch_size: int) -> _WindowResult:
        lat = np.concatenate([lane.buf[:n].copy() for lane, (n, _, _) in zip(self.lanes, results, strict=True)])
        duration_s = (max(end for _, end, _ in results) - start) / 1e9
        requests = int(lat.size)
        p99 = float(np.percentile(lat, 99)) / 1e6
        window = Window(requests, duration_s, requests * batch_size / duration_s, p99)
        return _WindowResult(window, lat, sum(late for _, _, late in results))


def measure(infer: Callable[[], Any] | None, batch_size: int, config: MeasureConfig = MeasureConfig(), *,
            infer_factory: Callable[[], Callable[[], Any]] | None = None,
            sampler: ResourceSampler | None = None) -> Point:
    """Measure one point; see the module docstring for the rules."""
    _positive_int("batch_size", batch_size)
    if infer is not None and infer_factory is None:
        make: Callable[[], Callable[[], Any]] = lambda: infer  # noqa: E731
    elif infer is None and infer_factory is not None:
        make = infer_factory
    else:
        raise InputError("measure: pass exactly one of infer or infer_factory")
    runner = _Runner([_Lane(make(), 64) for _ in range(config.concurrency)], config)
    try:
        _warm_up(runner, batch_size)
        sampler = sampler or ResourceSampler(gpu_index=None, gpu_null_reason="not sampled")
        with sampler.track() as tracked:
            results = _trials(runner, batch_size)
        return _point(results, batch_size, config, tracked.result())
    finally:
        runner.close()


def _warm_up(runner: _Runner, batch_size: int) -> None:
    """Discarded calls; also sizes every lane's buffer for a full window without regrowth."""
    cfg = runner.config
    res = runner.window(cfg.warmup_s, batch_size, len(runner.lanes))
    per_lane_rate = res.window.requests / max(res.window.duration_s, 1e-9) / len(runner.lanes)
    capacity = int(per_lane_rate * cfg.window_s * 2) + cfg.min_requests + 64
    for lane in runner.lanes:
        if len(lane.buf) < capacity:
            lane.buf = np.empty(capacity, dtype=np.int64)


def _trials(runner: _Runner, batch_size: int) -> list[_WindowResult]:
    cfg = runner.config
    results: list[_WindowResult] = []
    while len(results) < cfg.max_trials:
        results.append(runner.window(cfg.window_s, batch_size, cfg.min_requests))
        if is_stable([r.window for r in results], cfg.stable_windows, cfg.stability_pct):
            break
    return results


def _point(results: list[_WindowResult], batch_size: int, cfg: MeasureConfig, res: Any) -> Point:
    windows = [r.window for r in results]
    pooled = results[-cfg.stable_windows:]
    requests = sum(r.window.requests for r in pooled)
    seconds = sum(r.window.duration_s for r in pooled)
    return Point(
        batch_size=batch_size, concurrency=cfg.concurrency,
        throughput_per_s=requests * batch_size / seconds, requests_per_s=requests / seconds,
        latency_ms=latency_stats(np.concatenate([r.latencies_ns for r in pooled])),
        stable=is_stable(windows, cfg.stable_windows, cfg.stability_pct), trials=len(windows),
        requests=requests, windows=windows, request_rate=cfg.request_rate,
        late_requests=sum(r.late for r in pooled), cpu_util_pct=res.cpu_util_pct,
        cpu_cores_busy=res.cpu_cores_busy, rss_peak_mb=res.rss_peak_mb, gpu=res.gpu,
        gpu_null_reason=res.gpu_null_reason)
