"""A profile (`costeff profile`): per-batch-size throughput, latency and utilisation, and its cost."""

from __future__ import annotations

from costeff.records import Record


class ProfileRecord(Record):
    """The fields readers use; every other field is kept as written."""
