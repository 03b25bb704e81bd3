"""The real Triton 2.51 server on the repositories costeff writes: load, answer, switch versions, refuse.

Triton itself (scheduler, dynamic batcher, repository API, statistics) is the real server from
the ``nvidia-pytriton`` wheel; the onnxruntime and openvino backends are costeff's Python-based
stand-ins for the C++ ones (``costeff.serving.tritonserver.backends``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

from costeff.cli import main
from costeff.errors import InputError
from triton_support import free_ports, triton_env
from workspace_support import env_workspace

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def env():
    return triton_env()


@pytest.fixture(scope="module")
def repo(tiny_policy, tiny_observations, tmp_path_factory):
    """A repository with every kind costeff writes: ONNX on onnxruntime (two versions), an OpenVINO IR on
    openvino, and two instances sized to 2 serving CPUs."""
    from costeff.profiling import ProfileConfig, profile
    from costeff.quantization import QuantizeConfig, quantize

    root = tmp_path_factory.mktemp("tritonrepo")
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_ARTIFACTS", str(root / "artifacts"))
    try:
        model = Path(tiny_policy.onnx_path)
        prof = profile(model, ProfileConfig(batch_sizes=(1, 16), window_s=0.05, warmup_s=0.02, max_trials=3))
        prof.write(root / "p")
        quantize(model, tiny_observations[:600], QuantizeConfig(variants=("ov-fp32",), batch_sizes=(1, 16),
                 window_s=0.05, speed_rounds=1, gaps_s=(0.0,)), out_dir=root / "q", workspace=env_workspace())
        data = json.loads((root / "q" / "quantization_report.json").read_text())
        ov = next(v for v in data["variants"] if v["name"] == "ov-fp32")
        data["selected"].update(name="ov-fp32", path=ov["path"], sha256=ov["sha256"], backend="openvino",
                                precision="fp32")
        (root / "q_ov.json").write_text(json.dumps(data))
        repository = root / "repository"
        base = ["triton", "build", str(model), "--profile", str(root / "p" / "gpu_profile.json"),
                "--repository", str(repository)]
        for _ in range(2):
            assert main([*base, "--name", "pol"]) == 0
        assert main([*base, "--name", "pol_ov", "--quantization-report", str(root / "q_ov.json")]) == 0
        assert main([*base, "--name", "pol_x2", "--instances", "2", "--serving-cpus", "2"]) == 0
    finally:
        patch.undo()
    return SimpleNamespace(root=root, path=repository, model=model)


@pytest.fixture(scope="module")
def server(env, repo):
    from costeff.serving.tritonserver import Ports, TritonServer

    with TritonServer(env, repo.path, Ports.from_http(free_ports())) as running:
        yield running


def _infer(url: str, name: str, rows: np.ndarray, version: str = "") -> tuple[dict[str, np.ndarray], str]:
    body = {"inputs": [{"name": "obs", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    got = requests.post(f"http://{url}/v2/models/{name}{f'/versions/{version}' if version else ''}/infer",
                        json=body, timeout=30)
    assert got.status_code == 200, got.text
    answer = got.json()
    return ({o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in answer["outputs"]},
            answer["model_version"])


def _direct(model: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: rows}), strict=True))


def test_the_signature_the_tests_send_is_the_policys(repo):
    import onnxruntime as ort

    session = ort.InferenceSession(str(repo.model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs"]


def _direct_openvino(entry: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The IR compiled as Triton's openvino backend compiles it: OpenVINO's default precision (bf16 on
    AMX / AVX512_BF16 CPUs: the backend has no parameter that asks for f32)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(entry / "1" / "model.xml")), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY"})
    result = compiled.create_infer_request().infer({"obs": rows})
    return {out.get_any_name(): np.asarray(result[out]) for out in compiled.outputs}


@pytest.mark.parametrize("name", ["pol", "pol_x2", "pol_ov"])
def test_every_repository_kind_loads_unchanged_and_answers_like_its_runtime(server, repo, tiny_observations, name):
    ready = requests.get(f"http://{server.http_url}/v2/models/{name}/ready", timeout=10)
    assert ready.status_code == 200
    rows = tiny_observations[:5]
    served, _ = _infer(server.http_url, name, rows)
    expected = _direct_openvino(repo.path / name, rows) if name == "pol_ov" else _direct(repo.model, rows)
    atol = 1e-5
    assert set(served) == set(expected)
    for key in expected:
        np.testing.assert_allclose(served[key], expected[key], atol=atol)


def test_a_dynamic_batch_answers_each_request_with_its_own_rows(server, repo, tiny_observations):
    """Concurrent one-row requests are batched by Triton's batcher; each must get its own row's answer."""
    from concurrent.futures import ThreadPoolExecutor

    rows = tiny_observations[:24]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _infer(server.http_url, "pol", rows[i:i + 1])[0], range(len(rows))))
    expected = _direct(repo.model, rows)
    for i, answer in enumerate(answers):
        for key in expected:
            np.testing.assert_allclose(answer[key][0], expected[key][i], atol=1e-5)
    stats = requests.get(f"http://{server.http_url}/v2/models/pol/stats", timeout=10).json()
    counts = stats["model_stats"][0]
    assert counts["inference_count"] >= len(rows)


def _served_versions(url: str, name: str) -> list[str]:
    return requests.get(f"http://{url}/v2/models/{name}", timeout=10).json()["versions"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_rollback_promote_and_sync_switch_what_triton_serves(server, repo, tiny_observations, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    common = ["--repository", str(repo.path), "--name", "pol", "--url", url, "--protocol", protocol]
    assert _served_versions(server.http_url, "pol") == ["2"]
    assert main(["triton", "rollback", *common, "--reason", "test"]) == 0
    assert _served_versions(server.http_url, "pol") == ["1"]
    assert _infer(server.http_url, "pol", tiny_observations[:1])[1] == "1"
    assert main(["triton", "promote", *common]) == 0
    assert _served_versions(server.http_url, "pol") == ["2"]
    assert main(["flags", "set", "served_version.pol", "1"]) == 0
    assert main(["triton", "sync", *common]) == 0
    assert _served_versions(server.http_url, "pol") == ["1"]
    assert main(["triton", "promote", *common]) == 0
    assert _infer(server.http_url, "pol", tiny_observations[:1])[1] == "2"


def test_profile_url_measures_through_triton(server, tmp_path):
    out = tmp_path / "prof"
    code = main(["profile", "--url", server.http_url, "--model-name", "pol", "--batch-sizes", "1,4",
                 "--protocol", "http", "--window-ms", "200", "--max-trials", "3", "--out", str(out), "--json"])
    assert code == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    assert [p["batch_size"] for p in report["points"]] == [1, 4]
    assert all(p["throughput_per_s"] > 0 for p in report["points"])


def _broken_copy(repo, tmp_path: Path, edit) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(repo.path / "pol", target / "pol")
    edit(target / "pol")
    return target


def _set_config(entry: Path, old: str, new: str) -> None:
    text = (entry / "config.pbtxt").read_text()
    assert old in text
    (entry / "config.pbtxt").write_text(text.replace(old, new, 1))


def _bad_parameter(entry: Path) -> None:
    text = (entry / "config.pbtxt").read_text()
    (entry / "config.pbtxt").write_text(text + 'parameters {\n  key: "intra_op_thread_count"\n  value {\n'
                                                '    string_value: "two"\n  }\n}\n')


def _no_model_file(entry: Path) -> None:
    for version in ("1", "2"):
        (entry / version / "model.onnx").unlink()


@pytest.mark.parametrize("edit,reason", [
    (lambda e: _set_config(e, 'backend: "onnxruntime"', 'backend: "nosuchbackend"'), "nosuchbackend"),
    (_bad_parameter, "intra_op_thread_count"),
    (_no_model_file, "model.onnx"),
], ids=["unknown-backend", "bad-parameter", "missing-model-file"])
def test_a_repository_triton_refuses_is_one_error_quoting_triton(env, repo, tmp_path, edit, reason):
    from costeff.serving.tritonserver import Ports, TritonServer

    broken = _broken_copy(repo, tmp_path, edit)
    server = TritonServer(env, broken, Ports.from_http(free_ports()), ready_timeout_s=90)
    with pytest.raises(InputError) as caught:
        server.start()
    message = str(caught.value)
    assert "Triton refused" in message and reason in message and "\n" not in message
    assert not server.alive()


def test_a_port_in_use_is_refused_before_starting(env, repo):
    import socket

    from costeff.serving.tritonserver import Ports, TritonServer

    first = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first + 1))
        taken.listen()
        server = TritonServer(env, repo.path, Ports.from_http(first))
        with pytest.raises(InputError, match=r"--grpc-port .*already in use"):
            server.start()
    assert server.process is None


def _stubs_serving(repository: Path) -> list[str]:
    """The python backend stubs (one per model instance) serving models of ``repository``."""
    found = subprocess.run(["pgrep", "-af", f"triton_python_backend_stub {repository}/"], capture_output=True,
                           text=True)
    return found.stdout.splitlines()


def test_stop_unloads_every_model_before_sigterm_keeps_the_log_and_leaves_no_stub(env, repo, tmp_path,
                                                                                tiny_observations):
    from costeff.serving.tritonserver import Ports, TritonServer

    own = tmp_path / "repository"  # a copy: the module's server serves repo.path, with stubs of its own
    shutil.copytree(repo.path, own)
    log = tmp_path / "logs" / "tritonserver.log"
    server = TritonServer(env, own, Ports.from_http(free_ports()), log_path=log).start()
    assert len(_stubs_serving(own)) >= 4  # pol, pol_ov, and pol_x2's two instances
    _infer(server.http_url, "pol_x2", tiny_observations[:2])
    assert server.stop() == 0
    assert _stubs_serving(own) == []
    text = log.read_text()
    signalled = text.index("Signal (15) received")
    for name in ("pol", "pol_ov", "pol_x2"):
        assert -1 < text.rfind(f"successfully unloaded '{name}'") < signalled, name
    assert "Exit timeout expired" not in text


def test_a_client_holding_a_connection_open_does_not_get_triton_killed_on_stop(env, repo):
    import socket

    from costeff.serving.tritonserver import Ports, TritonServer

    server = TritonServer(env, repo.path, Ports.from_http(free_ports()), models=["pol"]).start()
    with socket.create_connection(("127.0.0.1", server.ports.http)):
        # Triton waits for open HTTP connections on SIGTERM: for 30 s by default, longer than stop() waits
        # before SIGKILL (status -9); costeff's bound lets it give up on the connection and exit cleanly
        assert server.stop() == 0
    assert not server.alive()


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "costeff", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, **kwargs)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_triton_serve_prints_its_ports_once_ready_and_stops_cleanly_on_sigterm(env, repo, tiny_observations):
    port = free_ports()
    proc = _cli("triton", "serve", str(repo.path), "--http-port", str(port), "--env-dir", str(env.root))
    try:
        line = proc.stdout.readline()
        assert f"http 127.0.0.1:{port}" in line and f"grpc 127.0.0.1:{port + 1}" in line
        assert f"metrics 127.0.0.1:{port + 2}" in line and "pol, pol_ov, pol_x2" in line
        _, version = _infer(f"127.0.0.1:{port}", "pol", tiny_observations[:1])
        assert version in ("1", "2")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_open(port), "Triton kept running after costeff triton serve stopped"


def test_a_triton_that_dies_mid_run_is_one_error_and_nothing_is_left(env, repo):
    port = free_ports()
    proc = _cli("triton", "serve", str(repo.path), "--http-port", str(port), "--env-dir", str(env.root),
                "--load-model", "pol")
    try:
        assert "serving" in proc.stdout.readline()
        server_pids = subprocess.run(["pgrep", "-f", "--", f"tritonserver.*--http-port={port}"],
                                     capture_output=True, text=True)
        assert server_pids.stdout.split(), "no tritonserver process found"
        for pid in server_pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        assert proc.wait(60) == 3
        err = proc.stderr.read()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Triton exited" in errors[0]
        assert "Traceback" not in err
    finally:
        proc.kill()
    assert not _port_open(port + 1)


def test_a_killed_costeff_leaves_no_triton_behind(env, repo):
    port = free_ports()
    proc = _cli("triton", "serve", str(repo.path), "--http-port", str(port), "--env-dir", str(env.root),
                "--load-model", "pol")
    try:
        assert "serving" in proc.stdout.readline()
    finally:
        proc.kill()  # SIGKILL: no finally block of costeff's runs
        proc.wait(30)
    deadline = time.monotonic() + 30
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_open(port), "Triton outlived a SIGKILLed costeff triton serve"


def test_serve_refuses_a_folder_that_is_not_a_repository(env, tmp_path):
    proc = _cli("triton", "serve", str(tmp_path), "--http-port", str(free_ports()), "--env-dir", str(env.root))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().startswith("error:") and "config.pbtxt" in err and len(err.strip().splitlines()) == 1
