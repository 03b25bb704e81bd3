"""The --watch daemon: clean stop on SIGTERM, one reaper at a time, its own metrics, no action on errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from costeff.cli import main


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path):
    path = tmp_path / "reaper.toml"
    path.write_text('[prometheus]\ntimeout_s = 1\n[[targets]]\nresource = "policy"\nnamespace = "trading"\n')
    return path


def _records(tmp_path):
    log = tmp_path / "artifacts" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.server
def test_daemon_stops_on_sigterm_and_a_second_reaper_is_refused(tmp_path, capsys):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens: every round fails, nothing is reaped
    metrics_port = _free_port()
    cmd = [sys.executable, "-c", "import sys; from costeff.cli import main; sys.exit(main(sys.argv[1:]))",
           "reap", "--prometheus", dead, "--config", str(_config(tmp_path)), "--watch", "--interval", "0.2",
           "--metrics-port", str(metrics_port), "--metrics-addr", "127.0.0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not any(r["event"] == "reaper.signals_unavailable" for r in _records(tmp_path)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "daemon never completed a round"
            time.sleep(0.2)
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "costeff_reaper_savings_usd_per_hour 0.0" in body and "costeff_reaper_idle_seconds" in body
        # While it runs, a second reaper is refused with a clear message.
        assert main(["reap", "--prometheus", dead, "--config", str(_config(tmp_path))]) == 3
        assert "another reaper is running" in capsys.readouterr().err
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err  # 128 + SIGTERM, after a clean stop
    assert "stopped" in out
    events = [r["event"] for r in _records(tmp_path)]
    assert "reaper.stopped" in events and "reaper.action" not in events


def test_one_shot_with_prometheus_down_exits_3_and_logs(tmp_path, capsys):
    dead = f"http://127.0.0.1:{_free_port()}"
    assert main(["reap", "--prometheus", dead, "--config", str(_config(tmp_path)), "--apply"]) == 3
    err = capsys.readouterr().err
    assert "unreachable" in err and "no action taken" in err
    assert [r["event"] for r in _records(tmp_path)] == ["reaper.signals_unavailable"]


def test_apply_without_live_source_is_bad_input(tmp_path, capsys):
    assert main(["reap", "--sample", "--apply"]) == 2
    assert "--prometheus" in capsys.readouterr().err
