"""``costeff profile --url`` against the real Triton 2.51: perf_analyzer as the load generator, and
costeff's own open-loop client saying when it could not hold its schedule.

The server tests start Triton on a tiny-policy repository (as tests/test_triton_server.py does).
perf_analyzer's stability rule (max/min of its last 3 windows) is given a generous percentage:
client, server and other work share a busy 2-core machine. No assertion depends on timing beyond
"the run finished and said what happened".
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from costeff.cli import main
from costeff.errors import DependencyError, InputError
from costeff.remote import loadgen, run_open_loop
from costeff.remote.openloop import LATE_PCT_MAX
from costeff.remote.perf_analyzer import ranges
from costeff.remote.perf_analyzer_parse import points_from_run, sections
from triton_support import free_ports, triton_env

SERVER = [pytest.mark.server, pytest.mark.slow]
MAX_BATCH = 16

# perf_analyzer 2.51's own output for one request rate it could not hold (recorded on this machine)
PA_RATE_STDOUT = """\
Request Rate: 400 inference requests per seconds
  Pass [1] throughput: 393.783 infer/sec. Avg latency: 2046 usec (std 2092 usec).
  Pass [2] throughput: 373.917 infer/sec. Avg latency: 2760 usec (std 2946 usec).
  Pass [3] throughput: 391.2 infer/sec. Avg latency: 1609 usec (std 1504 usec).
Warning: Request latency is not stabilizing. Please try lowering the request rate.
  Client:
    Request count: 1375
    Avg send request rate: 381.01 infer/sec
    [WARNING] Perf Analyzer was not able to keep up with the desired request rate. 1.67% of the requests were delayed.
    Throughput: 380.67 infer/sec
Inferences/Second vs. Client Average Batch Latency
Request Rate: 400.00, throughput: 380.67 infer/sec, latency 2752 usec
"""
PA_RATE_CSV = ("Request Rate,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
               "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,"
               "p99 latency,Avg latency\n400,380.668,467,777,898,29,497,81,0,1085,5172,9673,25315,2752\n")


# -- no server ---------------------------------------------------------------------------------------


def test_a_client_that_cannot_hold_its_schedule_marks_the_point_unstable_with_the_reason():
    """Calls that burn the interpreter lock starve the sender: sends leave late, and the point says so."""
    from costeff.remote.profile import _point

    def burn():
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:  # pure Python: holds the GIL between switch intervals
            pass

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.02)  # the sender waits a whole interval behind each burning call
    try:
        result = run_open_loop(lambda: burn, 200.0, warmup_s=0.1, window_s=0.3, max_trials=2, stable_windows=2,
                               stability_pct=1000.0)
    finally:
        sys.setswitchinterval(interval)
    assert result.late_send_pct > LATE_PCT_MAX
    assert not result.stable
    point = _point(result, 1, 200.0, result.max_in_flight)
    assert point.stable is False and point.late_requests == result.late_sends > 0
    assert point.extra["late_send_pct"] == pytest.approx(result.late_send_pct)
    assert any("of sends left more than" in r for r in point.extra["unstable_reasons"])
    assert point.extra["asked_rate_per_s"] == 200.0 and point.extra["offered_rate_per_s"] > 0


def test_a_binding_in_flight_cap_is_reported_not_silent():
    result = run_open_loop(lambda: (lambda: time.sleep(0.02)), 100.0, warmup_s=0.1, window_s=0.3, max_trials=2,
                           stable_windows=2, max_in_flight=1)
    assert result.cap_waits > 0 and result.max_in_flight == 1
    assert any("in-flight cap bound" in r and "--max-in-flight" in r for r in result.unstable_reasons)
    # one 20 ms call at a time serves at most 50/s of the 100/s asked: the backlog grows
    assert any(r.startswith("achieved rate") for r in result.unstable_reasons)
    assert result.achieved_rate_per_s < 0.8 * result.scheduled_rate_per_s


@pytest.mark.parametrize("cap", [0, -1])
def test_the_in_flight_cap_must_be_positive(cap):
    with pytest.raises(InputError, match="--max-in-flight"):
        run_open_loop(lambda: (lambda: None), 10.0, max_in_flight=cap)


def test_perf_analyzer_output_maps_into_points_with_its_warning_and_late_sends():
    from types import SimpleNamespace

    from costeff.profiling import ProfileConfig

    run = SimpleNamespace(batch_size=1, mode="request_rate", command=["perf_analyzer"], csv_text=PA_RATE_CSV,
                          stdout=PA_RATE_STDOUT, csv_name="x.csv")
    assert sections(PA_RATE_STDOUT)[400.0]["passes"] == 3
    (point,) = points_from_run(run, ProfileConfig(window_s=1.0))
    assert point.request_rate == 400.0 and point.throughput_per_s == pytest.approx(380.668)
    assert point.latency_ms.p99 == pytest.approx(25.315) and point.latency_ms.mean == pytest.approx(2.752)
    assert point.requests == 1375 and point.trials == 3
    assert point.extra["offered_rate_per_s"] == pytest.approx(381.01)
    assert point.extra["late_send_pct"] == pytest.approx(1.67) and point.late_requests == round(0.0167 * 1375)
    assert point.extra["latency_breakdown_us"]["server_queue"] == 898
    reasons = point.extra["unstable_reasons"]
    assert not point.stable and any("not stabilizing" in r for r in reasons) and any("late" in r for r in reasons)


def test_perf_analyzer_errors_are_quoted_by_their_most_specific_line():
    from costeff.remote.perf_analyzer import error_line

    # perf_analyzer 2.51's streams for a batch above the model's max_batch_size
    out = ("Request concurrency: 1\n  Pass [1] cb::Error: No valid requests recorded within time interval. "
           "Please use a larger time window.\n")
    err = ("Failed to retrieve results from inference request.\n"
           "Thread [0] had error: [request id: 0] inference request batch-size must be <= 16 for 'pol'\n")
    assert error_line(err, out).endswith("batch-size must be <= 16 for 'pol'")
    assert error_line("", "error: failed to get model metadata: unknown model 'x'\n").startswith("error: failed")
    assert error_line("", "Request concurrency: 1\nFailed to obtain stable measurement.\n").startswith("Failed")


def test_perf_analyzer_finds_the_libraries_the_wheel_renamed(tmp_path):
    """The wheel ships libb64 as libb64-<hash>.so.0d; perf_analyzer asks for libb64.so.0d."""
    import os

    from costeff.remote.perf_analyzer import locate
    from costeff.serving.tritonserver import TritonEnv

    root = tmp_path / "env"
    binary = root / "bin" / "perf_analyzer"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    libs = TritonEnv(root).site_packages / "nvidia_pytriton.libs"
    libs.mkdir(parents=True)
    (libs / "libb64-98cb6333.so.0d").write_bytes(b"")
    (libs / "libcudart-09529672.so.12.6.77").write_bytes(b"")
    pa = locate(binary)
    assert pa.binary == binary and pa.libs_from == root.resolve()
    env = pa.process_env(tmp_path / "work")
    first = Path(env["LD_LIBRARY_PATH"].split(os.pathsep)[0])
    assert (first / "libb64.so.0d").resolve() == (libs / "libb64-98cb6333.so.0d").resolve()
    assert (first / "libcudart.so.12").resolve() == (libs / "libcudart-09529672.so.12.6.77").resolve()
    with pytest.raises(InputError, match="--perf-analyzer"):
        locate(root / "bin" / "missing")


def test_load_values_become_perf_analyzer_ranges():
    assert ranges((1.0, 2.0, 3.0)) == [("1:3:1", [1.0, 2.0, 3.0])]
    assert ranges((1.0, 2.0, 4.0)) == [("1", [1.0]), ("2", [2.0]), ("4", [4.0])]
    assert ranges((50.5,)) == [("50.5", [50.5])]


def test_auto_uses_costeff_for_a_server_that_is_not_triton_and_says_why(monkeypatch, tmp_path):
    import costeff.remote.perf_analyzer as pa_module

    monkeypatch.setattr(pa_module, "locate",
                        lambda explicit=None, cache=None: pa_module.PerfAnalyzer(tmp_path / "pa", None))
    pa, reason = loadgen.choose("auto", None, {"name": "mlserver"})
    assert pa is None and "not Triton" in reason
    pa, reason = loadgen.choose("auto", None, {"name": "triton"})
    assert pa is not None and "Triton" in reason
    monkeypatch.setattr(pa_module, "locate", lambda explicit=None, cache=None: None)
    assert loadgen.choose("auto", None, {"name": "triton"})[0] is None
    with pytest.raises(DependencyError, match="perf_analyzer is not installed"):
        loadgen.choose("perf_analyzer", None, {"name": "triton"})
    with pytest.raises(InputError, match="--load-generator"):
        loadgen.choose("wrk", None, {})


def test_a_perf_analyzer_path_that_is_not_a_binary_is_bad_input(tmp_path, capsys):
    code = main(["profile", "--url", "127.0.0.1:1", "--model-name", "m", "--perf-analyzer",
                 str(tmp_path / "missing"), "--load-generator", "perf_analyzer", "--out", str(tmp_path / "o")])
    assert code == 2  # checked before any server is asked
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --perf-analyzer: ") and "missing" in err and len(err.splitlines()) == 1


# -- the real Triton server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env():
    return triton_env()


@pytest.fixture(scope="module")
def repo(tiny_policy, tmp_path_factory):
    from costeff.profiling import ProfileConfig, profile

    root = tmp_path_factory.mktemp("tritonprof")
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_ARTIFACTS", str(root / "artifacts"))
    try:
        model = Path(tiny_policy.onnx_path)
        prof = profile(model, ProfileConfig(batch_sizes=(1, MAX_BATCH), window_s=0.05, warmup_s=0.02, max_trials=3))
        prof.write(root / "p")
        assert main(["triton", "build", str(model), "--profile", str(root / "p" / "gpu_profile.json"),
                     "--repository", str(root / "repository"), "--name", "pol"]) == 0
    finally:
        patch.undo()
    return root / "repository"


@pytest.fixture(scope="module")
def server(env, repo):
    from costeff.serving.tritonserver import Ports, TritonServer

    with TritonServer(env, repo, Ports.from_http(free_ports())) as running:
        yield running


def _common(server, tmp_path, obs_file):
    np.save(obs_file[0], obs_file[1])
    return ["profile", "--url", server.grpc_url, "--model-name", "pol", "--protocol", "grpc",
            "--observations", str(obs_file[0]), "--window-ms", "1000", "--stability-pct", "100",
            "--max-trials", "10"]


@pytest.mark.server
@pytest.mark.slow
def test_profile_url_drives_perf_analyzer_and_keeps_its_csv_and_command(server, env, tiny_observations, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.setenv("COSTEFF_CACHE", str(env.root.parent.parent))  # where `auto` finds the environment
    out, obs = tmp_path / "pa", tiny_observations[:300]
    code = main([*_common(server, tmp_path, (tmp_path / "obs.npy", obs)), "--batch-sizes", "1,4",
                 "--concurrency", "1,2", "--request-rate", "100", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "gpu_profile.json").read_text())
    load = report["load_generator"]
    assert load["name"] == "perf_analyzer" and "Triton" in load["reason"]
    commands = [r["command"] for r in load["runs"]]
    assert sum("--concurrency-range 1:2:1" in c for c in commands) == 2
    assert sum("--request-rate-range 100 --request-distribution poisson" in c for c in commands) == 2
    assert all("--async" in c and "-f perf_analyzer-b" in c for c in commands)
    closed = sorted((p["batch_size"], p["concurrency"]) for p in report["points"] if p["request_rate"] is None)
    assert closed == [(1, 1), (1, 2), (4, 1), (4, 2)]
    opened = [p for p in report["points"] if p["request_rate"] == 100.0]
    assert sorted(p["batch_size"] for p in opened) == [1, 4]
    for p in report["points"]:
        assert p["extra"]["load_generator"] == "perf_analyzer" and p["throughput_per_s"] > 0
        assert 0 < p["latency_ms"]["p50"] <= p["latency_ms"]["p99"]
    for p in opened:
        assert p["extra"]["asked_rate_per_s"] == 100.0 and p["extra"]["late_send_pct"] is not None
        assert p["stable"] == (not p["extra"]["unstable_reasons"])
    rows = (out / "perf_analyzer.csv").read_text().splitlines()
    assert rows[0].startswith("Batch Size,Concurrency,Request Rate,Inferences/Second") and "p99 latency" in rows[0]
    assert len(rows) == 1 + 6
    for run in load["runs"]:
        assert (out / run["csv"]).is_file()
    data = json.loads((out / "perf_analyzer" / "input_data.json").read_text())["data"]
    np.testing.assert_allclose(np.asarray(data[5]["obs"]["content"], np.float32).reshape(obs.shape[1:]), obs[5])
    assert "## Load generator" in (out / "gpu_profile.md").read_text()


@pytest.mark.server
@pytest.mark.slow
def test_perf_analyzer_failing_is_exit_3_quoting_its_error(server, env, tiny_observations, tmp_path, capsys):
    out = tmp_path / "fail"
    code = main([*_common(server, tmp_path, (tmp_path / "obs.npy", tiny_observations[:100])),
                 "--batch-sizes", str(MAX_BATCH * 4), "--perf-analyzer", str(env.perf_analyzer),
                 "--load-generator", "perf_analyzer", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 3, err
    assert len(err.splitlines()) == 1 and err.startswith("error: perf_analyzer failed (exit")
    assert f"must be <= {MAX_BATCH}" in err  # perf_analyzer's own words, from the server
    assert not (out / "gpu_profile.json").exists()


@pytest.mark.server
@pytest.mark.slow
def test_a_point_perf_analyzer_cannot_stabilise_is_reported_unstable_not_fatal(server, env, tmp_path, capsys):
    out = tmp_path / "unstable"
    code = main(["profile", "--url", server.grpc_url, "--model-name", "pol", "--batch-sizes", "1",
                 "--concurrency", "1,2", "--window-ms", "300", "--stability-pct", "0.001", "--max-trials", "3",
                 "--perf-analyzer", str(env.perf_analyzer), "--load-generator", "perf_analyzer", "--out", str(out),
                 "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "gpu_profile.json").read_text())
    assert sorted(p["concurrency"] for p in report["points"]) == [1, 2]
    for p in report["points"]:
        assert p["stable"] is False and p["throughput_per_s"] > 0
        assert "Failed to obtain stable measurement" in p["extra"]["unstable_reasons"][0]
    assert all("--stability-percentage 1000" in r["command"] for r in report["load_generator"]["runs"])


@pytest.mark.server
@pytest.mark.slow
def test_costeff_client_reports_late_sends_and_offered_and_achieved_rates(server, tiny_observations, tmp_path,
                                                                         capsys):
    out = tmp_path / "own"
    code = main([*_common(server, tmp_path, (tmp_path / "obs.npy", tiny_observations[:100])),
                 "--batch-sizes", "1", "--request-rate", "100", "--load-generator", "costeff", "--out", str(out),
                 "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "gpu_profile.json").read_text())
    assert report["load_generator"]["name"] == "costeff" and report["load_generator"]["max_in_flight"] == 512
    (point,) = [p for p in report["points"] if p["request_rate"] == 100.0]
    extra = point["extra"]
    assert extra["load_generator"] == "costeff" and extra["asked_rate_per_s"] == 100.0
    assert extra["offered_rate_per_s"] > 0 and extra["achieved_rate_per_s"] > 0
    assert extra["late_sends"] == point["late_requests"] and 0 <= extra["late_send_pct"] <= 100
    assert extra["cap_waits"] == 0  # 100/s of ~ms requests is far below the 512 cap
    assert point["stable"] == (not extra["unstable_reasons"])
    if extra["late_send_pct"] > LATE_PCT_MAX:
        assert any("of sends left more than" in r for r in extra["unstable_reasons"])
    assert not (out / "perf_analyzer.csv").exists()
    assert "| offered /s | achieved /s | late sends |" in (out / "gpu_profile.md").read_text()
