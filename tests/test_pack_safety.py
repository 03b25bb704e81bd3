"""Packs are signed, never follow links, and `pack --verify` refuses hostile archives in bounded memory."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from costeff.artifacts import atomic_write_json
from costeff.audit import keygen, load_signer
from costeff.cli import main
from costeff.pack import pack, verify_pack
from costeff.pack.bundle import read_pack, sign_manifest
from costeff.audit.keys import home_signer
from workspace_support import env_workspace, audit_log, env_home


@pytest.fixture
def layout(tmp_path):
    layout = env_workspace()
    folder = layout.quant / "20260101_000001Z"
    atomic_write_json(folder / "quantization_report.json", {"variants": []})
    atomic_write_json(layout.cost / "20260101_000000Z" / "gpu_profile.json", {"points": [], "optimal": {}})
    return layout


def _tar(path, members):
    """members: (TarInfo fields dict, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _members_of(pack_path):
    return [({"name": n}, d) for n, d in read_pack(pack_path).items()]


def test_pack_leaves_out_symlinks_and_hard_links_and_says_so(layout, tmp_path, capsys):
    folder = layout.quant / "20260101_000001Z"
    secret = tmp_path / "outside_secret.txt"
    secret.write_text("do not pack me")
    os.symlink("/etc/hostname", folder / "hostname.txt")
    os.symlink(tmp_path, folder / "escape_dir")
    os.link(secret, folder / "hardlinked.txt")
    assert main(["pack"]) == 0
    out = capsys.readouterr().out
    assert "left out" in out and "hostname.txt" in out and "hardlinked.txt" in out and "escape_dir" in out
    [tar_path] = layout.cost.glob("pack_*.tar.gz")
    names = set(read_pack(tar_path))
    assert not any("hostname" in n or "hardlinked" in n or "escape_dir" in n for n in names)
    assert b"do not pack me" not in b"".join(read_pack(tar_path).values())
    assert verify_pack(tar_path, env_home().pubkey).ok


def test_a_symlinked_stage_folder_is_not_followed(layout, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    atomic_write_json(elsewhere / "ramp_decision.json", {"decision": "PROMOTE"})
    layout.ramp.mkdir(parents=True)
    os.symlink(elsewhere, layout.ramp / "20260101_000009Z")
    result = pack(layout)
    assert not any(n.startswith("ramp/") for n in read_pack(result.path))
    assert any("symbolic link" in s for s in result.skipped)


@pytest.mark.parametrize("hostile, expect", [
    ({"name": "evil_link", "type": tarfile.SYMTYPE, "linkname": "/etc/hostname"}, "symbolic link"),
    ({"name": "evil_hard", "type": tarfile.LNKTYPE, "linkname": "manifest.json"}, "hard link"),
    ({"name": "/etc/cron.d/x"}, "absolute path"),
    ({"name": "../../escape.txt"}, "climbs out"),
    ({"name": "quant/../../escape.txt"}, "climbs out"),
    ({"name": "./quant/x"}, "canonical"),
    ({"name": "fifo", "type": tarfile.FIFOTYPE}, "not a regular file"),
    ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "not a regular file"),
    ({"name": "somedir", "type": tarfile.DIRTYPE}, "not a regular file"),
])
def test_verify_rejects_hostile_members(layout, tmp_path, hostile, expect, capsys):
    good = pack(layout).path
    data = None if hostile.get("type") in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE,
                                           tarfile.DIRTYPE) else b"x"
    bad = _tar(tmp_path / "bad.tar.gz", _members_of(good) + [(dict(hostile), data)])
    report = verify_pack(bad, env_home().pubkey)
    assert not report.ok and any(expect in p for p in report.problems), report.problems
    assert main(["pack", "--verify", str(bad)]) == 1
    assert "pack FAILED" in capsys.readouterr().out


def test_verify_rejects_duplicate_member_names(layout, tmp_path):
    good = pack(layout).path
    members = _members_of(good)
    shadow = ({"name": "quant/quantization_report.json"}, b'{"variants": [], "forged": true}')
    report = verify_pack(_tar(tmp_path / "dup.tar.gz", members + [shadow]), env_home().pubkey)
    assert not report.ok and any("appears twice" in p for p in report.problems)


def _edit_summary_and_manifest(good, tmp_path, signer=None):
    files = read_pack(good)
    files["COMPLETION_SUMMARY.md"] = files["COMPLETION_SUMMARY.md"].replace(b"criteria PASS", b"criteria PASS!!")
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["files"]:
        if entry["path"] == "COMPLETION_SUMMARY.md":
            entry["sha256"] = hashlib.sha256(files["COMPLETION_SUMMARY.md"]).hexdigest()
            entry["size"] = len(files["COMPLETION_SUMMARY.md"])
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    if signer is not None:
        files["manifest.sig"] = sign_manifest(files["manifest.json"], signer)
    return _tar(tmp_path / "edited.tar.gz", [({"name": n}, d) for n, d in files.items()])


def test_hand_edited_summary_with_recomputed_hash_fails(layout, tmp_path):
    report = verify_pack(_edit_summary_and_manifest(pack(layout).path, tmp_path), env_home().pubkey)
    assert not report.ok
    assert any("signature does not verify" in p for p in report.problems)
    assert any("regenerated" in p for p in report.problems)


def test_resigned_by_another_key_fails(layout, tmp_path):
    thief = load_signer(keygen(tmp_path / "thief" / "k")[0])
    report = verify_pack(_edit_summary_and_manifest(pack(layout).path, tmp_path, thief), env_home().pubkey)
    assert any("signature does not verify" in p for p in report.problems)


def test_even_the_key_holder_cannot_hand_edit_the_summary(layout, tmp_path):
    edited = _edit_summary_and_manifest(pack(layout).path, tmp_path, home_signer(env_home()))
    report = verify_pack(edited, env_home().pubkey)
    assert report.problems == ["COMPLETION_SUMMARY.md differs from the summary regenerated from the packed "
                               "reports (edited by hand)"]


def test_unsigned_manifest_fails(layout, tmp_path):
    files = read_pack(pack(layout).path)
    del files["manifest.sig"]
    unsigned = _tar(tmp_path / "unsigned.tar.gz", [({"name": n}, d) for n, d in files.items()])
    report = verify_pack(unsigned, env_home().pubkey)
    assert any("manifest.sig is missing" in p for p in report.problems)


def test_verify_without_a_public_key_fails_closed(layout, tmp_path, capsys):
    good = pack(layout).path
    assert main(["pack", "--verify", str(good), "--pubkey", str(tmp_path / "none.pub")]) == 1
    assert "no audit public key" in capsys.readouterr().out


def test_manifest_signature_is_over_the_exact_bytes(layout):
    result = pack(layout)
    files = read_pack(result.path)
    doc = json.loads(files["manifest.sig"])
    assert home_signer(env_home()).verifier().verify(base64.b64decode(doc["sig"]), files["manifest.json"])
    stamp = result.path.name[len("pack_"):-len(".tar.gz")]
    assert (layout.cost / f"manifest_{stamp}.sig").read_bytes() == files["manifest.sig"]


@pytest.mark.slow
def test_verify_streams_a_large_member_in_bounded_memory(layout, tmp_path):
    good = pack(layout).path
    big = tmp_path / "big.tar.gz"
    size = 300 << 20

    class Zeros(io.RawIOBase):
        left = size

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(big, "w:gz", compresslevel=1) as tar:
        for name, data in read_pack(good).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("extra/huge.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros()))
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec on Linux.
    code = ("import re, sys; from costeff.pack import verify_pack; r = verify_pack(sys.argv[1], sys.argv[2]); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print(int(hwm) // 1024, r.ok, r.problems)")
    out = subprocess.run([sys.executable, "-c", code, str(big), str(env_home().pubkey)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    rss_mb = int(out.split()[0])
    assert "extra/huge.bin: in the pack but not in the manifest" in out
    print(f"verify peak RSS {rss_mb} MB for a 300 MB member")
    assert rss_mb < 150, f"verify held {rss_mb} MB for a 300 MB member"


def test_the_packed_audit_trail_is_verified_too(layout, tmp_path):
    for i in range(3):
        audit_log().append("flag.set", {"i": i})
    good = pack(layout).path
    assert verify_pack(good, env_home().pubkey).ok
    files = read_pack(good)
    # Re-sign the manifest as the key holder would, over a trail edited before packing: still caught.
    files["audit/audit.jsonl"] = files["audit/audit.jsonl"].replace(b'"i":1', b'"i":7')
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["files"]:
        if entry["path"] == "audit/audit.jsonl":
            entry["sha256"] = hashlib.sha256(files["audit/audit.jsonl"]).hexdigest()
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files["manifest.sig"] = sign_manifest(files["manifest.json"], home_signer(env_home()))
    edited = _tar(tmp_path / "edited.tar.gz", [({"name": n}, d) for n, d in files.items()])
    report = verify_pack(edited, env_home().pubkey)
    assert report.problems == ["audit/audit.jsonl line 2: content does not match its sha256 (edited)"]
