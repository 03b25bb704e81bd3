"""One gate type for every check: fail closed, and the ramp's labels (kind, unit, enforced, hard breach)."""

from __future__ import annotations

import math

import pytest

from costeff.gates import Gate, Verdict, all_passed, check


def test_missing_or_nan_observations_are_no_data_and_keep_their_labels():
    for observed in (None, math.nan):
        g = check("cost_ratio", observed, "<=", 30.0, kind="cost", unit="%", enforced=False)
        assert (g.verdict, g.observed, g.detail) == (Verdict.NO_DATA, None, "no data")
        assert (g.kind, g.unit, g.enforced) == ("cost", "%", False)


def test_a_gate_blocks_only_when_enforced_and_not_passed():
    assert check("net_pnl", -5.0, ">", 0.0).blocks
    assert check("net_pnl", None, ">", 0.0).blocks  # NO-DATA fails closed
    assert not check("net_pnl", -5.0, ">", 0.0, enforced=False).blocks  # shown, not enforced
    assert not check("net_pnl", 5.0, ">", 0.0).blocks


def test_labels_default_for_gates_that_do_not_use_them():
    g = check("action_agreement", 0.999, ">=", 0.997)
    assert g == Gate("action_agreement", 0.999, 0.997, ">=", Verdict.PASS)
    assert (g.kind, g.unit, g.enforced, g.hard_breach) == ("", "", True, False)
    assert all_passed([g]) and not all_passed([g, check("x", 2, "<", 1)])


def test_an_unknown_comparator_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown comparator"):
        check("x", 1, "=<", 2)
