"""A per-day view of both ledgers side by side (``costeff ledger show``)."""

from __future__ import annotations

from typing import Any

from costeff.ledger.store import Ledger


def daily_costs(ledger: Ledger, start=None, end=None) -> dict[str, float]:
    """Infrastructure cost per day: the sum of that day's components."""
    totals: dict[str, float] = {}
    for row in ledger.costs(start, end):
        totals[row.date] = totals.get(row.date, 0.0) + row.usd
    return totals


def summary(ledger: Ledger, days: int = 14) -> dict[str, Any]:
    """The last ``days`` days of both ledgers side by side (0: every day)."""
    econ = {r.date: r for r in ledger.economics()}
    cost = daily_costs(ledger)
    rows = []
    every = sorted(set(econ) | set(cost))
    for day in every[-days:] if days > 0 else every:
        e, c = econ.get(day), cost.get(day)
        ratio = 100.0 * c / e.gross_pnl_usd if e and c is not None and e.gross_pnl_usd > 0 else None
        rows.append({"date": day, "gross_pnl_usd": e.gross_pnl_usd if e else None, "infra_cost_usd": c,
                     "cost_ratio_pct": ratio, "signals": e.signals if e else None,
                     "trades": e.trades if e else None, "influence_pct": e.influence_pct if e else None})
    return {"ledger": str(ledger.path), "coverage": ledger.coverage(), "imports": ledger.imports(), "days": rows}
