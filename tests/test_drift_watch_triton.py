"""``costeff drift watch --apply --url``: sustained drift rolls back and the real Triton 2.51 serves the earlier
version through its model-repository API; without ``--url`` only config.pbtxt changes, and it says so."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from costeff.cli import main  # noqa: E402
from costeff.serving.versions import describe  # noqa: E402
from test_drift_check import observations, perturbed  # noqa: E402
from test_serving import _profile, _tiny_policy  # noqa: E402
from triton_support import free_ports, triton_env  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _served(url: str) -> list[str]:
    return requests.get(f"http://{url}/v2/models/policy", timeout=10).json()["versions"]


def test_rollback_reaches_triton_with_url_and_only_the_repository_without(tmp_path, capsys):
    from costeff.serving.tritonserver import Ports, TritonServer

    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    versions = [perturbed(ref, tmp_path / "close.onnx", 1e-4), perturbed(ref, tmp_path / "far.onnx", 0.5),
                perturbed(ref, tmp_path / "farther.onnx", 0.6)]  # version 1 stays close to fp32, 2 and 3 drift
    for model in versions:
        assert main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model)), "--repository",
                     str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    (tmp_path / "logs").mkdir()
    watch = ["drift", "watch", "--reference", str(ref), "--repository", str(tmp_path / "repo"), "--name", "policy",
             "--observations", str(tmp_path / "logs"), "--apply", "--fail-windows", "1", "--max-cycles", "1"]
    with TritonServer(triton_env(), tmp_path / "repo", Ports.from_http(free_ports())) as server:
        assert _served(server.http_url) == ["3"]
        capsys.readouterr()
        np.save(tmp_path / "logs" / "a.npy", observations(300, seed=1))
        assert main([*watch, "--url", server.http_url]) == 0
        out = capsys.readouterr()
        assert "'from_version': 3, 'to_version': 2" in out.out and "'ready': True" in out.out
        assert _served(server.http_url) == ["2"]  # Triton itself now serves the earlier version

        np.save(tmp_path / "logs" / "b.npy", observations(300, seed=2))
        assert main(watch) == 0
        out = capsys.readouterr()
        assert "'to_version': 1" in out.out and "poll mode picks the change up itself" in out.err
        assert describe(tmp_path / "repo" / "policy").served == 1  # config.pbtxt pins version 1
        assert _served(server.http_url) == ["2"]  # explicit mode: nothing reloaded it, as the message said


def test_url_without_a_repository_is_bad_input(tmp_path, capsys):
    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    (tmp_path / "logs").mkdir()
    code = main(["drift", "watch", "--reference", str(ref), "--served", str(ref), "--observations",
                 str(tmp_path / "logs"), "--url", "127.0.0.1:8000", "--max-cycles", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "--url" in err
