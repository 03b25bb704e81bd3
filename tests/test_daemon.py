"""The one daemon loop: a stop signal finishes the round in progress, then 128 + the signal; heartbeat each round;
handlers put back. And the daemons that use it: the reaper, ``ramp watch`` (through the CLI, whose own SIGTERM
handler raises wherever the main thread is)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from costeff.audit import AuditLog
from costeff.daemon import LoopResult, run_rounds
from costeff.health import Heartbeat

from test_reap_k8s import ListSource, _idle, api, scaler  # noqa: F401 - api and scaler are fixtures
from signals_support import signal_main_thread
from workspace_support import flag_store, env_home


class _Stop(threading.Event):
    """A stop event that records the pauses asked for instead of sleeping through them."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def _round_signalling(signum: int, steps: list[str], on_round: int = 1):
    calls = []

    def one() -> bool:
        calls.append(1)
        steps.append(f"start {len(calls)}")
        if len(calls) == on_round:
            signal_main_thread(signum)  # delivered now, in the middle of the round
        steps.append(f"end {len(calls)}")
        return True

    return one


def test_sigterm_in_the_middle_of_a_round_lets_it_finish_then_exits_143():
    steps: list[str] = []
    beat = Heartbeat(3600.0)
    result = run_rounds(_round_signalling(signal.SIGTERM, steps, on_round=2), 3600.0, beat, _Stop())
    assert steps == ["start 1", "end 1", "start 2", "end 2"]  # round 2 completed, round 3 never began
    assert result == LoopResult(2, signal.SIGTERM) and result.exit_code == 143
    state = beat.state()
    assert state["rounds"] == 2 and state["round_running_s"] is None and state["failures_in_a_row"] == 0


def test_sigint_stops_the_same_way_with_130():
    steps: list[str] = []
    result = run_rounds(_round_signalling(signal.SIGINT, steps), 3600.0, stop=_Stop())
    assert steps == ["start 1", "end 1"] and result.exit_code == 130


def test_the_previous_handlers_are_replaced_for_the_loop_and_put_back():
    class Raised(BaseException):
        pass

    def raising(signum, frame):  # what the CLI installs: raise wherever the main thread is
        raise Raised()

    before = {s: signal.signal(s, raising) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        steps: list[str] = []
        assert run_rounds(_round_signalling(signal.SIGTERM, steps), 3600.0, stop=_Stop()).exit_code == 143
        assert steps == ["start 1", "end 1"]
        assert signal.getsignal(signal.SIGTERM) is raising and signal.getsignal(signal.SIGINT) is raising
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_the_handlers_are_put_back_when_a_round_raises():
    before = signal.getsignal(signal.SIGTERM)

    def broken() -> bool:
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        run_rounds(broken, 3600.0, stop=_Stop())
    assert signal.getsignal(signal.SIGTERM) is before


def test_max_rounds_pauses_between_rounds_only_and_a_failed_round_is_beaten_as_failed():
    outcomes = iter([True, False, False])
    beat, stop = Heartbeat(5.0), _Stop()
    result = run_rounds(lambda: next(outcomes), 5.0, beat, stop, max_rounds=3)
    assert result == LoopResult(3, None) and result.exit_code == 0
    assert stop.waits == [5.0, 5.0]  # no pause after the last round
    assert beat.state()["failures_in_a_row"] == 2 and beat.state()["rounds"] == 3


def test_a_stop_event_set_elsewhere_ends_the_loop_without_a_signal():
    stop = _Stop()

    def one() -> bool:
        stop.set()
        return True

    assert run_rounds(one, 3600.0, stop=stop) == LoopResult(1, None)


def test_the_reaper_watch_finishes_its_round_and_records_the_signal(api, scaler, tmp_path):  # noqa: F811
    from costeff.reaper.live import Actuators, ReaperMetrics, watch

    from test_reap_controls import _config

    class Signalling(ListSource):
        def samples(self, target, window_s, now):
            signal_main_thread(signal.SIGTERM)  # signals read, nothing decided or audited yet
            return super().samples(target, window_s, now)

    audit = AuditLog(tmp_path / "audit", home=env_home())
    source = Signalling({"policy": _idle("policy", time.time())})
    result = watch(_config(), source, False, Actuators(kube=scaler, flags=flag_store()), audit, 2.0, 3600.0,
                   ReaperMetrics(None), stop=_Stop())
    assert result.exit_code == 143 and result.rounds == 1
    events = [(r["event"], r["payload"]) for r in audit.records()]
    assert [e for e, _ in events] == ["reaper.action", "reaper.stopped"]  # the round's record was written
    assert events[0][1]["action"] == "reap" and events[1][1]["signal"] == signal.SIGTERM


def test_ramp_watch_cli_finishes_the_decision_in_progress_and_exits_143(tmp_path, monkeypatch, capsys):
    import costeff.ramp as ramp
    from costeff.cli import main
    from costeff.ramp.watch import history

    from test_alerting import _sample_ledger

    real = ramp.decide

    def decide(*args, **kwargs):
        signal_main_thread(signal.SIGTERM)  # before the report, audit record and history line are written
        return real(*args, **kwargs)

    monkeypatch.setattr(ramp, "decide", decide)
    ledger = _sample_ledger(tmp_path)
    code = main(["ramp", "watch", "--ledger", str(ledger.path), "--interval", "3600", "--max-rounds", "5",
                 "--out", str(tmp_path / "watch")])
    assert code == 143, capsys.readouterr().err
    assert len(history(tmp_path / "watch")) == 1 and (tmp_path / "watch" / "ramp_decision.json").is_file()
    assert "stopped after 1 round(s)" in capsys.readouterr().err



def test_a_reaper_round_that_fails_still_leaves_a_stopped_record_with_the_rounds_done(api, scaler, tmp_path):  # noqa: F811
    from costeff.reaper.live import Actuators, ReaperMetrics, watch

    from test_reap_controls import _config

    class BreaksOnRound2(ListSource):
        calls = 0

        def samples(self, target, window_s, now):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("client library bug")
            return super().samples(target, window_s, now)

    audit = AuditLog(tmp_path / "audit", home=env_home())
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError, match="client library bug"):
        watch(_config(), BreaksOnRound2({"policy": _idle("policy", time.time())}), False,
              Actuators(kube=scaler, flags=flag_store()), audit, 2.0, 0.0, ReaperMetrics(None), stop=_Stop())
    stopped = [r["payload"] for r in audit.records() if r["event"] == "reaper.stopped"]
    assert stopped == [{"ticks": 1, "mode": "dry-run", "signal": None}]
    assert signal.getsignal(signal.SIGTERM) is before
