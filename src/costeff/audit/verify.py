"""Verify a signed audit trail: structure, chain, keys, signatures, checkpoints and the anchor.

One pass over the trail (plus a quick read-ahead for key rotations). A signed checkpoint
fixes the SHA-256 of the record it names, and through the hash chain the exact bytes of
every record before it. A checkpoint that says ``records_verified`` was written by a
costeff that checked every covered record's signature first, so when the anchor holds it
those records' own signatures are checked only when something disagrees (to name the
first bad line) or with ``all_signatures``. Every other record's signature is checked:
a checkpoint written without checking never launders a forged record. The anchor's
checkpoints show a trail cut back below them as truncated, and its identity shows a
trail emptied, deleted or replaced (``costeff.audit.pins``).

``data`` verifies those exact bytes instead of reading the file: a caller that acts on
the records verifies and parses the same bytes (``AuditLog.verified_records``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from costeff.audit.anchor import sink_from_uri
from costeff.audit.files import CHECKPOINT_NAME, LOG_NAME
from costeff.audit.keyring import ACCEPTED, ROTATED, ROTATION_MARK, KeyProblem, KeyRing
from costeff.audit.keys import Verifier, load_verifier
from costeff.audit.pins import Failed, Pins, identity_failure, load_pins
from costeff.audit.sealed import BadLine, Sealed, unseal
from costeff.audit.tail import GENESIS
from costeff.errors import InputError
from costeff.home import Home

_DEFAULT = object()
_PENDING_MAX = 65536  # past this many unpinned records, check their signatures rather than keep them


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    path: str
    records: int
    checkpoints: int
    head_sha256: str | None
    first_bad_line: int | None = None
    reason: str | None = None
    key_id: str | None = None
    anchor: str | None = None
    anchored_checkpoints: int = 0
    anchored_through_seq: int | None = None
    signatures_checked: int = 0
    legacy_unsigned: bool = False
    warnings: list[str] = field(default_factory=list)


def _from_home(home: Home | None, what: str) -> Home:
    if home is None:
        raise TypeError(f"verify: no {what} and no home to take it from")
    return home


def verify(directory: Path | str, pubkey: Verifier | Path | str | None = None, anchor: Any = _DEFAULT,
           all_signatures: bool = False, data: bytes | None = None, home: Home | None = None) -> VerifyResult:
    """Check the trail in ``directory``; the result names the first bad line (1-based) and why.

    ``pubkey`` and ``anchor`` (a sink, a URI, or None for no anchor) default to ``home``'s."""
    directory = Path(directory)
    pubkey = pubkey if pubkey is not None else _from_home(home, "pubkey").pubkey
    anchor = _from_home(home, "anchor").anchor if anchor is _DEFAULT else anchor
    path = directory / LOG_NAME
    source = _Source(path, data)
    legacy = _legacy(path, source.first()) if source.exists else None
    if legacy is not None:
        return legacy
    sink = sink_from_uri(anchor) if isinstance(anchor, str) else anchor
    if not source.exists and not (directory / CHECKPOINT_NAME).exists():
        return _missing(path, pubkey, sink)
    ring = KeyRing(pubkey if isinstance(pubkey, Verifier) else load_verifier(pubkey))
    ring.learn(source.rotations())
    scan, pins = _Scan(path, ring, all_signatures), Pins()
    warnings: list[str] = []
    try:
        trail = _trail_id(source.first())
        identity_failure(sink, ring, trail, path, warnings)
        if trail is None and _has_lines(directory / CHECKPOINT_NAME):
            raise Failed(path, 1, "the trail is empty or missing but checkpoints vouch for its records (truncated)")
        pins = load_pins(directory, trail, ring, sink, all_signatures) if trail else pins
        scan.run(source.lines(), pins)
    except Failed as failed:
        return scan.result(False, failed, pins, sink, warnings)
    return scan.result(True, None, pins, sink, warnings)


def _missing(path: Path, pubkey: Verifier | Path | str, sink: Any) -> VerifyResult:
    """No trail and no checkpoints here: a failure when the anchor names a trail for the key, else bad input."""
    try:
        ring = KeyRing(pubkey if isinstance(pubkey, Verifier) else load_verifier(pubkey))
        identity_failure(sink, ring, None, path, [])
    except Failed as failed:
        return _Scan(path, ring, False).result(False, failed, Pins(), sink, [])
    except InputError:  # no key either: the missing trail is what to report first
        raise _no_log(path) from None
    raise _no_log(path)


def _no_log(path: Path) -> InputError:
    return InputError(f"{path}: no audit log here; expected {LOG_NAME} in {path.parent}")


class _Source:
    """The trail's lines, from the file (streamed) or from bytes already read."""

    def __init__(self, path: Path, data: bytes | None) -> None:
        self.path, self.data = path, data
        self.exists = data is not None or path.exists()

    def lines(self) -> Iterator[bytes]:
        if self.data is not None:
            yield from io.BytesIO(self.data)
        elif self.path.exists():
            with open(self.path, "rb") as fh:
                yield from fh

    def first(self) -> bytes | None:
        return next(iter(self.lines()), None) or None

    def rotations(self) -> list[dict[str, Any]]:
        found = []
        for line in self.lines():
            if ROTATION_MARK in line:
                try:
                    found.append(unseal(line).fields.get("payload") or {})
                except BadLine:
                    continue  # the scan names it
        return found


def _legacy(path: Path, first: bytes | None) -> VerifyResult | None:
    """A trail from before signatures is reported as such, whatever key is at hand."""
    try:
        unseal(first) if first else None
    except BadLine as exc:
        if str(exc).startswith("unsigned"):
            return VerifyResult(False, str(path), 0, 0, None, 1, f"{exc}; the whole trail is unsigned",
                                legacy_unsigned=True)
    return None


def _has_lines(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _trail_id(first: bytes | None) -> str | None:
    try:
        return unseal(first).chain if first else None
    except BadLine:
        return None  # the scan names what is wrong with line 1


class _Scan:
    """The single pass over the trail."""

    def __init__(self, path: Path, ring: KeyRing, all_signatures: bool) -> None:
        self.path, self.ring, self.all = path, ring, all_signatures
        self.count, self.sigs, self.legacy = 0, 0, False
        self.head: str | None = None
        self.pending: list[tuple[int, Sealed, Verifier]] = []
        self.prev_key: Verifier = ring.trusted

    def run(self, lines: Iterator[bytes], pins: Pins) -> None:
        last_pin = max(pins.table, default=-1)
        prev: Sealed | None = None
        for lineno, line in enumerate(lines, start=1):
            record, key = self._record(lineno, line, prev)
            seq, pin = lineno - 1, pins.table.get(lineno - 1)
            must = self.all or record.fields.get("event") in (ROTATED, ACCEPTED) or (pin is None and seq > last_pin)
            if must:
                self._check_signature(lineno, record, key)
            if pin is not None:
                self._match_pin(lineno, record, key, pin, must)
            elif not must:
                self._keep(lineno, record, key)
            self._advance(lineno, record)
            prev, self.count, self.head = record, lineno, record.chain
        if self.count - 1 < last_pin:
            self._flush_pending()
            where = pins.table[last_pin][1]
            raise Failed(self.path, self.count + 1, f"trail ends at record {self.count - 1} but {where} vouches for "
                                                    f"record {last_pin} (truncated)")
        self._flush_pending()
        self._finish()

    def _advance(self, lineno: int, record: Sealed) -> None:
        try:
            self.ring.after(record.fields)
        except KeyProblem as exc:
            raise Failed(self.path, lineno, str(exc)) from None

    def _finish(self) -> None:
        try:
            self.ring.finish()
        except KeyProblem as exc:
            raise Failed(self.path, 1, str(exc)) from None

    def _record(self, lineno: int, line: bytes, prev: Sealed | None) -> tuple[Sealed, Verifier]:
        try:
            record = unseal(line)
        except BadLine as exc:
            self.legacy = lineno == 1 and str(exc).startswith("unsigned")
            self._flush_pending()
            raise Failed(self.path, lineno, str(exc)) from None
        f = record.fields
        if f.get("seq") != lineno - 1:
            self._flush_pending()
            raise Failed(self.path, lineno, f"sequence number {f.get('seq')!r} where {lineno - 1} was expected "
                                            f"(deleted, inserted or reordered)")
        if f.get("prev_sha256") != (prev.chain if prev else GENESIS):
            self._flush_pending()
            if prev is not None and not self.prev_key.verify(prev.sig, prev.body):
                raise Failed(self.path, lineno - 1, "signature does not verify (edited and re-hashed, or forged "
                                                    "without the key)")
            raise Failed(self.path, lineno, "prev_sha256 does not match the record before it (deleted, inserted "
                                            "or reordered)")
        try:
            self.prev_key = self.ring.expect(f)
        except KeyProblem as exc:
            self._flush_pending()
            raise Failed(self.path, lineno, str(exc)) from None
        return record, self.prev_key

    def _check_signature(self, lineno: int, record: Sealed, key: Verifier) -> None:
        self.sigs += 1
        if not key.verify(record.sig, record.body):
            self._flush_pending()
            raise Failed(self.path, lineno, "signature does not verify (forged or edited without the key)")

    def _keep(self, lineno: int, record: Sealed, key: Verifier) -> None:
        self.pending.append((lineno, record, key))
        if len(self.pending) >= _PENDING_MAX:
            self._flush_pending()

    def _flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for lineno, record, key in pending:
            self._check_signature(lineno, record, key)

    def _match_pin(self, lineno: int, record: Sealed, key: Verifier, pin: tuple[str, str, bool],
                   checked: bool) -> None:
        if record.chain == pin[0]:
            if pin[2] and not self.all:
                self.pending = []  # a verified, anchored checkpoint vouches for these through the chain
            elif not checked:
                self._keep(lineno, record, key)  # pinned, but only a later verified checkpoint vouches for it
            return
        self._flush_pending()
        if not checked:
            self._check_signature(lineno, record, key)
        raise Failed(self.path, lineno, f"record {lineno - 1} differs from {pin[1]} (rewritten and re-signed, "
                                        f"or the trail replaced)")

    def result(self, ok: bool, failed: Failed | None, pins: Pins, sink: Any, warnings: list[str]) -> VerifyResult:
        warnings = list(warnings) + ([] if sink is not None else [
            "no anchor: a tail deleted together with its local checkpoints would go unseen"])
        return VerifyResult(
            ok=ok, path=failed.path if failed else str(self.path), records=self.count,
            checkpoints=pins.local, head_sha256=self.head if ok else None,
            first_bad_line=failed.line if failed else None, reason=failed.reason if failed else None,
            key_id=self.ring.trusted.key_id, anchor=sink.location if sink is not None else None,
            anchored_checkpoints=pins.anchored, anchored_through_seq=pins.anchored_max,
            signatures_checked=self.sigs, legacy_unsigned=self.legacy, warnings=warnings)
