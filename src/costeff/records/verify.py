"""A verify report (the `verify` stage): the batcher's predictions beside real Triton's measurements."""

from __future__ import annotations

from costeff.records import Record


class VerifyRecord(Record):
    """The fields readers use; every other field is kept as written."""
