"""Which key signs which record: the genesis key, then each key announced by a rotation.

A key rotation is two records: ``audit.key_rotated``, signed by the outgoing key, whose
payload names the incoming key (``new_key_id``, ``new_public_key``, base64 of the 32 raw
bytes) and repeats the outgoing one (``old_key_id``, ``old_public_key``); then
``audit.key_accepted``, signed by the incoming key. Every other record must be signed by
the key in force at its place in the chain, so a key change nobody announced fails. The
incoming key's first signature commits, through the hash chain, to every record before
it: a verifier that trusts only the newest key still authenticates the old ones.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Iterable

from costeff.audit.keys import Verifier, key_id

ROTATED, ACCEPTED = "audit.key_rotated", "audit.key_accepted"
ROTATION_MARK = b'"event":"audit.key_rotated"'


class KeyProblem(ValueError):
    """A record signed by a key the chain does not allow at its place; the message says why."""


def public_from_b64(text: Any) -> Verifier | None:
    """The Ed25519 public key in ``text`` (base64 of 32 raw bytes), or None when it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(str(text), validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError):
        return None
    return Verifier(public, key_id(raw), "announced in the audit trail")


def public_b64(verifier: Verifier) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = verifier.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def rotation_payload(old: Verifier, new: Verifier) -> dict[str, Any]:
    return {"old_key_id": old.key_id, "old_public_key": public_b64(old), "new_key_id": new.key_id,
            "new_public_key": public_b64(new)}


@dataclass
class KeyRing:
    """The keys a trail may be signed with, learnt from the verifier and the trail's rotation records."""

    trusted: Verifier
    known: dict[str, Verifier] = field(default_factory=dict)
    current: str | None = None  # the key in force at the record being read (None: before the first)
    awaiting: str | None = None  # a rotation was read: the next record must be the new key's acceptance
    seen: list[str] = field(default_factory=list)  # every key in force so far, in order

    def __post_init__(self) -> None:
        self.known.setdefault(self.trusted.key_id, self.trusted)

    def learn(self, payloads: Iterable[dict[str, Any]]) -> None:
        """Public keys named by rotation records (read ahead, so old records verify with only the new key)."""
        for payload in payloads:
            for prefix in ("old", "new"):
                verifier = public_from_b64(payload.get(f"{prefix}_public_key"))
                if verifier is not None and verifier.key_id == payload.get(f"{prefix}_key_id"):
                    self.known.setdefault(verifier.key_id, verifier)

    def expect(self, fields: dict[str, Any]) -> Verifier:
        """The key that must have signed this record; KeyProblem when the chain does not allow its key."""
        kid = fields.get("key_id")
        if self.current is None:
            self.current = kid if isinstance(kid, str) else None
            self.seen.append(str(kid))
        if self.awaiting is not None:
            if fields.get("event") != ACCEPTED or kid != self.awaiting:
                raise KeyProblem(f"a key rotation to {self.awaiting} must be followed by that key's "
                                 f"{ACCEPTED} record (rotation not completed)")
            self.current, self.awaiting = kid, None
            self.seen.append(kid)
        elif kid != self.current:
            raise KeyProblem(f"signed by key {kid!r}, but key {self.current} is in force here and no "
                             f"{ROTATED} record signed by it announced another (unannounced key change)")
        elif fields.get("event") == ACCEPTED:
            raise KeyProblem(f"{ACCEPTED} without a {ROTATED} record before it")
        verifier = self.known.get(str(kid))
        if verifier is None:
            raise KeyProblem(f"signed by key {kid!r}, which is neither {self.trusted.key_id} "
                             f"({self.trusted.source}) nor announced by a rotation record")
        return verifier

    def after(self, fields: dict[str, Any]) -> None:
        """Called once the record's signature is known good: a rotation changes the key in force."""
        if fields.get("event") != ROTATED:
            return
        payload = fields.get("payload") or {}
        new = public_from_b64(payload.get("new_public_key"))
        if new is None or new.key_id != payload.get("new_key_id") or payload.get("old_key_id") != self.current:
            raise KeyProblem(f"{ROTATED} record does not name a well-formed new key (new_key_id and "
                             f"new_public_key that match, old_key_id the key in force)")
        self.known.setdefault(new.key_id, new)
        self.awaiting = new.key_id

    def finish(self) -> None:
        """At the end of the trail: the trusted key must be one the chain put in force."""
        if self.current is not None and self.trusted.key_id not in self.seen:
            raise KeyProblem(f"the trail is signed by key(s) {', '.join(self.seen)}, never by "
                             f"{self.trusted.key_id} ({self.trusted.source})")
