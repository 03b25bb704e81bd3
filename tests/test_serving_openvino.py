"""The selected variant is what Triton serves: the openvino backend for IR, checked semantically; CPU pricing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from costeff.cli import main
from costeff.cost import load_catalog
from costeff.cost.catalog import cpu_family
from costeff.errors import InputError
from workspace_support import env_workspace

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def built(tiny_policy, tiny_observations, tmp_path_factory):
    """A quantization report whose selection is ov-fp32, a profile of the fp32 model, and the model."""
    from costeff.profiling import ProfileConfig, profile
    from costeff.quantization import QuantizeConfig, quantize

    root = tmp_path_factory.mktemp("ovserve")
    model = Path(tiny_policy.onnx_path)
    cfg = QuantizeConfig(variants=("ov-fp32",), batch_sizes=(1, 16), window_s=0.05, speed_rounds=1, gaps_s=(0.0,))
    rep = quantize(model, tiny_observations[:600], cfg, out_dir=root / "q", workspace=env_workspace())
    data = json.loads((root / "q" / "quantization_report.json").read_text())
    ov = next(v for v in data["variants"] if v["name"] == "ov-fp32")
    # Serve the OpenVINO variant whatever the timing said: these tests are about serving it.
    data["selected"].update(name="ov-fp32", path=ov["path"], sha256=ov["sha256"], backend="openvino",
                            precision="fp32")
    (root / "q_ov.json").write_text(json.dumps(data))
    prof = profile(model, ProfileConfig(batch_sizes=(1, 16), window_s=0.05, warmup_s=0.02, max_trials=3))
    prof.write(root / "p")
    assert rep.report_dir
    return SimpleNamespace(model=model, report=root / "q_ov.json", profile=root / "p" / "gpu_profile.json",
                           root=root, ov=ov)


def _build(b, repo: Path, name: str = "pol") -> int:
    return main(["triton", "build", str(b.model), "--profile", str(b.profile), "--quantization-report",
                 str(b.report), "--repository", str(repo), "--name", name])


def test_build_serves_the_selected_ir_on_the_openvino_backend(built, tmp_path):
    from costeff.serving import validate_config

    assert _build(built, tmp_path) == 0
    entry = tmp_path / "pol"
    assert sorted(p.name for p in (entry / "1").iterdir()) == ["model.bin", "model.xml"]
    text = (entry / "config.pbtxt").read_text()
    assert 'backend: "openvino"' in text and "platform" not in text
    record = json.loads((entry / "costeff_build.json").read_text())
    assert record["backend"] == "openvino" and record["variant"] == "ov-fp32"
    assert record["parameters"]["PERFORMANCE_HINT"] == "LATENCY" and record["parameters"]["NUM_STREAMS"] == "1"
    assert int(record["parameters"]["INFERENCE_NUM_THREADS"]) >= 1
    assert "HINT_BF16" not in record["parameters"]  # an fp32 variant never asks for bf16
    assert validate_config(entry / "config.pbtxt").valid


def _bf16_host() -> bool:
    from costeff.runtimes.ov import host_has_bf16

    return host_has_bf16()


@pytest.mark.skipif(not _bf16_host(), reason="this CPU has no bf16: a bf16 hint would fail validation here")
def test_a_shared_ir_is_served_with_the_selected_variants_precision(built, tmp_path):
    """ov-fp32 and ov-bf16 are one IR with two hints: the selected name decides, not the first match."""
    data = json.loads(built.report.read_text())
    twin = dict(next(v for v in data["variants"] if v["name"] == "ov-fp32"), name="ov-bf16", precision="bf16")
    twin["runtime"] = {**twin["runtime"], "precision": "bf16"}
    data["variants"].append(twin)
    data["selected"].update(name="ov-bf16", precision="bf16")
    report = tmp_path / "q.json"
    report.write_text(json.dumps(data))
    assert main(["triton", "build", str(built.model), "--profile", str(built.profile), "--quantization-report",
                 str(report), "--repository", str(tmp_path / "r"), "--name", "pol"]) == 0
    record = json.loads((tmp_path / "r" / "pol" / "costeff_build.json").read_text())
    assert record["variant"] == "ov-bf16" and record["parameters"].get("HINT_BF16") == "YES"


def test_a_changed_selected_file_is_refused(built, tmp_path):
    data = json.loads(built.report.read_text())
    data["selected"]["sha256"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["triton", "build", str(built.model), "--profile", str(built.profile), "--quantization-report",
                 str(bad), "--repository", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.parametrize("edit, problem", [
    (('"LATENCY"', '"FASTEST"'), "PERFORMANCE_HINT"),
    (('key: "NUM_STREAMS"', 'key: "CPU_TURBO"'), "not a parameter of the openvino backend"),
    (("KIND_CPU", "KIND_GPU"), "KIND_GPU with the openvino backend"),
])
def test_validation_catches_what_the_backend_would_refuse(built, tmp_path, edit, problem):
    from costeff.serving import validate_config

    assert _build(built, tmp_path) == 0
    cfg = tmp_path / "pol" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace(*edit))
    report = validate_config(cfg)
    assert not report.valid and any(problem in str(p) for p in report.problems)


def test_bf16_hint_only_on_hardware_with_bf16_and_ir_needs_its_weights(built, tmp_path):
    from costeff.serving import validate_config

    assert _build(built, tmp_path) == 0
    cfg = tmp_path / "pol" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters { key: "HINT_BF16" value { string_value: "YES" } }\n')
    no_bf16 = {"cpu_model": "AMD EPYC", "isa": ["avx2"]}
    assert any("no bf16 units" in str(p) for p in validate_config(cfg, hardware=no_bf16).problems)
    assert validate_config(cfg, hardware={"isa": ["amx_bf16"]}).valid
    (tmp_path / "pol" / "1" / "model.bin").unlink()
    assert any("no weights file" in str(p) for p in validate_config(cfg, hardware={"isa": ["amx_bf16"]}).problems)


def test_ir_tensors_must_match_the_config(built, tmp_path):
    from costeff.serving import validate_config

    assert _build(built, tmp_path) == 0
    cfg = tmp_path / "pol" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "logits"', 'name: "actions"', 1))
    problems = [str(p) for p in validate_config(cfg).problems]
    assert any("actions" in p and "not in the model" in p for p in problems)



def test_validation_reads_the_served_irs_precision_from_its_graph(built, tmp_path):
    """A weight-compressed IR (u8 weights, no FakeQuantize) is reported as int8 weights, not float."""
    import nncf
    import openvino as ov

    from costeff.serving import validate_config

    assert _build(built, tmp_path) == 0
    cfg, version = tmp_path / "pol" / "config.pbtxt", tmp_path / "pol" / "1"
    assert validate_config(cfg).model_precision == "fp32"
    compressed = nncf.compress_weights(ov.Core().read_model(str(version / "model.xml")))
    ov.save_model(compressed, str(tmp_path / "w8.xml"), compress_to_fp16=False)
    for suffix in (".xml", ".bin"):  # renamed, never rewritten in place: the read model maps the old weights
        os.replace(tmp_path / f"w8{suffix}", version / f"model{suffix}")
    report = validate_config(cfg)
    assert report.valid and report.model_precision == "int8 weights"
    assert "FakeQuantize" not in (version / "model.xml").read_text()

# --- CPU hosts are priced by their ISA family ---------------------------------------------------------

@pytest.mark.parametrize("isa, vendor, family", [
    (("avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"), "Intel Xeon", "amx"),
    (("avx2", "avx512f", "avx512_vnni"), "Intel Xeon", "avx512-vnni"),
    (("avx2",), "AMD EPYC 7R13", "amd-avx2"),
])
def test_cpu_family_from_isa(isa, vendor, family):
    assert cpu_family(isa, vendor) == family


def test_an_amx_host_is_priced_as_amx_vcpus_scaled_to_the_cores_used():
    cat = load_catalog()
    amx = cat.for_cpu(SimpleNamespace(isa=("amx_bf16", "amx_int8"), cpu_model="Intel Xeon", cores=4))
    per_vcpu = min(i.usd_per_hour / i.vcpus for i in cat.instances.values() if i.cpu_family == "amx")
    assert amx.cpu_family == "amx" and amx.vcpus == 4
    assert amx.usd_per_hour == pytest.approx(4 * per_vcpu)
    assert "c6i" not in amx.name  # a c6i has no bf16 or AMX: never the price of this host
    epyc = cat.for_cpu(SimpleNamespace(isa=("avx2",), cpu_model="AMD EPYC", cores=2))
    assert epyc.cpu_family == "amd-avx2"


def test_catalog_refuses_an_unknown_cpu_family(tmp_path):
    path = tmp_path / "cat.toml"
    path.write_text('[instances.x]\nkind = "cpu"\ncpu_family = "quantum"\nvcpus = 2\nusd_per_hour = 1.0\n'
                    'source = "s"\nas_of = "2025-06"\n')
    with pytest.raises(InputError, match="instances.x.cpu_family: .quantum. is not allowed"):
        load_catalog(path)


def test_compare_refuses_a_profile_of_another_model(built, tmp_path, tiny_observations):
    prof = json.loads(built.profile.read_text())
    prof["model_sha256"] = "f" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(prof))
    np.save(tmp_path / "obs.npy", tiny_observations[:64])
    assert main(["profile", str(built.model), "--batch-sizes", "1", "--compare", str(other),
                 "--out", str(tmp_path / "p")]) == 2
