"""Where costeff writes is one Workspace, built at the command line's edge and handed down.

``--artifacts`` / ``$COSTEFF_ARTIFACTS`` and ``--repository`` / ``$COSTEFF_MODEL_REPOSITORY`` are read
there only; ``costeff run --out`` builds its own Workspace and leaves the environment alone. So are the
signing key, its public key, the anchor and the cache (``$COSTEFF_HOME``, ``$COSTEFF_AUDIT_KEY``,
``$COSTEFF_AUDIT_PUBKEY``, ``$COSTEFF_AUDIT_ANCHOR``, ``$COSTEFF_CACHE``): the edge's Home.
"""

import argparse
import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest

import costeff
from costeff.artifacts import Workspace
from costeff.cli import main
from costeff.cli._common import workspace
from workspace_support import env_home

SRC = Path(costeff.__file__).parent
EDGE_ONLY = {"COSTEFF_ARTIFACTS", "COSTEFF_MODEL_REPOSITORY", "COSTEFF_HOME", "COSTEFF_AUDIT_KEY",
             "COSTEFF_AUDIT_PUBKEY", "COSTEFF_AUDIT_ANCHOR", "COSTEFF_CACHE"}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_run_out_writes_nothing_under_the_environments_root_and_leaves_the_environment_alone(
        tmp_path, monkeypatch, capsys):
    elsewhere, elsewhere_repo = tmp_path / "B", tmp_path / "B_repo"
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(elsewhere))
    monkeypatch.setenv("COSTEFF_MODEL_REPOSITORY", str(elsewhere_repo))
    bad = tmp_path / "broken.onnx"  # the policy stage fails at once; reaper, ramp and pack still write
    bad.write_bytes(b"not onnx")
    obs = tmp_path / "obs.npy"
    np.save(obs, np.zeros((600, 4), np.float32))
    before = dict(os.environ)
    code = main(["run", "--model", str(bad), "--observations", str(obs), "--json", "--out", str(tmp_path / "A")])
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and dict(os.environ) == before
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert status["reaper"] == status["ramp"] == status["pack"] == "ok"
    assert report["pack"].startswith(str(tmp_path / "A" / "cost" / "pack_"))
    assert (tmp_path / "A" / "audit" / "audit.jsonl").is_file()
    assert not elsewhere.exists() and not elsewhere_repo.exists()


def test_the_global_artifacts_option_is_where_a_command_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "env_root"))
    root = tmp_path / "chosen"
    assert main(["--artifacts", str(root), "flags", "set", "cost_gates_enabled", "false"]) == 0
    assert json.loads((root / "flags" / "flags.json").read_text())  # the flag and its audit record are here
    assert (root / "audit" / "audit.jsonl").is_file()
    assert not (tmp_path / "env_root").exists()
    capsys.readouterr()
    assert main(["--artifacts", str(root), "flags", "get", "cost_gates_enabled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] is False


def test_without_the_option_the_environment_names_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "env_root"))
    assert main(["flags", "set", "cost_gates_enabled", "false"]) == 0
    assert (tmp_path / "env_root" / "flags" / "flags.json").is_file()


def test_the_edge_takes_option_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv("COSTEFF_ARTIFACTS")
    monkeypatch.delenv("COSTEFF_MODEL_REPOSITORY")
    home = env_home()
    assert workspace(argparse.Namespace()) == Workspace(Path("artifacts"), Path("docker/triton/model_repository"),
                                                        home)
    monkeypatch.setenv("COSTEFF_ARTIFACTS", "env_root")
    monkeypatch.setenv("COSTEFF_MODEL_REPOSITORY", "env_repo")
    assert workspace(argparse.Namespace()) == Workspace(Path("env_root"), Path("env_repo"), home)
    given = argparse.Namespace(workspace_root=Path("opt_root"), workspace_repository=Path("opt_repo"))
    assert workspace(given) == Workspace(Path("opt_root"), Path("opt_repo"), home)
    given.repository = Path("own_repo")  # a command's own --repository wins over the global one
    assert workspace(given).repository == Path("own_repo")


def test_help_names_the_global_options_and_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--artifacts DIR" in text and "$COSTEFF_ARTIFACTS or ./artifacts" in text
    assert "--repository DIR" in text and "$COSTEFF_MODEL_REPOSITORY or ./docker/triton/model_repository" in text


def test_a_global_option_naming_a_file_is_refused(tmp_path, capsys):
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["--artifacts", str(plain), "flags", "get"])
    assert exc.value.code == 2 and "--artifacts" in capsys.readouterr().err


def _edge_reads(tree: ast.AST) -> list[int]:
    """Lines that name an edge-only variable (as os.environ[...], os.getenv(...) or a constant that holds it)."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in EDGE_ONLY]


def test_the_static_check_sees_an_environment_read():
    assert _edge_reads(ast.parse('import os\nroot = os.environ.get("COSTEFF_ARTIFACTS", "artifacts")\n')) == [2]
    assert _edge_reads(ast.parse('import os\nENV = "COSTEFF_MODEL_REPOSITORY"\nos.getenv(ENV)\n')) == [2]
    assert _edge_reads(ast.parse('import os\nkey = os.environ.get("COSTEFF_AUDIT_KEY")\n')) == [2]
    assert _edge_reads(ast.parse('import os\nCACHE_ENV = "COSTEFF_CACHE"\n')) == [2]


def test_only_the_command_line_reads_where_the_workspace_is():
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        lines = _edge_reads(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            found[str(path.relative_to(SRC))] = lines
    assert found == {}, f"only costeff/cli/ may read {', '.join(sorted(EDGE_ONLY))}"
