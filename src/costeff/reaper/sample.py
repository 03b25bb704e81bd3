"""Generate the shipped sample: signals of a shadow-mode policy's serving stack, 15 s resolution.

Regenerate the shipped day (deterministic, seeded)::

    python -m costeff.reaper.sample --out src/costeff/reaper/data/sample_day.csv.gz

A 30-day trace for the replay benchmark::

    python -m costeff.reaper.sample --days 30 --start 2025-03-03 --out /tmp/trace_30d.csv.gz

Two resources, in New York market time:

- ``policy-triton`` (2 GPUs): the policy's Triton deployment. Pre-market traffic
  from 08:00, the intraday U-shaped request rate from 09:30 to 16:00, a trickle
  until 17:00, nothing at night or at weekends, except a rare ad-hoc request and a
  short profiling run (GPU busy, no requests) at night. Influence is 0 (shadow
  mode), apart from a one-hour 5 % canary on some weekdays inside market hours.
- ``policy-replay`` (1 GPU): a nightly research replay job, 22:00 to 23:30 on
  weekdays, idle otherwise.

GPU utilisation follows the request rate and sits at 0-3 % when idle.
"""

from __future__ import annotations

import argparse
import csv
from datetime import date, datetime, time, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from costeff.reaper.signals import open_text_out

STEP_S = 15
ZONE = ZoneInfo("America/New_York")
SAMPLE_NAME = "sample_day.csv.gz"
SAMPLE_START = date(2025, 3, 12)  # a Wednesday
SAMPLE_SEED = 20250312


def sample_path() -> Path:
    """The shipped sample day (package data)."""
    return Path(str(resources.files("costeff.reaper") / "data" / SAMPLE_NAME))


def generate(out: Path | str, days: int = 1, start: date = SAMPLE_START, seed: int = SAMPLE_SEED) -> Path:
    """Write ``days`` of signals starting at ``start`` 00:00 UTC to ``out`` (CSV, gzip if .gz)."""
    rng = np.random.default_rng(seed)
    t0 = datetime.combine(start, time(0), timezone.utc).timestamp()
    ts = t0 + STEP_S * np.arange(days * 86400 // STEP_S)
    local = _local_clock(ts)
    columns = {"policy-triton": _triton(rng, local), "policy-replay": _replay_job(rng, local)}
    return _write(Path(out), ts, columns)


def _local_clock(ts: np.ndarray) -> dict[str, np.ndarray]:
    """Local minute of day and weekday per sample, computed once per local day (DST-correct)."""
    minute = np.empty(len(ts))
    weekday = np.empty(len(ts), dtype=int)
    day_index = np.empty(len(ts), dtype=int)
    for i in range(0, len(ts), 240):  # one conversion per hour of samples
        moment = datetime.fromtimestamp(ts[i], timezone.utc).astimezone(ZONE)
        base = moment.hour * 60 + moment.minute + moment.second / 60
        n = min(240, len(ts) - i)
        minute[i:i + n] = base + np.arange(n) * STEP_S / 60
        weekday[i:i + n] = moment.weekday()
        day_index[i:i + n] = moment.toordinal()
    return {"minute": minute, "weekday": weekday, "day": day_index}


def _between(minute: np.ndarray, start: str, end: str) -> np.ndarray:
    h1, m1 = map(int, start.split(":"))
    h2, m2 = map(int, end.split(":"))
    return (minute >= h1 * 60 + m1) & (minute < h2 * 60 + m2)


def _triton(rng: np.random.Generator, clock: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    minute, weekday = clock["minute"], clock["weekday"]
    workday = weekday < 5
    session = _between(minute, "09:30", "16:00") & workday
    # Intraday U shape: busy at the open and the close, quieter at lunch.
    u = ((minute - 9.5 * 60) / 390.0 - 0.5) ** 2 * 4
    rate = np.where(session, 2.5 + 4.0 * u, 0.0)
    rate += np.where(_between(minute, "08:00", "09:30") & workday, 0.4, 0.0)
    rate += np.where(_between(minute, "16:00", "17:00") & workday, 0.3, 0.0)
    requests = rng.poisson(rate * STEP_S).astype(float)
    util = np.where(rate > 0, np.clip(12 + 9 * rate + rng.normal(0, 3, len(rate)), 0, 100),
                    np.clip(rng.normal(1.5, 0.8, len(rate)), 0, 3))
    _night_events(rng, clock, requests, util)
    influence = _canary(rng, clock, session)
    return _columns(util, requests, influence, gpus=2, rng=rng)


def _night_events(rng: np.random.Generator, clock: dict[str, np.ndarray], requests: np.ndarray,
                  util: np.ndarray) -> None:
    """Per night: maybe one ad-hoc request burst, maybe a short profiling run (GPU busy, no requests)."""
    night = ~_between(clock["minute"], "07:00", "19:00")
    for day in np.unique(clock["day"]):
        idx = np.flatnonzero(night & (clock["day"] == day))
        if len(idx) < 100:
            continue
        if rng.random() < 0.5:
            i = rng.choice(idx)
            requests[i:i + 2] += rng.poisson(4, size=len(requests[i:i + 2])) + 1
            util[i:i + 2] = 25.0
        if rng.random() < 0.6:
            i = rng.choice(idx[:-8])
            util[i:i + 8] = 60.0  # 2 minutes of profiling: resets the idle window


def _canary(rng: np.random.Generator, clock: dict[str, np.ndarray], session: np.ndarray) -> np.ndarray:
    influence = np.zeros(len(session))
    for day in np.unique(clock["day"]):
        if rng.random() < 0.3:
            influence[session & (clock["day"] == day) & _between(clock["minute"], "10:30", "11:30")] = 5.0
    return influence


def _replay_job(rng: np.random.Generator, clock: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    job = _between(clock["minute"], "22:00", "23:30") & (clock["weekday"] < 5)
    requests = rng.poisson(np.where(job, 25.0 * STEP_S, 0.0)).astype(float)
    util = np.where(job, np.clip(rng.normal(70, 5, len(job)), 0, 100), np.clip(rng.normal(1.0, 0.5, len(job)), 0, 3))
    return _columns(util, requests, np.zeros(len(job)), gpus=1, rng=rng)


def _columns(util: np.ndarray, requests: np.ndarray, influence: np.ndarray, gpus: int,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"gpu_util_pct": np.round(util, 1), "requests": requests, "influence_pct": influence,
            "gpus": np.full(len(util), float(gpus)),
            "fb_used_mb": np.round(2150 * gpus + rng.normal(0, 4, len(util)), 0),
            "power_w": np.round(gpus * (55 + 2.2 * util), 1)}


def _write(path: Path, ts: np.ndarray, columns: dict[str, dict[str, np.ndarray]]) -> Path:
    stamps = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for t in ts]
    fields = ("gpu_util_pct", "requests", "influence_pct", "gpus", "fb_used_mb", "power_w")
    with open_text_out(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("timestamp", "resource") + fields)
        for resource, cols in columns.items():
            values = [[f"{v:g}" for v in cols[f].tolist()] for f in fields]
            writer.writerows(zip(stamps, [resource] * len(stamps), *values, strict=True))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate a seeded reaper signal trace (15 s resolution).")
    parser.add_argument("--out", type=Path, required=True, help="output CSV (.csv or .csv.gz)")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--start", type=date.fromisoformat, default=SAMPLE_START, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    print(generate(args.out, args.days, args.start, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
