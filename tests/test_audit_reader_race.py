"""A reader that read the trail just before another process appended and anchored a checkpoint sees the anchor
vouch for a record past its bytes. That is a race, not a cut trail: the trail grew, so it is read and checked again.
A trail that really was cut back (it did not grow) is still refused."""

from __future__ import annotations

import pytest
from workspace_support import env_home

from costeff.audit import AuditLog
from costeff.audit import reader
from costeff.errors import InputError


def _trail(tmp_path, records: int) -> AuditLog:
    log = AuditLog(tmp_path / "audit", checkpoint_every=1, home=env_home())
    for i in range(records):
        log.append("test.event", {"i": i})
    return log


def test_a_trail_that_grew_while_it_was_checked_is_checked_again(tmp_path, monkeypatch):
    log = _trail(tmp_path, 5)
    before = log.path.read_bytes()
    _trail(tmp_path, 0).append("test.event", {"i": 5})  # another writer: one more record, anchored
    original, reads = reader._read, []

    def read_before_the_append(path):  # the first read happened just before the other writer's append
        reads.append(path)
        return before if len(reads) == 1 else original(path)

    monkeypatch.setattr(reader, "_read", read_before_the_append)
    records = AuditLog(tmp_path / "audit", home=env_home()).verified_records()
    assert [r["payload"]["i"] for r in records] == list(range(6)) and len(reads) == 2


def test_a_trail_cut_back_is_still_refused(tmp_path):
    log = _trail(tmp_path, 6)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:data.rindex(b"\n", 0, len(data) - 1) + 1])  # the last record removed
    with pytest.raises(InputError, match="truncated|cut|vouches"):
        AuditLog(tmp_path / "audit", home=env_home()).verified_records()
