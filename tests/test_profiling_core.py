"""The measurement rules (stability, percentiles, optimal batch) on controlled fake workloads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

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


def test_constant_latency_workload_is_stable_and_measured_right():
    point = measure(lambda: _busy(0.002), batch_size=4, config=MeasureConfig(max_trials=20, **FAST))
    assert point.stable
    assert 3 <= point.trials <= 20
    assert point.latency_ms.p50 == pytest.approx(2.0, rel=0.5)
    # rows per second = batch size x requests per second
    assert point.throughput_per_s == pytest.approx(4 * point.requests_per_s)
    assert point.requests_per_s == pytest.approx(1000 / point.latency_ms.mean, rel=0.3)


def test_drifting_workload_is_reported_unstable_with_its_numbers():
    start = time.perf_counter()

    def slower_every_window() -> None:  # latency doubles every 50 ms window
        _busy(0.0003 * 2 ** ((time.perf_counter() - start) / 0.05))

    point = measure(slower_every_window, batch_size=1, config=MeasureConfig(max_trials=4, **FAST))
    assert not point.stable
    assert point.trials == 4 and len(point.windows) == 4
    assert point.throughput_per_s > 0 and point.latency_ms.p99 > point.latency_ms.p50 > 0
    assert point.windows[-1].latency_p99_ms > point.windows[0].latency_p99_ms


def test_concurrency_runs_calls_in_parallel_threads():
    seen, lock = set(), threading.Lock()

    def infer() -> None:
        with lock:
            seen.add(threading.get_ident())
        time.sleep(0.002)  # releases the GIL like onnxruntime does

    one = measure(infer, 1, MeasureConfig(max_trials=3, **FAST))
    seen.clear()
    four = measure(infer, 1, MeasureConfig(max_trials=3, concurrency=4, **FAST))
    assert len(seen) == 4 and four.concurrency == 4
    assert four.throughput_per_s > 2 * one.throughput_per_s


def test_request_rate_paces_requests():
    point = measure(lambda: None, 1, MeasureConfig(max_trials=3, request_rate=200.0, **FAST))
    assert point.requests_per_s == pytest.approx(200.0, rel=0.3)


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
