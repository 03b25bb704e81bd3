"""``RampWatcher``: re-decide on a schedule, export the cost gate as gauges, keep the decision history.

Each round runs the same ``decide`` as ``costeff ramp decide`` (so each decision is
audited, its report written first), overwrites the latest ``ramp_decision.json`` and
appends one line to ``history.jsonl``. A round that fails (ledger unreadable or
truncated to nothing, plan broken, disk full) is logged and counted, leaves the
watcher not ready, and the last-success timestamp stops moving: that is what the
"watcher down" alert watches, together with the scrape itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff.daemon import LoopResult, run_rounds
from costeff.errors import CosteffError

log = logging.getLogger(__name__)
DECISIONS = ("PROMOTE", "HOLD", "ROLLBACK")
HISTORY_NAME = "history.jsonl"
DEFAULT_MODEL = "policy"


def policy_influence_pct(step: dict[str, Any]) -> float | None:
    """The influence the policy has or is about to have: a promotion counts from its decision (capacity
    must be there before the capital is), a rollback only once the ledger shows the lower step."""
    known = [v for v in (step["from_pct"], step["to_pct"]) if v is not None]
    return max(known) if known else None


class RampMetrics:
    """The ramp's gauges, served on ``port`` (127.0.0.1 unless told otherwise)."""

    def __init__(self, port: int | None = None, addr: str = "127.0.0.1", heartbeat: Any = None,
                 model: str = DEFAULT_MODEL) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        from costeff import health

        r = self.registry = CollectorRegistry()
        self.model = model
        # What the reaper reads (``influence_pct``): no series before the first decision, so "unknown, not idle".
        self.policy_influence = Gauge("costeff_policy_influence_pct", "Share of capital the policy's signals "
                                      "control: the larger of the plan's current step and the step the last "
                                      "decision moves to", ["model"], registry=r)
        self.cost_ratio = Gauge("costeff_ramp_cost_ratio", "Infrastructure cost / gross PnL over the window "
                                "(+Inf when PnL <= 0)", registry=r)
        self.cost_ratio_cap = Gauge("costeff_ramp_cost_ratio_cap", "The plan's cap on the cost ratio at this step",
                                    registry=r)
        self.per_signal = Gauge("costeff_ramp_cost_per_signal_usd", "Infrastructure cost per signal", registry=r)
        self.per_trade = Gauge("costeff_ramp_cost_per_trade_usd", "Infrastructure cost per trade", registry=r)
        self.influence = Gauge("costeff_ramp_influence_pct", "Influence the decision moves to", registry=r)
        self.decision = Gauge("costeff_ramp_decision", "1 for the latest decision, 0 for the others",
                              ["decision"], registry=r)
        self.gate = Gauge("costeff_ramp_gate_passed", "1 when the gate passed in the latest decision", ["gate"],
                          registry=r)
        self.rounds = Counter("costeff_ramp_rounds", "Ramp watch rounds", ["outcome"], registry=r)
        self.last_success = Gauge("costeff_ramp_last_success_timestamp_seconds",
                                  "When the ramp watcher last decided", registry=r)
        self.heartbeat = heartbeat
        self.server = health.serve(r, port, addr, heartbeat)

    def observe(self, d: Any) -> None:
        _set(self.cost_ratio, None if d.cost_ratio_pct is None else d.cost_ratio_pct / 100)
        _set(self.cost_ratio_cap, None if d.cost_ratio_cap_pct is None else d.cost_ratio_cap_pct / 100)
        _set(self.per_signal, d.cost_per_signal_usd)
        _set(self.per_trade, d.cost_per_trade_usd)
        _set(self.influence, d.step["to_pct"])
        _set(self.policy_influence.labels(self.model), policy_influence_pct(d.step))
        for name in DECISIONS:
            self.decision.labels(name).set(1 if d.decision == name else 0)
        for g in d.gates:
            self.gate.labels(g.name).set(1 if g.verdict.value == "PASS" else 0)
        self.last_success.set(time.time())

    def close(self) -> None:
        from costeff import health

        health.close(self.server)


@dataclass
class RoundResult:
    ok: bool
    decision: str | None
    error: str | None = None
    cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    gates_failed: list[str] | None = None


class RampWatcher:
    def __init__(self, config: Any, out_dir: Path, metrics: RampMetrics | None = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.metrics = metrics or RampMetrics()

    def run(self, stop: threading.Event | None, interval_s: float, max_rounds: int | None = None,
            on_round: Any = None) -> LoopResult:
        """Decide every ``interval_s`` until SIGTERM/SIGINT, ``stop`` or ``max_rounds``; a round that has begun
        (decision, report, audit record, history line) always finishes."""
        def one() -> bool:
            result = self.round()
            if on_round is not None:
                on_round(result)
            return result.ok

        return run_rounds(one, interval_s, getattr(self.metrics, "heartbeat", None), stop, max_rounds)

    def round(self) -> RoundResult:
        from costeff.ramp import decide

        try:
            decision = decide(self.config, out_dir=self.out_dir)  # report and audit record: both or neither
        except (CosteffError, OSError) as exc:  # the next round may find the ledger repaired: keep watching
            why = f"{exc.filename or self.out_dir}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            log.error("ramp watch: no decision this round: %s", why)
            self.metrics.rounds.labels("error").inc()
            return RoundResult(False, None, why)
        self.metrics.observe(decision)
        self.metrics.rounds.labels("decided").inc()
        _append(self.out_dir / HISTORY_NAME, {"created_at": decision.created_at, "decision": decision.decision,
                                              "as_of": decision.as_of, "step": decision.step,
                                              "cost_ratio_pct": _finite(decision.cost_ratio_pct),
                                              "gates_failed": decision.gates_failed,
                                              "audit_seq": decision.audit_seq})
        return RoundResult(True, decision.decision, None, decision.cost_ratio_pct, decision.cost_ratio_cap_pct,
                           decision.gates_failed)


def history(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / HISTORY_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _set(gauge: Any, value: float | None) -> None:
    # A missing value is unknown, never zero: NaN makes PromQL comparisons false instead of passing.
    gauge.set(float("nan") if value is None else value)


def _finite(value: float | None) -> float | str | None:
    return "inf" if value == float("inf") else value


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
