"""A signed, hash-chained JSON-lines log, anchored outside itself.

Each record is one sealed line (``costeff.audit.sealed``): its body carries
``seq``, ``prev_sha256`` (the SHA-256 of the previous line, signature included) and
``key_id``, and an Ed25519 signature covers the body's exact bytes. Without the
private key nobody can edit, insert, reorder or append a record that verifies.

Deleting records from the *end* leaves a valid shorter chain, so every
``checkpoint_every`` records (default: every record) a signed checkpoint naming
the head is appended to ``audit.checkpoints.jsonl`` and published to an
append-only sink outside the trail (``costeff.audit.anchor``), which also holds the
trail's identity (its first line's SHA-256) for each signing key. Checkpoints are
chained too, so one signature authenticates every checkpoint before it.

Before it appends, a writer checks the signature of every record since the last
point it can trust (``costeff.audit.tail``) and refuses, appending nothing, when one
fails; its checkpoints say so (``records_verified``), which is what lets a verifier
skip their records' signatures. A writer whose key is not the one in force refuses
too: a new key takes over only through ``rotate`` (a record signed by the old key
naming the new one, then the new key's acceptance).

Writers append with O_APPEND, hold an exclusive lock (fcntl) while reading the head
and appending, check that the whole line was written and fsync it; a short or failed
write is cut back off (the file truncated to its previous length) and raised, so the
trail never keeps half a line.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any, Iterator

from costeff._jsonable import to_jsonable
from costeff.artifacts import Workspace, exclusive_lock, iso_utc
from costeff.audit.files import CHECKPOINT_NAME, LOG_NAME, _append_bytes, _first_line, _last_line
from costeff.audit.keys import Signer, home_signer
from costeff.audit.sealed import BadLine, seal, unseal
from costeff.audit.tail import GENESIS, Head, check_lines, read_from, still_there
from costeff.errors import InputError
from costeff.home import Home

LOCK_NAME = ".audit.lock"
_DEFAULT = object()
__all__ = ["AuditLog", "GENESIS"]


class AuditLog:
    """The audit trail in ``directory`` (``audit.jsonl`` + ``audit.checkpoints.jsonl``).

    ``signer`` defaults to ``home``'s key (created on first use unless provisioned); ``anchor`` (a sink,
    a URI, or None for no anchor) to ``home``'s anchor. Without ``home``, give both.
    """

    def __init__(self, directory: Path | str, checkpoint_every: int = 1, signer: Signer | None = None,
                 anchor: Any = _DEFAULT, protect: tuple[Path, ...] = (), home: Home | None = None) -> None:
        self.directory = Path(directory)
        self.home = home
        self.protect = protect  # folders the signing key must lie outside of, besides ``directory``
        self.path = self.directory / LOG_NAME
        self.checkpoint_path = self.directory / CHECKPOINT_NAME
        self.checkpoint_every = max(1, int(checkpoint_every))
        self._signer, self._anchor, self._batching = signer, anchor, False
        self._head: Head | None = None  # how far this process verified (and wrote) the trail
        self._identity_checked = False
        self._anchor_ahead = True  # the anchor may hold checkpoints the local file lacks: look once
        self._read_cache: tuple[Head, list[dict[str, Any]], bytes] | None = None

    @classmethod
    def of(cls, workspace: Workspace) -> "AuditLog":
        """The workspace's trail; its signing key must lie outside the whole workspace."""
        return cls(workspace.audit, protect=(workspace.root,), home=workspace.home)

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = home_signer(self._home("signer"), protect=(self.directory, *self.protect))
        return self._signer

    def _home(self, what: str) -> Home:
        if self.home is None:
            raise TypeError(f"AuditLog({self.directory}): no {what} and no home to take it from")
        return self.home

    @property
    def sink(self) -> Any:
        from costeff.audit.anchor import sink_from_uri

        if self._anchor is _DEFAULT:
            self._anchor = sink_from_uri(self._home("anchor").anchor)
        elif isinstance(self._anchor, str):
            self._anchor = sink_from_uri(self._anchor)
        return self._anchor

    def append(self, event: str, payload: dict[str, Any], actor: str = "costeff") -> dict[str, Any]:
        """Sign and append one record; return it (with ``seq``, ``prev_sha256`` and ``sha256``).

        InputError (nothing appended) when a record since the last verified point does not verify,
        or this key is not the one in force; DependencyError when the write or the anchor fails."""
        body_payload = to_jsonable(payload)
        json.dumps(body_payload, allow_nan=False)  # NaN or a non-JSON value fails before anything is written
        with self._locked():
            head = self._verified_head()
            if head.ring.current not in (None, self.signer.key_id) or head.ring.awaiting is not None:
                raise InputError(f"{self.path}: the trail is signed by key {head.ring.current}, and no rotation "
                                 f"record announced this key {self.signer.key_id} ({self.signer.path}); rotate "
                                 f"keys with `costeff audit keygen --force` while the old key is still in place")
            body = self._write_record(head, event, body_payload, actor, self.signer)
            if not self._batching and (body["seq"] + 1) % self.checkpoint_every == 0:
                self._checkpoint(self._written)
        return body

    def rotate(self, new: Signer) -> dict[str, Any]:
        """Hand the trail over to ``new``: a record signed by the current key naming it, then its acceptance."""
        from costeff.audit.keyring import ACCEPTED, ROTATED, rotation_payload

        with self._locked():
            head = self._verified_head()
            old = self.signer
            if head.ring.current not in (None, old.key_id):
                raise InputError(f"{self.path}: the trail is signed by key {head.ring.current}, not {old.key_id} "
                                 f"({old.path}); only the key in force can announce its successor")
            if head.seq >= 0:
                self._write_record(head, ROTATED, rotation_payload(old.verifier(), new.verifier()), "costeff", old)
                body = self._write_record(self._written, ACCEPTED, {"key_id": new.key_id}, "costeff", new)
            self._signer, self._identity_checked = new, False
            if head.seq >= 0:
                self._checkpoint(self._written)
                return body
            return {}

    def _write_record(self, head: Head, event: str, payload: Any, actor: str, signer: Signer) -> dict[str, Any]:
        body = {"seq": head.seq + 1, "ts": iso_utc(), "event": event, "actor": actor,
                "host": socket.gethostname(), "payload": payload, "prev_sha256": head.chain,
                "key_id": signer.key_id}
        line, digest, chain = seal(body, signer)
        _append_bytes(self.path, line)
        head.ring.expect(body)
        head.ring.after(body)
        self._head = Head(body["seq"], chain, head.end + len(line), head.ring, head.trail or chain)
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
            if _last_line(self.path) is None:
                return None
            head = self._verified_head()
            self._checkpoint(head)
            line = _last_line(self.path)
            assert line is not None  # there was one above, and appends wait for the lock held here
            last = unseal(line)
            return {**last.fields, "sha256": last.sha256, "line_sha256": last.chain}

    def records(self) -> list[dict[str, Any]]:
        """Every record as written, unverified (see ``verified_records`` before acting on one)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def verified_records(self) -> list[dict[str, Any]]:
        """The records, only if the whole trail verifies against this log's own key and anchor.

        The file is read once; what is verified is what is returned (a file swapped in meanwhile is
        never acted on). A second call verifies only what was appended since (``costeff.audit.reader``)."""
        from costeff.audit.reader import verified_records

        return verified_records(self)

    def head(self) -> dict[str, Any] | None:
        with self._locked():
            last = _last_line(self.path)
            if last is None:
                return None
            head = _unseal_or_refuse(self.path, last, "last record")
            return {**head.fields, "sha256": head.sha256, "line_sha256": head.chain}

    def trail_id(self) -> str | None:
        """The SHA-256 of the first line: names this trail in the anchor."""
        first = _first_line(self.path)
        return None if first is None else _unseal_or_refuse(self.path, first, "line 1").chain

    @property
    def _written(self) -> Head:
        """The head of the record this process just wrote (``_write_record`` sets it)."""
        assert self._head is not None, "no record written yet"
        return self._head

    def _verified_head(self) -> Head:
        """Check every record since the last trusted point; refuse (InputError) when one does not verify."""
        from costeff.audit.writer import resume_point

        head, fresh = self._head, False
        if head is None or not still_there(self.path, head):
            head, fresh = resume_point(self), True
            read = self._read_cache[0] if self._read_cache else None
            if read is not None and read.seq > head.seq and still_there(self.path, read):
                head = read  # this process verified that far to act on the records: not again to append
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != head.end:
            head = check_lines(self.path, read_from(self.path, head.end), head, "refusing to append to")
        if fresh and head.seq >= 0:
            from costeff.audit.writer import refuse_if_cut

            refuse_if_cut(self, head)
        if not self._identity_checked:
            from costeff.audit.writer import check_identity

            check_identity(self, head)
        self._head = head
        return head

    def _checkpoint(self, head: Head) -> None:
        from costeff.audit.writer import write_checkpoint

        write_checkpoint(self, head)

    def _locked(self) -> Any:
        return exclusive_lock(self.directory / LOCK_NAME)


def _unseal_or_refuse(path: Path, line: bytes, what: str) -> Any:
    try:
        return unseal(line)
    except BadLine as exc:
        raise InputError(f"{path}: {what}: {exc}; run `costeff audit verify {path.parent}` (an unsigned trail "
                         f"from an earlier costeff must be moved aside to start a signed one)") from None
