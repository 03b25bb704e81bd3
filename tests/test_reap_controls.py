"""Reaper controls that mean what they say: exclusions read from the object, partly applied rounds
recorded, failed rounds counted, capacity restored when signals stay away, SIGTERM's exit code."""

import pytest

from costeff.audit import AuditLog
from costeff.errors import DependencyError
from costeff.reaper.actions import EXCLUDE_ANNOTATION
from costeff.reaper.config import DecisionConfig, ReaperConfig, ScheduleConfig, Target
from costeff.reaper.live import Actuators, ReaperMetrics, _watch_tick, _WatchState, open_actions, tick

from test_reap_k8s import DEPLOY, ListSource, _idle, api, scaler  # noqa: F401 - fixtures


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
    audit = AuditLog(tmp_path / "audit")
    now = 1_700_000_000.0
    targets = (Target("policy", namespace="trading"), Target("ghost", namespace="trading"))
    source = ListSource({"policy": _idle("policy", now), "ghost": _idle("ghost", now)})
    with pytest.raises(DependencyError, match="404"):
        tick(_config(*targets), source, True, Actuators(kube=scaler), audit, 2.0, now=now)
    partial = [r for r in audit.records() if r["event"] == "reaper.round_partial"]
    assert len(partial) == 1 and partial[0]["payload"]["changed"] == ["deployment/trading/policy"]
    assert partial[0]["payload"]["failed_target"] == "deployment/trading/ghost"


class Down:
    def samples(self, target, window_s, now):
        raise DependencyError("prometheus at http://127.0.0.1:9 is unreachable")


def test_signals_gone_too_long_bring_reaped_capacity_back(api, scaler, tmp_path):
    audit, actuators = AuditLog(tmp_path / "audit"), Actuators(kube=scaler)
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
    _watch_tick(_config(), ListSource({"policy": _idle("policy", now)}), False, Actuators(kube=scaler),
                AuditLog(tmp_path / "audit"), 2.0, metrics, _WatchState(), now=now)
    assert metrics.last_success._value.get() == now and metrics.rounds_failed._value.get() == 0
