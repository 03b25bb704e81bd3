"""A quantization report (`costeff quantize`): the variants, their fidelity and speed, and the selection."""

from __future__ import annotations

from costeff.records import Record
from costeff.records.build import ServedSelected, ServedVariant


class QuantRecord(Record):
    """The fields readers use; every other field is kept as written."""

    # read by serving (costeff.serving.served, costeff.serving.precision)
    selected: ServedSelected | None = None
    variants: list[ServedVariant] = []
