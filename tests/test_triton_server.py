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
from costeff.errors import DependencyError, InputError
from triton_support import free_ports, triton_env

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
                 window_s=0.05, speed_rounds=1, gaps_s=(0.0,)), out_dir=root / "q")
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
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: rows})))


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
