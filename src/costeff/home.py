"""Where costeff keeps what lies outside the artifacts: the audit signing key, its anchor, the build cache.

A ``Home`` is resolved once, at the command line's edge (``costeff.cli._common.home``: a command's own
option, else the environment, else the defaults below), and handed to every function that signs,
verifies, anchors or caches. Nothing below the command line looks up where these are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KEY_NAME = "audit_ed25519"


@dataclass(frozen=True)
class Home:
    """``root`` (``~/.costeff``), the signing ``key`` and its ``pubkey``, the checkpoint ``anchor`` (a directory,
    ``file://``, ``s3://`` URI or ``none``) and the ``cache`` of built policies, variants and Triton environments.

    ``key_named_by`` says who named the key (``COSTEFF_AUDIT_KEY``, say), None when it is the default: a named
    key is provisioned, so a missing one is an error rather than created."""

    root: Path
    key: Path
    pubkey: Path
    anchor: str
    cache: Path
    key_named_by: str | None = None

    def __post_init__(self) -> None:
        for name in ("root", "key", "pubkey", "cache"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "anchor", str(self.anchor))

    @classmethod
    def under(cls, root: Path | str, *, key: Path | str | None = None, key_named_by: str | None = None,
              pubkey: Path | str | None = None, anchor: str | None = None,
              cache: Path | str | None = None) -> "Home":
        """The home at ``root`` with each unnamed path at its default: ``root/keys/audit_ed25519`` (and ``.pub``
        beside it), ``root/anchor``, ``~/.cache/costeff``."""
        key = Path(key) if key else Path(root) / "keys" / KEY_NAME
        return cls(Path(root), key, Path(pubkey) if pubkey else key.with_name(key.name + ".pub"),
                   anchor or str(Path(root) / "anchor"), Path(cache) if cache else default_cache(),
                   key_named_by)


def default_home() -> Path:
    return Path.home() / ".costeff"


def default_cache() -> Path:
    return Path.home() / ".cache" / "costeff"
