"""The Ed25519 key that signs audit records, checkpoints and pack manifests.

The private key lives outside the artifacts folder (``Home.key``, by default
``~/.costeff/keys``): whoever can write the artifacts must not also be able to
re-sign them. Verification needs only the public key (``Home.pubkey``, by default
the ``.pub`` file beside the key). Where both are is resolved at the command line's
edge (``costeff.home``); these functions take the paths.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff.errors import InputError
from costeff.home import KEY_NAME, Home

__all__ = ["KEY_NAME", "Signer", "Verifier", "home_signer", "key_id", "keygen", "load_signer", "load_verifier",
           "refuse_inside"]

log = logging.getLogger("costeff.audit")


def key_id(public_raw: bytes) -> str:
    """A short, stable name for a public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key; ``verify`` says whether ``sig`` was made over exactly ``data``."""

    public: Any  # cryptography Ed25519PublicKey
    key_id: str
    source: str

    def verify(self, sig: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self.public.verify(sig, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    private: Any  # cryptography Ed25519PrivateKey
    key_id: str
    path: str

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def verifier(self) -> Verifier:
        return Verifier(self.private.public_key(), self.key_id, self.path)


def _raw_public(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def refuse_inside(path: Path, *folders: Path) -> None:
    """A signing key inside the folder it protects could be replaced together with what it signs."""
    resolved = path.resolve()
    for folder in folders:
        if resolved.is_relative_to(folder.resolve()):
            raise InputError(f"{path}: the audit signing key must live outside {folder} (the folder it protects); "
                             "set COSTEFF_AUDIT_KEY or COSTEFF_HOME to a path elsewhere")


def keygen(path: Path | str, force: bool = False, protect: tuple[Path, ...] = ()) -> tuple[Path, Path, str]:
    """Create a new Ed25519 key pair: ``path`` (0600) and ``path.pub``; returns both paths and the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from costeff.artifacts import atomic_write_bytes

    path = Path(path)
    refuse_inside(path, *protect)
    if path.exists() and not force:
        raise InputError(f"{path}: a key already exists; records it signed verify only with its public key "
                         f"(pass --force to replace it anyway)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, pem, mode=0o600)
    pub_path = atomic_write_bytes(path.with_name(path.name + ".pub"), pub, mode=0o644)
    return path, pub_path, key_id(_raw_public(private.public_key()))


def home_signer(home: Home, create: bool = True, protect: tuple[Path, ...] = ()) -> Signer:
    """The home's signing key (``load_signer`` on ``home.key``, provisioned when the home says who named it)."""
    return load_signer(home.key, create=create, protect=protect, named_by=home.key_named_by)


def load_signer(path: Path | str, create: bool = True, protect: tuple[Path, ...] = (),
                named_by: str | None = None) -> Signer:
    """The private key at ``path``; created (and said so) on first use when ``create``, unless ``named_by``
    says who provisioned it (``COSTEFF_AUDIT_KEY``, say): then a missing key is an error."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    refuse_inside(path, *protect)
    if not path.exists():
        if named_by:
            # A named key is provisioned (a mounted Secret, say): inventing a new one
            # would sign records that the published public key cannot verify.
            raise InputError(f"{named_by}={path}: no such key; create it with `costeff audit keygen --key FILE` "
                             "and provide that file here (in a cluster: the Secret mounted at this path)")
        if not create:
            raise InputError(f"{path}: no audit signing key; create one with `costeff audit keygen`")
        _, pub, kid = keygen(path, protect=protect)
        log.warning("created audit signing key %s (id %s); keep %s to verify the trail elsewhere", path, kid, pub)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable Ed25519 private key in PEM ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise InputError(f"{path}: a {type(private).__name__}; expected an Ed25519 private key")
    return Signer(private, key_id(_raw_public(private.public_key())), str(path))


def load_verifier(path: Path | str) -> Verifier:
    """The public key at ``path`` (PEM or the base64 of the 32 raw bytes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no audit public key; pass --pubkey FILE (the .pub written by "
                         f"`costeff audit keygen`) or set COSTEFF_AUDIT_PUBKEY")
    data = path.read_bytes()
    try:
        public = (serialization.load_pem_public_key(data) if b"BEGIN" in data
                  else Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True)))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not an Ed25519 public key (PEM or base64 of 32 bytes): {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise InputError(f"{path}: a {type(public).__name__}; expected an Ed25519 public key")
    return Verifier(public, key_id(_raw_public(public)), str(path))
