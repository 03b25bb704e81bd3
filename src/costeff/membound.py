"""Refuse batch sizes whose buffers cannot fit in memory, before anything is allocated.

A batch of ``B`` rows needs at least the input and output tensors of ``B`` rows, plus
a copy of the input that feeds it and the runtime's own buffers for them: about
``WORKING_COPIES`` times the bytes of one row's inputs and outputs. Activations
inside the graph come on top, so this is a lower bound: a batch it refuses would
certainly have failed, after minutes of work or at the hands of the kernel's
out-of-memory killer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from costeff.errors import InputError

WORKING_COPIES = 4
SHARE_OF_AVAILABLE = 0.5  # leave the other half to the runtime's activations and everything else


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def row_bytes(model: Path | str) -> int:
    """Bytes of one row of every input and output (a dynamic dimension other than the batch counts as 1)."""
    from costeff.modelio import read_signature

    sig = read_signature(model)
    total = 0
    for spec in (*sig.inputs, *sig.outputs):
        itemsize = np.dtype(spec.dtype).itemsize if not spec.dtype.startswith("onnx:") else 8
        total += itemsize * math.prod(d or 1 for d in spec.sample_shape)
    return max(total, 1)


def check_batch_sizes(model: Path | str, batch_sizes: tuple[int, ...] | list[int], field: str = "--batch-sizes",
                      available: int | None = None) -> None:
    """An InputError naming the largest batch size that fits when one of ``batch_sizes`` cannot."""
    per_row = row_bytes(model) * WORKING_COPIES
    budget = (available if available is not None else available_bytes()) * SHARE_OF_AVAILABLE
    largest = max(batch_sizes)
    if largest * per_row > budget:
        fits = max(1, int(budget // per_row))
        raise InputError(f"{field}: batch size {largest} needs at least {_size(largest * per_row)} for its "
                         f"buffers ({_size(per_row)} per row) but {_size(budget)} may be used here; expected "
                         f"batch sizes up to {fits}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
