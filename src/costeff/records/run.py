"""A run manifest (`cost/runs/<stamp>.json`): the records one `costeff run` produced.

Its file name is the run's stamp, so it has no fixed name like the stage records:
:func:`run_kind` is the kind of one stamp's manifest, with the same one writer (typed,
atomic) and one reader (a missing or corrupt manifest is an ``InputError`` naming it).
"""

from __future__ import annotations

from pathlib import Path

from costeff.records import Kind, Part, Record

FOLDER = "runs"  # under cost/


class RunEntry(Part):
    """One record of the run, by path and SHA-256 as the run wrote it."""

    path: str
    sha256: str


class RunRecord(Record):
    """The fields readers use; every other field is kept as written."""

    run: str
    records: dict[str, RunEntry]  # pack name ("profile", "profile_fp32", "quant", ..., "build") -> its record


def run_kind(stamp: str) -> Kind[RunRecord]:
    """The kind of the manifest of run ``stamp``: ``cost/runs/<stamp>.json``."""
    return Kind("run", FOLDER, f"{stamp}.json", RunRecord)


def read_run(path: Path | str) -> RunRecord:
    """The run manifest in ``path`` (its stamp is the file name)."""
    return run_kind(Path(path).stem).read(path)
