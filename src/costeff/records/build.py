"""A Triton build record (`costeff_build.json` in a repository entry): what was built from what."""

from __future__ import annotations

from costeff.records import Record


class BuildRecord(Record):
    """The fields readers use; every other field is kept as written."""
