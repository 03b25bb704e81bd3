"""Open-loop load: Poisson arrivals at a fixed rate, latency from the scheduled send time.

A closed-loop client waits for each reply before sending the next, so a slow server
slows the client down and hides its queue (coordinated omission). Here requests are
scheduled independently of replies, and a request's latency runs from the moment it
*should* have been sent: a late start caused by a saturated client or server counts
against the server, as a real trading feed would experience it.

The same windowing rules as closed-loop profiling apply: a warm-up is discarded,
windows of ``window_s`` (by scheduled time) are compared, and the run stops once the
last ``stable_windows`` agree within ``stability_pct`` or after ``max_trials`` windows.

The client says when it could not hold its schedule, and marks the point unstable:

- a send is *late* when it left more than ``late_threshold_ms`` (1 ms or 10 % of the
  mean gap, whichever is larger) after its scheduled time; more than ``LATE_PCT_MAX`` %
  late sends means the arrival process measured is not the one asked for;
- over the measured span, *scheduled* is the rate of the Poisson schedule actually
  drawn (it differs from the asked rate by sampling noise), *offered* the rate of the
  sends that left, *achieved* the rate of the replies; offered or achieved below
  ``ACHIEVED_MIN_PCT`` % of scheduled (and short by more than ``MIN_DEFICIT``
  requests, the boundary effect of a window) means the backlog grew: the client or the
  server did not keep up, and the latency is not a steady state;
- at most ``max_in_flight`` requests are outstanding (one client thread each); a send
  that found them all busy waited for a slot, which the result counts
  (``cap_waits``). The default (``DEFAULT_MAX_IN_FLIGHT``) is far above what a server
  answering at the asked rate keeps in flight (rate x latency), so it binds only when
  the server falls behind.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from costeff.errors import InputError
from costeff.poisson import PoissonProcess

DEFAULT_MAX_IN_FLIGHT = 512
LATE_MIN_MS = 1.0  # a send later than max(LATE_MIN_MS, LATE_GAP_FRACTION x mean gap) is late
LATE_GAP_FRACTION = 0.10
LATE_PCT_MAX = 1.0  # more late sends than this % marks the point unstable
ACHIEVED_MIN_PCT = 98.0  # offered / achieved below this % of the schedule marks it unstable
MIN_DEFICIT = 3  # ... when short by more than this many requests (window boundary effect)


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
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    cap_waits: int = 0  # sends in the measured span that found max_in_flight requests outstanding
    late_threshold_ms: float = LATE_MIN_MS
    late_sends: int = 0
    scheduled_rate_per_s: float = 0.0
    offered_rate_per_s: float = 0.0
    achieved_rate_per_s: float = 0.0
    windows_stable: bool = True
    unstable_reasons: list[str] = field(default_factory=list)

    @property
    def late_send_pct(self) -> float:
        return 100.0 * self.late_sends / self.latencies_ms.size if self.latencies_ms.size else 0.0


class _Driver:
    def __init__(self, factory: Callable[[], Callable[[], Any]], rate: float, max_in_flight: int, seed: int,
                 extract: Callable[[Any], Any] | None) -> None:
        self.factory, self.rate, self.extract, self.cap = factory, rate, extract, max_in_flight
        self.pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="costeff-openloop")
        self.local = threading.local()
        self.arrivals = PoissonProcess(rate, seed)  # seconds from t0, the first one gap after it
        self.sent: list[tuple[int, bool, Future]] = []  # (scheduled ns, waited for a slot, future)
        self.stop = threading.Event()
        self.in_flight = self.peak = self.outstanding = 0
        self.lock = threading.Lock()

    def task(self, scheduled_ns: int) -> tuple[int, int, Any, int, int]:
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
                self.outstanding -= 1
        done = time.perf_counter_ns()
        return done - scheduled_ns, started - scheduled_ns, self.extract(result) if self.extract else None, \
            started, done

    def dispatch(self, t0_ns: int) -> None:
        while not self.stop.is_set():
            due = t0_ns + round(next(self.arrivals) * 1e9)
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0 and self.stop.wait(delay):
                return
            with self.lock:
                waited = self.outstanding >= self.cap
                self.outstanding += 1
            self.sent.append((due, waited, self.pool.submit(self.task, due)))


def run_open_loop(factory: Callable[[], Callable[[], Any]], rate_per_s: float, *, batch_size: int = 1,
                  warmup_s: float = 0.5, window_s: float = 1.0, stable_windows: int = 3, max_trials: int = 8,
                  stability_pct: float = 10.0, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, seed: int = 0,
                  extract: Callable[[Any], Any] | None = None) -> OpenLoopResult:
    """Drive ``factory()``-made calls (one per client thread) with Poisson arrivals at ``rate_per_s``."""
    if not rate_per_s > 0 or rate_per_s == float("inf"):
        raise InputError(f"--request-rate: {rate_per_s!r} must be a finite number > 0 requests/s")
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise InputError(f"--max-in-flight: {max_in_flight!r} must be a whole number >= 1")
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
        wait([f for _, _, f in driver.sent])
        driver.pool.shutdown(wait=True)
    return _result(driver, t0, warmup_s, len(windows) * window_s, windows, stable, stability_pct)


def _windows(driver: _Driver, t0: int, batch_size: int, warmup_s: float, window_s: float, count: int,
             max_trials: int, pct: float) -> tuple[list[Any], bool]:
    from costeff.profiling import Window, is_stable

    windows: list[Any] = []
    while len(windows) < max_trials:
        lo = t0 + int((warmup_s + len(windows) * window_s) * 1e9)
        hi = lo + int(window_s * 1e9)
        time.sleep(max(0.0, (hi - time.perf_counter_ns()) / 1e9))
        futures = [f for due, _, f in list(driver.sent) if lo <= due < hi]
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
            windows_stable: bool, pct: float) -> OpenLoopResult:
    lo, hi = t0 + int(warmup_s * 1e9), t0 + int((warmup_s + measured_s) * 1e9)
    done = [(due, waited, f.result()) for due, waited, f in driver.sent if f.exception() is None]
    rows = [r for due, _, r in done if lo <= due < hi]
    latency = np.array([r[0] for r in rows], dtype=np.float64) / 1e6
    delay = np.array([r[1] for r in rows], dtype=np.float64) / 1e6
    threshold = max(LATE_MIN_MS, LATE_GAP_FRACTION * 1e3 / driver.rate)
    seconds = max(measured_s, 1e-9)
    result = OpenLoopResult(
        driver.rate, latency, delay, [r[2] for r in rows], windows, windows_stable, driver.peak, measured_s,
        max_in_flight=driver.cap, cap_waits=sum(1 for due, waited, _ in done if waited and lo <= due < hi),
        late_threshold_ms=threshold, late_sends=int((delay > threshold).sum()),
        scheduled_rate_per_s=len(rows) / seconds,
        offered_rate_per_s=sum(1 for _, _, r in done if lo <= r[3] < hi) / seconds,
        achieved_rate_per_s=sum(1 for _, _, r in done if lo <= r[4] < hi) / seconds, windows_stable=windows_stable)
    result.unstable_reasons = unstable_reasons(result, pct)
    result.stable = not result.unstable_reasons
    return result


def unstable_reasons(r: OpenLoopResult, pct: float) -> list[str]:
    """Why the point at ``r`` is not a steady state at the asked rate (empty when it is)."""
    reasons = []
    if not r.windows_stable:
        reasons.append(f"the last windows did not agree within {pct:g} % (throughput and p99)")
    if r.late_send_pct > LATE_PCT_MAX:
        reasons.append(f"{r.late_send_pct:.1f} % of sends left more than {r.late_threshold_ms:.3g} ms after their "
                       f"scheduled time (limit {LATE_PCT_MAX:g} %): the client could not hold the schedule")
    for name, value, who in (("offered", r.offered_rate_per_s, "the client"),
                             ("achieved", r.achieved_rate_per_s, "the server or the client")):
        short = (r.scheduled_rate_per_s - value) * r.duration_s
        if value < r.scheduled_rate_per_s * ACHIEVED_MIN_PCT / 100.0 and short > MIN_DEFICIT:
            reasons.append(f"{name} rate {value:.1f}/s < {ACHIEVED_MIN_PCT:g} % of the {r.scheduled_rate_per_s:.1f}/s "
                           f"scheduled (asked {r.rate_per_s:g}/s): {who} did not keep up")
    if r.cap_waits:
        reasons.append(f"the in-flight cap bound: {r.cap_waits} sends waited for one of the {r.max_in_flight} "
                       "outstanding requests to finish (--max-in-flight)")
    return reasons
