"""Window economics and step history computed from the ledgers.

Only days present in both ledgers enter the money figures: a day with PnL but no
cost row would make the ratio look better than it is, and a missing cost is not a
zero cost. The freshness gate reports the days that are missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from costeff.ledger import Ledger
from costeff.ledger.report import daily_costs

DAYS_PER_MONTH = 30.0  # the cost model's month


@dataclass(frozen=True)
class Window:
    start: str
    end: str
    days: int
    covered_days: int
    missing_dates: list[str]


@dataclass(frozen=True)
class Economics:
    window: Window
    gross_pnl_usd: float | None
    infra_cost_usd: float | None
    net_pnl_usd: float | None
    signals: int | None
    trades: int | None
    cost_ratio_pct: float | None  # inf when gross PnL <= 0
    cost_per_signal_usd: float | None
    cost_per_trade_usd: float | None
    cost_per_day_usd: float | None
    monthly_cost_usd: float | None


@dataclass(frozen=True)
class StepHistory:
    influence_pct: float | None  # the latest ledger day's influence, up to the window's end
    last_date: str | None
    days_at_step: int
    trades_at_step: int
    drawdown_usd: float | None  # peak-to-trough of cumulative gross PnL over the days at this step


def window_economics(ledger: Ledger, end: date, days: int) -> Economics:
    start = end - timedelta(days=days - 1)
    econ = {r.date: r for r in ledger.economics(start, end)}
    cost = daily_costs(ledger, start, end)
    all_days = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    covered = [d for d in all_days if d in econ and d in cost]
    window = Window(start.isoformat(), end.isoformat(), days, len(covered),
                    [d for d in all_days if d not in covered])
    if not covered:
        return Economics(window, *([None] * 10))
    gross = sum(econ[d].gross_pnl_usd for d in covered)
    infra = sum(cost[d] for d in covered)
    signals = sum(econ[d].signals for d in covered)
    trades = sum(econ[d].trades for d in covered)
    per_day = infra / len(covered)
    return Economics(window, gross, infra, gross - infra, signals, trades,
                     100.0 * infra / gross if gross > 0 else math.inf,
                     infra / signals if signals else None, infra / trades if trades else None,
                     per_day, per_day * DAYS_PER_MONTH)


def step_history(ledger: Ledger, end: date) -> StepHistory:
    rows = ledger.economics(None, end)
    if not rows:
        return StepHistory(None, None, 0, 0, None)
    current = rows[-1].influence_pct
    run = [rows[-1]]
    for row in reversed(rows[:-1]):
        consecutive = date.fromisoformat(row.date) == date.fromisoformat(run[-1].date) - timedelta(days=1)
        if not consecutive or row.influence_pct != current:
            break
        run.append(row)
    run.reverse()
    return StepHistory(current, rows[-1].date, len(run), sum(r.trades for r in run),
                       _drawdown([r.gross_pnl_usd for r in run]))


def _drawdown(daily: list[float]) -> float:
    peak = total = worst = 0.0
    for pnl in daily:
        total += pnl
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst
