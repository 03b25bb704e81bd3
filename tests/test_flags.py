import json

import pytest

from costeff.audit import AuditLog, verify
from costeff.cli import main
from costeff.errors import InputError
from costeff.flags import FlagStore
from workspace_support import audit_log, flag_store, env_home

SHA = "ab" * 32


@pytest.fixture
def store(tmp_path):
    return FlagStore(tmp_path / "flags" / "flags.json", AuditLog(tmp_path / "audit", home=env_home()))


def test_defaults_before_any_change(store):
    assert store.get("served_version.policy") is None
    assert store.get("cost_gates_enabled") is True
    assert store.get("reaper_enabled") is True
    assert store.get("pipeline_paused") is False
    assert store.get("pipeline_paused.alpha") is False
    assert store.get("deployed_model_sha256") is None
    assert not store.path.exists()  # reading never writes


def test_set_parses_types_and_audits_old_and_new(store):
    change = store.set("cost_gates_enabled", "false", actor="alice", reason="incident 12")
    assert store.get("cost_gates_enabled") is False
    assert (change.old_value, change.new_value, change.version) == (True, False, 1)
    [record] = store.audit_log.records()
    assert record["event"] == "flag.set" and record["actor"] == "alice"
    assert record["payload"] == {"flag": "cost_gates_enabled", "old_value": True, "new_value": False,
                                 "version": 1, "reason": "incident 12", "action": "set", "rolled_back_to": None,
                                 "store": str(store.path.resolve())}
    assert change.audit_seq == record["seq"]


def test_rollback_to_previous_and_to_any_earlier_version(store):
    for value in ("1", "2", "3"):
        store.set("served_version.policy", value)
    assert store.rollback("served_version.policy").new_value == 2
    assert store.rollback("served_version.policy", to_version=1).new_value == 1
    assert store.rollback("served_version.policy", to_version=0).new_value is None
    history = store.history("served_version.policy")
    assert [c.version for c in history] == [1, 2, 3, 4, 5, 6]
    assert [c.rolled_back_to for c in history[3:]] == [2, 1, 0]
    assert len(store.audit_log.records()) == 6 and verify(store.audit_log.directory, home=env_home()).ok


def test_rollback_without_history_or_to_future_is_rejected(store):
    with pytest.raises(InputError, match="never changed"):
        store.rollback("reaper_enabled")
    store.set("reaper_enabled", False)
    with pytest.raises(InputError, match="not an earlier version"):
        store.rollback("reaper_enabled", to_version=1)


@pytest.mark.parametrize("name, value, message", [
    ("reaper_enabeld", "true", "did you mean 'reaper_enabled'"),
    ("served_version.policy", "0", "a positive integer or 'unset'"),
    ("reaper_enabled", "maybe", "not a boolean"),
    ("deployed_model_sha256", "xyz", "64 hex digits"),
    ("pipeline_paused.a b", "true", "pipeline name"),
])
def test_bad_names_and_values_are_rejected_without_change(store, name, value, message):
    with pytest.raises(InputError, match=message):
        store.set(name, value)
    assert store.audit_log.records() == [] and not store.path.exists()


def test_deployed_model_hash_can_be_set_and_unset(store):
    store.set("deployed_model_sha256", SHA.upper())
    assert store.get("deployed_model_sha256") == SHA
    store.set("deployed_model_sha256", "unset")
    assert store.get("deployed_model_sha256") is None


def test_store_survives_reopen_and_is_valid_json(store):
    store.set("pipeline_paused.alpha", True)
    again = FlagStore(store.path, store.audit_log)
    assert again.get("pipeline_paused.alpha") is True
    assert "pipeline_paused.alpha" in [s.name for s in again.all()]
    assert json.loads(store.path.read_text())["schema_version"] == 1


def test_corrupt_store_is_an_input_error(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        store.get("reaper_enabled")


def test_cli_set_get_rollback_history(capsys):
    assert main(["flags", "set", "cost_gates_enabled", "false", "--reason", "incident 12"]) == 0
    assert main(["flags", "set", "cost_gates_enabled", "true"]) == 0
    assert main(["flags", "rollback", "cost_gates_enabled"]) == 0
    capsys.readouterr()
    assert main(["flags", "get", "cost_gates_enabled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] is False
    assert main(["flags", "history", "cost_gates_enabled", "--json"]) == 0
    assert [c["new_value"] for c in json.loads(capsys.readouterr().out)] == [False, True, False]
    assert flag_store().get("cost_gates_enabled") is False
    assert [r["event"] for r in audit_log().records()] == ["flag.set", "flag.set", "flag.rollback"]


def test_cli_unknown_flag_exits_2_with_hint(capsys):
    assert main(["flags", "get", "reaper_enabeld"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown flag") and "did you mean 'reaper_enabled'" in err


def test_served_precision_is_not_a_flag(capsys):
    """What is served is served_version.<model> and that version's costeff_build.json; a flag
    that claimed a precision and changed nothing is gone, and setting it is refused, not stored."""
    assert main(["flags", "set", "serve_precision", "int8-mixed"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown flag 'serve_precision'")
    assert not flag_store().path.exists()
