"""A profile assembled from timing rounds: each number the median over rounds, the same as the selection's speed."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import numpy as np
import pytest

from costeff.profiling.rounds import from_rounds
from costeff.quantization import QuantizeConfig, plan
from costeff.quantization.speed import summarise
from costeff.records.kinds import PROFILE
from costeff.runtimes.worker import SpeedTask, run_task


@pytest.fixture(scope="module")
def rounds(tiny_policy, tiny_observations, tmp_path_factory):
    """Two real worker measurements of the tiny policy, as the parent receives them (through JSON)."""
    obs = tmp_path_factory.mktemp("rounds") / "obs.npy"
    np.save(obs, tiny_observations[:256])
    task = SpeedTask(str(tiny_policy.onnx_path), "onnxruntime", {"provider": "cpu"}, str(obs), (1, 8),
                     window_s=0.03, warmup_s=0.01, gaps_s=(0.0, 0.001), gap_budget_s=0.02, target_rate=200.0,
                     latency_budget_ms=50.0, open_loop_s=0.2)
    return [json.loads(json.dumps(asdict(run_task(task)))) for _ in range(2)]


def test_every_point_is_the_median_of_the_rounds_and_matches_the_selection_speed(rounds, tiny_policy, tmp_path):
    cfg = QuantizeConfig(batch_sizes=(1, 8), window_s=0.03, target_rate=200.0, latency_budget_ms=50.0,
                         gaps_s=(0.0, 0.001), provider="cpu")
    report = from_rounds(tiny_policy.onnx_path, rounds, plan.profile_config(cfg), source="test rows")
    speed = summarise(rounds, 50.0)
    for p in report.points:
        got = [r["closed_loop"][str(p.batch_size)]["point"] for r in rounds]
        assert p.throughput_per_s == speed.throughput_per_s[p.batch_size]  # one figure, not two
        assert p.latency_ms.p99 == statistics.median(g["latency_ms"]["p99"] for g in got)
        assert len(p.windows) == sum(len(g["windows"]) for g in got) and p.requests == sum(g["requests"] for g in got)
        assert p.stable == (sum(g["stable"] for g in got) >= 1)  # at least half of the two settled
        assert p.gpu is None and p.gpu_null_reason  # on the CPU: the reason the GPU field is empty, not a zero
    assert [g["p50_ms"] for g in report.latency_by_gap] == [g["p50_ms"] for g in speed.latency_by_gap]
    assert report.config["stable_windows"] == 2 and report.config["max_trials"] == 3  # the rounds' own rules
    assert report.inputs["measurements"] == 2 and "not measured again" in report.inputs["source"]
    report.write(tmp_path)
    record = PROFILE.read(PROFILE.path_in(tmp_path))
    assert (record.optimal.batch_size, record.optimal.throughput_per_s) == \
        (speed.optimal_batch, speed.optimal_throughput_per_s)  # the profile's optimum is the selection's


def test_a_profile_from_rounds_feeds_the_batching_simulator_with_its_idle_gap_penalty(rounds, tiny_policy, tmp_path):
    from costeff.batching.service import ServiceTimes

    cfg = QuantizeConfig(batch_sizes=(1, 8), window_s=0.03, gaps_s=(0.0, 0.001), provider="cpu")
    from_rounds(tiny_policy.onnx_path, rounds, plan.profile_config(cfg), source="test rows").write(tmp_path)
    service = ServiceTimes.from_profile(PROFILE.path_in(tmp_path))
    assert service.batch_sizes == (1, 8) and service.cold_idle_s == (0.001,)


def test_no_rounds_is_an_error_not_an_empty_profile(tiny_policy):
    with pytest.raises(ValueError, match="no measurements"):
        from_rounds(tiny_policy.onnx_path, [], plan.profile_config(QuantizeConfig()), source="none")
