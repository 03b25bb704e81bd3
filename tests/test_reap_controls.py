"""Reaper controls that mean what they say: exclusions read from the object, partly applied rounds
recorded, failed rounds counted, capacity restored when signals stay away, SIGTERM's exit code."""

import pytest

from costeff.audit import AuditLog
from costeff.errors import DependencyError
from costeff.reaper.actions import EXCLUDE_ANNOTATION
from costeff.reaper.config import DecisionConfig, ReaperConfig, ScheduleConfig, Target
from costeff.reaper.live import Actuators, ReaperMetrics, _watch_tick, _WatchState, open_actions, tick

from test_reap_k8s import ListSource, _idle, api, scaler  # noqa: F401 - api and scaler are fixtures
from workspace_support import flag_store, env_home


def _config(*targets, blind_s=900.0):
    return ReaperConfig(decision=DecisionConfig(window_s=300, stale_after_s=120, restore_when_blind_s=blind_s),
                        schedule=ScheduleConfig(enabled=False),
                        targets=targets or (Target("policy", namespace="trading"),))


def test_the_exclude_annotation_on_the_deployment_is_honoured(api, scaler):
    api.objects[("deployments", "trading", "policy")]["annotations"][EXCLUDE_ANNOTATION] = "true"
    outcome = scaler.reap(Target("policy", namespace="trading"))
    assert not outcome.changed and EXCLUDE_ANNOTATION in outcome.detail
    assert [r[0] for r in api.requests] == ["GET", "GET"]  # read only
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 3


def test_a_label_selector_matches_the_objects_own_labels(api, scaler):
    api.objects[("deployments", "trading", "policy")]["labels"] = {"tier": "critical", "team": "rl"}
    scaler.exclude_labels = (("tier", "critical"),)
    outcome = scaler.reap(Target("policy", namespace="trading"))
    assert not outcome.changed and "tier=critical" in outcome.detail
    scaler.exclude_labels = (("tier", "batch"),)
    assert scaler.reap(Target("policy", namespace="trading")).changed


def test_a_round_that_fails_part_way_is_recorded_as_partly_applied(api, scaler, tmp_path):
    audit = AuditLog(tmp_path / "audit", home=env_home())
    now = 1_700_000_000.0
    targets = (Target("policy", namespace="trading"), Target("ghost", namespace="trading"))
    source = ListSource({"policy": _idle("policy", now), "ghost": _idle("ghost", now)})
    with pytest.raises(DependencyError, match="404"):
        tick(_config(*targets), source, True, Actuators(kube=scaler, flags=flag_store()), audit, 2.0, now=now)
    partial = [r for r in audit.records() if r["event"] == "reaper.round_partial"]
    assert len(partial) == 1 and partial[0]["payload"]["changed"] == ["deployment/trading/policy"]
    assert partial[0]["payload"]["failed_target"] == "deployment/trading/ghost"


class Down:
    def samples(self, target, window_s, now):
        raise DependencyError("prometheus at http://127.0.0.1:9 is unreachable")


def test_signals_gone_too_long_bring_reaped_capacity_back(api, scaler, tmp_path):
    audit, actuators = AuditLog(tmp_path / "audit", home=env_home()), Actuators(kube=scaler, flags=flag_store())
    now = 1_700_000_000.0
    config = _config(blind_s=600.0)
    tick(config, ListSource({"policy": _idle("policy", now)}), True, actuators, audit, 2.0, now=now)
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 0
    state, metrics = _WatchState(), ReaperMetrics(None)
    for t in (now + 60, now + 360):  # blind for 300 s: still below the limit, capacity stays down
        _watch_tick(config, Down(), True, actuators, audit, 2.0, metrics, state, now=t)
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 0
    _watch_tick(config, Down(), True, actuators, audit, 2.0, metrics, state, now=now + 700)
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 3 and open_actions(audit) == []
    restore = [r for r in audit.records() if r["payload"].get("action") == "restore"][-1]
    assert "fail safe to capacity" in restore["payload"]["reason"]
    assert metrics.rounds_failed._value.get() == 3


def test_a_successful_round_sets_the_last_success_time(api, scaler, tmp_path):
    metrics, now = ReaperMetrics(None), 1_700_000_000.0
    _watch_tick(_config(), ListSource({"policy": _idle("policy", now)}), False,
                Actuators(kube=scaler, flags=flag_store()), AuditLog(tmp_path / "audit", home=env_home()), 2.0, metrics,
                _WatchState(), now=now)
    assert metrics.last_success._value.get() == now and metrics.rounds_failed._value.get() == 0


# The child replays the trace again and again, after saying it has started: the signal lands while a
# replay is running however slowly the machine imports or replays, so the test never races it.
_SIGTERM_CHILD = """
import pathlib, sys
import costeff.reaper.run as run
from costeff.cli import main
real = run.replay
def replay(*args, **kwargs):
    pathlib.Path(sys.argv[1]).touch()
    while True:
        real(*args, **kwargs)
run.replay = replay
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigterm_ends_any_command_with_143_after_cleanup(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    trace, started = tmp_path / "trace.csv", tmp_path / "started"
    from costeff.reaper.sample import generate
    generate(trace, days=30)
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD, str(started), "reap", "--trace", str(trace),
                             "--out", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120  # only a hung child gets near this
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the replay never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "terminated" in err
    assert not list((tmp_path / "r").glob(".*.tmp")) if (tmp_path / "r").exists() else True


def test_max_requests_is_per_second_not_per_step():
    from costeff.reaper.decision import is_idle_sample, sample_blockers
    from costeff.reaper.signals import Sample

    cfg = DecisionConfig(max_requests=1.0)
    ten_per_15s = Sample(15.0, "p", 1.0, 10.0, 0.0, interval_s=15.0)  # 0.67 requests/s
    assert is_idle_sample(ten_per_15s, cfg) and sample_blockers(ten_per_15s, cfg) == []
    thirty_per_15s = Sample(15.0, "p", 1.0, 30.0, 0.0, interval_s=15.0)  # 2 requests/s
    assert not is_idle_sample(thirty_per_15s, cfg)
    assert sample_blockers(thirty_per_15s, cfg) == ["2 requests/s > 1/s"]


def test_trace_samples_know_their_interval(tmp_path):
    from costeff.reaper.signals import load_trace

    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,resource,gpu_util_pct,requests,influence_pct\n"
                     "2025-03-03T00:00:00Z,p,1,30,0\n2025-03-03T00:00:15Z,p,1,30,0\n2025-03-03T00:00:30Z,p,1,30,0\n")
    samples = load_trace(trace).samples["p"]
    assert [s.interval_s for s in samples] == [15.0, 15.0, 15.0] and samples[1].requests_per_s == 2.0


def test_a_dry_run_reads_the_object_and_shows_what_applying_would_do(api, scaler, tmp_path):
    """Deployed, the reaper runs as a dry run for weeks before anyone applies it: its records must say
    what --apply would do, exclusion annotation and real replica count included, from reads only."""
    api.objects[("deployments", "trading", "ghost")] = {
        "replicas": 2, "annotations": {EXCLUDE_ANNOTATION: "true"}}
    now, audit = 1_700_000_000.0, AuditLog(tmp_path / "audit", home=env_home())
    targets = (Target("policy", namespace="trading", gpus_per_replica=1.0),
               Target("ghost", namespace="trading"))
    source = ListSource({"policy": _idle("policy", now), "ghost": _idle("ghost", now)})
    dry_down = set()
    result = tick(_config(*targets), source, False, Actuators(kube=scaler, flags=flag_store()), audit, 2.0, dry_down,
                  now=now)
    by_target = {a["target"]: a for a in result.actions}
    policy, excluded = by_target["deployment/trading/policy"], by_target["deployment/trading/ghost"]
    assert policy["detail"] == "dry run: would scale 3 -> 0" and policy["would_change"] and not policy["changed"]
    assert policy["usd_per_hour_saved"] == 6.0  # 3 replicas x 1 GPU x $2, read from the object
    assert not excluded["would_change"] and EXCLUDE_ANNOTATION in excluded["detail"]
    assert excluded["usd_per_hour_saved"] == 0.0 and result.savings_usd_per_hour == 6.0
    verdict = next(v for v in result.verdicts if v["target"] == "deployment/trading/ghost")
    assert EXCLUDE_ANNOTATION in verdict["excluded"]
    assert dry_down == {"deployment/trading/policy"}
    assert {r[0] for r in api.requests} == {"GET"}  # nothing written
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 3


def test_a_dry_run_without_kubernetes_credentials_still_says_what_it_would_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    now = 1_700_000_000.0
    result = tick(_config(), ListSource({"policy": _idle("policy", now)}), False, Actuators(flags=flag_store()),
                  AuditLog(tmp_path / "audit", home=env_home()), 2.0, set(), now=now)
    assert [a["detail"] for a in result.actions] == ["dry run: would reap"]
    assert result.actions[0]["usd_per_hour_saved"] == 2.0  # per replica: the count could not be read



def _signature_checks_per_round(audit, size, scaler, checks):
    """Signatures checked in each of three reaper daemon rounds (applying) over a trail of ``size`` records
    written without checkpoints, so nothing but the daemon's own progress lets it skip a record."""
    import time

    from costeff.reaper.live import watch

    filler = AuditLog(audit.directory, checkpoint_every=10**9, home=env_home())
    for i in range(size):
        filler.append("test.filler", {"i": i, "of": size}, actor="test")  # two trails, two first lines
    starts: list[int] = []

    class Counted(ListSource):
        def samples(self, target, window_s, now):
            starts.append(len(checks))  # one target: once per round, at its start
            return super().samples(target, window_s, now)

    result = watch(_config(), Counted({"policy": _idle("policy", time.time())}), True,
                   Actuators(kube=scaler, flags=flag_store()), audit, 2.0, 0.0, ReaperMetrics(None), max_rounds=3)
    assert result.rounds == 3 and open_actions(audit)  # round 1 reaped, rounds 2 and 3 kept it down
    return [b - a for a, b in zip(starts, starts[1:] + [len(checks)], strict=True)]


def test_reaper_rounds_verify_only_what_was_appended_since_the_last(api, scaler, monkeypatch, tmp_path):
    from costeff.audit.keys import Verifier

    checks: list[int] = []
    real = Verifier.verify
    monkeypatch.setattr(Verifier, "verify", lambda self, sig, data: checks.append(1) or real(self, sig, data))
    small = _signature_checks_per_round(AuditLog(tmp_path / "small_trail", home=env_home()), 30, scaler, checks)
    api.objects[("deployments", "trading", "policy")]["replicas"] = 3  # up again for the second trail
    large = _signature_checks_per_round(AuditLog(tmp_path / "large_trail", home=env_home()), 300, scaler, checks)
    assert small[1:] == large[1:] and max(large[1:]) <= 5  # later rounds: the new records, not the trail
    # The first round of a process over a checkpoint-free trail checks each record once: to act on the records,
    # and not a second time before appending to them.
    assert large[0] - small[0] == 300 - 30
