"""A full disk costs a failed command, never a silent inconsistency.

The artifacts folder (flags, audit trail, ledger, reports) lies on a real 256 KiB tmpfs that the
commands fill; the signing key and the checkpoint anchor stay outside it, as in production. Each
command is run until the disk refuses it. Afterwards, with space freed: the trail verifies, every
flag value in flags.json is the value its last signed record set, and the next change succeeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this environment does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _costeff(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costeff", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _env(mnt: Path, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "COSTEFF_ARTIFACTS": str(mnt / "artifacts"), "COSTEFF_HOME": str(tmp_path / "home"),
            "COSTEFF_MODEL_REPOSITORY": str(mnt / "repo")}


def _fill(mnt: Path, leave: int) -> Path:
    """Leave only ``leave`` bytes free on the tmpfs."""
    filler = mnt / "filler"
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def _until_refused(env: dict[str, str], command: list[list[str]], tries: int = 60) -> list[int]:
    codes = []
    for i in range(tries):
        done = _costeff(env, *command[i % len(command)])
        codes.append(done.returncode)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode != 0:
            assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1, done.stderr
            break
    return codes


def _consistent(env: dict[str, str], mnt: Path, pending_ok: bool = False) -> None:
    """The trail verifies and flags.json holds what the signed records set. With ``pending_ok``, the trail
    may be one change ahead of flags.json (the record is durable first; the next change applies it)."""
    verified = _costeff(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    store = mnt / "artifacts" / "flags" / "flags.json"
    if not store.exists():
        return
    history = json.loads(store.read_text())["history"]
    records = [json.loads(line) for line in (mnt / "artifacts" / "audit" / "audit.jsonl").read_text().splitlines()]
    signed: dict[str, list[tuple[int, object]]] = {}
    for record in records:
        if record.get("event") == "flag.set":
            payload = record["payload"]
            signed.setdefault(payload["flag"], []).append((payload["version"], payload["new_value"]))
    for name, changes in history.items():
        stored = (changes[-1]["version"], changes[-1]["new_value"])
        assert stored in signed.get(name, []), f"{name} v{stored[0]} in flags.json has no signed record"
        ahead = [v for v, _ in signed[name] if v > stored[0]]
        assert ahead == [] or (pending_ok and ahead == [stored[0] + 1]), (name, stored, signed[name])


FLAGS = [["flags", "set", "reaper_enabled", "false", "--reason", "x" * 2000],
         ["flags", "set", "reaper_enabled", "true", "--reason", "y" * 2000]]


@pytest.mark.parametrize("command", [FLAGS, [["ledger", "import", "--sample", "--replace"]]],
                         ids=["flags-set", "ledger-import"])
def test_a_command_refused_by_a_full_disk_leaves_state_consistent(small_disk, tmp_path, command):
    env = _env(small_disk, tmp_path)
    assert _costeff(env, *FLAGS[1]).returncode == 0  # a trail and a flag store exist before the disk fills
    filler = _fill(small_disk, 24 * 1024)
    codes = _until_refused(env, command)
    assert codes[-1] in (2, 3), f"the disk never filled: {codes}"
    filler.unlink()
    _consistent(env, small_disk, pending_ok=True)
    assert _costeff(env, *FLAGS[0]).returncode == 0  # space freed: the next change goes through, and applies
    _consistent(env, small_disk)                     # any change the trail held but flags.json missed


def test_ramp_decide_on_a_full_disk_never_records_a_decision_without_its_report(small_disk, tmp_path):
    env = _env(small_disk, tmp_path)
    ledger = tmp_path / "ledger.sqlite"  # the ledger off the small disk: only the decision's writes compete
    assert _costeff(env, "ledger", "import", "--sample", "--ledger", str(ledger)).returncode == 0
    first = _costeff(env, "ramp", "decide", "--ledger", str(ledger), "--out", str(small_disk / "first"))
    assert first.returncode in (0, 1), first.stderr  # a decision and its record exist before the disk fills
    filler = _fill(small_disk, 12 * 1024)
    codes = []
    for i in range(40):
        out = small_disk / "artifacts" / "decisions" / str(i)
        done = _costeff(env, "ramp", "decide", "--ledger", str(ledger), "--out", str(out))
        codes.append(done.returncode)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode not in (0, 1):
            break
    assert codes[-1] in (2, 3), f"the disk never filled: {codes}"
    filler.unlink()
    _consistent(env, small_disk)
    trail = (small_disk / "artifacts" / "audit" / "audit.jsonl").read_text().splitlines()
    decided = [json.loads(line) for line in trail if '"ramp.decision"' in line or '"ramp.decide"' in line]
    reports = [*(small_disk / "artifacts" / "decisions").glob("*/ramp_decision.json"),
               *(small_disk / "first").glob("ramp_decision.json")]
    assert len(decided) == len(reports), (len(decided), [str(r) for r in reports])
