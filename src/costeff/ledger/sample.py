"""The SYNTHETIC sample ledgers: 60 invented days that mimic a policy ramp's economics.

Nothing here is real trading data. The story the numbers tell: a policy at 5 %
influence, first served in fp32 on four always-on GPU nodes; on day 22 an int8
variant lets three nodes carry the load; from day 36 the idle reaper scales the
nodes down off-hours. Gross PnL, signals and trades are drawn around a steady
mean, so only the infrastructure cost changes. The cost ratio that results is
measured from the ledgers by whoever reads them; it is not stored anywhere.

Run ``python -m costeff.ledger.sample`` to regenerate the CSVs in ``data/``
(seeded: the same files every time). ``import_sample`` loads them re-dated so the
last day is yesterday (UTC), because the ramp decider requires ledgers that reach
yesterday; the numbers never change, only the calendar.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

from costeff.ledger.csvio import COST, ECONOMICS, read_csv
from costeff.ledger.store import ImportResult, Ledger

SEED = 7
DAYS = 60
BASE_END = date(2025, 6, 30)  # the calendar the shipped files are written in
SOURCE = "SYNTHETIC SAMPLE (costeff.ledger.sample, seed 7)"
ECONOMICS_FILE = "synthetic_sample_economics.csv"
COST_FILE = "synthetic_sample_cost.csv"
SERVING_INSTANCE = "aws-p4d.24xlarge"
QUANTIZED_FROM_DAY = 22
REAPED_FROM_DAY = 36


def _serving_hours(day: int, rng: random.Random) -> float:
    if day < QUANTIZED_FROM_DAY:
        return 4 * 24.0
    if day < REAPED_FROM_DAY:
        return 3 * 24.0
    return round(3 * 24.0 - rng.uniform(6.0, 10.0), 2)  # off-hours node-hours the reaper released


def generate(seed: int = SEED) -> tuple[str, str]:
    """The two CSV texts (economics, cost), deterministic for a seed."""
    rng = random.Random(seed)
    econ, cost = io.StringIO(), io.StringIO()
    e = csv.writer(econ, lineterminator="\n")
    c = csv.writer(cost, lineterminator="\n")
    e.writerow(["date", "gross_pnl_usd", "signals", "trades", "influence_pct", "source"])
    c.writerow(["date", "component", "instance", "instance_hours", "usd", "source"])
    first = BASE_END - timedelta(days=DAYS - 1)
    for i in range(DAYS):
        day = (first + timedelta(days=i)).isoformat()
        pnl = round(2440.0 * (1 + rng.gauss(0, 0.12)), 2)
        e.writerow([day, pnl, int(rng.gauss(48000, 2000)), int(rng.gauss(380, 30)), 5, SOURCE])
        c.writerow([day, "serving", SERVING_INSTANCE, _serving_hours(i + 1, rng), "", SOURCE])
        c.writerow([day, "training", "", "", round(rng.uniform(22.0, 38.0), 2), SOURCE])
    return econ.getvalue(), cost.getvalue()


def sample_texts() -> tuple[str, str]:
    data = resources.files("costeff.ledger") / "data"
    return (data / ECONOMICS_FILE).read_text(encoding="utf-8"), (data / COST_FILE).read_text(encoding="utf-8")


def import_sample(ledger: Ledger, end: date | None = None, replace: bool = False) -> list[ImportResult]:
    """Load the shipped sample into ``ledger``, re-dated so its last day is ``end`` (default: yesterday UTC)."""
    from costeff.artifacts import utc_now

    end = end or (utc_now().date() - timedelta(days=1))
    shift = end - BASE_END
    batches = []
    for kind, name, text in zip((ECONOMICS, COST), (ECONOMICS_FILE, COST_FILE), sample_texts(), strict=True):
        _, rows = read_csv(name, kind, text=text)
        rows = [type(r)(**{**r.__dict__, "date": (date.fromisoformat(r.date) + shift).isoformat()}) for r in rows]
        batches.append((kind, rows, f"sample:{name}"))
    return ledger.import_batches(batches, replace=replace)


def main() -> None:
    out = Path(__file__).with_name("data")
    econ, cost = generate()
    (out / ECONOMICS_FILE).write_text(econ, encoding="utf-8")
    (out / COST_FILE).write_text(cost, encoding="utf-8")
    print(f"wrote {out / ECONOMICS_FILE} and {out / COST_FILE}")


if __name__ == "__main__":
    main()
