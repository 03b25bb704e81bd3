"""A run manifest (`cost/runs/<stamp>.json`): the records one `costeff run` produced."""

from __future__ import annotations

from costeff.records import Record


class RunRecord(Record):
    """The fields readers use; every other field is kept as written."""
