"""A trail removed on purpose is closed by the key holder; anyone else's deletion stays refused."""

from __future__ import annotations

import shutil

import pytest

from costeff.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.fixture
def deleted(tmp_path, monkeypatch, capsys):
    """A trail with one record, then its whole artifacts folder removed."""
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(artifacts))
    assert main(["flags", "set", "reaper_enabled", "false"]) == 0
    shutil.rmtree(artifacts)
    capsys.readouterr()
    return artifacts


def test_a_deleted_trail_is_refused_until_its_key_holder_retires_it(deleted, capsys):
    assert main(["flags", "set", "reaper_enabled", "true"]) == 2
    assert "audit retire" in _error(capsys)  # the refusal names the way out
    assert main(["audit", "verify"]) == 1
    capsys.readouterr()
    assert main(["audit", "retire", "--reason", "archived the old artifacts"]) == 0
    assert "starts" in capsys.readouterr().out
    assert main(["flags", "set", "reaper_enabled", "true"]) == 0
    assert main(["audit", "verify"]) == 0
    shutil.rmtree(deleted)  # a second deletion is refused again: retiring is per trail, never blanket
    capsys.readouterr()
    assert main(["flags", "set", "reaper_enabled", "false"]) == 2
    _error(capsys)


def test_retire_refuses_a_folder_that_still_holds_its_trail(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "artifacts"))
    assert main(["flags", "set", "reaper_enabled", "false"]) == 0
    capsys.readouterr()
    assert main(["audit", "retire", "--reason", "x"]) == 2
    assert "move the folder aside first" in _error(capsys)
    assert main(["audit", "verify"]) == 0


def test_without_the_key_nobody_can_retire_a_trail(deleted, tmp_path, monkeypatch, capsys):
    other = tmp_path / "intruder_key"
    monkeypatch.setenv("COSTEFF_AUDIT_KEY", str(other))  # not the key that signed the trail (and absent)
    assert main(["audit", "retire", "--reason", "cover tracks"]) == 2
    _error(capsys)
    monkeypatch.delenv("COSTEFF_AUDIT_KEY")
    assert main(["flags", "set", "reaper_enabled", "true"]) == 2  # still refused
    _error(capsys)


def test_a_retirement_needs_a_reason(deleted, capsys):
    assert main(["audit", "retire", "--reason", "  "]) == 2
    assert "--reason" in _error(capsys)
