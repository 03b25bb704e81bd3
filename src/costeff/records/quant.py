"""A quantization report (`costeff quantize`): the variants, their fidelity and speed, and the selection."""

from __future__ import annotations

from costeff.records import Record


class QuantRecord(Record):
    """The fields readers use; every other field is kept as written."""
