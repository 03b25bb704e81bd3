"""Does the cost gate decide? Re-run it on a copy of a ledger scaled above and below its cap.

A cost gate that passes on every input would let any ramp through. This check
takes the ledger a decision was made on, recomputes the window economics the
decider uses, then scales the cost days so the cost ratio lands at 1.5x and at
0.5x the cap and runs the decider's own cost gates and verdict on each: above
the cap the ramp must be blocked (HOLD), below it permitted. The ledger itself
is never touched; the scaling happens in a temporary copy.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ABOVE, BELOW = 1.5, 0.5  # target cost ratio as a multiple of the cap


@dataclass(frozen=True)
class Trial:
    target_ratio_pct: float
    observed_ratio_pct: float | None
    verdict: str  # the cost_ratio gate's verdict
    decision: str  # what the cost gates alone decide: HOLD or PROMOTE


@dataclass(frozen=True)
class GateCheck:
    recorded_ratio_pct: float | None  # what the decision recorded
    recomputed_ratio_pct: float | None  # the same window recomputed from the ledger
    cap_pct: float
    above: Trial | None
    below: Trial | None
    passed: bool
    reason: str


def check_cost_gate(ledger_path: Path | str, window_end: str, window_days: int, cap_pct: float,
                    recorded_ratio_pct: float | None) -> GateCheck:
    from costeff.ledger import Ledger
    from costeff.ramp.economics import window_economics

    end = date.fromisoformat(window_end)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ledger.sqlite"
        shutil.copyfile(ledger_path, copy)
        base = window_economics(Ledger(copy), end, window_days).cost_ratio_pct
        if base is None or not math.isfinite(base) or base <= 0:
            return GateCheck(recorded_ratio_pct, base, cap_pct, None, None, False,
                             f"the ledger gives no finite positive cost ratio over the window ({base})")
        trials = [_trial(copy, end, window_days, cap_pct, base, m) for m in (ABOVE, BELOW)]
    return _judge(recorded_ratio_pct, base, cap_pct, *trials)


def _trial(copy: Path, end: date, days: int, cap: float, base: float, multiple: float) -> Trial:
    from costeff.ledger import Ledger
    from costeff.ramp.decide import _cost_gates, _verdict
    from costeff.ramp.economics import window_economics

    target = cap * multiple
    _scale_costs(copy, target / base)
    econ = window_economics(Ledger(copy), end, days)
    _scale_costs(copy, base / target)  # back to the original for the next trial
    gates = _cost_gates(econ, cap, True)
    decision, _, _ = _verdict(gates, 0, 2)
    ratio_gate = next(g for g in gates if g.name == "cost_ratio")
    return Trial(target, econ.cost_ratio_pct, ratio_gate.verdict.value, decision)


def _scale_costs(path: Path, factor: float) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("UPDATE cost SET usd = usd * ?", (factor,))


def _judge(recorded: float | None, base: float, cap: float, above: Trial, below: Trial) -> GateCheck:
    reproduced = recorded is not None and math.isclose(recorded, base, rel_tol=1e-9, abs_tol=1e-9)
    problems = []
    if not reproduced:
        problems.append(f"the ledger gives {base:.4g} % over the decision's window, the decision recorded {recorded}")
    if above.verdict != "FAIL" or above.decision == "PROMOTE":
        problems.append(f"at {above.target_ratio_pct:.4g} % (above the cap) the gate said {above.verdict}")
    if below.verdict != "PASS" or below.decision != "PROMOTE":
        problems.append(f"at {below.target_ratio_pct:.4g} % (below the cap) the gate said {below.verdict}")
    reason = "; ".join(problems) or (f"blocks at {above.target_ratio_pct:.4g} % ({above.decision}), permits at "
                                     f"{below.target_ratio_pct:.4g} % ({below.decision}); recorded ratio reproduced")
    return GateCheck(recorded, base, cap, above, below, not problems, reason)
