"""A gate is a named check: observed value, threshold, comparator and verdict.

NO-DATA (a missing or non-finite observation) counts as a failure: every gate fails
closed.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NO_DATA = "NO-DATA"


_COMPARATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                ">": operator.gt, "==": operator.eq}


@dataclass(frozen=True)
class Gate:
    name: str
    observed: Any
    threshold: Any
    comparator: str
    verdict: Verdict
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


def check(name: str, observed: Any, comparator: str, threshold: Any, detail: str = "") -> Gate:
    """Evaluate ``observed <comparator> threshold``; None or NaN gives NO-DATA."""
    if comparator not in _COMPARATORS:
        raise ValueError(f"unknown comparator {comparator!r}; expected one of {sorted(_COMPARATORS)}")
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return Gate(name, None, threshold, comparator, Verdict.NO_DATA, detail or "no data")
    ok = _COMPARATORS[comparator](observed, threshold)
    return Gate(name, observed, threshold, comparator, Verdict.PASS if ok else Verdict.FAIL, detail)


def all_passed(gates: Iterable[Gate]) -> bool:
    return all(g.passed for g in gates)
