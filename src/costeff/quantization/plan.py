"""How much timing a ``quantize`` run does, decided before any worker starts.

Timing is most of a run, and most variants cannot win: a variant slower than
fp32 in capacity and in answer time, or behind the best few, is never
selected. So when there are more candidates than finalists, the rounds are:

* one **screening** round: every candidate and fp32 twice (the A/A control),
  each in its own process, measured briefly (the smallest and the largest batch
  size, short windows, batch-1 latency back to back and after short idle gaps,
  no open-loop replay). It only decides who goes on: a variant slower than fp32
  beyond the screen's own A/A spread in capacity and in every latency is
  dropped, and of the rest the best ``finalists`` by capacity, by answer time
  and by answer after an idle gap stay;
* ``speed_rounds`` **full** interleaved rounds for fp32, its A/A twin and the
  finalists. Only full rounds give speeds, the noise floor and the selection.

When an earlier run on the same model, recipe and libraries already screened
(the variant cache remembers its finalists), the screening round is skipped
and only those finalists are timed; timing itself is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costeff.runtimes import worker

if TYPE_CHECKING:
    from costeff.profiling import ProfileConfig
    from costeff.records.quant import SpeedRound

SCREEN_WINDOW_S = 0.1  # per window in the screening round (at most the run's own window)
SCREEN_WARMUP_S = 0.05
SCREEN_MAX_GAP_S = 0.01  # the screen's batch-1 latencies: back to back and after the run's gaps up to 10 ms
SCREEN_OPEN_LOOP_S = 0.5  # a runtime setting's screen replays the target rate this long
SCREEN_GAP_BUDGET_S = 0.2  # seconds of calls per idle gap in the screen (10 ms apart: the minimum of 12 calls)
GAP_BUDGET_S = 0.6  # seconds of calls per idle gap in a full round (10 ms apart: 60 calls)
MAX_TRIALS = worker.MAX_TRIALS  # windows per point at most (two that agree end it sooner)
MAX_REPEATS_PER_ROUND = 4  # disturbed measurements taken once more per round (each once), then marked


@dataclass(frozen=True)
class RoundPlan:
    """What every worker of one round measures."""

    kind: str  # "screen" or "full"
    batch_sizes: tuple[int, ...]
    window_s: float
    warmup_s: float
    gaps_s: tuple[float, ...]
    gap_budget_s: float
    open_loop_s: float | None  # None: no open-loop replay

    def seconds(self, target_rate: float | None) -> float:
        """The most seconds one worker spends measuring (process start and model load not counted)."""
        from costeff.profiling.traffic import calls_for_gap

        points = len(self.batch_sizes) * (self.warmup_s + MAX_TRIALS * self.window_s)
        gaps = sum(g * calls_for_gap(g, self.gap_budget_s) for g in self.gaps_s)
        return points + gaps + ((self.open_loop_s or 0.0) if target_rate else 0.0)


def full(config: Any) -> RoundPlan:
    return RoundPlan("full", tuple(config.batch_sizes), config.window_s, min(0.2, config.window_s),
                     tuple(config.gaps_s), GAP_BUDGET_S, config.open_loop_s)


def profile_config(config: Any) -> ProfileConfig:
    """The full rounds' measuring rules as a profile's configuration: a profile assembled from those rounds
    (:mod:`costeff.profiling.rounds`) records how its numbers were taken."""
    from costeff.profiling import ProfileConfig

    how = full(config)
    return ProfileConfig(batch_sizes=how.batch_sizes, latency_budget_ms=config.latency_budget_ms,
                         target_rate=config.target_rate, provider=config.provider, warmup_s=how.warmup_s,
                         window_s=how.window_s, stable_windows=worker.STABLE_WINDOWS, max_trials=worker.MAX_TRIALS,
                         gaps_s=how.gaps_s, sample_interval_s=1.0, max_utilisation=config.max_utilisation)


def screen(config: Any, open_loop: bool = False) -> RoundPlan:
    """The screening round; with ``open_loop`` a short replay at the target rate too (a runtime setting's
    screen: at light traffic the replay's answer time is what decides whether a setting is adopted)."""
    sizes = sorted(set(config.batch_sizes))
    # a setting such as spinning off pays back only after idle gaps: the screen measures them too
    gaps = tuple(g for g in config.gaps_s if g <= SCREEN_MAX_GAP_S) or (0.0,)
    return RoundPlan("screen", (sizes[0], sizes[-1]) if len(sizes) > 1 else (sizes[0],),
                     min(SCREEN_WINDOW_S, config.window_s), min(SCREEN_WARMUP_S, config.window_s), gaps,
                     SCREEN_GAP_BUDGET_S, min(SCREEN_OPEN_LOOP_S, config.open_loop_s) if open_loop else None)


def screens(config: Any, candidates: int, known: list[str] | None = None) -> bool:
    """Whether a screening round comes first: more candidates (fp32 aside) than finalists, none known."""
    keep = getattr(config, "finalists", None)
    return known is None and keep is not None and candidates > keep


def most_finalists(config: Any, candidates: int) -> int:
    """The best ``finalists`` by capacity, by answer time and by answer after an idle gap: at most three times
    that, fewer when they agree."""
    keep = getattr(config, "finalists", None)
    return candidates if keep is None else min(candidates, 3 * keep)


def planned(config: Any, candidates: int, known: list[str] | None = None, control: bool = True,
            repeats: bool = True) -> dict[str, Any]:
    """The most timing work a run can do with ``candidates`` variants besides fp32: workers and seconds.

    Every number is a bound fixed before the first worker starts (disturbed measurements taken once
    more included), so a test can hold the default run to it without a clock."""
    fp32 = 2 if control else 0  # fp32 and its A/A twin, each its own process, every round
    rounds: list[tuple[RoundPlan, int]] = []
    if screens(config, candidates, known):
        rounds.append((screen(config), candidates + fp32))
        finalists = most_finalists(config, candidates)
    else:
        finalists = min(candidates, len(known)) if known is not None else candidates
    rounds += [(full(config), finalists + fp32)] * config.speed_rounds
    again = MAX_REPEATS_PER_ROUND if repeats else 0  # repeats: as if the machine were busy in every round
    workers = sum(n + min(n, again) for _, n in rounds)
    seconds = sum((n + min(n, again)) * p.seconds(config.target_rate) for p, n in rounds)
    return {"screen": rounds[0][0].kind == "screen" if rounds else False, "rounds": len(rounds),
            "workers_max": workers, "measuring_s_max": round(seconds, 1),
            "full_workers_per_round": finalists + fp32}


def screen_markdown(rounds: list[SpeedRound]) -> list[str]:
    """The screening round in the report's words: each variant's short-window numbers and whether it went on."""
    screen = next((r for r in rounds if r.kind == "screen"), None)
    if screen is None:
        return []
    full = {name for r in rounds if r.kind == "full" for name in r.measurements}
    out = ["## Screening round (who was timed fully)", "",
           "Short windows, the smallest and largest batch size, no open-loop replay; it gives no speed and no "
           "selection, only who goes on to the full rounds.", "",
           "| variant | inferences/s (best of 2 sizes) | answer ms | disturbed | timed fully |",
           "|---|---|---|---|---|"]
    for name in screen.order:
        m = screen.measurements[name]
        disturbed = "yes" if name in screen.disturbed else ""
        out.append(f"| {name} | {m.optimal_throughput_per_s or 0:,.0f} | {m.answer_ms or 0:.3f} | {disturbed} | "
                   f"{'yes' if name in full else 'no'} |")
    return out + [""]
