"""A gate is a named check: observed value, threshold, comparator and verdict.

NO-DATA (a missing or non-finite observation) counts as a failure: every gate fails
closed. One type for every gate (quantization fidelity, drift windows, remote
comparisons, the ramp decision): the ramp's gates also use ``kind``, ``unit``,
``enforced`` and ``hard_breach``; elsewhere those keep their defaults.
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
    kind: str = ""  # the family a decision groups its gates by (ramp: data, cost, risk, promotion, quality, control)
    unit: str = ""  # of observed and threshold ("%", "USD", "days"); empty where the name carries it
    enforced: bool = True  # False: computed and shown, but it blocks nothing (cost gates disabled by flag)
    hard_breach: bool = False  # a FAIL here is worse than "not yet": the ramp rolls back one step

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def blocks(self) -> bool:
        """An enforced gate that did not pass (FAIL or NO-DATA)."""
        return self.enforced and not self.passed


def check(name: str, observed: Any, comparator: str, threshold: Any, detail: str = "", *, kind: str = "",
          unit: str = "", enforced: bool = True, hard_breach: bool = False) -> Gate:
    """Evaluate ``observed <comparator> threshold``; None or NaN gives NO-DATA."""
    if comparator not in _COMPARATORS:
        raise ValueError(f"unknown comparator {comparator!r}; expected one of {sorted(_COMPARATORS)}")
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        observed, verdict, detail = None, Verdict.NO_DATA, detail or "no data"
    else:
        verdict = Verdict.PASS if _COMPARATORS[comparator](observed, threshold) else Verdict.FAIL
    return Gate(name, observed, threshold, comparator, verdict, detail, kind, unit, enforced, hard_breach)


def all_passed(gates: Iterable[Gate]) -> bool:
    return all(g.passed for g in gates)
