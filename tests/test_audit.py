import json

import pytest

from costeff.audit import AuditLog, verify
from costeff.cli import main


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit", checkpoint_every=4)
    for i in range(10):
        log.append("test.event", {"i": i})
    return log


def _lines(log):
    return log.path.read_text().splitlines(keepends=True)


def _write(log, lines):
    log.path.write_text("".join(lines))


def test_intact_log_verifies_with_checkpoints(log):
    result = verify(log.directory)
    assert result.ok and result.records == 10
    assert result.checkpoints == 2  # after records 3 and 7
    assert result.head_sha256 == log.head()["sha256"]


def test_records_chain_to_previous_hash(log):
    records = log.records()
    assert [r["seq"] for r in records] == list(range(10))
    assert all(b["prev_sha256"] == a["sha256"] for a, b in zip(records, records[1:]))


def test_edited_record_is_named(log):
    lines = _lines(log)
    rec = json.loads(lines[5])
    rec["payload"]["i"] = 99
    lines[5] = json.dumps(rec) + "\n"
    _write(log, lines)
    result = verify(log.directory)
    assert not result.ok and result.first_bad_line == 6 and "edited" in result.reason


def test_deleted_record_is_named(log):
    lines = _lines(log)
    del lines[3]
    _write(log, lines)
    result = verify(log.directory)
    assert not result.ok and result.first_bad_line == 4


def test_reordered_records_are_detected(log):
    lines = _lines(log)
    lines[2], lines[3] = lines[3], lines[2]
    _write(log, lines)
    assert verify(log.directory).first_bad_line == 3


def test_inserted_record_is_detected(log):
    lines = _lines(log)
    forged = json.loads(lines[4])
    lines.insert(5, json.dumps(forged) + "\n")
    _write(log, lines)
    result = verify(log.directory)
    assert not result.ok and result.first_bad_line == 6


def test_truncation_past_a_checkpoint_is_detected(log):
    _write(log, _lines(log)[:6])  # checkpoint vouches for record 7
    result = verify(log.directory)
    assert not result.ok and "truncated" in result.reason


def test_truncation_after_last_checkpoint_needs_a_checkpoint(log):
    _write(log, _lines(log)[:9])
    assert verify(log.directory).ok  # the chain itself cannot see a lost tail...
    log2 = AuditLog(log.directory)
    log2.append("x", {})
    log2.checkpoint()
    _write(log2, _lines(log2)[:9])
    assert not verify(log.directory).ok  # ...which is what checkpoints are for


def test_cli_verify_exit_codes(log, capsys):
    assert main(["audit", "verify", str(log.directory)]) == 0
    lines = _lines(log)
    lines[0] = lines[0].replace('"i":0', '"i":1')
    _write(log, lines)
    assert main(["audit", "verify", str(log.directory)]) == 1
    assert "line 1" in capsys.readouterr().out


def test_cli_verify_missing_log_is_input_error(tmp_path, capsys):
    assert main(["audit", "verify", str(tmp_path / "nope")]) == 2
    assert "no audit log" in capsys.readouterr().err
