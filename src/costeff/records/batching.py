"""A batching report (`costeff batching optimize`): the searched settings, the simulated latencies, the choice."""

from __future__ import annotations

from costeff.records import Record


class BatchingRecord(Record):
    """The fields readers use; every other field is kept as written."""
