"""Strict number parsing for everything costeff reads from files and servers.

Python's ``float()`` and ``int()`` are too kind for data that drives decisions:
``float("0_0")`` and ``float("٠")`` (an Arabic-Indic zero) are 0.0, ``float(False)``
is 0.0, and ``"nan"``, ``"inf"`` and ``"1e309"`` become numbers that make every
comparison lie. Here a number is an ``int`` or ``float`` (never a ``bool``) or a
string of ASCII digits in plain decimal or exponent notation, and it is finite.

API: ``finite(value)`` (a float, or None when ``value`` is not a finite number),
``is_number_text(text)``, ``loads_finite(text)`` (JSON without NaN/Infinity),
``MAX_USD`` (the largest money amount one row may carry).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# One charge, allocation or day of PnL above a billion dollars is a broken export, not a bill.
MAX_USD = 1e9


def is_number_text(text: str) -> bool:
    """``text`` is a decimal number in ASCII: no underscores, no other scripts' digits, no 'nan' or 'inf'."""
    return _NUMBER.fullmatch(text) is not None


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None: booleans, odd digits, NaN, infinities and overflow are refused."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and is_number_text(value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def loads_finite(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity (Python accepts them; JSON does not)."""
    value = json.loads(text, parse_constant=_no_constant)
    _check_finite(value)
    return value


def _check_finite(value: Any) -> None:
    """Numbers too large for a float (``1e309``) parse as infinity: refuse them too."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item!r} is not a finite number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
