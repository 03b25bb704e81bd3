"""Verify a signed audit trail: structure, chain, signatures, checkpoints and the anchor.

One pass over the trail, in constant memory except for the checkpoint table.
A signed checkpoint fixes the SHA-256 of the record it names, and through the
hash chain the exact bytes of every record before it; so a record that a valid
checkpoint covers is authenticated by that checkpoint's signature, and its own
signature is checked only when something disagrees (to name the first bad line)
or with ``all_signatures``. Records after the last checkpoint are checked one by
one. The anchored checkpoints show a trail cut back below them as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costeff.audit.anchor import sink_from_uri
from costeff.audit.keys import Verifier, load_verifier
from costeff.audit.log import CHECKPOINT_NAME, GENESIS, LOG_NAME, _first_line
from costeff.audit.sealed import BadLine, Sealed, unseal
from costeff.errors import InputError

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


class _Failed(Exception):
    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.path, self.line, self.reason = str(path), line, reason


@dataclass
class _Pins:
    """seq -> (sha256, where) from every checkpoint source, after each source's own chain verified."""

    table: dict[int, tuple[str, str]] = field(default_factory=dict)
    local: int = 0
    anchored: int = 0
    anchored_max: int | None = None


def verify(directory: Path | str, pubkey: Verifier | Path | str | None = None, anchor: Any = _DEFAULT,
           all_signatures: bool = False) -> VerifyResult:
    """Check the trail in ``directory``; the result names the first bad line (1-based) and why."""
    directory = Path(directory)
    path = directory / LOG_NAME
    if not path.exists() and not (directory / CHECKPOINT_NAME).exists():
        raise InputError(f"{path}: no audit log here; expected {LOG_NAME} in {directory}")
    legacy = _legacy(path)
    if legacy is not None:
        return legacy
    sink = sink_from_uri(None) if anchor is _DEFAULT else (sink_from_uri(anchor) if isinstance(anchor, str)
                                                           else anchor)
    verifier = pubkey if isinstance(pubkey, Verifier) else load_verifier(pubkey)
    scan, pins = _Scan(path, verifier, all_signatures), _Pins()
    try:
        trail = _trail_id(path)
        if trail is None and _has_lines(directory / CHECKPOINT_NAME) and not _has_lines(path):
            raise _Failed(path, 1, "the trail is empty or missing but checkpoints vouch for its records (truncated)")
        pins = _load_pins(directory, trail, verifier, sink, all_signatures) if trail else pins
        scan.run(pins)
    except _Failed as failed:
        return scan.result(False, failed, pins, sink)
    return scan.result(True, None, pins, sink)


def _legacy(path: Path) -> VerifyResult | None:
    """A trail from before signatures is reported as such, whatever key is at hand."""
    first = _first_line(path) if path.exists() else None
    try:
        unseal(first) if first else None
    except BadLine as exc:
        if str(exc).startswith("unsigned"):
            return VerifyResult(False, str(path), 0, 0, None, 1, f"{exc}; the whole trail is unsigned",
                                legacy_unsigned=True)
    return None


def _has_lines(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _trail_id(path: Path) -> str | None:
    first = _first_line(path)
    try:
        return unseal(first).chain if first else None
    except BadLine:
        return None  # the scan names what is wrong with line 1


def _load_pins(directory: Path, trail: str | None, verifier: Verifier, sink: Any, all_sigs: bool) -> _Pins:
    pins = _Pins()
    local_path = directory / CHECKPOINT_NAME
    if local_path.exists():
        with open(local_path, "rb") as fh:
            items = [(str(local_path), n, line) for n, line in enumerate(fh, start=1)]
        pins.local, _ = _add_chain(pins, items, trail, verifier, all_sigs, "local checkpoint")
    if sink is not None and trail is not None:
        items = [(where, 1, data) for where, data in sink.checkpoints(trail)]
        pins.anchored, pins.anchored_max = _add_chain(pins, items, trail, verifier, all_sigs, "anchored checkpoint")
        if pins.local and not pins.anchored:
            raise _Failed(sink.location, None, f"no anchored checkpoint for this trail (id {trail[:16]}) although "
                                               f"{pins.local} local ones exist: the anchor was lost or is not the one "
                                               f"this trail was written with (pass --anchor, or --no-anchor)")
    return pins


def _add_chain(pins: _Pins, items: list[tuple[str, int, bytes]], trail: str | None, verifier: Verifier,
               all_sigs: bool, kind: str) -> tuple[int, int | None]:
    """Check one source's checkpoint chain; the last signature vouches for every checkpoint before it."""
    prev, prev_seq, last = GENESIS, -1, None
    for where, line, data in items:
        cp = _checkpoint_line(where, line, data, kind)
        f = cp.fields
        if f.get("prev_checkpoint_sha256") != prev:
            _blame_previous(last, verifier, kind)
            raise _Failed(where, line, f"{kind} does not follow the one before it (deleted, inserted or rewritten)")
        if not isinstance(f.get("seq"), int) or f["seq"] <= prev_seq or not isinstance(f.get("line_sha256"), str):
            raise _Failed(where, line, f"{kind} has a bad seq or line_sha256 field")
        if f.get("trail") != trail:
            raise _Failed(where, line, f"{kind} belongs to another trail ({str(f.get('trail'))[:16]})")
        if all_sigs and not cp.signed_by(verifier):
            raise _Failed(where, line, f"{kind} signature does not verify with key {verifier.key_id} (forged)")
        _pin(pins, f["seq"], f["line_sha256"], f"{kind} {where}" + (f" line {line}" if kind.startswith("local") else ""))
        prev, prev_seq, last = cp.chain, f["seq"], (where, line, cp)
    if last is not None and not last[2].signed_by(verifier):
        raise _Failed(last[0], last[1], f"{kind} signature does not verify with key {verifier.key_id} "
                                        f"(rewritten or forged without the key)")
    return len(items), (prev_seq if last is not None else None)


def _checkpoint_line(where: str, line: int, data: bytes, kind: str) -> Sealed:
    try:
        return unseal(data)
    except BadLine as exc:
        raise _Failed(where, line, f"{kind}: {exc}") from None


def _blame_previous(last: tuple[str, int, Sealed] | None, verifier: Verifier, kind: str) -> None:
    if last is not None and not last[2].signed_by(verifier):
        raise _Failed(last[0], last[1], f"{kind} signature does not verify (edited and re-hashed, or forged)")


def _pin(pins: _Pins, seq: int, sha: str, where: str) -> None:
    known = pins.table.get(seq)
    if known and known[0] != sha:
        raise _Failed(where, None, f"checkpoint for record {seq} disagrees with {known[1]} (two signed histories)")
    if known is None or where.startswith("anchored"):  # name the anchor when it vouches: it is the stronger
        pins.table[seq] = (sha, where)


class _Scan:
    """The single pass over the trail."""

    def __init__(self, path: Path, verifier: Verifier, all_signatures: bool) -> None:
        self.path, self.verifier, self.all = path, verifier, all_signatures
        self.count, self.head, self.sigs, self.legacy = 0, None, 0, False
        self.pending: list[tuple[int, Sealed]] = []

    def run(self, pins: _Pins) -> None:
        last_pin = max(pins.table, default=-1)
        prev: Sealed | None = None
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                record = self._record(lineno, line, prev)
                seq = lineno - 1
                pin = pins.table.get(seq)
                if self.all:
                    self._check_signature(lineno, record)
                if pin is not None:
                    self._match_pin(lineno, record, pin)
                elif seq > last_pin and not self.all:
                    self._check_signature(lineno, record)
                else:
                    self._keep(lineno, record)
                prev, self.count, self.head = record, lineno, record.chain
        if self.count - 1 < last_pin:
            self._flush_pending()
            where = pins.table[last_pin][1]
            raise _Failed(self.path, self.count + 1, f"trail ends at record {self.count - 1} but {where} vouches for "
                                                     f"record {last_pin} (truncated)")

    def _record(self, lineno: int, line: bytes, prev: Sealed | None) -> Sealed:
        try:
            record = unseal(line)
        except BadLine as exc:
            self.legacy = lineno == 1 and str(exc).startswith("unsigned")
            raise _Failed(self.path, lineno, str(exc)) from None
        f = record.fields
        if f.get("seq") != lineno - 1:
            raise _Failed(self.path, lineno, f"sequence number {f.get('seq')!r} where {lineno - 1} was expected "
                                             f"(deleted, inserted or reordered)")
        if f.get("prev_sha256") != (prev.chain if prev else GENESIS):
            if prev is not None and not self._signed(prev):
                self._flush_pending()
                raise _Failed(self.path, lineno - 1, "signature does not verify (edited and re-hashed, or forged "
                                                     "without the key)")
            raise _Failed(self.path, lineno, "prev_sha256 does not match the record before it (deleted, inserted "
                                             "or reordered)")
        if f.get("key_id") != self.verifier.key_id:
            raise _Failed(self.path, lineno, f"signed by key {f.get('key_id')!r}, not {self.verifier.key_id} "
                                             f"({self.verifier.source})")
        return record

    def _signed(self, record: Sealed) -> bool:
        self.sigs += 1
        return self.verifier.verify(record.sig, record.body)

    def _check_signature(self, lineno: int, record: Sealed) -> None:
        if not self._signed(record):
            self._flush_pending()
            raise _Failed(self.path, lineno, "signature does not verify (forged or edited without the key)")

    def _keep(self, lineno: int, record: Sealed) -> None:
        self.pending.append((lineno, record))
        if len(self.pending) >= _PENDING_MAX:
            self._flush_pending()

    def _flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for lineno, record in pending:
            self._check_signature(lineno, record)

    def _match_pin(self, lineno: int, record: Sealed, pin: tuple[str, str]) -> None:
        if record.chain == pin[0]:
            self.pending = []  # the checkpoint's signature vouches for these through the chain
            return
        self._flush_pending()
        self._check_signature(lineno, record)
        raise _Failed(self.path, lineno, f"record {lineno - 1} differs from {pin[1]} (rewritten and re-signed, "
                                         f"or the trail replaced)")

    def result(self, ok: bool, failed: _Failed | None, pins: _Pins, sink: Any) -> VerifyResult:
        warnings = [] if sink is not None else ["no anchor: a tail deleted together with its local checkpoints "
                                                "would go unseen"]
        return VerifyResult(
            ok=ok, path=failed.path if failed else str(self.path), records=self.count,
            checkpoints=pins.local, head_sha256=self.head if ok else None,
            first_bad_line=failed.line if failed else None, reason=failed.reason if failed else None,
            key_id=self.verifier.key_id, anchor=sink.location if sink is not None else None,
            anchored_checkpoints=pins.anchored, anchored_through_seq=pins.anchored_max,
            signatures_checked=self.sigs, legacy_unsigned=self.legacy, warnings=warnings)
