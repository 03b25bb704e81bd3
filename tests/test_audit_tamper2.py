"""Tampering against the whole system: the trail, its checkpoints, its anchor and the commands that act on it.

Every kind below leaves artifacts/audit in a state an attacker could reach without the
signing key (or with a key change nobody announced). For each: `costeff audit verify`
exits 1, and no acting command (`reap restore --apply`, `flags rollback`, `flags set`)
changes anything: each refuses with exit 2 and one `error:` line, appending nothing.
"""

import contextlib
import hashlib
import json
import os
import shutil
from types import SimpleNamespace

import pytest

from costeff.audit import AuditLog, keygen, load_signer
from costeff.audit.anchor import sink_from_uri
from costeff.audit.keyring import ACCEPTED, ROTATED, rotation_payload
from costeff.audit.sealed import seal
from costeff.cli import main
from costeff.flags import FlagStore
from costeff.audit.keys import home_signer
from workspace_support import audit_log, flag_store, env_home


def _reap(action_id="a1", name="etl"):
    spec = {"resource": name, "kind": "pipeline", "name": name, "namespace": "default", "labels": [],
            "gpus_per_replica": 1.0, "gpu_index": 0, "power_limit_w": None, "usd_per_hour": 3.0,
            "protected_by_schedule": True}
    return {"mode": "apply", "action": "reap", "target": f"pipeline/{name}", "resource": name, "target_spec": spec,
            "changed": True, "before": {"paused": False}, "after": {"paused": True}, "action_id": action_id,
            "usd_per_hour_saved": 3.0}


@pytest.fixture
def trail(tmp_path):
    """A genuine trail: etl paused by the reaper (an open reap), cost gates set false then true."""
    store = flag_store()
    store.set("pipeline_paused.etl", True, actor="costeff-reaper")
    audit_log().append("reaper.action", _reap(), actor="costeff-reaper")
    store.set("cost_gates_enabled", False)
    store.set("cost_gates_enabled", True)
    log = audit_log()
    return SimpleNamespace(log=log, store=store, tmp=tmp_path, anchor=log.sink.root)


# ---- helpers an attacker would use -------------------------------------------------------------

def _lines(path):
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def _write(path, lines):
    path.write_bytes(b"".join(lines))


def _chain(line):
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _body(line):
    record = json.loads(line)
    record.pop("sha256"), record.pop("sig")
    return record


def _thief(t):
    return load_signer(keygen(t.tmp / "thief" / "key", force=True)[0])


def _next_body(lines, event="reaper.action", payload=None, key_id=None):
    last = _body(lines[-1])
    return {"seq": last["seq"] + 1, "ts": last["ts"], "event": event, "actor": "costeff-reaper",
            "host": last["host"], "payload": payload if payload is not None else _reap("ghost", "ghost"),
            "prev_sha256": _chain(lines[-1]), "key_id": key_id or last["key_id"]}


def _append_sealed(t, signer, key_id=None, event="reaper.action", payload=None):
    lines = _lines(t.log.path)
    body = _next_body(lines, event, payload, key_id or signer.key_id)
    _write(t.log.path, lines + [seal(body, signer)[0]])


def _append_unsigned(t):
    lines = _lines(t.log.path)
    body = _next_body(lines)
    body["sha256"] = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    _write(t.log.path, lines + [json.dumps(body, separators=(",", ":")).encode() + b"\n"])


def _other_trail(t, anchor=None, signer=None):
    """Another genuine trail, written by costeff itself in another folder."""
    other = AuditLog(t.tmp / "other" / "audit", signer=signer,
                     **({"anchor": str(anchor)} if anchor is not None else {}), home=env_home())
    store = FlagStore(t.tmp / "other" / "flags.json", other)
    store.set("cost_gates_enabled", False)
    other.append("reaper.action", _reap("b1"), actor="costeff-reaper")
    store.set("cost_gates_enabled", "false")
    store.set("cost_gates_enabled", True)
    return other


def _replace_with(t, other):
    for name in ("audit.jsonl", "audit.checkpoints.jsonl"):
        shutil.copy(other.directory / name, t.log.directory / name)


def _anchored(t):
    return sorted((t.anchor / t.log.trail_id()).glob("*.json"))


def _writable(path):
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644) if path.exists() else None


# ---- writers that would once have laundered a forged record with a fresh checkpoint ------------

def _w_flags_set_cli(t):
    main(["flags", "set", "reaper_enabled", "false"])


def _w_flags_rollback(t):
    with contextlib.suppress(Exception):
        flag_store().rollback("cost_gates_enabled")


def _w_reaper_stopped(t):
    with contextlib.suppress(Exception):
        audit_log().append("reaper.stopped", {"ticks": 3, "mode": "apply", "signal": 15}, actor="costeff-reaper")


def _w_checkpoint(t):
    with contextlib.suppress(Exception):
        audit_log().checkpoint()


def _w_batch(t):
    with contextlib.suppress(Exception), audit_log().batch() as log:
        log.append("reaper.replay", {"i": 1})


def _w_keygen_rotate(t):
    main(["audit", "keygen", "--force"])


WRITERS = [_w_flags_set_cli, _w_flags_rollback, _w_reaper_stopped, _w_checkpoint, _w_batch, _w_keygen_rotate]


# ---- the tampering kinds ---------------------------------------------------------------------

def _forged_unsigned(t):
    _append_unsigned(t)


def _forged_thief_claims_our_key(t):
    _append_sealed(t, _thief(t), key_id=home_signer(env_home()).key_id)


def _forged_thief_own_key(t):
    _append_sealed(t, _thief(t))


def _forged_garbage_signature(t):
    lines = _lines(t.log.path)
    line = seal(_next_body(lines), _thief(t))[0]
    _write(t.log.path, lines + [line[:-91] + b"A" * 88 + b'"}\n'])


def _forged_flag_value(t):
    _append_sealed(t, _thief(t), key_id=home_signer(env_home()).key_id, event="flag.set",
                   payload={"flag": "cost_gates_enabled", "old_value": True, "new_value": False, "version": 1,
                            "reason": "", "action": "set", "rolled_back_to": None})


def _laundered(forge, writer):
    def kind(t):
        forge(t)
        writer(t)
    kind.__name__ = f"{forge.__name__.lstrip('_')}_then_{writer.__name__[3:]}"
    return kind


def _laundered_by_old_style_checkpoint(t):
    """What a costeff that did not verify before checkpointing would have signed over a forged record."""
    _append_sealed(t, _thief(t), key_id=home_signer(env_home()).key_id)
    ours, lines, cps = home_signer(env_home()), _lines(t.log.path), _lines(t.log.checkpoint_path)
    body = {"seq": len(lines) - 1, "line_sha256": _chain(lines[-1]), "ts": "2026-01-01T00:00:00Z",
            "trail": t.log.trail_id(), "prev_checkpoint_sha256": _chain(cps[-1]), "key_id": ours.key_id}
    line = seal(body, ours)[0]
    sink_from_uri(str(t.anchor)).publish(t.log.trail_id(), body["seq"], line)
    _write(t.log.checkpoint_path, cps + [line])


def _emptied_both(t):
    _write(t.log.path, [])
    _write(t.log.checkpoint_path, [])


def _emptied_trail_only(t):
    _write(t.log.path, [])


def _deleted_both_files(t):
    t.log.path.unlink()
    t.log.checkpoint_path.unlink()


def _deleted_audit_folder(t):
    shutil.rmtree(t.log.directory)


def _truncated_to_first(t):
    _write(t.log.path, _lines(t.log.path)[:1])
    _write(t.log.checkpoint_path, _lines(t.log.checkpoint_path)[:1])


def _truncated_last_with_checkpoint(t):
    _write(t.log.path, _lines(t.log.path)[:-1])
    _write(t.log.checkpoint_path, _lines(t.log.checkpoint_path)[:-1])


def _truncated_last_keeping_checkpoints(t):
    _write(t.log.path, _lines(t.log.path)[:-1])


def _replaced_by_other_trail_same_key_same_anchor(t):
    _replace_with(t, _other_trail(t))


def _replaced_by_other_trail_same_key_other_anchor(t):
    _replace_with(t, _other_trail(t, anchor=t.tmp / "staging-anchor"))


def _replaced_by_other_trail_other_key(t):
    _replace_with(t, _other_trail(t, anchor=t.tmp / "thief-anchor", signer=_thief(t)))


def _replaced_trail_keeping_our_checkpoints(t):
    shutil.copy(_other_trail(t).path, t.log.path)


def _swapped_two_records(t):
    lines = _lines(t.log.path)
    lines[1], lines[2] = lines[2], lines[1]
    _write(t.log.path, lines)


def _reversed_records(t):
    _write(t.log.path, _lines(t.log.path)[::-1])


def _duplicated_middle_record(t):
    lines = _lines(t.log.path)
    _write(t.log.path, lines[:2] + [lines[1]] + lines[2:])


def _replayed_last_record(t):
    lines = _lines(t.log.path)
    _write(t.log.path, lines + [lines[-1]])


def _deleted_middle_record(t):
    lines = _lines(t.log.path)
    _write(t.log.path, lines[:1] + lines[2:])


def _spliced_record_from_other_trail(t):
    lines, other = _lines(t.log.path), _lines(_other_trail(t).path)
    lines[1] = other[1]
    _write(t.log.path, lines)


def _appended_record_from_other_trail(t):
    other = _lines(_other_trail(t).path)
    _write(t.log.path, _lines(t.log.path) + [other[-1]])


def _unannounced_key_change(t):
    """`audit keygen` of a new key in place of the old (no rotation), then records signed by it."""
    keygen(env_home().key, force=True)
    _append_sealed(t, home_signer(env_home()))


def _rotation_forged_by_thief(t):
    thief, ours = _thief(t), home_signer(env_home())
    _append_sealed(t, thief, key_id=ours.key_id, event=ROTATED,
                   payload=rotation_payload(ours.verifier(), thief.verifier()))
    _append_sealed(t, thief, event=ACCEPTED, payload={"key_id": thief.key_id})


def _rotation_without_acceptance(t):
    ours, new = home_signer(env_home()), _thief(t)
    _append_sealed(t, ours, event=ROTATED, payload=rotation_payload(ours.verifier(), new.verifier()))
    _append_sealed(t, new)


def _rotation_then_third_key(t):
    ours, new = home_signer(env_home()), _thief(t)
    third = load_signer(keygen(t.tmp / "third" / "key")[0])
    _append_sealed(t, ours, event=ROTATED, payload=rotation_payload(ours.verifier(), new.verifier()))
    _append_sealed(t, third, event=ACCEPTED, payload={"key_id": third.key_id})


def _rotation_record_edited(t):
    main(["audit", "keygen", "--force"])
    lines = _lines(t.log.path)
    i = next(n for n, line in enumerate(lines) if ROTATED.encode() in line)
    lines[i] = lines[i].replace(b'"new_key_id":"', b'"new_key_id":"0', 1)
    _write(t.log.path, lines)


def _acceptance_dropped_after_rotation(t):
    main(["audit", "keygen", "--force"])
    lines = _lines(t.log.path)
    _write(t.log.path, [line for line in lines if ACCEPTED.encode() not in line])


def _forged_local_checkpoint(t):
    _append_unsigned(t)
    cps = _lines(t.log.checkpoint_path)
    last = _body(cps[-1])
    lines = _lines(t.log.path)
    body = {**last, "seq": last["seq"] + 1, "line_sha256": _chain(lines[-1]), "prev_checkpoint_sha256": _chain(cps[-1])}
    _write(t.log.checkpoint_path, cps + [seal(body, _thief(t))[0]])


def _forged_checkpoint_in_anchor(t):
    _append_sealed(t, _thief(t), key_id=home_signer(env_home()).key_id)
    newest = _anchored(t)[-1]
    last = _body(newest.read_bytes())
    body = {**last, "seq": last["seq"] + 1, "line_sha256": _chain(_lines(t.log.path)[-1]),
            "prev_checkpoint_sha256": _chain(newest.read_bytes())}
    (newest.parent / f"{body['seq']:012d}.json").write_bytes(seal(body, _thief(t))[0])


def _rewritten_local_checkpoint(t):
    cps = _lines(t.log.checkpoint_path)
    body = _body(cps[0])
    body["line_sha256"] = "f" * 64
    cps[0] = seal(body, _thief(t))[0]
    _write(t.log.checkpoint_path, cps)


def _anchor_rolled_back(t):
    newest = _anchored(t)[-1]
    _writable(newest)
    newest.unlink()


def _anchor_of_trail_deleted(t):
    folder = t.anchor / t.log.trail_id()
    for path in folder.iterdir():
        _writable(path)
    shutil.rmtree(folder)


def _anchor_identity_rewritten(t):
    path = next((t.anchor / "identity").rglob("*.json"))
    _writable(path)
    line = path.read_bytes().replace(b'"trail":"', b'"trail":"0', 1)
    path.write_bytes(line)


def _cut_last_line(t):
    _write(t.log.path, _lines(t.log.path)[:-1] + [_lines(t.log.path)[-1][:-40]])


def _blank_line_inserted(t):
    lines = _lines(t.log.path)
    _write(t.log.path, lines[:2] + [b"\n"] + lines[2:])


def _non_utf8_bytes(t):
    lines = _lines(t.log.path)
    lines[2] = lines[2].replace(b'"flag.set"', b'"flag.s\xff\xfe"')
    _write(t.log.path, lines)


def _nan_in_payload(t):
    lines = _lines(t.log.path)
    lines[1] = lines[1].replace(b'"usd_per_hour_saved":3.0', b'"usd_per_hour_saved":NaN')
    _write(t.log.path, lines)


def _edited_flag_value(t):
    lines = _lines(t.log.path)
    lines[2] = lines[2].replace(b'"new_value":false', b'"new_value":true')
    _write(t.log.path, lines)


def _edited_and_rehashed(t):
    lines = _lines(t.log.path)
    line = lines[1].replace(b'"paused":false', b'"paused":true', 1)
    body = line[:line.index(b',"sha256":"')] + b"}"
    old = line[line.index(b'"sha256":"') + 10:][:64]
    lines[1] = line.replace(old, hashlib.sha256(body).hexdigest().encode())
    _write(t.log.path, lines)


def _reserialised_record(t):
    lines = _lines(t.log.path)
    lines[1] = json.dumps(json.loads(lines[1])).encode() + b"\n"
    _write(t.log.path, lines)


def _stripped_signature(t):
    lines = _lines(t.log.path)
    record = json.loads(lines[-1])
    record.pop("sig")
    lines[-1] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    _write(t.log.path, lines)


def _changed_key_id(t):
    lines = _lines(t.log.path)
    body = _body(lines[1])
    body["key_id"] = "0" * 16
    lines[1] = seal(body, _thief(t))[0]
    _write(t.log.path, lines)


def _flipped_signature_byte(t):
    lines = _lines(t.log.path)
    i = lines[1].index(b'"sig":"') + 7
    lines[1] = lines[1][:i] + (b"B" if lines[1][i:i + 1] != b"B" else b"C") + lines[1][i + 1:]
    _write(t.log.path, lines)


def _resigned_whole_trail_with_thief(t):
    thief, lines, prev = _thief(t), _lines(t.log.path), "0" * 64
    for i, line in enumerate(lines):
        body = {**_body(line), "prev_sha256": prev, "key_id": thief.key_id}
        lines[i] = seal(body, thief)[0]
        prev = _chain(lines[i])
    _write(t.log.path, lines)


FORGERIES = [_forged_unsigned, _forged_thief_claims_our_key, _forged_thief_own_key, _forged_garbage_signature,
             _forged_flag_value]
TAMPERING = (
    FORGERIES
    + [_laundered(_forged_unsigned, w) for w in WRITERS]
    + [_laundered(_forged_thief_claims_our_key, w) for w in WRITERS]
    + [_laundered(_forged_flag_value, w) for w in (_w_flags_set_cli, _w_reaper_stopped)]
    + [_laundered_by_old_style_checkpoint, _emptied_both, _emptied_trail_only, _deleted_both_files,
       _deleted_audit_folder, _truncated_to_first, _truncated_last_with_checkpoint,
       _truncated_last_keeping_checkpoints, _replaced_by_other_trail_same_key_same_anchor,
       _replaced_by_other_trail_same_key_other_anchor, _replaced_by_other_trail_other_key,
       _replaced_trail_keeping_our_checkpoints, _swapped_two_records, _reversed_records, _duplicated_middle_record,
       _replayed_last_record, _deleted_middle_record, _spliced_record_from_other_trail,
       _appended_record_from_other_trail, _unannounced_key_change, _rotation_forged_by_thief,
       _rotation_without_acceptance, _rotation_then_third_key, _rotation_record_edited,
       _acceptance_dropped_after_rotation, _forged_local_checkpoint, _forged_checkpoint_in_anchor,
       _rewritten_local_checkpoint, _anchor_rolled_back, _anchor_of_trail_deleted, _anchor_identity_rewritten,
       _cut_last_line, _blank_line_inserted, _non_utf8_bytes, _nan_in_payload, _edited_flag_value,
       _edited_and_rehashed, _reserialised_record, _stripped_signature, _changed_key_id, _flipped_signature_byte,
       _resigned_whole_trail_with_thief])
KIND_IDS = [k.__name__.lstrip("_") for k in TAMPERING]


def test_the_catalogue_holds_at_least_50_kinds():
    assert len(TAMPERING) >= 50 and len(set(KIND_IDS)) == len(KIND_IDS)


def test_the_genuine_trail_verifies_and_every_acting_command_acts(trail, capsys):
    assert main(["audit", "verify"]) == 0
    assert main(["reap", "restore", "--apply"]) == 0
    assert trail.store.get("pipeline_paused.etl") is False
    assert main(["flags", "rollback", "cost_gates_enabled"]) == 0
    assert trail.store.get("cost_gates_enabled") is False
    assert main(["flags", "set", "reaper_enabled", "false"]) == 0
    assert main(["audit", "verify", "--all-signatures"]) == 0


@pytest.mark.parametrize("tamper", TAMPERING, ids=KIND_IDS)
def test_every_kind_fails_verification(trail, tamper, capsys):
    tamper(trail)
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1, capsys.readouterr()
    assert "audit FAILED" in capsys.readouterr().out
    assert main(["audit", "verify", "--all-signatures"]) == 1


def _refuses(argv, capsys):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("tamper", TAMPERING, ids=KIND_IDS)
def test_no_acting_command_acts_on_a_bad_trail(trail, tamper, capsys):
    tamper(trail)
    flags = trail.store.path.read_bytes()
    before = trail.log.path.read_bytes() if trail.log.path.exists() else None
    _refuses(["reap", "restore", "--apply"], capsys)
    _refuses(["flags", "rollback", "cost_gates_enabled"], capsys)
    _refuses(["flags", "set", "cost_gates_enabled", "false"], capsys)
    assert trail.store.path.read_bytes() == flags  # no flag changed: etl stays paused, gates stay on
    assert (trail.log.path.read_bytes() if trail.log.path.exists() else None) == before  # nothing appended


@pytest.mark.parametrize("tamper", [_forged_thief_claims_our_key, _laundered(_forged_unsigned, _w_flags_set_cli),
                                    _emptied_both, _replaced_by_other_trail_same_key_same_anchor,
                                    _unannounced_key_change], ids=lambda k: k.__name__.lstrip("_"))
def test_triton_rollback_refuses_a_bad_trail(tmp_path, tamper, capsys):
    from test_serving_versions import _build, _served

    _build(tmp_path, 1), _build(tmp_path, 2)
    config = (tmp_path / "repo" / "policy" / "config.pbtxt").read_bytes()
    t = SimpleNamespace(log=audit_log(), store=flag_store(), tmp=tmp_path, anchor=audit_log().sink.root)
    tamper(t)
    _refuses(["triton", "rollback", "--repository", str(tmp_path / "repo"), "--name", "policy"], capsys)
    assert _served(tmp_path) == [2] and flag_store().get("served_version.policy") == 2
    assert (tmp_path / "repo" / "policy" / "config.pbtxt").read_bytes() == config
