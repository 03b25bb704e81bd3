"""The one-row Triton loop the optimizer runs, and the runs it lets stand for other settings."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from costeff.batching import BatcherConfig, OptimizeConfig, ServiceTimes, poisson_arrivals
from costeff.batching import optimizer as opt
from costeff.batching import simulator as sim
from costeff.batching.simulator import Stream, simulate_stream
from costeff.batching.triton_unit import decision, same_schedule, triton_unit_loop
from costeff.records.kinds import PROFILE


# 1 ms alone, 3 ms for 16 rows, a p99/p50 spread and a cold penalty after idle gaps.
PROFILE_DATA = {"points": [{"batch_size": b, "concurrency": 1, "latency_ms": {"mean": m, "p50": m, "p99": 1.5 * m}}
                           for b, m in ((1, 1.0), (4, 1.5), (16, 3.0))],
                "latency_by_gap": [{"gap_ms": 0.0, "p50_ms": 1.0}, {"gap_ms": 2.0, "p50_ms": 1.4},
                                   {"gap_ms": 20.0, "p50_ms": 2.5}]}


def service(per_request_ms: float = 0.0) -> ServiceTimes:
    svc = ServiceTimes.from_profile(PROFILE.parse(PROFILE_DATA, "<test profile>"))
    return dataclasses.replace(svc, per_request_ms=per_request_ms)


def settings(instances=(1, 2), delays=(0.0, 300.0, 2000.0)) -> list[BatcherConfig]:
    out = []
    for mbs, n, d in itertools.product((1, 4, 8, 16), instances, delays):
        for prefs in opt._preferred_options(mbs, "triton"):
            out.append(BatcherConfig(mbs, prefs, d, n))
    return out


@pytest.mark.parametrize("rate, per_request_ms", [(400.0, 0.0), (1500.0, 0.05), (6000.0, 0.0)])
def test_the_unit_loop_batches_as_the_general_loop_does(rate, per_request_ms):
    svc = service(per_request_ms)
    stream = Stream.of(poisson_arrivals(rate, 3000, seed=5), svc.sigma, 5)
    for cfg in settings():
        table = svc.table_s(cfg.max_batch_size).tolist()
        per = svc.per_request_ms * 1e-3
        general = sim._triton_loop(stream.times_list, None, cfg, table, stream.jitter, svc.cold_penalty(), per)
        unit = triton_unit_loop(stream.times_list, cfg, table, stream.jitter, svc.cold_points(), per)
        for key in ("lo", "k", "rows", "start", "done", "inst"):
            assert np.array_equal(unit[key], general[key]), (cfg.label(), key)
        assert unit["expired"] == general["expired"] == 0


def test_decision_is_the_general_loops_choice():
    for cfg in settings(instances=(1,)):
        delay = cfg.max_queue_delay_us * 1e-6
        for queued, waited in itertools.product(range(1, cfg.max_batch_size + 3), (False, True)):
            arrivals = [0.0] * queued + [1e9]  # the next request arrives long after the delay
            t = delay if waited else 0.0
            k, _ = sim._decide_unit(arrivals, None, 0, queued, t, delay, cfg)
            assert decision(cfg, queued, waited) == k, (cfg.label(), queued, waited)


def _same(a, b) -> bool:
    skip = {"config", "seen"}
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(a) if f.name not in skip)


@pytest.mark.parametrize("rate", [300.0, 2500.0])
def test_a_setting_said_to_send_the_same_batches_gets_the_same_result(rate):
    svc = service()
    stream = Stream.of(poisson_arrivals(rate, 3000, seed=2), svc.sigma, 2)
    runs = [simulate_stream(stream, svc, cfg) for cfg in settings()]
    claimed = {"same delay": 0, "longer delay": 0, "any delay": 0}
    for a, b in itertools.permutations(runs, 2):
        if not same_schedule(a.config, b.config, a.seen):
            continue
        assert _same(a, b), (a.config.label(), b.config.label(), a.seen)
        da, db = a.config.max_queue_delay_us, b.config.max_queue_delay_us
        claimed["same delay" if da == db else "longer delay" if 0 < da < db else "any delay"] += 1
    assert all(claimed.values()), claimed  # each reason was used, and held


def test_a_queue_past_the_longest_seen_tells_settings_apart():
    svc = service()
    stream = Stream.of(poisson_arrivals(300.0, 3000, seed=2), svc.sigma, 2)
    run = simulate_stream(stream, svc, BatcherConfig(16, (), 2000.0))
    assert 1 < run.seen.longest < 8
    assert same_schedule(run.config, BatcherConfig(16, (8,), 2000.0), run.seen)
    assert not same_schedule(run.config, BatcherConfig(16, (run.seen.longest,), 2000.0), run.seen)
    assert not same_schedule(run.config, BatcherConfig(16, (), 2000.0, instances=2), run.seen)


def test_the_optimizer_reports_the_same_with_and_without_reusing_runs(monkeypatch):
    cfg = OptimizeConfig(rate_per_s=2500, p99_ms=8, requests=2000, verify_factor=2, max_batch_sizes=(1, 4, 16),
                         queue_delays_us=(0, 300, 2000), instance="aws-c6i.large")
    calls = []

    def counted(*args, **kw):
        calls.append(args[2])
        return simulate_stream(*args, **kw)

    monkeypatch.setattr(opt, "simulate_stream", counted)
    profile = PROFILE.parse(PROFILE_DATA, "<test profile>")
    reused = opt.optimize(profile, cfg)
    with_reuse = len(calls)
    calls.clear()
    monkeypatch.setattr(opt, "same_schedule", lambda *a: False)
    fresh = opt.optimize(profile, cfg)
    assert with_reuse < len(calls) == reused.search["simulations"]
    for key in ("chosen", "top", "evaluated", "best_achievable", "binding", "feasible"):
        assert getattr(reused, key) == getattr(fresh, key), key
