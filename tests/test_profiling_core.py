"""The measurement rules (stability, percentiles, optimal batch) on controlled fake workloads.

Rules are tested on a controlled clock (tests/fake_clock.py); how close the harness comes to
the truth on the real clock is a timing claim and lives in ``make bench`` (benchmarks/bench_measure.py).
"""

from __future__ import annotations

import importlib
import threading
import time

import numpy as np
import pytest
from fake_clock import FakeClock

from costeff.errors import InputError
from costeff.profiling import (Latency, MeasureConfig, Point, ProfileConfig, Window, is_stable, latency_stats,
                               measure, select_optimal)

FAST = dict(warmup_s=0.01, window_s=0.05, min_requests=3)


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _window(thr: float, p99: float) -> Window:
    return Window(requests=10, duration_s=0.1, throughput_per_s=thr, latency_p99_ms=p99)


def test_three_consecutive_windows_within_tolerance_are_stable():
    assert is_stable([_window(100, 5.0), _window(105, 5.2), _window(96, 4.9)], 3, 10.0)
    # one window off by more than 10 % of the mean on throughput, or on p99, breaks it
    assert not is_stable([_window(100, 5.0), _window(130, 5.0), _window(100, 5.0)], 3, 10.0)
    assert not is_stable([_window(100, 5.0), _window(100, 7.0), _window(100, 5.0)], 3, 10.0)
    # only the last three count; fewer than three is never stable
    assert is_stable([_window(10, 50.0), _window(100, 5.0), _window(100, 5.0), _window(100, 5.0)], 3, 10.0)
    assert not is_stable([_window(100, 5.0), _window(100, 5.0)], 3, 10.0)
    assert is_stable([_window(100, 5.0), _window(130, 5.0), _window(100, 5.0)], 3, 25.0)


def test_percentiles_are_per_request_in_milliseconds():
    ns = np.arange(1, 101, dtype=np.int64) * 1_000_000  # 1..100 ms
    lat = latency_stats(ns)
    assert lat.mean == pytest.approx(50.5)
    assert lat.p50 == pytest.approx(50.5)
    assert lat.p90 == pytest.approx(90.1)
    assert lat.p95 == pytest.approx(95.05)
    assert lat.p99 == pytest.approx(99.01)


@pytest.fixture
def clock(monkeypatch):
    """The harness on a controlled clock: a workload takes exactly what it says, whatever the load."""
    fake = FakeClock()
    monkeypatch.setattr(importlib.import_module("costeff.profiling.measure"), "time", fake)
    return fake


def test_constant_latency_workload_is_stable_and_measured_right(clock):
    point = measure(lambda: clock.work(0.002), batch_size=4, config=MeasureConfig(max_trials=20, **FAST))
    assert point.stable and point.trials == 3 and len(point.windows) == 3  # stops at the first 3 agreeing windows
    # each call is timed between two clock reads: 2 ms of work plus one read
    assert point.latency_ms.p50 == pytest.approx(2.0, rel=0.01)
    assert point.latency_ms.p99 == pytest.approx(2.0, rel=0.01)
    # rows per second = batch size x requests per second
    assert point.throughput_per_s == pytest.approx(4 * point.requests_per_s)
    assert point.requests_per_s == pytest.approx(1000 / point.latency_ms.mean, rel=0.01)
    assert point.requests == sum(w.requests for w in point.windows) and point.requests >= 3 * FAST["min_requests"]


def test_a_real_sleep_is_measured_no_shorter_than_it_lasted():
    # on the real clock, a loaded machine can only make a call look slower, never faster
    point = measure(lambda: time.sleep(0.002), batch_size=4, config=MeasureConfig(max_trials=3, **FAST))
    assert point.trials == 3 and point.requests >= 3 * FAST["min_requests"]
    assert point.latency_ms.mean >= 2.0 and point.latency_ms.p99 >= point.latency_ms.p50 >= 2.0
    assert point.requests_per_s <= 500  # one lane, every call >= 2 ms
    assert point.throughput_per_s == pytest.approx(4 * point.requests_per_s)


def test_drifting_workload_is_reported_unstable_with_its_numbers(clock):
    def slower_every_window() -> None:  # latency doubles every 50 ms window
        clock.work(0.0003 * 2 ** (clock.seconds / 0.05))

    point = measure(slower_every_window, batch_size=1, config=MeasureConfig(max_trials=4, **FAST))
    assert not point.stable
    assert point.trials == 4 and len(point.windows) == 4
    assert point.throughput_per_s > 0 and point.latency_ms.p99 > point.latency_ms.p50 > 0
    p99s = [w.latency_p99_ms for w in point.windows]
    assert p99s == sorted(p99s) and p99s[-1] > 4 * p99s[0]  # each window slower than the one before


def test_concurrency_runs_calls_in_parallel_threads():
    seen, lock, state, all_in = set(), threading.Lock(), {"in_flight": 0, "peak": 0}, threading.Event()
    first = threading.local()

    def infer() -> None:
        with lock:
            seen.add(threading.get_ident())
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            if state["in_flight"] == 4:
                all_in.set()
        if not getattr(first, "done", False):  # each thread's first call waits for the other three
            first.done = True
            all_in.wait(timeout=30)
        time.sleep(0.002)  # releases the GIL like onnxruntime does
        with lock:
            state["in_flight"] -= 1

    four = measure(infer, 1, MeasureConfig(max_trials=3, concurrency=4, **FAST))
    # four calls were in flight at once: only four parallel threads can get there
    assert len(seen) == 4 and state["peak"] == 4 and four.concurrency == 4
    seen.clear()
    one = measure(infer, 1, MeasureConfig(max_trials=3, **FAST))
    assert len(seen) == 1 and one.concurrency == 1


def test_request_rate_paces_requests(clock):
    point = measure(lambda: None, 1, MeasureConfig(max_trials=3, request_rate=200.0, **FAST))
    assert point.requests_per_s == pytest.approx(200.0, rel=0.15) and point.late_requests == 0
    # between requests the client sleeps out the 5 ms slot instead of sending early
    assert clock.sleeps and max(clock.sleeps) == pytest.approx(0.005, rel=0.01)


def test_client_errors_surface_instead_of_being_counted():
    def broken() -> None:
        raise RuntimeError("server said no")

    with pytest.raises(RuntimeError, match="server said no"):
        measure(broken, 1, MeasureConfig(concurrency=2, **FAST))


def test_resources_are_sampled_per_point_and_gpu_is_null_with_reason():
    point = measure(lambda: _busy(0.001), 1, MeasureConfig(max_trials=3, **FAST))
    assert point.rss_peak_mb and point.rss_peak_mb > 1
    assert 0 < point.cpu_util_pct <= 100
    assert point.gpu is None and point.gpu_null_reason


def _point(batch: int, thr: float, p99: float, stable: bool = True) -> Point:
    return Point(batch, 1, thr, thr / batch, Latency(p99 / 2, p99 / 2, p99, p99, p99), stable, 3, 30, [])


def test_optimal_is_highest_throughput_within_the_p99_budget():
    pts = [_point(1, 100, 1.0), _point(8, 600, 3.0), _point(64, 900, 12.0)]
    opt = select_optimal(pts, 5.0)
    assert (opt.batch_size, opt.within_budget) == (8, True)
    assert select_optimal(pts, None).batch_size == 64 and select_optimal(pts, None).within_budget is None


def test_no_point_within_budget_says_so_and_shows_the_closest():
    opt = select_optimal([_point(1, 100, 4.0), _point(8, 600, 9.0)], 2.0)
    assert opt.within_budget is False and opt.batch_size == 1
    assert "no batch size meets" in opt.reason and "closest is batch 1" in opt.reason


@pytest.mark.parametrize("kwargs, field", [
    ({"batch_sizes": (0, 4)}, "batch_sizes"), ({"latency_budget_ms": 0}, "latency_budget_ms"),
    ({"latency_budget_ms": -1.0}, "latency_budget_ms"), ({"provider": "rocm"}, "provider"),
    ({"window_s": 0}, "window_s"), ({"max_trials": 2}, "max_trials"), ({"concurrency": (0,)}, "concurrency"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(InputError, match=field):
        ProfileConfig(**kwargs)


def test_config_accepts_the_warmup_alias():
    assert ProfileConfig(warmup=0.5).warmup_s == 0.5
