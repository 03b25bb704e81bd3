"""The record registry: every artifact kind declared once, with one writer and one reader.

A *kind* (``PROFILE``, ``QUANT``, ...) names its folder under ``cost/``, its file name and
its typed record (a pydantic model). Everything that writes or reads a record goes
through its kind (docs/architecture.md#records):

- ``KIND.write(folder, record)`` checks the record against its type and writes it
  atomically; a writer calls it *last*, after the record's Markdown, CSV and plots, so a
  record on disk means the whole run folder is complete;
- ``KIND.read(path)`` returns the typed record. There is one error rule: a missing file
  is an ``InputError`` saying it is missing, and a file that is not valid JSON or not
  this kind of record is an ``InputError`` naming the file and what is wrong. A corrupt
  record is never read as "missing";
- ``KIND.latest(layout)`` is the newest ``cost/<folder>/<stamp>/<file>``.

Records keep fields they do not declare (``extra="allow"``): a newer costeff's record
still reads, and what a reader does not know it passes through unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from costeff._jsonable import to_jsonable
from costeff.errors import InputError

if TYPE_CHECKING:
    from costeff.artifacts import Workspace


class Part(BaseModel):
    """A block inside a record. Undeclared fields are kept, so a record round-trips unchanged."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)


class Record(Part):
    """The provenance header every record carries (``costeff.artifacts.provenance``)."""

    schema_version: int | None = None
    created_at: str | None = None
    costeff_version: str | None = None
    model_sha256: str | None = None
    hardware: dict[str, Any] | None = None
    inputs: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data: every field, declared or kept, by its name in the file."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Kind(Generic[R]):
    """One artifact kind: where it lives, what it is called, and its type."""

    name: str  # the pack's name for it: "profile", "quant", ...
    folder: str | None  # under ``cost/``; None for ``cost/`` itself
    filename: str
    model: type[R]

    def base(self, layout: "Workspace") -> Path:
        return layout.cost if self.folder is None else layout.cost / self.folder

    def latest(self, layout: "Workspace") -> Path | None:
        """The newest ``<folder>/<stamp>/<filename>`` (stamps sort by time), or None when none was written."""
        base = self.base(layout)
        found = sorted(base.glob(f"*/{self.filename}")) if base.is_dir() else []
        return found[-1] if found else None

    def path_in(self, folder: Path | str) -> Path:
        return Path(folder) / self.filename

    def write(self, folder: Path | str, record: R | Mapping[str, Any]) -> Path:
        """Check ``record`` against this kind's type, then write it atomically as ``<folder>/<filename>``."""
        from costeff.artifacts import atomic_write_json

        data = record.to_dict() if isinstance(record, Record) else to_jsonable(record)
        path = self.path_in(folder)
        try:
            self.model.model_validate(data)
        except ValidationError as exc:  # a writer bug, not user input: say which field, fail loudly
            raise TypeError(f"{path}: {self.name} record does not match its type: {_first(exc)}") from None
        return atomic_write_json(path, data)

    def read(self, path: Path | str) -> R:
        """The typed record in ``path``. Missing, unreadable or corrupt: one ``InputError`` naming the file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no {self.name} record here (missing file)") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read the {self.name} record ({exc.strerror or exc})") from None
        return self.parse(raw, str(path))

    def parse(self, raw: bytes | str | Mapping[str, Any], where: str) -> R:
        """The typed record from a file's bytes (or already parsed JSON); ``where`` names it in errors."""
        try:
            data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: corrupt {self.name} record, not valid JSON ({exc})") from None
        except RecursionError:
            raise InputError(f"{where}: corrupt {self.name} record: nested too deeply to be a record") from None
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: corrupt {self.name} record: expected a JSON object, "
                             f"found {type(data).__name__}")
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{where}: corrupt {self.name} record: {_first(exc)}") from None
        except RecursionError:
            raise InputError(f"{where}: corrupt {self.name} record: nested too deeply to be a record") from None

    def read_latest(self, layout: "Workspace") -> tuple[Path, R] | None:
        """The newest record of this kind and its path, or None when no run wrote one."""
        path = self.latest(layout)
        return None if path is None else (path, self.read(path))


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "(record)"
    return f"{field}: {err['msg']} (found {err['input']!r:.80})"
