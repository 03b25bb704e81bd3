"""A drift report (`costeff drift check`): the windows of live observations against the reference."""

from __future__ import annotations

from costeff.records import Record


class DriftRecord(Record):
    """The fields readers use; every other field is kept as written."""
