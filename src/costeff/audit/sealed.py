"""One signed JSON line: a body, its SHA-256 and an Ed25519 signature over the body's exact bytes.

A line is ``{...body...,"sha256":"<64 hex>","sig":"<88 base64>"}`` followed by a
newline. The body bytes are the line up to the fixed-size tail plus ``}``: the
verifier never re-serialises JSON, so what is checked is exactly what was
written, and the whole line is still plain JSON for any reader.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from costeff.audit.keys import Signer, Verifier

SHA_KEY, SIG_KEY, END = b',"sha256":"', b'","sig":"', b'"}'
SIG_B64_LEN = 88  # base64 of a 64-byte Ed25519 signature
TAIL_LEN = len(SHA_KEY) + 64 + len(SIG_KEY) + SIG_B64_LEN + len(END)
_HEX = frozenset(b"0123456789abcdef")


def seal(body: dict[str, Any], signer: Signer) -> tuple[bytes, str]:
    """The line to append (newline included) and the body's SHA-256."""
    raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest()
    sig = base64.b64encode(signer.sign(raw))
    return raw[:-1] + SHA_KEY + digest.encode("ascii") + SIG_KEY + sig + END + b"\n", digest


@dataclass(frozen=True)
class Sealed:
    body: bytes
    sha256: str
    sig: bytes
    fields: dict[str, Any]

    def signed_by(self, verifier: Verifier) -> bool:
        return self.fields.get("key_id") == verifier.key_id and verifier.verify(self.sig, self.body)


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
            or not tail.endswith(END) or not set(digest) <= _HEX):
        raise BadLine(_unsigned_or_malformed(line))
    body = line[:-TAIL_LEN] + b"}"
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        raise BadLine("content does not match its sha256 (edited)")
    try:
        sig = base64.b64decode(tail[-len(END) - SIG_B64_LEN:-len(END)], validate=True)
    except binascii.Error:
        raise BadLine("signature is not base64") from None
    return Sealed(body, digest.decode("ascii"), sig, _fields(body))


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

