"""One signed JSON line: a body, its SHA-256 and an Ed25519 signature over the body's exact bytes.

A line is ``{...body...,"sha256":"<64 hex>","sig":"<88 base64>"}`` followed by a
newline. Records and checkpoints chain by the SHA-256 of the whole previous line,
signature included, so not one byte of a line can change unseen. The body bytes are the line up to the fixed-size tail
plus ``}``: the
verifier never re-serialises JSON, so what is checked is exactly what was
written, and the whole line is still plain JSON for any reader.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, NamedTuple

from costeff.audit.keys import Signer, Verifier

SHA_KEY, SIG_KEY, END = b',"sha256":"', b'","sig":"', b'"}'
SIG_B64_LEN = 88  # base64 of a 64-byte Ed25519 signature
TAIL_LEN = len(SHA_KEY) + 64 + len(SIG_KEY) + SIG_B64_LEN + len(END)


def seal(body: dict[str, Any], signer: Signer) -> tuple[bytes, str, str]:
    """The line to append (newline included), the body's SHA-256 and the line's (the chain link)."""
    raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest()
    line = raw[:-1] + SHA_KEY + digest.encode("ascii") + SIG_KEY + base64.b64encode(signer.sign(raw)) + END
    return line + b"\n", digest, hashlib.sha256(line).hexdigest()


class Sealed(NamedTuple):
    body: bytes
    sha256: str  # of the body
    chain: str  # of the whole line (signature included): what the next record and checkpoints link to
    sig_b64: bytes  # decoded only when a signature is checked: most records are vouched for by a checkpoint
    fields: dict[str, Any]

    @property
    def sig(self) -> bytes:
        try:
            return base64.b64decode(self.sig_b64, validate=True)
        except binascii.Error:
            return b""  # not base64: a signature that cannot verify

    def signed_by(self, verifier: Verifier) -> bool:
        sig = self.sig
        return self.fields.get("key_id") == verifier.key_id and len(sig) == 64 and verifier.verify(sig, self.body)


class BadLine(ValueError):
    """A line that is not a well-formed sealed record; the message says what is wrong."""


def _no_constants(name: str) -> Any:
    raise BadLine(f"holds {name}, which JSON does not allow")


def unseal(line: bytes) -> Sealed:
    """Split and check a line's structure and hash (not its signature); BadLine says why it fails."""
    if not line.endswith(b"\n"):
        raise BadLine("incomplete line (no newline at its end: a write was cut short or the file was truncated)")
    line = line[:-1]
    if len(line) <= TAIL_LEN or not line.startswith(b"{"):
        raise BadLine(_unsigned_or_malformed(line))
    tail = line[-TAIL_LEN:]
    digest = tail[len(SHA_KEY):len(SHA_KEY) + 64]
    if (not tail.startswith(SHA_KEY) or tail[len(SHA_KEY) + 64:len(SHA_KEY) + 64 + len(SIG_KEY)] != SIG_KEY
            or not tail.endswith(END)):
        raise BadLine(_unsigned_or_malformed(line))
    body = line[:-TAIL_LEN] + b"}"
    computed = hashlib.sha256(body).hexdigest()
    if computed.encode("ascii") != digest:  # a hex digest, so the tail's digest is hex too
        raise BadLine("content does not match its sha256 (edited)")
    return Sealed(body, computed, hashlib.sha256(line).hexdigest(), tail[-len(END) - SIG_B64_LEN:-len(END)],
                  _fields(body))


def _fields(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 (byte {exc.start})") from None
    try:
        fields = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(fields, dict):
        raise BadLine("not a JSON object")
    return fields


def _unsigned_or_malformed(line: bytes) -> str:
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, BadLine):
        return "not a signed record (malformed line)"
    if isinstance(obj, dict) and "sha256" in obj and "sig" not in obj:
        return "unsigned record (written before costeff signed its audit trail); it cannot be trusted"
    if isinstance(obj, dict) and "sig" in obj:
        return "not byte for byte as costeff wrote it (re-serialised or edited)"
    return "not a signed record (no sha256/sig tail)"

