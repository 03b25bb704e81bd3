"""The one "did you mean" of every error message: a mistyped config key, flag, CSV or FOCUS column, option.

Closeness is difflib's ratio with one cutoff for all of them (``CUTOFF``), so the same typo
gets the same suggestion whether it is in a TOML file, a CSV header or on the command line.
Standard library only: the CLI imports it before any command runs.
"""

from __future__ import annotations

import difflib
from typing import Iterable

CUTOFF = 0.6  # difflib's own default: below it, a "suggestion" is mostly a different word


def closest(text: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The choice closest to ``text`` (difflib ratio at least ``cutoff``), or None."""
    close = difflib.get_close_matches(str(text), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(text: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    match = closest(text, choices, cutoff)
    return f" (did you mean {match!r}?)" if match is not None else ""
