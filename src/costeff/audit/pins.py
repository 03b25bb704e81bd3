"""The checkpoints a trail is checked against: the local file, the anchor, and the anchor's identity.

Each source's checkpoints form a chain (each names the SHA-256 of the one before), so
the last one's signature vouches for all of them. A checkpoint written by a costeff that
verified every record it covers says so (``records_verified``); only such a checkpoint,
confirmed by the anchor, lets the verifier skip the covered records' own signatures.
Older checkpoints still pin the records' bytes, but their records' signatures are checked.

The anchor also holds the trail's identity for each key that signs it
(``identity/<key id>/<folder name>.json``: the trail id, i.e. the SHA-256 of its first line): a trail
that is empty, missing or another one than the anchor names for its key fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costeff.audit.files import CHECKPOINT_NAME
from costeff.audit.keyring import KeyRing
from costeff.audit.sealed import BadLine, Sealed, unseal
from costeff.audit.tail import GENESIS


class Failed(Exception):
    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.path, self.line, self.reason = str(path), line, reason


@dataclass
class Pins:
    """seq -> (sha256, where, skip_ok) from every checkpoint source, after each source's own chain verified."""

    table: dict[int, tuple[str, str, bool]] = field(default_factory=dict)
    local: int = 0
    anchored: int = 0
    anchored_max: int | None = None


def identity_failure(sink: Any, ring: KeyRing, trail: str | None, path: Path, warnings: list[str]) -> None:
    """Fail unless every identity the anchor holds for the trail's keys names this trail."""
    if sink is None or not hasattr(sink, "identity"):
        return
    from costeff.audit.anchor import identity_slot

    found = 0
    for kid, verifier in list(ring.known.items()):
        data = sink.identity(kid, identity_slot(sink, kid, path.parent))
        if data is None:
            continue
        where = f"{sink.location} identity of key {kid}"
        try:
            ident = unseal(data)
        except BadLine as exc:
            raise Failed(where, None, f"anchored identity: {exc}") from None
        if ident.fields.get("key_id") != kid or not ident.signed_by(verifier):
            raise Failed(where, None, "anchored identity is not signed by its key (forged)")
        named = str(ident.fields.get("trail"))
        if trail is None:
            raise Failed(path, 1, f"the trail is empty or missing, but {where} names trail {named[:16]} "
                                  f"(deleted or emptied)")
        if named != trail:
            raise Failed(path, 1, f"this trail (id {trail[:16]}) is not the one {where} names ({named[:16]}): "
                                  f"replaced by another trail")
        found += 1
    if not found and trail is not None:
        warnings.append(f"the anchor {sink.location} holds no identity for this trail's key: a deleted or "
                        f"replaced trail would go unseen until the next append records it")


def load_pins(directory: Path, trail: str | None, ring: KeyRing, sink: Any, all_sigs: bool) -> Pins:
    pins = Pins()
    local_path = directory / CHECKPOINT_NAME
    if local_path.exists():
        with open(local_path, "rb") as fh:
            items = [(str(local_path), n, line) for n, line in enumerate(fh, start=1)]
        pins.local, _ = _add_chain(pins, items, trail, ring, all_sigs, "local checkpoint", sink is None)
    if sink is not None and trail is not None:
        items = [(where, 1, data) for where, data in sink.checkpoints(trail)]
        pins.anchored, pins.anchored_max = _add_chain(pins, items, trail, ring, all_sigs, "anchored checkpoint",
                                                      True)
        if pins.local and not pins.anchored:
            raise Failed(sink.location, None, f"no anchored checkpoint for this trail (id {trail[:16]}) although "
                                              f"{pins.local} local ones exist: the anchor was lost or is not the one "
                                              f"this trail was written with (pass --anchor, or --no-anchor)")
        if pins.local > pins.anchored:
            raise Failed(sink.location, None, f"the anchor holds {pins.anchored} checkpoints for this trail but "
                                              f"{pins.local} local ones exist (the anchor was rolled back)")
    return pins


def _add_chain(pins: Pins, items: list[tuple[str, int, bytes]], trail: str | None, ring: KeyRing,
               all_sigs: bool, kind: str, trusted_source: bool) -> tuple[int, int | None]:
    """Check one source's checkpoint chain; the last signature vouches for every checkpoint before it."""
    prev, prev_seq, last = GENESIS, -1, None
    for where, line, data in items:
        cp = _checkpoint_line(where, line, data, kind)
        f = cp.fields
        if f.get("prev_checkpoint_sha256") != prev:
            _blame_previous(last, ring, kind)
            raise Failed(where, line, f"{kind} does not follow the one before it (deleted, inserted or rewritten)")
        if not isinstance(f.get("seq"), int) or f["seq"] <= prev_seq or not isinstance(f.get("line_sha256"), str):
            raise Failed(where, line, f"{kind} has a bad seq or line_sha256 field")
        if f.get("trail") != trail:
            raise Failed(where, line, f"{kind} belongs to another trail ({str(f.get('trail'))[:16]})")
        if all_sigs and not _signed(cp, ring):
            raise Failed(where, line, f"{kind} signature does not verify with key {f.get('key_id')} (forged)")
        skip_ok = trusted_source and f.get("records_verified") is True
        pin(pins, f["seq"], f["line_sha256"], f"{kind} {where}" + (f" line {line}" if kind.startswith("local")
                                                                   else ""), skip_ok)
        prev, prev_seq, last = cp.chain, f["seq"], (where, line, cp)
    if last is not None and not _signed(last[2], ring):
        raise Failed(last[0], last[1], f"{kind} signature does not verify with key {last[2].fields.get('key_id')} "
                                       f"(rewritten or forged without the key)")
    return len(items), (prev_seq if last is not None else None)


def _signed(cp: Sealed, ring: KeyRing) -> bool:
    verifier = ring.known.get(str(cp.fields.get("key_id")))
    return verifier is not None and cp.signed_by(verifier)


def _checkpoint_line(where: str, line: int, data: bytes, kind: str) -> Sealed:
    try:
        return unseal(data)
    except BadLine as exc:
        raise Failed(where, line, f"{kind}: {exc}") from None


def _blame_previous(last: tuple[str, int, Sealed] | None, ring: KeyRing, kind: str) -> None:
    if last is not None and not _signed(last[2], ring):
        raise Failed(last[0], last[1], f"{kind} signature does not verify (edited and re-hashed, or forged)")


def pin(pins: Pins, seq: int, sha: str, where: str, skip_ok: bool) -> None:
    known = pins.table.get(seq)
    if known and known[0] != sha:
        raise Failed(where, None, f"checkpoint for record {seq} disagrees with {known[1]} (two signed histories)")
    if known is None or where.startswith("anchored"):  # name the anchor when it vouches: it is the stronger
        pins.table[seq] = (sha, where, skip_ok or bool(known and known[2]))
