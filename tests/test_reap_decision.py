"""Idle decision rules, replay numbers by hand, trace errors and the replay CLI."""

import json
from datetime import date, datetime, time, timezone

import pytest

from costeff.audit import verify
from costeff.cli import main
from costeff.errors import InputError
from costeff.reaper.config import (DecisionConfig, Exclusions, ReaperConfig, SavingsConfig, ScheduleConfig, Target,
                                   load_config)
from costeff.reaper.decision import decide
from costeff.reaper.replay import replay, wait_stats
from costeff.reaper.signals import Sample, load_trace, write_trace
from workspace_support import env_home

CFG = DecisionConfig(window_s=300, stale_after_s=120)
T0 = datetime(2025, 3, 15, 0, 0, tzinfo=timezone.utc).timestamp()  # a Saturday: no market hours


def idle(ts, resource="r", **kw):
    values = dict(gpu_util_pct=1.0, requests=0.0, influence_pct=0.0, gpus=2.0)
    values.update(kw)
    return Sample(ts=T0 + ts, resource=resource, **values)


def series(n, step=60, **overrides_at):
    """n idle samples every ``step`` s; overrides_at maps 'i<index>' to field overrides."""
    return [idle(i * step, **overrides_at.get(f"i{i}", {})) for i in range(n)]


def test_idle_only_after_the_whole_window():
    samples = series(6)  # 0..300 s
    assert decide(samples[:5], T0 + 240, CFG).idle is False
    assert decide(samples, T0 + 300, CFG).idle is True


@pytest.mark.parametrize("field, value, reason", [
    ("influence_pct", 5.0, "influence"),
    ("gpu_util_pct", 20.0, "GPU util"),  # the threshold itself is not idle: strictly below 20 %
    ("requests", 1.0, "requests"),
])
def test_each_factor_alone_keeps_capacity(field, value, reason):
    samples = series(7, i6={field: value})
    verdict = decide(samples, T0 + 360, CFG)
    assert not verdict.idle and any(reason in r for r in verdict.reasons)


@pytest.mark.parametrize("field", ["influence_pct", "gpu_util_pct", "requests"])
def test_missing_metric_is_not_idle(field):
    verdict = decide(series(7, i6={field: None}), T0 + 360, CFG)
    assert not verdict.idle and any("missing" in r for r in verdict.reasons)


def test_empty_and_stale_data_are_not_idle():
    assert decide([], T0, CFG).idle is False
    assert "no data" in decide([], T0, CFG).reasons[0]
    stale = decide(series(7), T0 + 360 + 121, CFG)
    assert not stale.idle and "stale" in stale.reasons[0]


def test_gap_in_data_restarts_the_window():
    samples = series(3) + [idle(400 + i * 60) for i in range(4)]  # gap 120 -> 400 > stale_after_s
    assert decide(samples, T0 + 580, CFG).idle is False


def test_one_blip_resets_the_window():
    samples = series(12, i5={"gpu_util_pct": 45.0})
    # The blip at 300 s: the streak restarts at the next idle sample (360 s) and needs 300 s more.
    assert decide(samples, T0 + 600, CFG).idle is False
    assert decide(samples, T0 + 660, CFG).idle is True


def test_unconfigured_factor_is_ignored():
    cfg = DecisionConfig(window_s=300, stale_after_s=120, factors=("gpu_util", "requests"))
    assert decide(series(6, i5={"influence_pct": None}), T0 + 300, cfg).idle is True


def test_market_hours_protect_and_holidays_do_not():
    wednesday_open = datetime(2025, 3, 12, 14, 0, tzinfo=timezone.utc).timestamp()  # 10:00 New York
    samples = [Sample(wednesday_open - 600 + i * 60, "r", 1.0, 0.0, 0.0) for i in range(11)]
    schedule = ScheduleConfig(timezone="America/New_York", start=time(9, 30), end=time(16, 0))
    verdict = decide(samples, wednesday_open, CFG, schedule=schedule)
    assert verdict.idle and verdict.protected and not verdict.reap
    holiday = ScheduleConfig(holidays=frozenset({date(2025, 3, 12)}))
    assert decide(samples, wednesday_open, CFG, schedule=holiday).reap


def test_prewarm_blocks_reaping_just_before_the_open():
    before_open = datetime(2025, 3, 12, 13, 20, tzinfo=timezone.utc).timestamp()  # 09:20 New York
    samples = [Sample(before_open - 600 + i * 60, "r", 1.0, 0.0, 0.0) for i in range(11)]
    assert decide(samples, before_open, CFG, schedule=ScheduleConfig(prewarm_s=900)).protected
    assert not decide(samples, before_open, CFG, schedule=ScheduleConfig(prewarm_s=0)).protected


def test_exclusions_by_name_and_label():
    exclude = Exclusions(frozenset({"canary"}), (("costeff.io/reaper", "off"),))
    assert "name" in exclude.excludes(Target("canary"))
    assert "label" in exclude.excludes(Target("x", labels=(("costeff.io/reaper", "off"),)))
    assert exclude.excludes(Target("x", labels=(("costeff.io/reaper", "on"),))) is None
    assert not decide(series(7), T0 + 360, CFG, excluded="excluded by name").reap


def _hand_trace():
    """0: busy; 60..900 idle; 960, 1020 requests; 1080..1200 idle (every 60 s, 2 GPUs)."""
    return series(21, i0={"requests": 5.0, "gpu_util_pct": 50.0}, i16={"requests": 3.0, "gpu_util_pct": 30.0},
                  i17={"requests": 2.0, "gpu_util_pct": 30.0})


def _hand_config():
    return ReaperConfig(decision=CFG, schedule=ScheduleConfig(enabled=False),
                        savings=SavingsConfig(restore_latency_s=60))


def test_replay_numbers_match_a_hand_computation(tmp_path):
    trace = load_trace(write_trace(tmp_path / "t.csv", _hand_trace()))
    result = replay(trace, _hand_config(), usd_per_gpu_hour=2.0)
    # Idle since 60 s -> reaped at 360 s (window 300). Down for the intervals ending 420..960 (600 s).
    # Requests at 960 wake it; ready at 1020 (latency 60 s): 3 requests wait 60 s.
    assert [(a.action, a.ts - T0) for a in result.actions] == [("reap", 360), ("restore", 960)]
    assert result.gpu_hours_without == pytest.approx(2 * 1260 / 3600)
    assert result.gpu_hours_with == pytest.approx(2 * 660 / 3600)
    assert result.reduction_pct == pytest.approx(100 * (1 - 660 / 1260))
    assert result.actions[0].usd_per_hour_saved == pytest.approx(4.0)
    waits = wait_stats(result)
    assert (waits["wakeups"], waits["requests_waited"], waits["wait_s_max"]) == (1, 3.0, 60.0)
    assert result.reaps_while_active == 0


@pytest.mark.parametrize("busy", [{"requests": 1.0}, {"influence_pct": 5.0}])
def test_zero_reaps_while_active(tmp_path, busy):
    samples = [idle(i * 60, **busy) for i in range(60)]
    result = replay(load_trace(write_trace(tmp_path / "t.csv", samples)), _hand_config(), 2.0)
    assert result.actions == [] and result.reduction_pct == 0


def test_excluded_resource_is_never_reaped(tmp_path):
    config = ReaperConfig(decision=CFG, schedule=ScheduleConfig(enabled=False),
                          exclude=Exclusions(frozenset({"r"})))
    result = replay(load_trace(write_trace(tmp_path / "t.csv", series(30))), config, 2.0)
    assert result.actions == [] and "name" in result.resources[0].excluded


@pytest.mark.parametrize("row, message", [
    ("2025-03-15T00:01:00Z,r,abc,0,0", "line 3: field 'gpu_util_pct': 'abc' is not a number"),
    ("2025-03-15T00:01:00Z,r,1,-2,0", "line 3: field 'requests'"),
    ("2025-03-15T00:01:00Z,r,1,0,150", "line 3: field 'influence_pct'"),
    ("yesterday,r,1,0,0", "line 3: field 'timestamp'"),
    (",r,1,0,0", "line 3: field 'timestamp' is missing"),
    ("2025-03-15T00:00:00Z,r,1,0,0", "not after"),
])
def test_malformed_rows_are_named(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,resource,gpu_util_pct,requests,influence_pct\n2025-03-15T00:00:00Z,r,1,0,0\n"
                    + row + "\n")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_trace(path)


def test_json_trace_and_empty_values(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"samples": [
        {"timestamp": 1000, "resource": "r", "gpu_util_pct": 1, "requests": 0, "influence_pct": ""},
        {"timestamp": 1015, "resource": "r", "gpu_util_pct": "x", "requests": 0, "influence_pct": 0}]}))
    with pytest.raises(InputError, match="sample 1: field 'gpu_util_pct'"):
        load_trace(path)


def test_cli_replay_writes_report_and_audits(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv.gz", _hand_trace())
    config = tmp_path / "reaper.toml"
    config.write_text("[decision]\nwindow_s = 300\nstale_after_s = 120\n[schedule]\nenabled = false\n"
                      "[savings]\nrestore_latency_s = 60\n")
    out = tmp_path / "run"
    assert main(["reap", "--trace", str(trace), "--config", str(config), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("gpu_hours_without", "gpu_hours_with", "reduction_pct", "reaps_while_active", "actions",
                "savings", "wake_up", "config", "schema_version", "created_at", "hardware"):
        assert key in report
    assert report["reduction_pct"] == pytest.approx(100 * (1 - 660 / 1260), abs=1e-3)
    assert json.loads((out / "reaper_report.json").read_text())["reduction_pct"] == report["reduction_pct"]
    assert (out / "reaper_report.md").read_text().startswith("# Idle reaper replay")
    audit_dir = tmp_path / "artifacts" / "audit"
    records = [json.loads(line) for line in (audit_dir / "audit.jsonl").read_text().splitlines()]
    actions = [r["payload"] for r in records if r["event"] == "reaper.action"]
    assert [a["action"] for a in actions] == ["reap", "restore"] and {a["mode"] for a in actions} == {"replay"}
    assert verify(audit_dir, home=env_home()).ok
    # Tampering with a replayed action is caught by `costeff audit verify`.
    lines = (audit_dir / "audit.jsonl").read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"reap"', '"restore"')
    (audit_dir / "audit.jsonl").write_text("".join(lines))
    assert main(["audit", "verify", str(audit_dir)]) == 1


def test_cli_bad_trace_exits_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,resource,gpu_util_pct,requests,influence_pct\n2025-03-15T00:00:00Z,r,high,0,0\n")
    assert main(["reap", "--trace", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2" in err and "gpu_util_pct" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "artifacts" / "audit").exists()


def test_restore_with_nothing_to_restore_is_a_clear_no_op(capsys):
    assert main(["reap", "restore"]) == 0
    assert "nothing to restore" in capsys.readouterr().out


def test_config_rejects_unknown_keys_with_a_hint(tmp_path):
    path = tmp_path / "reaper.toml"
    path.write_text("[decision]\nwindow_sec = 60\n")
    with pytest.raises(InputError, match="decision.window_sec: unknown key \\(did you mean 'decision.window_s'"):
        load_config(path)
    path.write_text('[schedule]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(InputError, match="schedule.timezone"):
        load_config(path)


def test_config_loads_holidays_and_targets(tmp_path):
    (tmp_path / "holidays.txt").write_text("# NYSE\n2025-04-18 Good Friday\n")
    path = tmp_path / "reaper.toml"
    path.write_text('[schedule]\nholidays = "holidays.txt"\nstart = "09:30"\n'
                    '[[targets]]\nresource = "policy"\nnamespace = "trading"\nlabels = {team = "rl"}\n')
    config = load_config(path)
    assert config.schedule.holidays == frozenset({date(2025, 4, 18)})
    assert config.targets[0].key == "deployment/trading/policy"
