"""A ramp decision (`costeff ramp decide`): the gates, the economics and the step."""

from __future__ import annotations

from costeff.records import Record


class RampRecord(Record):
    """The fields readers use; every other field is kept as written."""
