"""A signed, hash-chained JSON-lines log, anchored outside itself.

Each record is one sealed line (``costeff.audit.sealed``): its body carries
``seq``, ``prev_sha256`` (the SHA-256 of the previous line, signature included) and
``key_id``, and an Ed25519 signature covers the body's exact bytes. Without the
private key nobody can edit, insert, reorder or append a record that verifies.

Deleting records from the *end* leaves a valid shorter chain, so every
``checkpoint_every`` records (default: every record) a signed checkpoint naming
the head is appended to ``audit.checkpoints.jsonl`` and published to an
append-only sink outside the trail (``costeff.audit.anchor``). Checkpoints are
chained too, so one signature authenticates every checkpoint before it.

Writers append with O_APPEND, fsync every line and hold an exclusive lock (fcntl)
while reading the head and appending, so two processes never fork the chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from costeff._jsonable import to_jsonable
from costeff.artifacts import Layout, exclusive_lock, iso_utc
from costeff.audit.keys import Signer, load_signer
from costeff.audit.sealed import BadLine, Sealed, seal, unseal
from costeff.errors import InputError

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"
CHECKPOINT_NAME = "audit.checkpoints.jsonl"
LOCK_NAME = ".audit.lock"
_DEFAULT = object()


class AuditLog:
    """The audit trail in ``directory`` (``audit.jsonl`` + ``audit.checkpoints.jsonl``).

    ``signer`` defaults to the key at ``$COSTEFF_AUDIT_KEY`` / ``$COSTEFF_HOME/keys``
    (created on first use); ``anchor`` to ``$COSTEFF_AUDIT_ANCHOR`` or
    ``$COSTEFF_HOME/anchor`` (a sink, a URI, or None for no anchor).
    """

    def __init__(self, directory: Path | str, checkpoint_every: int = 1, signer: Signer | None = None,
                 anchor: Any = _DEFAULT) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.checkpoint_path = self.directory / CHECKPOINT_NAME
        self.checkpoint_every = max(1, int(checkpoint_every))
        self._signer, self._anchor, self._batching = signer, anchor, False

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = load_signer(protect=(self.directory,))
        return self._signer

    @property
    def sink(self) -> Any:
        from costeff.audit.anchor import sink_from_uri

        if self._anchor is _DEFAULT or isinstance(self._anchor, str):
            self._anchor = sink_from_uri(None if self._anchor is _DEFAULT else self._anchor)
        return self._anchor

    def append(self, event: str, payload: dict[str, Any], actor: str = "costeff") -> dict[str, Any]:
        """Sign and append one record; return it (with ``seq``, ``prev_sha256`` and ``sha256``)."""
        body_payload = to_jsonable(payload)
        json.dumps(body_payload, allow_nan=False)  # NaN or a non-JSON value fails before anything is written
        with self._locked():
            head = self._head_sealed()
            body = {"seq": head.fields["seq"] + 1 if head else 0, "ts": iso_utc(), "event": event, "actor": actor,
                    "host": socket.gethostname(), "payload": body_payload,
                    "prev_sha256": head.chain if head else GENESIS, "key_id": self.signer.key_id}
            line, digest, chain = seal(body, self.signer)
            _append_bytes(self.path, line)
            if not self._batching and (body["seq"] + 1) % self.checkpoint_every == 0:
                self._checkpoint(body["seq"], chain)
        return {**body, "sha256": digest, "line_sha256": chain}

    @contextlib.contextmanager
    def batch(self) -> Iterator["AuditLog"]:
        """Append many records and checkpoint once, at the end of the block."""
        self._batching = True
        try:
            yield self
        finally:
            self._batching = False
            self.checkpoint()

    def checkpoint(self) -> dict[str, Any] | None:
        """Checkpoint and anchor the current head (e.g. at the end of a run); returns the head record."""
        with self._locked():
            head = self._head_sealed()
            if head is None:
                return None
            self._checkpoint(head.fields["seq"], head.chain)
            return {**head.fields, "sha256": head.sha256, "line_sha256": head.chain}

    def records(self) -> list[dict[str, Any]]:
        """Every record as written, unverified (see ``verified_records`` before acting on one)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def verified_records(self) -> list[dict[str, Any]]:
        """The records, only if the whole trail verifies against this log's own key and anchor."""
        from costeff.audit.verify import verify

        if not self.path.exists():
            return []
        result = verify(self.directory, self.signer.verifier(), anchor=self.sink)
        if not result.ok:
            raise InputError(f"{result.path} line {result.first_bad_line}: {result.reason}; refusing to act on "
                             f"an audit trail that does not verify (run `costeff audit verify`)")
        return self.records()

    def head(self) -> dict[str, Any] | None:
        with self._locked():
            head = self._head_sealed()
            return {**head.fields, "sha256": head.sha256, "line_sha256": head.chain} if head else None

    def trail_id(self) -> str | None:
        """The SHA-256 of the first line: names this trail in the anchor."""
        first = _first_line(self.path)
        if first is None:
            return None
        try:
            return unseal(first).chain
        except BadLine as exc:
            raise InputError(f"{self.path} line 1: {exc}; run `costeff audit verify {self.directory}`") from None

    def _head_sealed(self) -> Sealed | None:
        last = _last_line(self.path)
        if last is None:
            return None
        try:
            return unseal(last)
        except BadLine as exc:
            raise InputError(f"{self.path}: last record: {exc}; run `costeff audit verify {self.directory}` "
                             f"(an unsigned trail from an earlier costeff must be moved aside to start a signed "
                             f"one)") from None

    def _checkpoint(self, seq: int, chain: str) -> None:
        last = _last_line(self.checkpoint_path)
        try:
            previous = unseal(last) if last is not None else None
        except BadLine as exc:
            raise InputError(f"{self.checkpoint_path}: last checkpoint: {exc}; run `costeff audit verify "
                             f"{self.directory}`") from None
        if previous is not None and previous.fields.get("seq") == seq:
            return  # this head is already checkpointed
        trail = self.trail_id()
        body = {"seq": seq, "line_sha256": chain, "ts": iso_utc(), "trail": trail,
                "prev_checkpoint_sha256": previous.chain if previous else GENESIS, "key_id": self.signer.key_id}
        line, _, _ = seal(body, self.signer)
        if self.sink is not None:
            self.sink.publish(trail, seq, line)  # anchored first: a local checkpoint the anchor lacks proves nothing
        _append_bytes(self.checkpoint_path, line)

    def _locked(self) -> Any:
        return exclusive_lock(self.directory / LOCK_NAME)


def _append_bytes(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(path: Path) -> bytes | None:
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        line = fh.readline()
    return line or None


def _last_line(path: Path) -> bytes | None:
    """The last line with its newline (a last line without one is returned as it is: a cut write)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = pos = fh.tell()
        buf = b""
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut >= 0:
                return buf[cut + 1:]
        return buf if end else None


def default_log() -> AuditLog:
    return AuditLog(Layout.default().audit)
