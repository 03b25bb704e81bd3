"""One Poisson arrival process: the simulator, the in-process open loop and the remote open-loop client draw the
same arrival times for the same seed and rate, the first one gap after time 0."""

from __future__ import annotations

import numpy as np
import pytest

from costeff.errors import InputError
from costeff.poisson import BLOCK, PoissonProcess

RATE, SEED = 100.0, 7


def _expected(n: int) -> np.ndarray:
    from costeff.batching import poisson_arrivals

    return poisson_arrivals(RATE, n, SEED)


def test_taken_at_once_in_pieces_or_one_by_one_the_times_are_identical():
    process, n = PoissonProcess(RATE, SEED), BLOCK + 10  # across a block boundary of the streaming draw
    streamed = np.array([next(process) for _ in range(n)])
    pieces = PoissonProcess(RATE, SEED)
    assert np.array_equal(streamed, _expected(n))
    assert np.array_equal(np.concatenate([pieces.take(3), pieces.take(n - 3)]), _expected(n))


def test_the_first_arrival_is_one_gap_after_zero_and_the_span_estimates_the_rate():
    times = _expected(20_000)
    assert times[0] > 0 and np.all(np.diff(times) >= 0)
    assert times[0] == pytest.approx(PoissonProcess(RATE, SEED).take(1)[0])
    assert len(times) / times[-1] == pytest.approx(RATE, rel=0.02)  # no n / (n - 1) bias from an arrival at 0
    assert not np.array_equal(times, PoissonProcess(RATE, SEED + 1).take(20_000))


def test_a_rate_that_is_not_a_positive_finite_number_is_refused():
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(InputError, match="rate"):
            PoissonProcess(rate)


def test_the_profiling_open_loop_serves_requests_at_those_times(monkeypatch):
    from fake_clock import FakeClock

    from costeff.profiling import traffic

    clock = FakeClock(tick_ns=100)
    monkeypatch.setattr(traffic, "time", clock)
    calls: list[float] = []
    traffic.open_loop(lambda b: calls.append(clock.seconds), RATE, max_batch=1, requests=50, seed=SEED)
    warm_up, served = calls[0], np.array(calls[1:])  # one untimed call per batch size before the clock starts
    assert len(served) == 50
    assert np.allclose(served - warm_up, _expected(50), atol=2e-6)  # each within a few clock reads of its arrival


def test_the_remote_open_loop_schedules_sends_at_those_times():
    from costeff.remote.openloop import _Driver

    driver = _Driver(lambda: (lambda: None), RATE, 4, SEED, None)

    class Stop:  # the schedule only: stop after 50 sends, never sleep
        def is_set(self) -> bool:
            return len(driver.sent) >= 50

        def wait(self, timeout: float) -> bool:
            return False

    driver.stop = Stop()
    t0 = 1_000_000_000
    try:
        driver.dispatch(t0)
    finally:
        driver.pool.shutdown(wait=True)
    dues = np.array([due for due, _, _ in driver.sent]) - t0
    assert np.array_equal(dues, np.round(_expected(50) * 1e9).astype(np.int64))
