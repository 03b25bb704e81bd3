"""A reaper report (`costeff reap`): the decisions of one replay or round, and the GPU-hours saved."""

from __future__ import annotations

from costeff.records import Record


class ReaperRecord(Record):
    """The fields readers use; every other field is kept as written."""
