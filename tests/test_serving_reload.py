"""Rollback reaches a running server: the model-repository API of the real Triton 2.51.

What this exercises: ``costeff triton rollback|promote|sync --url`` calls tritonclient's
``load_model`` (POST /v2/repository/models/<name>/load over HTTP, the RepositoryModelLoad
RPC over gRPC) on a real Triton in explicit model-control mode, which re-reads
``config.pbtxt`` and serves the version its ``version_policy`` pins; the answers afterwards
come from that version's weights (two versions with different weights).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_serving import FEATURES, WINDOW, _profile, _tiny_policy
from triton_support import free_ports, triton_env

from costeff.cli import main

pytestmark = [pytest.mark.server, pytest.mark.slow]
OBS = np.random.default_rng(3).standard_normal((5, WINDOW, FEATURES)).astype(np.float32)


def _local_logits(model):
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["logits"], {"obs": OBS})[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Versions 1 and 2 of ``policy`` (different weights) in a repository served by real Triton."""
    from costeff.serving.tritonserver import Ports, TritonServer

    work = tmp_path_factory.mktemp("reload")
    models = []
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_ARTIFACTS", str(work / "artifacts"))
    patch.setenv("COSTEFF_HOME", str(work / "home"))  # one signing key for the builds and the switches
    for seed in (1, 2):
        folder = work / f"m{seed}"
        folder.mkdir()
        models.append(_tiny_policy(folder / "policy.onnx", seed=seed))
        assert main(["triton", "build", str(models[-1]), "--profile", str(_profile(folder, models[-1])),
                     "--repository", str(work / "repo"), "--instance-kind", "cpu"]) == 0
    with TritonServer(triton_env(), work / "repo", Ports.from_http(free_ports())) as server:
        yield server, work, models
    patch.undo()


def _remote_logits(url):
    import tritonclient.http as http

    client = http.InferenceServerClient(url)
    inp = http.InferInput("obs", list(OBS.shape), "FP32")
    inp.set_data_from_numpy(OBS, binary_data=False)
    return client.infer("policy", [inp], outputs=[http.InferRequestedOutput("logits", binary_data=False)]
                        ).as_numpy("logits")


def test_rollback_and_promote_reload_the_running_server(served, monkeypatch, capsys):
    server, work, (v1, v2) = served
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(work / "artifacts"))
    monkeypatch.setenv("COSTEFF_HOME", str(work / "home"))
    repo = ["--repository", str(work / "repo"), "--name", "policy"]
    np.testing.assert_allclose(_remote_logits(server.http_url), _local_logits(v2), rtol=1e-5)
    assert main(["triton", "rollback", *repo, "--url", server.http_url]) == 0
    assert "reloaded policy" in capsys.readouterr().out
    np.testing.assert_allclose(_remote_logits(server.http_url), _local_logits(v1), rtol=1e-5)
    assert main(["triton", "promote", *repo, "--url", server.grpc_url, "--protocol", "grpc"]) == 0
    np.testing.assert_allclose(_remote_logits(server.http_url), _local_logits(v2), rtol=1e-5)


def test_server_down_after_the_config_changed_says_so(served, monkeypatch, capsys):
    server, work, _ = served
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(work / "artifacts"))
    monkeypatch.setenv("COSTEFF_HOME", str(work / "home"))
    repo = ["--repository", str(work / "repo"), "--name", "policy"]
    dead = f"127.0.0.1:{free_ports(1)}"
    assert main(["triton", "rollback", *repo, "--url", dead]) == 3
    err = capsys.readouterr().err
    assert "now serves policy v1" in err and "triton sync" in err and len(err.strip().splitlines()) == 1
    assert main(["triton", "sync", *repo, "--url", server.http_url]) == 0  # the retry the message names
    assert main(["triton", "promote", *repo]) == 0
