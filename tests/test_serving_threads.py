"""Thread parameters in config.pbtxt fit the Triton container's CPU limit, for both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costeff.artifacts import sha256_file
from costeff.cli import main
from costeff.serving import validate_config

from test_serving import _profile, _tiny_policy


@pytest.fixture
def model(tmp_path):
    return _tiny_policy(tmp_path / "policy.onnx")


def _build(tmp_path, model, *extra, profile=None) -> int:
    return main(["triton", "build", str(model), "--profile", str(profile or _profile(tmp_path, model)),
                 "--repository", str(tmp_path / "repo"), "--name", "pol", *extra])


def _params(tmp_path) -> dict[str, str]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = text_format.Parse((tmp_path / "repo" / "pol" / "config.pbtxt").read_text(), pb.ModelConfig())
    return {k: v.string_value for k, v in cfg.parameters.items()}


def _record(tmp_path) -> dict:
    return json.loads((tmp_path / "repo" / "pol" / "costeff_build.json").read_text())


def _ir_report(tmp_path, model, threads: int | None) -> Path:
    """An fp32 IR of ``model`` and a quantization report that selected it, measured with ``threads``."""
    pytest.importorskip("openvino")
    from costeff.quantization.openvino import convert

    xml = tmp_path / "policy_ov.xml"
    convert(model, xml)
    runtime = {"performance_hint": "LATENCY", "precision": "f32", **({"threads": threads} if threads else {})}
    variant = {"name": "ov-fp32", "path": str(xml), "sha256": sha256_file(xml), "backend": "openvino",
               "precision": "fp32", "runtime": runtime}
    report = tmp_path / "quantization_report.json"
    report.write_text(json.dumps({"schema_version": 1, "model_sha256": sha256_file(model), "hardware": {"isa": []},
                                  "selected": variant, "variants": [variant]}))
    return report


# --- what triton build writes --------------------------------------------------------------------

def test_a_4_cpu_container_with_2_onnxruntime_instances_gets_2_threads_each(tmp_path, model):
    assert _build(tmp_path, model, "--instance-kind", "cpu", "--serving-cpus", "4", "--instances", "2") == 0
    assert _params(tmp_path) == {"intra_op_thread_count": "2", "inter_op_thread_count": "1"}
    threads = _record(tmp_path)["threads"]
    assert (threads["serving_cpus"], threads["serving_cpus_source"]) == (4.0, "--serving-cpus")
    assert (threads["instances"], threads["threads_per_instance"], threads["pools"]) == (2, 2, 2)
    md = (tmp_path / "repo" / "pol" / "costeff_build.md").read_text()
    assert "| serving CPUs | 4 (--serving-cpus) |" in md and "| threads per instance | 2 (" in md
    assert validate_config(tmp_path / "repo" / "pol" / "config.pbtxt").warnings == []


@pytest.mark.parametrize("cpus, instances, expected", [("0.5", "1", "1"), ("3", "2", "1"), ("2", "4", "1"),
                                                       ("6.9", "2", "3")])
def test_a_share_is_the_floor_and_never_zero(tmp_path, model, cpus, instances, expected):
    assert _build(tmp_path, model, "--instance-kind", "cpu", "--serving-cpus", cpus, "--instances", instances) == 0
    assert _params(tmp_path)["intra_op_thread_count"] == expected
    oversubscribed = int(instances) > 1 and int(expected) * int(instances) > float(cpus)  # 4 instances on 2 CPUs
    assert any("outnumber" in n for n in _record(tmp_path)["notes"]) == oversubscribed


@pytest.mark.slow
def test_openvino_instances_share_one_pool_capped_by_the_cpus(tmp_path, model):
    # The openvino backend compiles the model once and every instance infers on it, so the
    # limit bounds INFERENCE_NUM_THREADS itself, never divided by the instance count.
    report = _ir_report(tmp_path, model, threads=8)
    assert _build(tmp_path, model, "--quantization-report", str(report), "--serving-cpus", "4",
                  "--instances", "2") == 0
    params = _params(tmp_path)
    assert params["INFERENCE_NUM_THREADS"] == "4" and "intra_op_thread_count" not in params
    threads = _record(tmp_path)["threads"]
    assert (threads["threads_per_instance"], threads["pools"], threads["instances"]) == (4, 1, 2)


@pytest.mark.slow
def test_openvino_keeps_fewer_measured_threads_and_a_fraction_gets_one(tmp_path, model):
    report = _ir_report(tmp_path, model, threads=2)
    assert _build(tmp_path, model, "--quantization-report", str(report), "--serving-cpus", "16") == 0
    assert _params(tmp_path)["INFERENCE_NUM_THREADS"] == "2"  # what was measured, not more
    assert _build(tmp_path, model, "--quantization-report", str(report), "--serving-cpus", "0.5") == 0
    assert _params(tmp_path)["INFERENCE_NUM_THREADS"] == "1"


def test_the_default_comes_from_this_hosts_cgroup_and_the_build_says_so(tmp_path, model, monkeypatch, capsys):
    import costeff.runtimes.cpus as cpus

    root = tmp_path / "cgroup"
    (root / "ctr").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu\n")
    (root / "ctr" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "proc_cgroup").write_text("0::/ctr\n")
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_CGROUP", tmp_path / "proc_cgroup")
    assert _build(tmp_path, model, "--instance-kind", "cpu") == 0
    expected = min(1.5, cpus.cpu_limit().affinity)
    threads = _record(tmp_path)["threads"]
    assert threads["serving_cpus"] == expected and threads["threads_per_instance"] == 1
    assert "not stated" in threads["serving_cpus_source"] and "--serving-cpus" in threads["serving_cpus_source"]
    assert _params(tmp_path)["intra_op_thread_count"] == "1"
    assert "serving CPUs (not stated: this host's" in capsys.readouterr().out


def test_gpu_instances_get_no_thread_parameters(tmp_path, model):
    profile = _profile(tmp_path, model, gpus=[{"name": "H100"}])
    assert _build(tmp_path, model, "--serving-cpus", "4", profile=profile) == 0
    assert _params(tmp_path) == {}
    assert _record(tmp_path)["threads"]["threads_per_instance"] is None


@pytest.mark.parametrize("value", ["0", "-2", "abc", "nan", "inf"])
def test_bad_serving_cpus_is_exit_2_with_one_error_line(tmp_path, model, value, capsys):
    profile = _profile(tmp_path, model)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # argparse refuses before anything is read or written
        _build(tmp_path, model, f"--serving-cpus={value}", profile=profile)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--serving-cpus" in err[0]
    assert not (tmp_path / "repo" / "pol").exists()


# --- what triton validate says about them --------------------------------------------------------

def _edit(tmp_path, old: str, new: str) -> Path:
    cfg = tmp_path / "repo" / "pol" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace(old, new))
    return cfg


def test_a_thread_count_the_backend_cannot_parse_fails_validation(tmp_path, model, capsys):
    assert _build(tmp_path, model, "--instance-kind", "cpu", "--serving-cpus", "2") == 0
    cfg = _edit(tmp_path, 'string_value: "2"', 'string_value: "two"')
    capsys.readouterr()
    assert main(["triton", "validate", str(cfg)]) == 2
    assert "parameters intra_op_thread_count: 'two'; expected an integer" in capsys.readouterr().err


def test_zero_threads_warns_that_the_host_cores_are_used(tmp_path, model):
    assert _build(tmp_path, model, "--instance-kind", "cpu", "--serving-cpus", "2") == 0
    report = validate_config(_edit(tmp_path, 'string_value: "2"', 'string_value: "0"'))
    assert report.valid and any("host's cores" in w for w in report.warnings)


def test_more_threads_than_the_stated_cpus_is_a_warning(tmp_path, model, capsys):
    assert _build(tmp_path, model, "--instance-kind", "cpu", "--serving-cpus", "4", "--instances", "2") == 0
    cfg = _edit(tmp_path, "count: 2", "count: 3")  # 3 sessions × 2 threads on the recorded 4 CPUs
    report = validate_config(cfg)
    assert report.valid and report.serving_cpus == 4.0
    assert any("3 instance(s) × 2 intra-op thread(s) = 6 threads on 4 serving CPUs" in w for w in report.warnings)
    capsys.readouterr()
    assert main(["triton", "validate", str(cfg), "--serving-cpus", "8", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["serving_cpus"] == 8.0 and record["warnings"] == []


@pytest.mark.slow
def test_openvino_threads_above_the_cpus_warn_once_not_per_instance(tmp_path, model):
    report = _ir_report(tmp_path, model, threads=None)
    assert _build(tmp_path, model, "--quantization-report", str(report), "--serving-cpus", "4",
                  "--instances", "3") == 0
    cfg = tmp_path / "repo" / "pol" / "config.pbtxt"
    assert validate_config(cfg).warnings == []  # 4 threads shared by 3 instances fit 4 CPUs
    warnings = validate_config(_edit(tmp_path, 'string_value: "4"', 'string_value: "6"')).warnings
    assert any("INFERENCE_NUM_THREADS=6" in w and "6 threads on 4 serving CPUs" in w for w in warnings)


def test_the_build_api_refuses_a_bad_limit_naming_the_field(tmp_path, model):
    from costeff.errors import InputError
    from costeff.serving import BuildConfig

    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="--serving-cpus"):
            BuildConfig(model, tmp_path / "p.json", tmp_path / "repo", serving_cpus=bad)
    with pytest.raises(InputError, match="--instances"):
        BuildConfig(model, tmp_path / "p.json", tmp_path / "repo", instances=0)
