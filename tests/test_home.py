"""The signing key, its public key, the anchor and the cache form one Home, resolved at the command line's edge:
a command's own option, else the environment, else the defaults. Below the edge, only the Home given counts."""

import argparse
import json
from pathlib import Path

import pytest

from costeff.audit import AuditLog, verify
from costeff.cli import main
from costeff.cli._common import home
from costeff.home import Home

ALL = ("COSTEFF_HOME", "COSTEFF_AUDIT_KEY", "COSTEFF_AUDIT_PUBKEY", "COSTEFF_AUDIT_ANCHOR", "COSTEFF_CACHE")


@pytest.fixture
def bare(monkeypatch, tmp_path):
    """No home variable set, and ``~`` in the test's folder (the defaults hang off it)."""
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path / "user"


def test_without_options_or_environment_the_defaults_hang_off_the_users_home(bare):
    got = home(argparse.Namespace())
    assert got == Home(bare / ".costeff", bare / ".costeff" / "keys" / "audit_ed25519",
                       bare / ".costeff" / "keys" / "audit_ed25519.pub", str(bare / ".costeff" / "anchor"),
                       bare / ".cache" / "costeff", None)


@pytest.mark.parametrize("name, value, field, expected", [
    ("COSTEFF_HOME", "h", "key", Path("h/keys/audit_ed25519")),
    ("COSTEFF_HOME", "h", "pubkey", Path("h/keys/audit_ed25519.pub")),
    ("COSTEFF_HOME", "h", "anchor", "h/anchor"),
    ("COSTEFF_AUDIT_KEY", "k/sign", "key", Path("k/sign")),
    ("COSTEFF_AUDIT_KEY", "k/sign", "pubkey", Path("k/sign.pub")),
    ("COSTEFF_AUDIT_KEY", "k/sign", "key_named_by", "COSTEFF_AUDIT_KEY"),
    ("COSTEFF_AUDIT_PUBKEY", "p.pub", "pubkey", Path("p.pub")),
    ("COSTEFF_AUDIT_ANCHOR", "s3://bucket/trails", "anchor", "s3://bucket/trails"),
    ("COSTEFF_CACHE", "c", "cache", Path("c")),
])
def test_the_edge_honours_each_environment_variable(bare, monkeypatch, name, value, field, expected):
    monkeypatch.setenv(name, value)
    assert getattr(home(argparse.Namespace()), field) == expected
    monkeypatch.setenv(name, "")  # an empty variable is an unset one
    assert getattr(home(argparse.Namespace()), field) == getattr(home(None), field) != expected


def test_a_commands_option_beats_the_environment(bare, monkeypatch):
    monkeypatch.setenv("COSTEFF_AUDIT_PUBKEY", "env.pub")
    monkeypatch.setenv("COSTEFF_AUDIT_ANCHOR", "env_anchor")
    assert home(argparse.Namespace(pubkey=Path("opt.pub"), anchor="opt_anchor")).pubkey == Path("opt.pub")
    assert home(argparse.Namespace(pubkey=None, anchor="opt_anchor")).anchor == "opt_anchor"
    assert home(argparse.Namespace(anchor=None, no_anchor=True)).anchor == "none"
    assert home(argparse.Namespace(pubkey=None, anchor=None)).anchor == "env_anchor"


def test_audit_verify_takes_pubkey_and_anchor_options_over_the_environment(tmp_path, monkeypatch, capsys):
    assert main(["flags", "set", "cost_gates_enabled", "false"]) == 0  # signed, anchored in $COSTEFF_HOME/anchor
    pub = tmp_path / "costeff_home" / "keys" / "audit_ed25519.pub"
    monkeypatch.setenv("COSTEFF_AUDIT_PUBKEY", str(tmp_path / "missing.pub"))
    capsys.readouterr()
    assert main(["audit", "verify"]) == 2
    assert f"{tmp_path / 'missing.pub'}: no audit public key" in capsys.readouterr().err
    assert main(["audit", "verify", "--pubkey", str(pub), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["anchor"] == str(tmp_path / "costeff_home" / "anchor")
    monkeypatch.setenv("COSTEFF_AUDIT_ANCHOR", str(tmp_path / "env_anchor"))
    assert main(["audit", "verify", "--pubkey", str(pub), "--anchor", str(tmp_path / "costeff_home" / "anchor"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["anchored_checkpoints"] >= 1


def test_commands_anchor_where_the_environment_says_and_a_named_key_is_never_invented(tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.setenv("COSTEFF_AUDIT_ANCHOR", str(tmp_path / "env_anchor"))
    assert main(["flags", "set", "cost_gates_enabled", "false"]) == 0
    assert list((tmp_path / "env_anchor").rglob("*.json")) and not (tmp_path / "costeff_home" / "anchor").exists()
    monkeypatch.setenv("COSTEFF_AUDIT_KEY", str(tmp_path / "secret" / "key"))
    capsys.readouterr()
    assert main(["flags", "set", "cost_gates_enabled", "true"]) == 2
    assert f"COSTEFF_AUDIT_KEY={tmp_path / 'secret' / 'key'}: no such key" in capsys.readouterr().err
    assert not (tmp_path / "secret").exists()


def test_below_the_edge_only_the_home_given_counts(tmp_path, monkeypatch):
    """The environment names one home, the library is handed another: keys and anchor go to the one handed."""
    monkeypatch.setenv("COSTEFF_HOME", str(tmp_path / "env_home"))
    given = Home.under(tmp_path / "given")
    log = AuditLog(tmp_path / "audit", home=given)
    log.append("test.event", {"i": 1})
    assert given.key.is_file() and list(Path(given.anchor).rglob("*.json"))
    assert not (tmp_path / "env_home").exists()
    assert verify(tmp_path / "audit", home=given).ok
    with pytest.raises(TypeError, match="no home"):
        AuditLog(tmp_path / "other").append("test.event", {})
