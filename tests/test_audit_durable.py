"""Appends are whole and durable, writers verify before they sign over records, keys rotate in the trail,
and what an acting command verified is what it acts on."""

import errno
import os
import shutil
import subprocess

import pytest

from costeff.audit import AuditLog, verify
from costeff.cli import main
from costeff.errors import DependencyError, InputError
from costeff.audit.keys import home_signer
from workspace_support import audit_log, flag_store, env_home


def _unsigned_line(log):
    last = log.records()[-1]
    return ('{"seq":%d,"event":"reaper.action","payload":{"mode":"apply"},"sha256":"%s"}\n'
            % (last["seq"] + 1, "a" * 64)).encode()


# ---- writers refuse to sign over what they did not verify ---------------------------------------

def test_flags_set_refuses_after_an_unsigned_append_and_verify_still_fails(capsys):
    flag_store().set("cost_gates_enabled", False)
    log = audit_log()
    with open(log.path, "ab") as fh:
        fh.write(_unsigned_line(log))
    trail, checkpoints = log.path.read_bytes(), log.checkpoint_path.read_bytes()
    capsys.readouterr()
    assert main(["flags", "set", "reaper_enabled", "false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "line 2" in err and "unsigned" in err
    assert log.path.read_bytes() == trail and log.checkpoint_path.read_bytes() == checkpoints
    assert flag_store().get("reaper_enabled") is True
    assert main(["audit", "verify"]) == 1


def test_a_writer_checks_only_records_since_its_last_verified_checkpoint(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "audit", home=env_home())
    for i in range(20):
        log.append("e", {"i": i})
    checked = []
    real = type(log.signer.verifier()).verify
    monkeypatch.setattr(type(log.signer.verifier()), "verify", lambda self, sig, data: checked.append(1) or
                        real(self, sig, data))
    # a new process: resumes from the anchored checkpoint
    AuditLog(tmp_path / "audit", home=env_home()).append("e", {"i": 20})
    assert len(checked) <= 2  # the checkpoint's own signature, not twenty records'


def test_a_checkpoint_the_anchor_does_not_hold_is_no_resume_point(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "audit", home=env_home())
    for i in range(5):
        log.append("e", {"i": i})
    folder = log.sink.root / log.trail_id()
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    shutil.rmtree(folder)  # the anchor no longer confirms the local checkpoints
    checked = []
    real = type(log.signer.verifier()).verify
    monkeypatch.setattr(type(log.signer.verifier()), "verify", lambda self, sig, data: checked.append(1) or
                        real(self, sig, data))
    AuditLog(tmp_path / "audit", home=env_home()).append("e", {"i": 5})
    assert len(checked) >= 5  # every record checked again, from the first
    assert not verify(tmp_path / "audit", home=env_home()).ok  # and the lost anchor is still reported


# ---- key rotation ---------------------------------------------------------------------------------

def test_keygen_force_rotates_the_trail_and_both_keys_verify(tmp_path, capsys):
    flag_store().set("cost_gates_enabled", False)
    old_pub = tmp_path / "old.pub"
    shutil.copy(env_home().pubkey, old_pub)
    old_id = home_signer(env_home()).key_id
    assert main(["audit", "keygen", "--force"]) == 0
    assert "rotation record" in capsys.readouterr().out
    assert home_signer(env_home()).key_id != old_id
    flag_store().set("cost_gates_enabled", True)  # the new key appends after its acceptance
    events = [r["event"] for r in audit_log().records()]
    assert events == ["flag.set", "audit.key_rotated", "audit.key_accepted", "flag.set"]
    for pub in (None, old_pub):
        result = verify(audit_log().directory, pub, all_signatures=True, home=env_home())
        assert result.ok, result.reason
    assert main(["flags", "rollback", "cost_gates_enabled"]) == 0  # acting commands accept a rotated trail
    assert flag_store().get("cost_gates_enabled") is False


def test_keygen_force_on_a_bad_trail_keeps_the_old_key(capsys):
    flag_store().set("cost_gates_enabled", False)
    log = audit_log()
    with open(log.path, "ab") as fh:
        fh.write(_unsigned_line(log))
    old = home_signer(env_home()).key_id
    assert main(["audit", "keygen", "--force"]) == 2
    assert home_signer(env_home()).key_id == old and not list(env_home().key.parent.glob("*.new*"))


def test_a_new_key_without_rotation_is_refused_by_writers(capsys):
    from costeff.audit import keygen

    flag_store().set("cost_gates_enabled", False)
    before = audit_log().path.read_bytes()
    keygen(env_home().key, force=True)  # the key replaced behind costeff's back
    assert main(["flags", "set", "cost_gates_enabled", "true"]) == 2
    with pytest.raises(InputError, match="nor announced by a rotation record"):
        audit_log().append("reaper.stopped", {})
    assert audit_log().path.read_bytes() == before


# ---- what is verified is what is acted on ----------------------------------------------------------

def test_a_trail_swapped_in_during_verification_is_not_acted_on(monkeypatch):
    store = flag_store()
    store.set("cost_gates_enabled", False)
    store.set("cost_gates_enabled", True)
    log = audit_log()
    genuine = log.path.read_bytes()
    forged = genuine.replace(b'"new_value":false', b'"new_value":"forged"')
    import sys

    verify_module = sys.modules["costeff.audit.verify"]

    real_run = verify_module._Scan.run

    def swap_then_run(self, lines, pins):
        log.path.write_bytes(forged)  # the attacker swaps the file while verification runs
        return real_run(self, lines, pins)

    monkeypatch.setattr(verify_module._Scan, "run", swap_then_run)
    records = audit_log().verified_records()
    assert b"forged" not in b"".join(str(r).encode() for r in records)
    assert [r["payload"]["new_value"] for r in records] == [False, True]


def test_repeated_reads_verify_only_what_was_appended(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "audit", home=env_home())
    for i in range(30):
        log.append("e", {"i": i})
    reader = AuditLog(tmp_path / "audit", home=env_home())
    assert len(reader.verified_records()) == 30
    log.append("e", {"i": 30})
    checked = []
    real = type(log.signer.verifier()).verify
    monkeypatch.setattr(type(log.signer.verifier()), "verify", lambda self, sig, data: checked.append(1) or
                        real(self, sig, data))
    assert [r["payload"]["i"] for r in reader.verified_records()][-2:] == [29, 30]
    assert len(checked) <= 2  # the new record's signature and the anchored identity's, not thirty
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"i":3', b'"i":4')
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(InputError, match="line 4"):
        reader.verified_records()  # an edit behind what it verified: the full check runs again


def test_a_tail_cut_off_behind_a_reader_is_seen(tmp_path):
    log = AuditLog(tmp_path / "audit", home=env_home())
    for i in range(5):
        log.append("e", {"i": i})
    reader = AuditLog(tmp_path / "audit", home=env_home())
    reader.verified_records()
    keep = log.path.read_bytes()
    log.append("e", {"i": 5})
    log.append("e", {"i": 6})
    log.path.write_bytes(keep + log.path.read_bytes()[len(keep):].splitlines(keepends=True)[0])
    with pytest.raises(InputError, match="truncated"):
        reader.verified_records()


# ---- durable appends: a short write or a full disk leaves nothing half written --------------------

@pytest.mark.parametrize("failure", ["short", "enospc"])
def test_a_failed_append_is_cut_back_and_the_trail_keeps_working(failure, monkeypatch, capsys):
    flag_store().set("cost_gates_enabled", False)
    log = audit_log()
    trail, flags = log.path.read_bytes(), flag_store().path.read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        if len(data) < 200 or not os.readlink(f"/proc/self/fd/{fd}").endswith("audit.jsonl"):
            return real_write(fd, data)
        if failure == "short":
            return real_write(fd, data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    capsys.readouterr()
    assert main(["flags", "set", "cost_gates_enabled", "true"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "audit.jsonl" in err and "cut back" in err
    assert log.path.read_bytes() == trail  # not one byte of the cut line is left
    assert flag_store().path.read_bytes() == flags
    monkeypatch.setattr(os, "write", real_write)  # space freed
    assert main(["flags", "set", "cost_gates_enabled", "true"]) == 0
    assert flag_store().get("cost_gates_enabled") is True and main(["audit", "verify"]) == 0


def test_a_recorded_change_the_flag_file_never_got_is_reconciled(monkeypatch, capsys):
    import costeff.flags.store as store_module

    store = flag_store()
    store.set("pipeline_paused.etl", True, actor="costeff-reaper")
    real = store_module.atomic_write_json
    monkeypatch.setattr(store_module, "atomic_write_json",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(DependencyError, match="next flag change applies it"):
        store.set("pipeline_paused.etl", False, actor="costeff-reaper")  # the record is durable, the file is not
    monkeypatch.setattr(store_module, "atomic_write_json", real)
    assert store.get("pipeline_paused.etl") is True  # the file as it was
    store.set("cost_gates_enabled", False)  # the next change reconciles first
    assert store.get("pipeline_paused.etl") is False
    assert [h.version for h in store.history("pipeline_paused.etl")] == [1, 2]
    assert main(["audit", "verify"]) == 0


def test_a_real_full_filesystem(tmp_path, capsys):
    """On a 64 KiB tmpfs: an append that does not fit fails whole, and the trail verifies after space is freed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this environment does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
    try:
        log = AuditLog(mnt / "audit", anchor=str(tmp_path / "anchor"), home=env_home())
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * 24 * 1024)
        with pytest.raises(DependencyError):
            for i in range(10_000):
                log.append("e", {"i": i, "pad": "x" * 300})
        assert log.path.read_bytes().endswith(b"\n")  # no half line left behind
        filler.unlink()  # space freed
        log.append("e", {"after": "space freed"})
        assert verify(mnt / "audit", anchor=str(tmp_path / "anchor"), home=env_home()).ok
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_cut_anchor_write_leaves_nothing_that_blocks_the_retry(tmp_path, monkeypatch):
    from costeff.audit.anchor import DirectorySink

    sink, real_write = DirectorySink(tmp_path / "anchor"), os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(DependencyError, match="short write"):
        sink.publish("t", 0, b'{"a":1}' * 10 + b"\n")
    monkeypatch.setattr(os, "write", real_write)
    assert sink.checkpoint("t", 0) is None
    sink.publish("t", 0, b'{"a":1}' * 10 + b"\n")
    assert sink.checkpoint("t", 0) == b'{"a":1}' * 10 + b"\n"


def test_a_trail_from_before_attested_checkpoints_keeps_verifying(tmp_path):
    """Checkpoints written by an earlier costeff (no `records_verified`) pin bytes but vouch for no signature:
    verify checks every record; the first append re-checks them all and attests from then on."""
    from costeff.audit.anchor import DirectorySink
    from costeff.audit.log import GENESIS
    from costeff.audit.sealed import seal

    signer, sink, folder = home_signer(env_home()), DirectorySink(tmp_path / "home_anchor"), tmp_path / "old"
    folder.mkdir()
    prev, prev_cp, trail, lines, cps = GENESIS, GENESIS, None, [], []
    for seq in range(6):
        line, _, prev = seal({"seq": seq, "ts": "t", "event": "e", "actor": "a", "host": "h", "payload": {},
                              "prev_sha256": prev, "key_id": signer.key_id}, signer)
        trail = trail or prev
        cp, _, prev_cp = seal({"seq": seq, "line_sha256": prev, "ts": "t", "trail": trail,
                               "prev_checkpoint_sha256": prev_cp, "key_id": signer.key_id}, signer)
        sink.publish(trail, seq, cp)
        lines.append(line), cps.append(cp)
    (folder / "audit.jsonl").write_bytes(b"".join(lines))
    (folder / "audit.checkpoints.jsonl").write_bytes(b"".join(cps))
    result = verify(folder, anchor=sink, home=env_home())
    assert result.ok and result.signatures_checked == 6
    assert any("no identity" in w for w in result.warnings)
    AuditLog(folder, anchor=sink, home=env_home()).append("e", {"new": True})
    result = verify(folder, anchor=sink, home=env_home())
    assert result.ok and result.signatures_checked == 0 and not result.warnings  # attested and identified now


def test_a_writer_refuses_a_trail_cut_back_below_its_checkpoints(tmp_path):
    log = AuditLog(tmp_path / "audit", home=env_home())
    for i in range(4):
        log.append("e", {"i": i})
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:2]))
    log.checkpoint_path.write_bytes(b"".join(log.checkpoint_path.read_bytes().splitlines(keepends=True)[:2]))
    before = log.path.read_bytes()
    with pytest.raises(InputError, match="truncated"):
        # the anchor still holds record 2's checkpoint
        AuditLog(tmp_path / "audit", home=env_home()).append("reaper.stopped", {})
    assert log.path.read_bytes() == before
