"""Open-loop load: Poisson arrivals at a fixed rate, latency from the scheduled send time.

A closed-loop client waits for each reply before sending the next, so a slow server
slows the client down and hides its queue (coordinated omission). Here requests are
scheduled independently of replies, and a request's latency runs from the moment it
*should* have been sent: a late start caused by a saturated client or server counts
against the server, as a real trading feed would experience it.

The same windowing rules as closed-loop profiling apply: a warm-up is discarded,
windows of ``window_s`` (by scheduled time) are compared, and the run stops once the
last ``stable_windows`` agree within ``stability_pct`` or after ``max_trials`` windows.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from costeff.errors import InputError


@dataclass
class OpenLoopResult:
    rate_per_s: float
    latencies_ms: np.ndarray  # per request, from scheduled send time to reply; warm-up excluded
    start_delay_ms: np.ndarray  # how late each request actually left (client saturation)
    extracted: list[Any]  # per request, whatever ``extract(result)`` returned
    windows: list[Any]
    stable: bool
    in_flight_peak: int
    duration_s: float
    errors: list[str] = field(default_factory=list)


class _Driver:
    def __init__(self, factory: Callable[[], Callable[[], Any]], rate: float, max_in_flight: int, seed: int,
                 extract: Callable[[Any], Any] | None) -> None:
        self.factory, self.rate, self.extract = factory, rate, extract
        self.pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="costeff-openloop")
        self.local = threading.local()
        self.rng = np.random.default_rng(seed)
        self.sent: list[tuple[int, Future]] = []
        self.stop = threading.Event()
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def task(self, scheduled_ns: int) -> tuple[int, int, Any]:
        call = getattr(self.local, "call", None)
        if call is None:
            call = self.local.call = self.factory()
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        started = time.perf_counter_ns()
        try:
            result = call()
        finally:
            with self.lock:
                self.in_flight -= 1
        done = time.perf_counter_ns()
        return done - scheduled_ns, started - scheduled_ns, self.extract(result) if self.extract else None

    def dispatch(self, t0_ns: int) -> None:
        due = t0_ns
        while not self.stop.is_set():
            due += int(self.rng.exponential(1e9 / self.rate))
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0 and self.stop.wait(delay):
                return
            self.sent.append((due, self.pool.submit(self.task, due)))


def run_open_loop(factory: Callable[[], Callable[[], Any]], rate_per_s: float, *, batch_size: int = 1,
                  warmup_s: float = 0.5, window_s: float = 1.0, stable_windows: int = 3, max_trials: int = 8,
                  stability_pct: float = 10.0, max_in_flight: int = 64, seed: int = 0,
                  extract: Callable[[Any], Any] | None = None) -> OpenLoopResult:
    """Drive ``factory()``-made calls (one per client thread) with Poisson arrivals at ``rate_per_s``."""
    if not rate_per_s > 0 or rate_per_s == float("inf"):
        raise InputError(f"--request-rate: {rate_per_s!r} must be a finite number > 0 requests/s")
    driver = _Driver(factory, rate_per_s, max_in_flight, seed, extract)
    t0 = time.perf_counter_ns()
    thread = threading.Thread(target=driver.dispatch, args=(t0,), name="costeff-openloop-dispatch", daemon=True)
    thread.start()
    try:
        windows, stable = _windows(driver, t0, batch_size, warmup_s, window_s, stable_windows, max_trials,
                                   stability_pct)
    finally:
        driver.stop.set()
        thread.join()
        wait([f for _, f in driver.sent])
        driver.pool.shutdown(wait=True)
    return _result(driver, t0, warmup_s, len(windows) * window_s, windows, stable)


def _windows(driver: _Driver, t0: int, batch_size: int, warmup_s: float, window_s: float, count: int,
             max_trials: int, pct: float) -> tuple[list[Any], bool]:
    from costeff.profiling import Window, is_stable

    windows: list[Any] = []
    while len(windows) < max_trials:
        lo = t0 + int((warmup_s + len(windows) * window_s) * 1e9)
        hi = lo + int(window_s * 1e9)
        time.sleep(max(0.0, (hi - time.perf_counter_ns()) / 1e9))
        futures = [f for due, f in list(driver.sent) if lo <= due < hi]
        wait(futures)
        lat = [f.result()[0] for f in futures if f.exception() is None]
        if futures and len(lat) < len(futures):
            raise next(f.exception() for f in futures if f.exception() is not None)  # type: ignore[misc]
        p99 = float(np.percentile(lat, 99)) / 1e6 if lat else float("nan")
        windows.append(Window(len(lat), window_s, len(lat) * batch_size / window_s, p99))
        if is_stable(windows, count, pct):
            return windows, True
    return windows, False


def _result(driver: _Driver, t0: int, warmup_s: float, measured_s: float, windows: list[Any],
            stable: bool) -> OpenLoopResult:
    lo, hi = t0 + int(warmup_s * 1e9), t0 + int((warmup_s + measured_s) * 1e9)
    rows = [f.result() for due, f in driver.sent if lo <= due < hi and f.exception() is None]
    latency = np.array([r[0] for r in rows], dtype=np.float64) / 1e6
    delay = np.array([r[1] for r in rows], dtype=np.float64) / 1e6
    return OpenLoopResult(driver.rate, latency, delay, [r[2] for r in rows], windows, stable, driver.peak,
                          measured_s)
