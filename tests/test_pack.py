import io
import json
import tarfile

import pytest

from costeff.artifacts import atomic_write_json
from costeff.cli import main
from costeff.errors import InputError
from costeff.pack import pack, verify_pack
from costeff.pack.bundle import read_pack
from workspace_support import env_workspace, env_home


@pytest.fixture
def layout(tmp_path):
    layout = env_workspace()
    model = {"model_sha256": "a" * 64}  # the quantization report's model: the profile is of its chain
    atomic_write_json(layout.cost / "20260101_000000Z" / "gpu_profile.json", {"points": [], "optimal": {}, **model})
    atomic_write_json(layout.quant / "20260101_000001Z" / "quantization_report.json", {"variants": [], **model})
    (layout.quant / "20260101_000001Z" / "quantization_report.md").write_text("# q\n")
    repo = env_workspace().repository / "policy"
    (repo / "1").mkdir(parents=True)
    (repo / "config.pbtxt").write_text('name: "policy"\n')
    (repo / "1" / "model.onnx").write_bytes(b"\x08\x07")
    from costeff.audit import AuditLog
    AuditLog(layout.audit, home=env_home()).append("test.event", {"i": 0})
    return layout


def _rewrite(path, mutate):
    files = read_pack(path)
    mutate(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


def test_pack_holds_latest_reports_repository_audit_and_verifies(layout):
    result = pack(layout)
    assert result.path.name.startswith("pack_") and result.path.name.endswith(".tar.gz")
    files = read_pack(result.path)
    manifest = json.loads(files["manifest.json"])
    paths = {f["path"] for f in manifest["files"]}
    assert {"profile/gpu_profile.json", "quant/quantization_report.md", "model_repository/policy/config.pbtxt",
            "model_repository/policy/1/model.onnx", "audit/audit.jsonl", "COMPLETION_SUMMARY.md"} <= paths
    assert manifest["dependencies"]["numpy"] and manifest["hardware"]["cpu_count"] >= 1
    assert verify_pack(result.path, env_home().pubkey).ok


def test_verify_names_a_modified_file(layout):
    result = pack(layout)
    _rewrite(result.path, lambda f: f.__setitem__("quant/quantization_report.md", b"# forged\n"))
    report = verify_pack(result.path, env_home().pubkey)
    assert not report.ok and any("quant/quantization_report.md" in p for p in report.problems)


def test_verify_names_missing_and_extra_files(layout):
    result = pack(layout)

    def mutate(files):
        del files["audit/audit.jsonl"]
        files["extra.txt"] = b"x"
    _rewrite(result.path, mutate)
    problems = verify_pack(result.path, env_home().pubkey).problems
    assert any("audit/audit.jsonl" in p and "missing" in p for p in problems)
    assert any("extra.txt" in p for p in problems)


def test_cli_verify_exit_codes(layout, tmp_path, capsys):
    result = pack(layout)
    assert main(["pack", "--verify", str(result.path)]) == 0
    _rewrite(result.path, lambda f: f.__setitem__("profile/gpu_profile.json", b"{}"))
    assert main(["pack", "--verify", str(result.path)]) == 1
    not_a_pack = tmp_path / "x.tar.gz"
    not_a_pack.write_bytes(b"nope")
    assert main(["pack", "--verify", str(not_a_pack)]) == 2
    assert "not a readable" in capsys.readouterr().err


def test_pack_with_nothing_to_pack_is_an_input_error():
    with pytest.raises(InputError, match="no stage reports"):
        pack(env_workspace())
