"""Read the trail for acting on it: once, verified, and only what was verified.

``verified_records`` reads the file's bytes once, verifies those bytes (``verify(...,
data=...)``) and parses the same bytes: a file swapped in during verification is never
acted on. A trail missing or emptied while the anchor names one for this key is refused.

A long-running reader (the reaper daemon, every round) keeps what it verified: the next
call re-reads the file, confirms the bytes it verified are still there unchanged (one
SHA-256 over them: far cheaper than parsing and checking them again), checks only the
records appended since (each signature), the anchor's identity, and that the anchor holds no checkpoint past the
head (a tail appended by another process and cut off again). Anything else (a shorter
file, a different line there) falls back to the full verification.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from costeff.audit.keyring import ROTATED, KeyRing
from costeff.audit.tail import Head, check_lines
from costeff.audit.writer import _name
from costeff.errors import InputError

REFUSING = "refusing to act on"


def verified_records(log: Any) -> list[dict[str, Any]]:
    """See the module docstring. A trail that grew while it was checked is checked again (at most twice):
    another writer appended, and its checkpoint in the anchor may vouch for a record past the bytes read,
    which alone reads like a cut trail. A trail that did not grow fails as it is."""
    for attempt in range(3):
        data = _read(log.path)
        try:
            return _verified(log, data)
        except InputError:
            grew = log.path.exists() and log.path.stat().st_size > len(data)
            if attempt == 2 or not grew:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _read(path: Any) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _verified(log: Any, data: bytes) -> list[dict[str, Any]]:
    if not data:
        _refuse_if_anchored(log)
        return []
    cached = log._read_cache
    if cached is not None and _still_prefix(data, cached[0], cached[2]):
        head = check_lines(log.path, data[cached[0].end:], cached[0], REFUSING)
        _anchor_agrees(log, head)
        records = cached[1] + _parse(data[cached[0].end:])
    else:
        records, head = _full(log, data)
    log._read_cache = (head, records, hashlib.sha256(data).digest())
    return list(records)


def _full(log: Any, data: bytes) -> tuple[list[dict[str, Any]], Head]:
    from costeff.audit.verify import verify

    result = verify(log.directory, log.signer.verifier(), anchor=log.sink, data=data)
    if not result.ok:
        raise InputError(f"{result.path} line {result.first_bad_line}: {result.reason}; {REFUSING} "
                         f"an audit trail that does not verify (run `costeff audit verify`)")
    records = _parse(data)
    ring = KeyRing(log.signer.verifier())
    ring.learn(r.get("payload") or {} for r in records if r.get("event") == ROTATED)
    last = records[-1]
    kid = last.get("key_id")  # as KeyRing.expect reads it
    ring.current, ring.seen = (kid if isinstance(kid, str) else None), [str(kid)]
    if last.get("event") == ROTATED:
        ring.awaiting = (last.get("payload") or {}).get("new_key_id")
    first = data[:data.index(b"\n")]
    assert result.head_sha256 is not None  # set whenever the trail verified
    return records, Head(len(records) - 1, result.head_sha256, len(data), ring, hashlib.sha256(first).hexdigest())


def _parse(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in io.BytesIO(data) if line.strip()]


def _still_prefix(data: bytes, head: Head, digest: bytes) -> bool:
    return len(data) >= head.end > 0 and hashlib.sha256(memoryview(data)[:head.end]).digest() == digest


def _anchor_agrees(log: Any, head: Head) -> None:
    sink = log.sink
    if sink is None:
        return
    held = sink.identity(log.signer.key_id, _name(log)) if hasattr(sink, "identity") else None
    from costeff.audit.writer import _compare

    if held is not None:
        _compare(log, held, head.trail)
    if hasattr(sink, "checkpoint") and sink.checkpoint(head.trail, head.seq + 1) is not None:
        raise InputError(f"{log.path}: the anchor {sink.location} holds a checkpoint for record {head.seq + 1}, "
                         f"past the end of this trail (truncated); {REFUSING} it (run `costeff audit verify`)")


def _refuse_if_anchored(log: Any) -> None:
    """An empty or missing trail is only 'nothing to act on' when the anchor names none for this key."""
    sink = log.sink
    held = sink.identity(log.signer.key_id, _name(log)) if sink is not None and hasattr(sink, "identity") else None
    has_checkpoints = log.checkpoint_path.exists() and log.checkpoint_path.stat().st_size > 0
    if held is not None or has_checkpoints:
        where = f"the anchor {sink.location} names a trail for key {log.signer.key_id}" if held is not None \
            else f"{log.checkpoint_path} vouches for records"
        raise InputError(f"{log.path}: the trail is empty or missing but {where} (deleted or emptied); "
                         f"{REFUSING} it (run `costeff audit verify`)")
