"""A hash-chained JSON-lines log.

Each record carries ``prev_sha256`` (the hash of the record before it) and its own
``sha256`` over its canonical JSON. Editing, deleting, reordering or inserting a
record breaks the chain at that line. Deleting records from the *end* leaves a
valid shorter chain, so the head hash is also written, every
``checkpoint_every`` records, to a separate checkpoint file: a log that no longer
reaches a checkpoint's record, or disagrees with its hash, has been truncated.

Writers append with O_APPEND, fsync every record and hold an exclusive lock
(fcntl) while reading the head and appending, so two processes never fork the
chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff._jsonable import to_jsonable
from costeff.artifacts import Layout, exclusive_lock, iso_utc
from costeff.errors import InputError

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"
CHECKPOINT_NAME = "audit.checkpoints.jsonl"
LOCK_NAME = ".audit.lock"


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


class AuditLog:
    """The audit trail in ``directory`` (``audit.jsonl`` + ``audit.checkpoints.jsonl``)."""

    def __init__(self, directory: Path | str, checkpoint_every: int = 16) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.checkpoint_path = self.directory / CHECKPOINT_NAME
        self.checkpoint_every = checkpoint_every

    def append(self, event: str, payload: dict[str, Any], actor: str = "costeff") -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``prev_sha256`` and ``sha256``)."""
        with self._locked():
            head = self._head()
            record = {
                "seq": head["seq"] + 1 if head else 0,
                "ts": iso_utc(),
                "event": event,
                "actor": actor,
                "host": socket.gethostname(),
                "payload": to_jsonable(payload),
                "prev_sha256": head["sha256"] if head else GENESIS,
            }
            record["sha256"] = record_hash(record)
            _append_line(self.path, record)
            if (record["seq"] + 1) % self.checkpoint_every == 0:
                self._write_checkpoint(record)
        return record

    def checkpoint(self) -> dict[str, Any] | None:
        """Write the current head to the checkpoint file (e.g. at the end of a run)."""
        with self._locked():
            head = self._head()
            if head is not None:
                self._write_checkpoint(head)
            return head

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def head(self) -> dict[str, Any] | None:
        with self._locked():
            return self._head()

    def _head(self) -> dict[str, Any] | None:
        last = _last_line(self.path)
        if last is None:
            return None
        try:
            return json.loads(last)
        except json.JSONDecodeError:
            raise InputError(f"{self.path}: last line is not JSON; run `costeff audit verify {self.directory}`") from None

    def _write_checkpoint(self, record: dict[str, Any]) -> None:
        _append_line(self.checkpoint_path, {"seq": record["seq"], "sha256": record["sha256"], "ts": iso_utc()})

    def _locked(self) -> Any:
        return exclusive_lock(self.directory / LOCK_NAME)


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    line = (json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_line(path: Path) -> str | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos, buf = fh.tell(), b""
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            lines = buf.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or pos == 0:
                return lines[-1].decode("utf-8")
    return None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    path: str
    records: int
    checkpoints: int
    head_sha256: str | None
    first_bad_line: int | None = None
    reason: str | None = None


def verify(directory: Path | str) -> VerifyResult:
    """Check the chain and the checkpoints; name the first bad line (1-based)."""
    log = AuditLog(directory)
    if not log.path.exists():
        raise InputError(f"{log.path}: no audit log here; expected {LOG_NAME} in {directory}")
    by_seq: dict[int, str] = {}
    prev, count = GENESIS, 0
    with open(log.path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            problem = _check_line(line, lineno - 1, prev)
            if problem:
                return VerifyResult(False, str(log.path), count, 0, prev, lineno, problem)
            record = json.loads(line)
            prev, count = record["sha256"], count + 1
            by_seq[record["seq"]] = record["sha256"]
    return _check_checkpoints(log, by_seq, count, prev)


def _check_line(line: str, expected_seq: int, prev: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "not valid JSON"
    if not isinstance(record, dict) or "sha256" not in record:
        return "not an audit record"
    if record.get("seq") != expected_seq:
        return f"sequence number {record.get('seq')} where {expected_seq} was expected (deleted, inserted or reordered)"
    if record.get("prev_sha256") != prev:
        return "prev_sha256 does not match the record before it (deleted, inserted or reordered)"
    if record_hash(record) != record["sha256"]:
        return "content does not match its sha256 (edited)"
    return None


def _check_checkpoints(log: AuditLog, by_seq: dict[int, str], count: int, head: str) -> VerifyResult:
    checkpoints = 0
    if log.checkpoint_path.exists():
        with open(log.checkpoint_path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    cp = json.loads(line)
                    seq, digest = int(cp["seq"]), str(cp["sha256"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    return VerifyResult(False, str(log.checkpoint_path), count, checkpoints, head, lineno,
                                        "checkpoint line is malformed")
                checkpoints += 1
                if seq not in by_seq:
                    return VerifyResult(False, str(log.path), count, checkpoints, head, count + 1,
                                        f"log ends at record {count - 1} but checkpoint {lineno} vouches for "
                                        f"record {seq} (truncated)")
                if by_seq[seq] != digest:
                    return VerifyResult(False, str(log.path), count, checkpoints, head, seq + 1,
                                        f"record {seq} does not match checkpoint {lineno} (rewritten)")
    return VerifyResult(True, str(log.path), count, checkpoints, head if count else None)


def default_log() -> AuditLog:
    return AuditLog(Layout.default().audit)
