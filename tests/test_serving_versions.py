"""Versioned Triton repository: builds add versions, the flag decides which serves, every change audited."""

from __future__ import annotations

import json

import pytest

from costeff.artifacts import sha256_file
from costeff.cli import main
from costeff.serving.versions import describe, pinned_versions, read_config
from test_serving import _profile, _tiny_policy
from workspace_support import env_workspace, audit_log, flag_store


def _build(tmp_path, seed, *extra):
    folder = tmp_path / f"m{seed}"
    folder.mkdir(exist_ok=True)
    model = _tiny_policy(folder / "policy.onnx", seed=seed)
    code = main(["triton", "build", str(model), "--profile", str(_profile(folder, model)),
                 "--repository", str(tmp_path / "repo"), "--instance-kind", "cpu", *extra])
    assert code == 0
    return model


def _served(tmp_path):
    return pinned_versions(read_config(tmp_path / "repo" / "policy"))


def test_each_build_adds_a_version_and_pins_it(tmp_path):
    first, second = _build(tmp_path, 1), _build(tmp_path, 2)
    entry = tmp_path / "repo" / "policy"
    assert sha256_file(entry / "1" / "model.onnx") == sha256_file(first)  # version 1 untouched by build 2
    assert sha256_file(entry / "2" / "model.onnx") == sha256_file(second)
    assert _served(tmp_path) == [2]
    assert "version_policy" in (entry / "config.pbtxt").read_text()
    assert flag_store().get("served_version.policy") == 2
    assert flag_store().get("deployed_model_sha256") == sha256_file(second)
    build = json.loads((entry / "costeff_build.json").read_text())
    assert build["version"] == 2 and build["versions_kept"] == [1, 2]


def test_rollback_then_promote_through_the_cli(tmp_path, capsys):
    first, _ = _build(tmp_path, 1), _build(tmp_path, 2)
    repo = ["--repository", str(tmp_path / "repo"), "--name", "policy"]
    capsys.readouterr()
    assert main(["triton", "rollback", *repo, "--reason", "drift", "--json"]) == 0
    change = json.loads(capsys.readouterr().out)
    assert (change["from_version"], change["to_version"], change["action"]) == (2, 1, "rollback")
    assert _served(tmp_path) == [1]
    assert flag_store().get("served_version.policy") == 1
    assert flag_store().get("deployed_model_sha256") == sha256_file(first)
    # validate checks the served version's model, not the highest number on disk
    assert main(["triton", "validate", str(tmp_path / "repo" / "policy" / "config.pbtxt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_path"].endswith("/1/model.onnx")
    assert main(["triton", "promote", *repo]) == 0
    assert _served(tmp_path) == [2]
    events = [r["event"] for r in audit_log().records()]
    assert events.count("triton.rollback") == 1 and events.count("triton.promote") == 1
    rollback = next(r for r in audit_log().records() if r["event"] == "triton.rollback")
    assert rollback["payload"]["reason"] == "drift"


def test_keep_last_k_and_never_reuse_a_number(tmp_path):
    for seed in range(1, 5):
        _build(tmp_path, seed, "--keep-versions", "2")
    state = describe(tmp_path / "repo" / "policy")
    assert [v.version for v in state.versions] == [3, 4] and state.served == 4
    import shutil

    shutil.rmtree(tmp_path / "repo" / "policy" / "4")  # even with the newest folder gone, 4 is not reused
    _build(tmp_path, 5, "--keep-versions", "2")
    assert [v.version for v in describe(tmp_path / "repo" / "policy").versions] == [3, 5]


def test_flags_rollback_then_sync_rewrites_the_config(tmp_path, capsys):
    _build(tmp_path, 1), _build(tmp_path, 2)
    capsys.readouterr()
    assert main(["flags", "rollback", "served_version.policy"]) == 0
    assert _served(tmp_path) == [2]  # the flag changed, the config not yet
    assert main(["triton", "sync", "--repository", str(tmp_path / "repo"), "--name", "policy"]) == 0
    assert _served(tmp_path) == [1]
    assert "serving version 2 -> 1 (sync" in capsys.readouterr().out
    assert main(["flags", "set", "served_version.policy", "2"]) == 0
    assert main(["triton", "sync", "--repository", str(tmp_path / "repo"), "--name", "policy"]) == 0
    assert _served(tmp_path) == [2]
    assert [r["event"] for r in audit_log().records()].count("triton.sync") == 2


@pytest.mark.parametrize("argv, message", [
    (["rollback", "--to", "7"], "has no version 7; versions on disk: [1, 2]"),
    (["rollback", "--to", "2"], "not earlier than the served version 2"),
    (["promote"], "version 2 is the newest on disk"),
])
def test_bad_targets_are_one_line_errors(tmp_path, capsys, argv, message):
    _build(tmp_path, 1), _build(tmp_path, 2)
    capsys.readouterr()
    before = (tmp_path / "repo" / "policy" / "config.pbtxt").read_text()
    code = main(["triton", *argv, "--repository", str(tmp_path / "repo"), "--name", "policy"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "repo" / "policy" / "config.pbtxt").read_text() == before


def test_repository_without_versions_and_unset_flag(tmp_path, capsys):
    (tmp_path / "repo" / "policy").mkdir(parents=True)
    assert main(["triton", "rollback", "--repository", str(tmp_path / "repo"), "--name", "policy"]) == 2
    assert "no numbered version folders" in capsys.readouterr().err
    _build(tmp_path, 1)
    capsys.readouterr()
    flag_store().set("served_version.policy", "unset")
    assert main(["triton", "sync", "--repository", str(tmp_path / "repo"), "--name", "policy"]) == 2
    assert "flag served_version.policy is unset" in capsys.readouterr().err
    assert main(["flags", "set", "served_version.policy", "two"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_validate_names_a_pinned_version_missing_on_disk(tmp_path, capsys):
    _build(tmp_path, 1)
    config = tmp_path / "repo" / "policy" / "config.pbtxt"
    config.write_text(config.read_text().replace("versions: 1", "versions: 3"))
    assert main(["triton", "validate", str(config), "--model", str(tmp_path / "m1" / "policy.onnx")]) == 2
    assert "pins version 3" in capsys.readouterr().err


def test_concurrent_builds_take_distinct_versions(tmp_path):
    import threading

    from costeff.serving import BuildConfig, build_repository

    configs = []
    for seed in range(1, 5):
        folder = tmp_path / f"c{seed}"
        folder.mkdir()
        model = _tiny_policy(folder / "policy.onnx", seed=seed)
        configs.append(BuildConfig(model, _profile(folder, model), tmp_path / "repo", "policy", instance_kind="cpu"))
    results = []
    here = env_workspace()
    threads = [threading.Thread(target=lambda c=c: results.append(build_repository(c, workspace=here)))
               for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    assert [v.version for v in describe(tmp_path / "repo" / "policy").versions] == [1, 2, 3, 4]


def test_rollback_in_a_missing_repository_creates_nothing(tmp_path, capsys):
    assert main(["triton", "rollback", "--repository", str(tmp_path / "nope"), "--name", "policy"]) == 2
    assert "no such model repository" in capsys.readouterr().err and not (tmp_path / "nope").exists()
