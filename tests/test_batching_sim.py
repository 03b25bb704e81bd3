"""The batcher simulator against hand-computed schedules and queueing theory."""

from __future__ import annotations

import numpy as np
import pytest

from costeff.batching import BatcherConfig, ServiceTimes, poisson_arrivals, simulate
from costeff.errors import InputError
from costeff.records.kinds import PROFILE

MS = 1e-3


def flat(ms: float, up_to: int = 64) -> ServiceTimes:
    """Every batch takes ``ms``, whatever its size (easy to reason about by hand)."""
    return ServiceTimes((1, up_to), (ms, ms))


def run(arrivals_ms, cfg, service=None, **kw):
    return simulate(np.asarray(arrivals_ms, float) * MS, service or flat(1.0), cfg, jitter=False, **kw)


def test_queue_delay_expiry_sends_what_is_queued():
    r = run([0.0, 0.1, 0.2], BatcherConfig(64, (8,), max_queue_delay_us=1000))
    assert r.batch_histogram == {3: 1}
    # batch leaves when the oldest has waited 1 ms and takes 1 ms: latencies 2.0, 1.9, 1.8 ms
    assert r.latency_mean_ms == pytest.approx(1.9)
    assert r.latency_max_ms == pytest.approx(2.0)


def test_preferred_size_dispatches_without_waiting_for_the_delay():
    r = run([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], BatcherConfig(8, (4,), max_queue_delay_us=10_000))
    assert r.batch_histogram == {4: 2}
    # first batch leaves at the 4th arrival (0.3 ms), second as soon as the instance frees (1.3 ms)
    expected = [1.3 - a for a in (0.0, 0.1, 0.2, 0.3)] + [2.3 - a for a in (0.4, 0.5, 0.6, 0.7)]
    assert r.latency_mean_ms == pytest.approx(np.mean(expected))


def test_max_batch_size_caps_batches():
    r = run([0.0] * 20, BatcherConfig(8, (), max_queue_delay_us=0))
    assert r.batch_histogram == {8: 2, 4: 1}
    assert r.latency_max_ms == pytest.approx(3.0)


def test_two_instances_halve_the_queueing():
    one = run([0.0] * 10, BatcherConfig(1, instances=1))
    two = run([0.0] * 10, BatcherConfig(1, instances=2))
    assert one.queue_mean_ms == pytest.approx(4.5)  # waits 0..9 ms
    assert two.queue_mean_ms == pytest.approx(2.0)  # waits 0,0,1,1,..,4,4 ms
    assert two.utilisation == pytest.approx((1.0, 1.0))


def test_mlserver_closes_batches_by_size_or_timeout_even_while_busy():
    arrivals = [0.0, 0.5, 1.5, 2.8]
    ml = run(arrivals, BatcherConfig(4, max_queue_delay_us=1000, policy="mlserver"), flat(3.0))
    tri = run(arrivals, BatcherConfig(4, max_queue_delay_us=1000), flat(3.0))
    # MLServer: [0, 0.5] closes at 1.0, [1.5] at 2.5, [2.8] at 3.8 -> done 4, 7, 10 ms
    assert ml.batch_histogram == {2: 1, 1: 2}
    assert ml.latency_mean_ms == pytest.approx((4 + 3.5 + 5.5 + 7.2) / 4)
    # Triton waits for a free instance and then sends both late requests together
    assert tri.batch_histogram == {2: 2}
    assert tri.latency_mean_ms == pytest.approx((4 + 3.5 + 5.5 + 4.2) / 4)


def test_mlserver_size_closes_before_the_timeout():
    r = run([0.0, 0.1, 0.2], BatcherConfig(2, max_queue_delay_us=1000, policy="mlserver"))
    assert r.batch_histogram == {2: 1, 1: 1}
    # [0, 0.1] closes at 0.1 (size) -> done 1.1; [0.2] closes at 1.2 (timeout) -> done 2.2
    assert r.latency_max_ms == pytest.approx(2.0)


def test_timeout_rejects_requests_waiting_too_long():
    r = run([0.0] * 5, BatcherConfig(1, default_timeout_us=2500))
    assert (r.served, r.rejected) == (3, 2)


def test_max_queue_size_rejects_arrivals_finding_the_queue_full():
    r = run([0.0, 0.1, 0.2, 0.3, 0.4], BatcherConfig(1, max_queue_size=2))
    assert (r.served, r.rejected) == (3, 2)
    assert r.latency_max_ms == pytest.approx(2.8)  # the request at 0.2 ms runs 2..3 ms


def test_multi_row_requests_stop_before_passing_the_largest_preferred_size():
    # 3 + 3 rows = 6; a third request would make 9 > 8, so Triton sends 6 rows at once
    r = run([0.0, 0.0, 0.0], BatcherConfig(16, (8,), max_queue_delay_us=10_000), rows=3)
    assert r.batch_histogram == {6: 1, 3: 1}


def test_md1_mean_wait_matches_closed_form():
    """Batch 1, no delay, deterministic 1 ms service: the M/D/1 queue, Wq = rho D / (2 (1 - rho))."""
    rate, d = 500.0, 1.0
    r = simulate(poisson_arrivals(rate, 200_000, seed=3), flat(d), BatcherConfig(1), jitter=False)
    rho = rate * d * MS
    assert r.queue_mean_ms == pytest.approx(rho * d / (2 * (1 - rho)), rel=0.06)
    assert r.utilisation[0] == pytest.approx(rho, rel=0.02)
    assert r.latency_mean_ms == pytest.approx(r.queue_mean_ms + d)
    assert r.throughput_per_s == pytest.approx(rate, rel=0.02)


def _profile(data):
    """A profile record as ``costeff profile`` writes it, from a hand-written dict."""
    return PROFILE.parse(data, "<test profile>")


def test_service_time_interpolates_between_measured_points():
    svc = ServiceTimes.from_profile(_profile({"points": [
        {"batch_size": 1, "concurrency": 1, "latency_ms": {"mean": 1.0}},
        {"batch_size": 9, "concurrency": 1, "latency_ms": {"mean": 3.0}},
        {"batch_size": 4, "concurrency": 4, "latency_ms": {"mean": 50.0}}]}))  # not concurrency 1: ignored
    assert svc.time_ms(5) == pytest.approx(2.0)
    assert svc.time_ms(17) == pytest.approx(5.0)  # last slope extended


def test_jitter_keeps_the_mean_and_widens_the_tail():
    svc = ServiceTimes.from_profile(_profile({"points": [
        {"batch_size": 1, "latency_ms": {"mean": 1.0, "p50": 1.0, "p99": 2.0}}]}))
    arr = np.arange(20_000) * 10 * MS  # never queue: latency = service time
    r = simulate(arr, svc, BatcherConfig(1), jitter=True)
    assert r.latency_mean_ms == pytest.approx(1.0, rel=0.03)
    assert r.latency_p99_ms > 1.5


@pytest.mark.parametrize("kw, field", [
    (dict(max_batch_size=8, preferred_batch_sizes=(16,)), "preferred_batch_sizes"),
    (dict(max_batch_size=0), "max_batch_size"),
    (dict(max_batch_size=8, instances=0), "instances"),
    (dict(max_batch_size=8, policy="tgi"), "policy"),
    (dict(max_batch_size=8, preferred_batch_sizes=(4,), policy="mlserver"), "mlserver"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(InputError, match=field):
        BatcherConfig(**kw)


def test_a_request_larger_than_max_batch_is_refused():
    with pytest.raises(InputError, match="max_batch_size"):
        run([0.0], BatcherConfig(2), rows=3)


def test_cold_calls_after_idle_gaps_lengthen_service_at_low_rates_only():
    """A profile's latency after idle gaps becomes a per-batch penalty when the instance sat idle."""

    profile = {"points": [{"batch_size": 1, "concurrency": 1, "latency_ms": {"mean": 1.0, "p50": 1.0, "p99": 1.0}},
                          {"batch_size": 8, "concurrency": 1, "latency_ms": {"mean": 2.0, "p50": 2.0, "p99": 2.0}}],
               "latency_by_gap": [{"gap_ms": 0.0, "p50_ms": 1.0}, {"gap_ms": 10.0, "p50_ms": 3.0},
                                  {"gap_ms": 100.0, "p50_ms": 4.0}]}
    service = ServiceTimes.from_profile(_profile(profile))
    extra = service.cold_penalty()
    assert extra(0.0) == 0.0 and extra(0.005) == pytest.approx(0.001) and extra(1.0) == pytest.approx(0.003)
    cfg = BatcherConfig(max_batch_size=8, max_queue_delay_us=0, instances=1)
    sparse = np.arange(200) * 0.2  # one request every 200 ms: every call is cold
    cold = simulate(sparse, service, cfg, jitter=False)
    warm_service = ServiceTimes.from_profile(_profile({**profile, "latency_by_gap": []}))
    warm = simulate(sparse, warm_service, cfg, jitter=False)
    assert cold.latency_p50_ms == pytest.approx(warm.latency_p50_ms + 3.0, abs=1e-6)
    busy = np.arange(2000) * 0.0005  # 2000/s: the instance never idles, no penalty after the first call
    assert simulate(busy, service, cfg, jitter=False).latency_p50_ms == pytest.approx(
        simulate(busy, warm_service, cfg, jitter=False).latency_p50_ms,
        rel=0.05)
