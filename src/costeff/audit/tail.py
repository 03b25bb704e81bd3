"""Check the records after a point already verified, and remember how far a process has verified.

A writer checks every record since the last point it can trust before it appends
(and so before any checkpoint it writes vouches for them): its own previous append in
this process, else the further of what this process verified reading the trail
(``AuditLog.verified_records``) and the last local checkpoint that says ``records_verified``,
is signed by the writer's key and is held byte for byte by the anchor, else the trail's first
line. ``AuditLog.verified_records`` resumes the same way from what it verified before.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from costeff.audit.keyring import ROTATION_MARK, KeyProblem, KeyRing
from costeff.audit.keys import Verifier
from costeff.audit.sealed import BadLine, unseal
from costeff.errors import InputError

GENESIS = "0" * 64


@dataclass
class Head:
    """How far a trail verified: the last record's seq (-1: none) and chain, the byte offset after it,
    the keys in force there and the trail id (the first line's chain)."""

    seq: int
    chain: str
    end: int
    ring: KeyRing
    trail: str | None = None


def genesis(trusted: Verifier) -> Head:
    return Head(-1, GENESIS, 0, KeyRing(trusted))


def check_lines(path: Path, data: bytes, start: Head, refusing: str) -> Head:
    """Check each line of ``data`` (the file from ``start.end`` on): structure, seq, chain, key and signature."""
    ring = replace(start.ring, known=dict(start.ring.known), seen=list(start.ring.seen))
    seq, prev, end, trail = start.seq, start.chain, start.end, start.trail
    ring.learn(_rotations(data))
    for line in io.BytesIO(data):
        lineno = seq + 2

        def bad(reason: str, lineno: int = lineno) -> InputError:
            return InputError(f"{path} line {lineno}: {reason}; {refusing} an audit trail that does not verify "
                              f"(run `costeff audit verify`)")
        try:
            record = unseal(line)
        except BadLine as exc:
            raise bad(str(exc)) from None
        fields = record.fields
        if fields.get("seq") != seq + 1 or fields.get("prev_sha256") != prev:
            raise bad("out of sequence or chain (deleted, inserted or reordered)")
        try:
            key = ring.expect(fields)
            if not key.verify(record.sig, record.body):
                raise bad("signature does not verify (forged or edited without the key)")
            ring.after(fields)
        except KeyProblem as exc:
            raise bad(str(exc)) from None
        seq, prev, end, trail = seq + 1, record.chain, end + len(line), trail or record.chain
    return Head(seq, prev, end, ring, trail)


def _rotations(data: bytes) -> list[dict[str, Any]]:
    found = []
    for line in io.BytesIO(data):
        if ROTATION_MARK in line:
            try:
                found.append(unseal(line).fields.get("payload") or {})
            except BadLine:
                continue  # the check names it
    return found


def line_ending_at(fh: Any, end: int) -> bytes | None:
    """The whole line that ends at byte ``end`` of the open file (None when ``end`` is 0)."""
    pos, buf = end, b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        if len(buf) < end - pos:
            return None  # the file is shorter than it was
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1:]
    return buf or None


def still_there(path: Path, head: Head) -> bool:
    """Whether the file still holds, at ``head.end``, the line ``head`` verified (and so, by the chain,
    every byte before it)."""
    import hashlib

    if head.end == 0:
        return path.exists()
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < head.end:
                return False
            line = line_ending_at(fh, head.end)
    except OSError:
        return False
    return line is not None and line.endswith(b"\n") and hashlib.sha256(line[:-1]).hexdigest() == head.chain


def read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read()
