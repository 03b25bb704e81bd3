"""The signed audit trail: every kind of tampering is found, named and makes `audit verify` exit 1."""

import json
import os
import shutil
import stat

import pytest

from costeff.audit import AuditLog, keygen, load_signer, verify
from costeff.audit.log import GENESIS
from costeff.audit.sealed import seal
from costeff.cli import main
from workspace_support import env_home


@pytest.fixture(params=[1, 4], ids=["anchor-every-record", "anchor-every-4"])
def log(request, tmp_path):
    log = AuditLog(tmp_path / "audit", checkpoint_every=request.param, home=env_home())
    for i in range(10):
        log.append("test.event", {"i": i, "flag": "cost_gates_enabled"})
    log.checkpoint()  # a command anchors its head when it ends
    return log


def _lines(path):
    return path.read_bytes().splitlines(keepends=True)


def _write(path, lines):
    os.chmod(path, 0o644) if path.exists() else None
    path.write_bytes(b"".join(lines))


def _attacker(tmp_path):
    path, _, _ = keygen(tmp_path / "thief" / "key")
    return load_signer(path)


def _body(line):
    record = json.loads(line)
    record.pop("sha256"), record.pop("sig")
    return record


def _reseal(body, signer, key_id=None):
    line, _, _ = seal({**body, "key_id": key_id or body["key_id"]}, signer)
    return line


def _chain(line):
    import hashlib
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


# ---- the tampering kinds; each returns the line verify must name (None: any line) -------------

def edit_field(log, tmp):
    lines = _lines(log.path)
    lines[5] = lines[5].replace(b'"i":5', b'"i":6')
    _write(log.path, lines)
    return 6


def edit_field_and_rehash(log, tmp):
    import hashlib
    lines = _lines(log.path)
    line = lines[5].replace(b'"i":5', b'"i":6')
    body = line[:line.index(b',"sha256":"')] + b"}"
    lines[5] = line.replace(line[line.index(b'"sha256":"') + 10:][:64], hashlib.sha256(body).hexdigest().encode())
    _write(log.path, lines)
    return 6


def edit_and_resign_with_other_key_claiming_ours(log, tmp):
    lines = _lines(log.path)
    body = _body(lines[5])
    body["payload"]["flag"] = "reaper_enabled"
    lines[5] = _reseal(body, _attacker(tmp), key_id=body["key_id"])
    _write(log.path, lines)
    return 6


def reserialise_record(log, tmp):
    lines = _lines(log.path)
    lines[2] = (json.dumps(json.loads(lines[2]), indent=None) + "\n").encode()
    _write(log.path, lines)
    return 3


def swap_middle_records(log, tmp):
    lines = _lines(log.path)
    lines[3], lines[4] = lines[4], lines[3]
    _write(log.path, lines)
    return 4


def swap_first_two(log, tmp):
    lines = _lines(log.path)
    lines[0], lines[1] = lines[1], lines[0]
    _write(log.path, lines)
    return 1


def delete_middle(log, tmp):
    lines = _lines(log.path)
    del lines[4]
    _write(log.path, lines)
    return 5


def delete_first(log, tmp):
    _write(log.path, _lines(log.path)[1:])
    return 1


def delete_last(log, tmp):
    _write(log.path, _lines(log.path)[:-1])
    return 10


def delete_last_two(log, tmp):
    _write(log.path, _lines(log.path)[:-2])
    return 9


def delete_tail_and_local_checkpoints(log, tmp):
    _write(log.path, _lines(log.path)[:-3])
    _write(log.checkpoint_path, _lines(log.checkpoint_path)[:-1])
    return 8


def delete_tail_and_checkpoint_file(log, tmp):
    _write(log.path, _lines(log.path)[:-2])
    log.checkpoint_path.unlink()
    return 9


def empty_the_trail(log, tmp):
    _write(log.path, [])
    return 1


def delete_the_trail_file(log, tmp):
    log.path.unlink()
    return 1


def duplicate_a_record(log, tmp):
    lines = _lines(log.path)
    lines.insert(6, lines[5])
    _write(log.path, lines)
    return 7


def append_forged_rechained_without_key(log, tmp):
    lines = _lines(log.path)
    last = _body(lines[-1])
    body = {**last, "seq": last["seq"] + 1, "event": "reaper.action",
            "payload": {"mode": "apply", "action": "reap", "changed": True},
            "prev_sha256": _chain(lines[-1])}
    _write(log.path, lines + [_reseal(body, _attacker(tmp), key_id=last["key_id"])])
    return 11


def append_forged_signed_with_own_key(log, tmp):
    lines = _lines(log.path)
    last, thief = _body(lines[-1]), _attacker(tmp)
    body = {**last, "seq": last["seq"] + 1, "prev_sha256": _chain(lines[-1])}
    _write(log.path, lines + [_reseal(body, thief, key_id=thief.key_id)])
    return 11


def rewrite_middle_and_rechain_rest(log, tmp):
    lines, thief = _lines(log.path), _attacker(tmp)
    prev = _chain(lines[3])
    for i in range(4, len(lines)):
        body = _body(lines[i])
        body["prev_sha256"] = prev
        if i == 4:
            body["payload"]["flag"] = "forged"
        lines[i] = _reseal(body, thief)
        prev = _chain(lines[i])
    _write(log.path, lines)
    return 5


def replace_whole_trail_with_other_key(log, tmp):
    other = AuditLog(tmp / "other", signer=_attacker(tmp), anchor=None)
    for i in range(10):
        other.append("test.event", {"i": i})
    shutil.copy(other.path, log.path)
    return 1


def rewrite_a_local_checkpoint(log, tmp):
    lines = _lines(log.checkpoint_path)
    body = _body(lines[0])
    body["line_sha256"] = "f" * 64
    lines[0] = _reseal(body, _attacker(tmp))
    _write(log.checkpoint_path, lines)
    return None


def append_forged_local_checkpoint(log, tmp):
    lines = _lines(log.checkpoint_path)
    last = _body(lines[-1])
    body = {**last, "seq": last["seq"] + 5, "prev_checkpoint_sha256": _chain(lines[-1])}
    _write(log.checkpoint_path, lines + [_reseal(body, _attacker(tmp))])
    return None


def plant_forged_checkpoint_in_anchor(log, tmp):
    folder = log.sink.root / log.trail_id()
    newest = sorted(folder.glob("*.json"))[-1]
    last = _body(newest.read_bytes())
    body = {**last, "seq": last["seq"] + 3, "prev_checkpoint_sha256": _chain(newest.read_bytes())}
    (folder / f"{last['seq'] + 3:012d}.json").write_bytes(_reseal(body, _attacker(tmp)))
    return None


def nan_in_a_line(log, tmp):
    lines = _lines(log.path)
    lines[3] = lines[3].replace(b'"i":3', b'"i":NaN')
    _write(log.path, lines)
    return 4


def non_utf8_line(log, tmp):
    lines = _lines(log.path)
    lines[3] = lines[3].replace(b'"cost_gates_enabled"', b'"cost_gates_\xff\xfeenabled"')
    _write(log.path, lines)
    return 4


def cut_last_line(log, tmp):
    data = log.path.read_bytes()
    _write(log.path, [data[:-40]])
    return 10


def blank_line_inserted(log, tmp):
    lines = _lines(log.path)
    lines.insert(2, b"\n")
    _write(log.path, lines)
    return 3


def strip_signature(log, tmp):
    lines = _lines(log.path)
    record = json.loads(lines[6])
    record.pop("sig")
    lines[6] = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    _write(log.path, lines)
    return 7


def change_key_id_only(log, tmp):
    lines = _lines(log.path)
    kid = json.loads(lines[2])["key_id"].encode()
    lines[2] = lines[2].replace(kid, b"0" * len(kid))
    _write(log.path, lines)
    return 3


def flip_signature_bytes(log, tmp):
    lines = _lines(log.path)
    sig = json.loads(lines[-1])["sig"].encode()
    lines[-1] = lines[-1].replace(sig, sig[::-1][:86] + b"==")
    _write(log.path, lines)
    return 10


TAMPERING = [edit_field, edit_field_and_rehash, edit_and_resign_with_other_key_claiming_ours, reserialise_record,
             swap_middle_records, swap_first_two, delete_middle, delete_first, delete_last, delete_last_two,
             delete_tail_and_local_checkpoints, delete_tail_and_checkpoint_file, empty_the_trail,
             delete_the_trail_file, duplicate_a_record, append_forged_rechained_without_key,
             append_forged_signed_with_own_key, rewrite_middle_and_rechain_rest, replace_whole_trail_with_other_key,
             rewrite_a_local_checkpoint, append_forged_local_checkpoint, plant_forged_checkpoint_in_anchor,
             nan_in_a_line, non_utf8_line, cut_last_line, blank_line_inserted, strip_signature, change_key_id_only,
             flip_signature_bytes]


def test_the_catalogue_holds_at_least_27_kinds():
    assert len(TAMPERING) >= 27


def test_intact_log_verifies_and_is_anchored(log, capsys):
    result = verify(log.directory, home=env_home())
    assert result.ok and result.records == 10 and result.head_sha256 == log.head()["line_sha256"]
    assert result.anchored_checkpoints == result.checkpoints >= 3 and result.anchored_through_seq == 9
    assert main(["audit", "verify", str(log.directory)]) == 0
    assert "audit OK: 10 records" in capsys.readouterr().out


@pytest.mark.parametrize("tamper", TAMPERING, ids=lambda f: f.__name__)
def test_tampering_is_detected_and_named(log, tmp_path, tamper, capsys):
    expected_line = tamper(log, tmp_path)
    result = verify(log.directory, home=env_home())
    assert not result.ok, tamper.__name__
    if expected_line is not None:
        assert result.first_bad_line == expected_line, result.reason
    assert main(["audit", "verify", str(log.directory)]) == 1
    assert "audit FAILED" in capsys.readouterr().out


def test_every_signature_mode_agrees(log, tmp_path):
    assert verify(log.directory, all_signatures=True, home=env_home()).signatures_checked >= 10
    rewrite_middle_and_rechain_rest(log, tmp_path)
    assert verify(log.directory, all_signatures=True, home=env_home()).first_bad_line == 5


def test_covered_records_skip_their_own_signature_check(log):
    result = verify(log.directory, home=env_home())
    assert result.ok and result.signatures_checked == 0  # the anchored head's signature vouches for all of them


def test_legacy_unsigned_trail_is_reported_as_such(tmp_path, capsys):
    folder = tmp_path / "legacy"
    folder.mkdir()
    record = {"seq": 0, "event": "flag.set", "payload": {}, "prev_sha256": GENESIS, "sha256": "a" * 64}
    (folder / "audit.jsonl").write_text(json.dumps(record) + "\n")
    result = verify(folder, home=env_home())
    assert not result.ok and result.legacy_unsigned and "unsigned" in result.reason
    assert main(["audit", "verify", str(folder)]) == 1
    # and nobody appends signed records on top of an unsigned history
    with pytest.raises(Exception, match="unsigned"):
        AuditLog(folder, home=env_home()).append("x", {})


def test_keygen_writes_private_key_0600_outside_artifacts(tmp_path, capsys):
    key = tmp_path / "keys" / "k"
    assert main(["audit", "keygen", "--key", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PUBLIC KEY" in (tmp_path / "keys" / "k.pub").read_text()
    assert main(["audit", "keygen", "--key", str(key)]) == 2  # never overwrites silently
    inside = tmp_path / "artifacts" / "keys" / "k"
    assert main(["audit", "keygen", "--key", str(inside)]) == 2
    assert "outside" in capsys.readouterr().err and not inside.exists()


def test_verify_with_an_explicit_public_key_elsewhere(log, tmp_path):
    pub = tmp_path / "costeff_home" / "keys" / "audit_ed25519.pub"
    copy = tmp_path / "auditor.pub"
    shutil.copy(pub, copy)
    assert verify(log.directory, pubkey=copy, home=env_home()).ok
    _, other_pub, _ = keygen(tmp_path / "other" / "k")
    assert not verify(log.directory, pubkey=other_pub, home=env_home()).ok


def test_missing_public_key_is_input_error(log, tmp_path, capsys):
    assert main(["audit", "verify", str(log.directory), "--pubkey", str(tmp_path / "nope.pub")]) == 2
    assert "no audit public key" in capsys.readouterr().err


def test_anchor_lost_is_reported_unless_no_anchor(log, tmp_path, capsys):
    elsewhere = tmp_path / "empty_anchor"
    assert main(["audit", "verify", str(log.directory), "--anchor", str(elsewhere)]) == 1
    assert "no anchored checkpoint" in capsys.readouterr().out
    assert main(["audit", "verify", str(log.directory), "--no-anchor"]) == 0


def test_anchor_files_are_read_only_and_never_overwritten(log):
    folder = log.sink.root / log.trail_id()
    files = sorted(folder.glob("*.json"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    from costeff.errors import DependencyError
    with pytest.raises(DependencyError, match="never overwritten"):
        log.sink.publish(log.trail_id(), int(files[0].stem), b"other bytes\n")


def test_records_are_written_as_signed_exact_bytes(log):
    signer = log.signer
    for line in _lines(log.path):
        body = line[:line.index(b',"sha256":"')] + b"}"
        import base64
        assert signer.verifier().verify(base64.b64decode(json.loads(line)["sig"]), body)


def test_nan_payload_is_written_as_null_and_verifies(tmp_path):
    log = AuditLog(tmp_path / "audit", home=env_home())
    log.append("x", {"v": float("nan")})
    assert log.records()[0]["payload"] == {"v": None} and verify(log.directory, home=env_home()).ok


def test_cli_verify_missing_log_is_input_error(tmp_path, capsys):
    assert main(["audit", "verify", str(tmp_path / "nope")]) == 2
    assert "no audit log" in capsys.readouterr().err


def test_batch_checkpoints_once(tmp_path):
    log = AuditLog(tmp_path / "audit", home=env_home())
    with log.batch():
        for i in range(5):
            log.append("e", {"i": i})
    assert len(_lines(log.checkpoint_path)) == 1 and verify(log.directory, home=env_home()).ok


def test_a_key_named_by_the_environment_is_never_invented(tmp_path, monkeypatch, capsys):
    """In a pod the key is a mounted Secret: a missing mount must stop the daemon, not start a new key
    whose records the published public key cannot verify."""
    from costeff.cli import main

    missing = tmp_path / "secret" / "audit_ed25519"
    monkeypatch.setenv("COSTEFF_AUDIT_KEY", str(missing))
    assert main(["flags", "set", "reaper_enabled", "false"]) == 2
    err = capsys.readouterr().err
    assert f"COSTEFF_AUDIT_KEY={missing}: no such key" in err and "Traceback" not in err
    assert not missing.exists() and not missing.parent.exists()
    assert main(["audit", "keygen", "--key", str(missing)]) == 0
    assert main(["flags", "set", "reaper_enabled", "false"]) == 0
