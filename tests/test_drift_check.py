"""``costeff drift check``: real models (onnxruntime, OpenVINO IR) on logged observations, per window."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from costeff.cli import main
from costeff.ledger.drift import DriftLedger
from test_serving import FEATURES, WINDOW, _tiny_policy

HOUR = 3600.0
T0 = 1_790_000_000.0 - (1_790_000_000.0 % HOUR)  # an hour boundary in 2026


def perturbed(src, dst, noise, seed=0):
    """``src`` with every weight matrix moved by ``noise`` x its own scale: a variant of the same policy."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for i, init in enumerate(model.graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32:
            moved = (w + noise * np.abs(w).mean() * rng.standard_normal(w.shape)).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(moved, init.name))
    onnx.save(model, str(dst))
    return dst


def to_openvino(src, xml):
    import openvino as ov

    ov.save_model(ov.convert_model(str(src)), str(xml), compress_to_fp16=False)
    return xml


def observations(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, WINDOW, FEATURES)).astype(np.float32)


def write_parquet(path, obs, stamps):
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = obs.reshape(len(obs), -1)
    table = pa.table({"timestamp": pa.array((stamps * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
                      "obs": pa.array(list(flat), pa.list_(pa.float32()))})
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("models")
    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    return {"ref": ref, "close": perturbed(ref, tmp_path / "close.onnx", 1e-4),
            "far": perturbed(ref, tmp_path / "far.onnx", 0.5), "ir": to_openvino(ref, tmp_path / "ref_ov.xml")}


def _check(models, served, obs_path, out, *extra):
    return main(["drift", "check", "--reference", str(models["ref"]), "--served", str(served),
                 "--observations", str(obs_path), "--out", str(out), "--json", *extra])


@pytest.mark.slow
def test_parquet_timestamps_give_one_window_per_hour_recorded_in_the_ledger(tmp_path, models, capsys):
    obs = observations(3000)
    stamps = T0 + np.linspace(0, 3 * HOUR - 1, len(obs))
    log = write_parquet(tmp_path / "log.parquet", obs, stamps)
    assert _check(models, models["close"], log, tmp_path / "out") == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert printed["action_drift_pct"] == saved["action_drift_pct"] < 0.5 and saved["passed"]
    assert [w["rows"] for w in saved["windows"]] == [1000, 1000, 1000]
    # an fp32 model answers the same alone and inside a batch of the default largest batch
    assert saved["batch_invariance"]["max_logit_diff"] <= 1e-5 and saved["batch_invariance"]["batch_sizes"] == [1, 256]
    first = datetime.fromtimestamp(T0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [w["start"] for w in saved["windows"]][0] == first
    metrics = saved["windows"][1]["fidelity"]
    assert {"action_agreement_pct", "confident_agreement_pct", "action_correlation", "entropy_drift_pct",
            "kl_mean", "kl_p99", "value_max_abs_err"} <= set(metrics)
    assert metrics["value_max_abs_err"] is not None and metrics["action_correlation"] > 0.999
    rows = DriftLedger.default().windows()
    assert len(rows) == 3 and all(r.passed and r.timed for r in rows)
    # the same log checked again replaces its windows, it does not count them twice
    assert _check(models, models["close"], log, tmp_path / "again") == 0
    assert len(DriftLedger.default().windows()) == 3
    assert f"| {first} |" in (tmp_path / "out" / "drift_report.md").read_text()


def test_a_drifting_variant_fails_with_exit_1(tmp_path, models, capsys):
    np.save(tmp_path / "a.npy", observations(500, seed=1))
    np.savez(tmp_path / "b.npz", obs=observations(500, seed=2))
    assert _check(models, models["far"], tmp_path, tmp_path / "out") == 1
    saved = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert saved["action_drift_pct"] > 5 and not saved["passed"]
    assert len(saved["windows"]) == 2 and saved["windows_failed"] == 2  # one window per untimed file
    failed = {g["name"] for g in saved["windows"][0]["gates"] if g["verdict"] != "PASS"}
    assert "action_drift_pct" in failed
    assert [r.passed for r in DriftLedger.default().windows()] == [False, False]


def test_openvino_ir_served_against_the_onnx_reference(tmp_path, models, capsys):
    np.save(tmp_path / "obs.npy", observations(800))
    assert _check(models, models["ir"], tmp_path / "obs.npy", tmp_path / "out") == 0
    saved = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert saved["served"]["kind"] == "openvino" and saved["reference"]["kind"] == "onnx"
    # served as OpenVINO serves it on this CPU (bf16 where the CPU has it): small, real drift within the gates
    assert saved["served"]["precision"].startswith("openvino ")
    assert saved["action_drift_pct"] < 0.5 and saved["overall"]["kl_p99"] < 1e-2, saved["overall"]


def test_an_openvino_reference_runs_in_fp32(tmp_path, models, capsys):
    np.save(tmp_path / "obs.npy", observations(800))
    argv = ["drift", "check", "--reference", str(models["ir"]), "--served", str(models["ref"]),
            "--observations", str(tmp_path / "obs.npy"), "--out", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["reference"]["precision"] == "openvino f32"
    assert saved["action_drift_pct"] == 0.0 and saved["overall"]["kl_p99"] < 1e-8, saved["overall"]


def test_served_version_read_from_the_repository(tmp_path, models, capsys):
    from test_serving import _profile

    for key in ("ref", "far"):
        assert main(["triton", "build", str(models[key]), "--profile", str(_profile(tmp_path, models[key])),
                     "--repository", str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    np.save(tmp_path / "obs.npy", observations(400))
    repo = ["--repository", str(tmp_path / "repo"), "--name", "policy"]
    argv = ["drift", "check", "--reference", str(models["ref"]), *repo, "--observations",
            str(tmp_path / "obs.npy"), "--out", str(tmp_path / "out")]
    assert main(argv) == 1  # version 2 (far) serves
    assert main(["triton", "rollback", *repo]) == 0
    capsys.readouterr()
    assert main(argv) == 2  # version 1 is the reference itself
    assert "same model as --reference" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "bad.npy", np.zeros((10, 5, 3), np.float32)), "bad.npy: observations have shape [10, 5, 3]"),
    (lambda d: np.save(d / "bad.npy", np.array([["a"] * 12] * 4)), "bad.npy: observations have dtype <U1"),
    (lambda d: np.save(d / "bad.npy", np.where(np.arange(120).reshape(10, 4, 3) == 7, np.nan, 1.0)),
     "bad.npy: 1 observation row(s) contain NaN or inf"),
    (lambda d: (d / "bad.npy").write_bytes(b"\x93NUMPY garbage"), "bad.npy: cannot read observations"),
    (lambda d: None, "holds no .npy, .npz, .parquet files"),
])
def test_bad_observations_are_one_line_errors_and_write_nothing(tmp_path, models, capsys, make, message):
    folder = tmp_path / "logs"
    folder.mkdir()
    make(folder)
    assert _check(models, models["close"], folder, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not DriftLedger.default().windows()


def test_reference_equal_to_served_is_refused(tmp_path, models, capsys):
    np.save(tmp_path / "obs.npy", observations(10))
    assert _check(models, models["ref"], tmp_path / "obs.npy", tmp_path / "out") == 2
    assert "same model as --reference" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ragged_parquet_windows_are_refused(tmp_path, models, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"obs": pa.array([[0.0] * 12, [0.0] * 11 + [1.0, 2.0]], pa.list_(pa.float32()))}),
                   tmp_path / "ragged.parquet")
    assert _check(models, models["close"], tmp_path / "ragged.parquet", tmp_path / "out") == 2
    assert "ragged.parquet: column 'obs' holds lists of 12..13 values" in capsys.readouterr().err


def test_drift_runs_both_formats_on_the_runtimes_sessions(tmp_path):
    from costeff.drift.runners import CHUNK_ROWS, open_runner
    from costeff.quantization.fidelity import run_policy
    from costeff.runtimes.ort import OnnxRuntimeRunner

    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    obs = observations(CHUNK_ROWS + 88, seed=1)  # two chunks
    runner = open_runner(ref, reference=True)
    assert isinstance(runner.session, OnnxRuntimeRunner) and runner.precision == "graph"
    assert np.array_equal(runner.run(obs).logits, run_policy(ref, obs, runner.logits, runner.value).logits)
    pytest.importorskip("openvino")
    from costeff.runtimes.ov import OpenVinoRunner

    xml = to_openvino(ref, tmp_path / "ref.xml")
    ir = open_runner(xml, reference=True)
    assert isinstance(ir.session, OpenVinoRunner) and ir.precision == "openvino f32"
    assert (ir.sample_shape, ir.logits) == (runner.sample_shape, runner.logits)
    assert np.allclose(ir.run(obs).logits, runner.run(obs).logits, atol=1e-4)  # fp32 both: the same policy
