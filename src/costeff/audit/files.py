"""The audit trail's files at the byte level: their names, and whole, durable appends.

Shared by the log, the checkpoint writer, the pins and the verifier, and importing none of them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from costeff.audit.tail import line_ending_at
from costeff.errors import DependencyError

LOG_NAME = "audit.jsonl"
CHECKPOINT_NAME = "audit.checkpoints.jsonl"
IDENTITY_KIND = "costeff audit trail"


def _append_bytes(path: Path, line: bytes) -> None:
    """Append ``line`` whole and durably, or not at all: a short or failed write is truncated away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        before = os.fstat(fd).st_size  # writers hold the trail's lock: nobody else appends meanwhile
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, f"short write, {written} of {len(line)} bytes (disk full?)")
            os.fsync(fd)
        except OSError as exc:
            _cut_back(fd, before)
            raise DependencyError(f"{path}: could not append ({exc.strerror or exc}); cut back to its previous "
                                  f"{before} bytes, so no partial line is left") from None
    finally:
        os.close(fd)


def _cut_back(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
        os.fsync(fd)


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
        return line_ending_at(fh, os.fstat(fh.fileno()).st_size)
