"""The reaper never reaps on invalid data: NaN/inf thresholds, odd numbers, contradictory points, typed flags.

Each case is data that an old reader took for "idle" or that switched a guard off
(a NaN threshold makes every comparison false; ``float(False)``, ``float("0_0")`` and
``float("٠")`` are 0.0; the last of two contradictory Prometheus points won; the
string ``"false"`` is a true flag). Every case must end with zero reaps; a control
case with the same signals written correctly reaps, so the cases can fail.
CLI cases run in-process through ``costeff.cli.main``, as in test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from costeff.audit import AuditLog
from costeff.cli import main
from costeff.errors import InputError
from costeff.reaper.actions import Outcome
from costeff.reaper.config import DecisionConfig, PrometheusConfig, ReaperConfig, ScheduleConfig, Target
from costeff.reaper.live import Actuators, tick
from costeff.reaper.prometheus import PrometheusSource
from workspace_support import env_workspace, flag_store, env_home

FACTOR_METRICS = {"gpu_util_pct": "DCGM_FI_DEV_GPU_UTIL", "requests_per_s": "nv_inference_request_success",
                  "influence_pct": "costeff_policy_influence_pct"}
IDLE = {"gpu_util_pct": "1.5", "requests_per_s": "0", "influence_pct": "0"}
# JSON values an old reader took for a number: booleans, underscores, other scripts' digits, NaN and infinities
BAD_VALUES = [False, True, "0_0", "\u0660", "\uff10", "NaN", "+Inf", "-Inf", "1e309", None]


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()], out + err


def _files_under(*roots: Path) -> set[str]:
    return {str(p) for r in roots if r.exists() for p in r.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def _assert_one_error(code: int, lines: list[str], text: str, *names: str) -> None:
    assert code == 2, f"exit {code}; stderr {lines}"
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(n in lines[0] for n in names), f"{lines[0]!r} does not name {names}"
    assert "Traceback" not in text


# ---------------------------------------------------------------- thresholds in reaper.toml

THRESHOLDS = [("decision", "max_influence_pct"), ("decision", "max_gpu_util_pct"), ("decision", "max_requests"),
              ("decision", "window_s"), ("decision", "stale_after_s"), ("decision", "restore_when_blind_s"),
              ("prometheus", "timeout_s"), ("prometheus", "step_s"), ("schedule", "prewarm_s")]
THRESHOLD_CASES = [(s, k, v) for s, k in THRESHOLDS for v in ("nan", "inf", "-inf")] + [
    ("decision", "max_influence_pct", "101.0"), ("decision", "max_gpu_util_pct", "150.0"),
    ("decision", "max_gpu_util_pct", "-1.0"), ("decision", "window_s", "0.0"), ("decision", "max_requests", "1e300"),
    ("prometheus", "timeout_s", "86400.0"), ("savings", "restore_latency_s", "nan"),
    ("targets", "gpus_per_replica", "nan"), ("targets", "usd_per_hour", "inf")]


def _toml(section: str, key: str, value: str) -> str:
    if section == "targets":
        return f'[[targets]]\nresource = "policy"\n{key} = {value}\n'
    return f"[{section}]\n{key} = {value}\n"


@pytest.mark.parametrize("section, key, value", THRESHOLD_CASES,
                         ids=[f"{s}.{k}={v}" for s, k, v in THRESHOLD_CASES])
def test_a_non_finite_or_out_of_range_threshold_is_refused_before_replaying(tmp_path, capsys, section, key, value):
    config = tmp_path / "reaper.toml"
    config.write_text(_toml(section, key, value))
    artifacts = tmp_path / "artifacts"
    code, lines, text = _run(["reap", "--sample", "--config", str(config)], capsys)
    _assert_one_error(code, lines, text, str(config), key)
    assert _files_under(artifacts) == set(), "a refused config must not replay or audit anything"


def test_a_finite_threshold_in_range_still_replays(tmp_path, capsys):
    config = tmp_path / "reaper.toml"
    config.write_text("[decision]\nmax_influence_pct = 0.0\nmax_gpu_util_pct = 20.0\n")
    code, _, text = _run(["reap", "--sample", "--config", str(config), "--json"], capsys)
    assert code == 0, text[-500:]
    assert json.loads(text[:text.rindex("}") + 1])["reaps_while_active"] == 0


# ---------------------------------------------------------------- Prometheus answers

@pytest.fixture
def prometheus():
    """A Prometheus that answers each factor's query with the points ``state[factor](steps)`` returns."""
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
            steps = [start + i * step for i in range(int((end - start) // step) + 1)]
            factor = next((f for f, m in FACTOR_METRICS.items() if m in q["query"]), None)
            result = [] if factor is None else [{"metric": {}, "values": state[factor](steps)}]
            body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for factor, value in IDLE.items():
        state[factor] = lambda steps, v=value: [[t, v] for t in steps]
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _config(url: str) -> ReaperConfig:
    return ReaperConfig(decision=DecisionConfig(window_s=300.0), schedule=ScheduleConfig(enabled=False),
                        prometheus=PrometheusConfig(url=url, step_s=15.0, timeout_s=10.0),
                        targets=(Target(resource="policy", kind="pipeline", usd_per_hour=2.0),))


class RecordingActuators(Actuators):
    """Acts on nothing; records every reap it is asked for."""

    def __init__(self) -> None:
        super().__init__(flags=flag_store())
        self.reaped: list[str] = []

    def reap(self, target):
        self.reaped.append(target.key)
        return Outcome(target.key, target.kind, "reap", True, {"paused": False}, {"paused": True}, "paused", 2.0)


def _reaps(url: str, tmp_path: Path, apply: bool = False, actuators: Actuators | None = None) -> int:
    config = _config(url)
    result = tick(config, PrometheusSource(config.prometheus), apply, actuators or Actuators(flags=flag_store()),
                  AuditLog(tmp_path / "audit", home=env_home()), 1.0, set(), now=time.time())
    return sum(1 for a in result.actions if a["action"] == "reap")


def test_control_clean_idle_signals_reap(prometheus, tmp_path):
    url, _ = prometheus
    assert _reaps(url, tmp_path) == 1


PROM_CASES = [(f, v) for f in FACTOR_METRICS for v in BAD_VALUES]


@pytest.mark.parametrize("factor, value", PROM_CASES, ids=[f"{f}={v!r}" for f, v in PROM_CASES])
def test_a_value_that_is_not_a_reading_never_reaps(prometheus, tmp_path, factor, value):
    url, state = prometheus
    state[factor] = lambda steps: [[t, value] for t in steps]
    assert _reaps(url, tmp_path) == 0


DUPLICATES = {
    # every moment twice, busy then idle: "the last one wins" read the series as idle
    "all": lambda steps, busy: [p for t in steps for p in ([t, busy], [t, "0"])],
    # one contradictory moment in an otherwise idle series: the series is invalid as a whole
    "one": lambda steps, busy: [[t, "0"] for t in steps] + [[steps[len(steps) // 2], busy]],
    # the contradiction at the newest moment only
    "last": lambda steps, busy: [[t, "0"] for t in steps] + [[steps[-1], busy]],
}
BUSY = {"gpu_util_pct": "95", "requests_per_s": "3", "influence_pct": "5"}
DUP_CASES = [(f, kind) for f in FACTOR_METRICS for kind in DUPLICATES]


@pytest.mark.parametrize("factor, kind", DUP_CASES, ids=[f"{f}-{k}" for f, k in DUP_CASES])
def test_contradictory_points_make_the_series_invalid_not_idle(prometheus, tmp_path, factor, kind):
    url, state = prometheus
    state[factor] = lambda steps: DUPLICATES[kind](steps, BUSY[factor])
    assert _reaps(url, tmp_path) == 0


def test_repeated_identical_points_are_not_a_contradiction(prometheus, tmp_path):
    url, state = prometheus
    state["gpu_util_pct"] = lambda steps: [p for t in steps for p in ([t, "1"], [t, "1"])]
    assert _reaps(url, tmp_path) == 1


# ---------------------------------------------------------------- trace files

def _trace_rows(n: int = 200) -> list[dict]:
    t0 = 1741132800  # 2025-03-05T00:00:00Z, a Wednesday
    return [{"timestamp": t0 + 15 * i, "resource": "policy", "gpu_util_pct": 1.0, "requests": 0,
             "influence_pct": 0} for i in range(n)]


CSV_BAD = ["0_0", "\u0660", "\u0966", "\uff10", "nan", "inf", "1e309", "-0_1"]
JSON_BAD = [False, True, "0_0", "\u0660", "NaN", "Infinity", "1e309", [0], {"v": 0}]
TRACE_COLUMNS = ("gpu_util_pct", "requests", "influence_pct")
TRACE_CASES = [("csv", c, v) for c in TRACE_COLUMNS for v in CSV_BAD] + \
              [("json", c, v) for c in TRACE_COLUMNS for v in JSON_BAD]


def _write_trace(path: Path, fmt: str, column: str, value) -> None:
    rows = _trace_rows()
    rows[100][column] = value
    if fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
        return
    lines = ["timestamp,resource,gpu_util_pct,requests,influence_pct"]
    lines += [f"{r['timestamp']},{r['resource']},{r['gpu_util_pct']},{r['requests']},{r['influence_pct']}"
              for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("fmt, column, value", TRACE_CASES, ids=[f"{f}-{c}={v!r}" for f, c, v in TRACE_CASES])
def test_a_trace_value_that_is_not_a_reading_is_refused(tmp_path, capsys, fmt, column, value):
    trace = tmp_path / f"trace.{fmt}"
    _write_trace(trace, fmt, column, value)
    before = trace.read_bytes()
    code, lines, text = _run(["reap", "--trace", str(trace)], capsys)
    _assert_one_error(code, lines, text, str(trace), column)
    assert _files_under(tmp_path / "artifacts") == set()
    assert trace.read_bytes() == before


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_control_the_same_trace_written_correctly_replays(tmp_path, capsys, fmt):
    trace = tmp_path / f"trace.{fmt}"
    _write_trace(trace, fmt, "requests", 0)
    code, _, text = _run(["reap", "--trace", str(trace), "--json"], capsys)
    assert code == 0, text[-500:]


# ---------------------------------------------------------------- typed flag values

FLAG_VALUES = ["false", "true", "False", 0, 1, None, "no", [], {}, 0.0]


def _flag_store(path: Path, value) -> None:
    change = {"name": "reaper_enabled", "version": 1, "old_value": True, "new_value": value,
              "ts": "2025-03-05T00:00:00Z", "actor": "ops", "reason": "hand edit", "action": "set"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "history": {"reaper_enabled": [change]}}))


@pytest.mark.parametrize("value", FLAG_VALUES, ids=[repr(v) for v in FLAG_VALUES])
def test_a_hand_edited_reaper_flag_of_the_wrong_type_stops_apply(prometheus, tmp_path, value):

    url, _ = prometheus
    _flag_store(env_workspace().flags, value)
    actuators = RecordingActuators()
    with pytest.raises(InputError, match="reaper_enabled"):
        _reaps(url, tmp_path, apply=True, actuators=actuators)
    assert actuators.reaped == []


@pytest.mark.parametrize("value, reaps", [(True, 1), (False, 0)])
def test_control_a_boolean_reaper_flag_is_obeyed(prometheus, tmp_path, value, reaps):

    url, _ = prometheus
    _flag_store(env_workspace().flags, value)
    actuators = RecordingActuators()
    assert _reaps(url, tmp_path, apply=True, actuators=actuators) == reaps
    assert len(actuators.reaped) == reaps


STORED = [("reaper_enabled", "false"), ("reaper_enabled", 1), ("cost_gates_enabled", "true"),
          ("pipeline_paused", "no"), ("cost_gates_enabled", 0), ("deployed_model_sha256", "xyz"),
          ("deployed_model_sha256", 5), ("served_version.policy", True), ("served_version.policy", "3"),
          ("served_version.policy", 0), ("pipeline_paused.alpha", "yes")]


@pytest.mark.parametrize("name, value", STORED, ids=[f"{n}={v!r}" for n, v in STORED])
def test_flags_get_names_a_stored_value_of_the_wrong_type(tmp_path, capsys, name, value):
    store = tmp_path / "flags.json"
    change = {"name": name, "version": 1, "old_value": None, "new_value": value, "ts": "2025-03-05T00:00:00Z",
              "actor": "ops", "reason": "", "action": "set"}
    if name in ("reaper_enabled", "cost_gates_enabled", "pipeline_paused", "pipeline_paused.alpha"):
        change["old_value"] = True
    store.write_text(json.dumps({"schema_version": 1, "history": {name: [change]}}))
    before = store.read_bytes()
    code, lines, text = _run(["flags", "get", name, "--store", str(store)], capsys)
    _assert_one_error(code, lines, text, str(store), name)
    assert store.read_bytes() == before


def test_the_invalid_signal_suite_is_large():
    cases = len(THRESHOLD_CASES) + len(PROM_CASES) + len(DUP_CASES) + len(TRACE_CASES) + len(FLAG_VALUES) + len(STORED)
    assert cases >= 50
