"""A forged or edited audit record can no longer make costeff change infrastructure or flags."""

import hashlib
import json

from costeff.audit import keygen, load_signer
from costeff.audit.sealed import seal
from costeff.cli import main
from workspace_support import audit_log, flag_store


def _open_pipeline_reap(action_id="a1"):
    spec = {"resource": "etl", "kind": "pipeline", "name": "etl", "namespace": "default", "labels": [],
            "gpus_per_replica": 1.0, "gpu_index": 0, "power_limit_w": None, "usd_per_hour": 3.0,
            "protected_by_schedule": True}
    return {"mode": "apply", "action": "reap", "target": "pipeline/etl", "resource": "etl", "target_spec": spec,
            "changed": True, "before": {"paused": False}, "after": {"paused": True}, "action_id": action_id,
            "usd_per_hour_saved": 3.0}


def _forge_append(log, payload, tmp_path):
    """What an attacker without the key can do: a record with the right seq, chain and key id, signed by another key."""
    thief = load_signer(keygen(tmp_path / "thief" / "k")[0])
    raw = log.path.read_bytes().splitlines()[-1]
    last = json.loads(raw)
    body = {"seq": last["seq"] + 1, "ts": last["ts"], "event": "reaper.action", "actor": "costeff-reaper",
            "host": last["host"], "payload": payload, "prev_sha256": hashlib.sha256(raw).hexdigest(),
            "key_id": last["key_id"]}
    line, _, _ = seal(body, thief)
    with open(log.path, "ab") as fh:
        fh.write(line)


def test_reap_restore_apply_refuses_a_forged_reap_record(tmp_path, capsys):
    store = flag_store()
    store.set("pipeline_paused.etl", True, reason="paused by hand")
    _forge_append(audit_log(), _open_pipeline_reap(), tmp_path)
    assert main(["reap", "restore", "--apply"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2" in err and "does not verify" in err
    assert store.get("pipeline_paused.etl") is True  # nothing was changed


def test_reap_restore_apply_acts_on_a_genuine_record(capsys):
    store = flag_store()
    store.set("pipeline_paused.etl", True, actor="costeff-reaper")
    audit_log().append("reaper.action", _open_pipeline_reap(), actor="costeff-reaper")
    assert main(["reap", "restore", "--apply"]) == 0
    assert store.get("pipeline_paused.etl") is False


def test_flags_rollback_takes_the_value_from_the_verified_trail(capsys):
    store = flag_store()
    store.set("cost_gates_enabled", False)
    store.set("cost_gates_enabled", True)
    # Edit the plain flag store: version 1 now claims the value was "true".
    data = json.loads(store.path.read_text())
    data["history"]["cost_gates_enabled"][0]["new_value"] = True
    store.path.write_text(json.dumps(data))
    assert main(["flags", "rollback", "cost_gates_enabled"]) == 0
    assert store.get("cost_gates_enabled") is False  # the signed record's value, not the edited one


def test_flags_rollback_refuses_a_tampered_trail(tmp_path, capsys):
    store = flag_store()
    store.set("cost_gates_enabled", False)
    store.set("cost_gates_enabled", True)
    log = audit_log()
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"new_value":false', b'"new_value":true')
    log.path.write_bytes(b"".join(lines))
    assert main(["flags", "rollback", "cost_gates_enabled"]) == 2
    assert "does not verify" in capsys.readouterr().err
    assert store.get("cost_gates_enabled") is True
