"""The writer's side of trust: where to resume checking, the anchor's identity, and checkpoints.

A checkpoint is trusted as a resume point only when it says ``records_verified``, is
signed by the writer's own key, names the offset of the record after it, and the anchor
holds it byte for byte: a checkpoint the anchor does not confirm, or one written by a
costeff that did not check its records, is never a reason to skip a signature.
"""

from __future__ import annotations

import os
from typing import Any

from costeff.artifacts import iso_utc
from costeff.audit.files import IDENTITY_KIND, _append_bytes, _first_line, _last_line
from costeff.audit.keyring import public_b64
from costeff.audit.sealed import BadLine, seal, unseal
from costeff.audit.tail import Head, genesis, line_ending_at
from costeff.errors import InputError


def resume_point(log: Any) -> Head:
    """The last checkpoint this writer can trust (see the module docstring), else the trail's start."""
    start = genesis(log.signer.verifier())
    if log.sink is None or not log.checkpoint_path.exists() or not log.path.exists():
        return start

    last = _last_line(log.checkpoint_path)
    try:
        cp = unseal(last) if last else None
        first = unseal(_first_line(log.path) or b"")
    except BadLine:
        return start
    f = cp.fields if cp else {}
    if (cp is None or f.get("records_verified") is not True or not isinstance(f.get("offset"), int)
            or f.get("trail") != first.chain or not cp.signed_by(log.signer.verifier())
            or log.sink.checkpoint(first.chain, f.get("seq")) != last):
        return start
    with open(log.path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < f["offset"]:
            return start  # shorter than the checkpoint says: the full check names where
        line = line_ending_at(fh, f["offset"])
    try:
        record = unseal(line) if line else None
    except BadLine:
        return start
    if record is None or record.chain != f.get("line_sha256") or record.fields.get("seq") != f.get("seq"):
        return start
    start.ring.current, start.ring.seen = log.signer.key_id, [log.signer.key_id]
    return Head(f["seq"], record.chain, f["offset"], start.ring, first.chain)


def refuse_if_cut(log: Any, head: Head) -> None:
    """A trail that ends before its own last local checkpoint, or before a checkpoint the anchor holds for
    the next record, was cut back: appending would fork its history."""

    last = _last_line(log.checkpoint_path)
    try:
        local = unseal(last).fields.get("seq") if last else None
    except BadLine:
        local = None  # `audit verify` names it; the tail check already vouched for the records
    anchored = log.sink is not None and hasattr(log.sink, "checkpoint") \
        and log.sink.checkpoint(head.trail, head.seq + 1) is not None
    if anchored or (isinstance(local, int) and local > head.seq):
        raise InputError(f"{log.path}: the trail ends at record {head.seq} but a checkpoint vouches for a later "
                         f"one (truncated); refusing to append to it (run `costeff audit verify`)")


def _name(log: Any) -> str:
    from costeff.audit.anchor import identity_slot, trail_name

    if log.sink is None or not hasattr(log.sink, "identity"):
        return trail_name(log.directory)
    slot = getattr(log, "_identity_slot", None)
    if slot is None:  # once per process: retiring refuses while a trail is there, so it cannot move under us
        slot = log._identity_slot = identity_slot(log.sink, log.signer.key_id, log.directory)
    return slot


def identity_line(trail: str, signer: Any) -> bytes:
    """The anchor's record of which trail ``signer`` writes (deterministic: publishing it twice is a no-op)."""

    body = {"identity": IDENTITY_KIND, "trail": trail, "key_id": signer.key_id,
            "public_key": public_b64(signer.verifier())}
    return seal(body, signer)[0]


def check_identity(log: Any, head: Head) -> None:
    """Refuse to write when the anchor names another trail for this key (this one emptied or replaced)."""
    if log.sink is None or not hasattr(log.sink, "identity"):
        log._identity_checked = True
        return
    held = log.sink.identity(log.signer.key_id, _name(log))
    if held is not None:
        _compare(log, held, head.trail)
    log._identity_checked = held is not None  # else published (and checked) with the next checkpoint


def _compare(log: Any, held: bytes, trail: str | None) -> None:
    try:
        named = unseal(held)
    except BadLine as exc:
        raise InputError(f"{log.sink.location}: identity of key {log.signer.key_id}: {exc}") from None
    if not named.signed_by(log.signer.verifier()) or named.fields.get("trail") != trail:
        state = "empty or missing" if trail is None else f"trail {trail[:16]}"
        raise InputError(f"{log.path}: the anchor {log.sink.location} holds trail "
                         f"{str(named.fields.get('trail'))[:16]} for key {log.signer.key_id}, but here is "
                         f"{state}; refusing to write to a trail that was emptied, deleted or replaced "
                         f"(run `costeff audit verify`; if it was removed on purpose, close it with "
                         f"`costeff audit retire {log.directory} --reason WHY`)")


def write_checkpoint(log: Any, head: Head) -> None:
    """Sign, anchor, then write locally a checkpoint for ``head`` (whose records this process verified).

    The anchor is written first; should the local write then fail (a full disk, a crash), the
    anchor holds a checkpoint the local file lacks. The first checkpoint of a process, and the
    next after such a failure, adopts those into the local file first, so the chain goes on."""

    if head.seq < 0:
        return
    previous = _adopt_anchored(log, head, _previous(log, _last_line(log.checkpoint_path)))
    if previous is not None and previous.fields.get("seq") == head.seq:
        return  # this head is already checkpointed
    body = {"seq": head.seq, "line_sha256": head.chain, "ts": iso_utc(), "trail": head.trail,
            "prev_checkpoint_sha256": previous.chain if previous else "0" * 64, "key_id": log.signer.key_id,
            "records_verified": True, "offset": head.end}
    line, _, _ = seal(body, log.signer)
    if log.sink is not None:
        if not log._identity_checked and hasattr(log.sink, "publish_identity"):
            assert head.trail is not None  # a head past record 0 knows its trail
            held = log.sink.publish_identity(log.signer.key_id, _name(log), identity_line(head.trail, log.signer))
            _compare(log, held, head.trail)
            log._identity_checked = True
        # anchored first: a local checkpoint the anchor lacks proves nothing
        log.sink.publish(head.trail, head.seq, line)
    log._anchor_ahead = True
    _append_bytes(log.checkpoint_path, line)
    log._anchor_ahead = False


def _previous(log: Any, last: bytes | None) -> Any:
    try:
        return unseal(last) if last is not None else None
    except BadLine as exc:
        raise InputError(f"{log.checkpoint_path}: last checkpoint: {exc}; run `costeff audit verify "
                         f"{log.directory}`") from None


def _adopt_anchored(log: Any, head: Head, previous: Any) -> Any:
    """Anchored checkpoints that follow the local file's last one (their local write failed): append them."""

    if log.sink is None or not hasattr(log.sink, "since") or not log._anchor_ahead:
        return previous
    for seq, data in log.sink.since(head.trail, previous.fields["seq"] if previous else -1):
        cp = _previous(log, data)
        if seq > head.seq or cp.fields.get("prev_checkpoint_sha256") != (previous.chain if previous else "0" * 64) \
                or not cp.signed_by(log.signer.verifier()):
            break  # not a continuation this writer can vouch for: `audit verify` names it
        _append_bytes(log.checkpoint_path, data)
        previous = cp
    log._anchor_ahead = False
    return previous
