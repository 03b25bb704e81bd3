"""An OpenVINO IR served from a versioned repository: drift follows it, and the ramp finds its windows."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from costeff.cli import main
from test_serving_openvino import built  # noqa: F401  (the fixture: an IR selected by a quantization report)

pytest.importorskip("openvino")


@pytest.mark.slow
def test_drift_and_ramp_follow_the_served_ir(built, tmp_path, capsys):  # noqa: F811
    from costeff.artifacts import utc_now
    from costeff.ledger import Ledger, import_sample

    repo = ["--repository", str(tmp_path / "repo"), "--name", "pol"]
    assert main(["triton", "build", str(built.model), "--profile", str(built.profile), *repo]) == 0  # v1: ONNX
    assert main(["triton", "build", str(built.model), "--profile", str(built.profile), "--quantization-report",
                 str(built.report), *repo]) == 0  # v2: the IR
    assert sorted(p.name for p in (tmp_path / "repo" / "pol" / "2").iterdir()) == ["model.bin", "model.xml"]
    from costeff.policy import generate_observations

    np.save(tmp_path / "obs.npy", generate_observations(500, seed=9, preset="tiny"))
    capsys.readouterr()
    code = main(["drift", "check", "--reference", str(built.model), *repo, "--observations",
                 str(tmp_path / "obs.npy"), "--out", str(tmp_path / "drift"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["passed"] else 1)
    assert report["served"]["kind"] == "openvino" and report["served"]["path"].endswith("/2/model.xml")
    assert report["served"]["sha256"] == built.ov["sha256"]  # the IR's identity as the quantization report has it
    ledger = Ledger(tmp_path / "artifacts" / "ledger.sqlite")
    import_sample(ledger, end=utc_now().date() - timedelta(days=1))
    assert main(["ramp", "decide", "--triton-repository", str(tmp_path / "repo"), "--model-name", "pol",
                 "--out", str(tmp_path / "ramp"), "--json"]) == 1  # the sample's cost ratio holds it
    gates = {g["name"]: g for g in json.loads(capsys.readouterr().out)["gates"]}
    live = gates["live_action_drift_pct"]
    assert live["verdict"] != "NO-DATA" and live["observed"] == pytest.approx(report["action_drift_pct"])
