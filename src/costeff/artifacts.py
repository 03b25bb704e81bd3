"""Artifact layout, atomic writes and provenance shared by every capability.

Every JSON is written atomically (temp file in the same folder, fsync, rename), so
a reader never sees half a report and an interrupted run leaves no partial file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from costeff import __version__
from costeff._jsonable import to_jsonable
from costeff.home import Home

SCHEMA_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_stamp(when: datetime | None = None) -> str:
    """The artifact folder timestamp, e.g. ``20261127_142311Z``."""
    return (when or utc_now()).strftime("%Y%m%d_%H%M%SZ")


def iso_utc(when: datetime | None = None) -> str:
    return (when or utc_now()).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Workspace:
    """Where one run's artifacts live (docs/architecture.md#records): ``root`` and its Triton ``repository``,
    with the ``home`` that signs and anchors its records (kept outside them, ``costeff.home``).

    Built once, at the command line's edge, and handed to every function that reads or writes
    artifacts; nothing below the CLI looks up where these folders are.
    """

    root: Path
    repository: Path
    home: Home

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "repository", Path(self.repository))

    @classmethod
    def at(cls, root: Path | str, home: Home) -> "Workspace":
        """Everything under ``root``, the repository too (``root/model_repository``), as ``costeff run --out``."""
        return cls(Path(root), Path(root) / "model_repository", home)

    @property
    def cost(self) -> Path:
        return self.root / "cost"

    @property
    def models(self) -> Path:
        return self.cost / "models"

    @property
    def quant(self) -> Path:
        return self.cost / "quant"

    @property
    def batching(self) -> Path:
        return self.cost / "batching"

    @property
    def reaper(self) -> Path:
        return self.cost / "reaper"

    @property
    def ramp(self) -> Path:
        return self.cost / "ramp"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def flags(self) -> Path:
        return self.root / "flags" / "flags.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def run_dir(self, stage: str | None = None, out: Path | str | None = None) -> Path:
        """The folder a run writes into: ``out`` when given, else a new timestamped one."""
        if out is not None:
            return Path(out)
        base = self.cost if stage is None else self.cost / stage
        return base / utc_stamp()

    def latest(self, stage: str | None, filename: str) -> Path | None:
        """The newest ``<stage>/<ts>/<filename>``, or None when no run wrote one."""
        base = self.cost if stage is None else self.cost / stage
        found = sorted(base.glob(f"*/{filename}")) if base.is_dir() else []
        return found[-1] if found else None


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temp file and a rename; ``mode`` 0644 by default, since
    others read what costeff writes (a Triton server running as another user reads config.pbtxt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # mkstemp makes 0600, which only costeff's own user could read
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # A full disk or an I/O error on write says nothing of the file: name the one that was not written.
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def writable_dir(path: Path | str, keep: bool = True) -> Path:
    """``path``, proven writable before anything is done that a failed write would strand; created when
    ``keep``, else the folders made for the proof are removed again."""
    from costeff.errors import InputError

    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".costeff-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{exc.filename or path}: cannot write here ({exc.strerror or exc})") from None
    finally:
        for folder in ([] if keep else missing):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: Path | str, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj))


def provenance(model_path: Path | str | None = None, *, hardware: bool = True) -> dict[str, Any]:
    """The header every record carries: schema, time, version, model hash, hardware."""
    from costeff.hardware import detect

    header: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": iso_utc(),
        "costeff_version": __version__,
        "model_sha256": sha256_file(model_path) if model_path else None,
    }
    if hardware:
        header["hardware"] = detect().to_dict()
    return header


def inputs_of(**records: Path | str | None) -> dict[str, str]:
    """The ``inputs`` block a record carries: ``{kind: SHA-256 of the file it was made from}``, for each
    record given (None and missing files are left out). ``costeff pack`` follows these hashes to pack one
    coherent chain of records (``costeff.pack.chain``)."""
    return {kind: sha256_file(path) for kind, path in records.items() if path and Path(path).is_file()}


@contextlib.contextmanager
def exclusive_lock(lock_path: Path | str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    Serialises writers across processes (two ``costeff`` commands appending to the
    same audit trail or flag store); the lock goes with the process if it dies.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
