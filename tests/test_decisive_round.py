"""One full round is enough only when nothing a second one could measure would change the decision.

Synthetic timings (the fake worker of test_timing_plan answers from a table): nothing here reads the clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_timing_plan import CLEAN, Worker, _run_config, _variants

from costeff.quantization.noise import DECISIVE, QUIET_AA, decisive
from costeff.quantization.select import _method, choose, fill_all
from costeff.quantization.speed import CONTROL, measure_rounds


class Shaky(Worker):
    """The table's numbers, with fp32's second process per round slower by ``aa`` and every load block ``load``."""

    def __init__(self, aa: float = 1.0, load: dict | None = None) -> None:
        super().__init__()
        self.aa, self.load, self.fp32_calls = aa, load or CLEAN, 0

    def __call__(self, task: dict) -> dict:
        out = super().__call__(task)
        if Path(task["path"]).stem == "fp32":
            self.fp32_calls += 1
            if self.fp32_calls % 2 == 0:
                for point in out["closed_loop"].values():
                    point["throughput_per_s"] *= self.aa
        return {**out, "load": dict(self.load)}


def _timing(worker: Worker, known: list[str]):
    variants = _variants(("slow", "big", "quick", "mid", "other"))
    timing = measure_rounds(variants, _run_config(), np.zeros((8, 4), np.float32), runner=worker, known=known)
    return variants, timing


def test_a_lopsided_undisturbed_first_round_decides_alone_and_says_so():
    variants, timing = _timing(Shaky(), known=["quick"])  # 3x fp32's capacity, a tenth of its answer time
    assert [(r["kind"], r.get("decisive", False)) for r in timing.rounds] == [("full", True)]
    assert timing.noise_floor["rounds_used"] == 1
    fill_all(variants, timing)
    assert choose(variants, 1.05, noise_floor=timing.noise_floor)["name"] == "quick"
    assert f"one round when the first decides alone (undisturbed, A/A within {100 * QUIET_AA:g} %" in \
        _method(_run_config(), timing)


@pytest.mark.parametrize("worker, known, why", [
    (Shaky(aa=0.8), ["quick"], "fp32 and its A/A twin disagree by 25 %"),
    (Shaky(load={**CLEAN, "disturbed": True, "other_share": 0.9}), ["quick"], "the machine was busy"),
    (Shaky(), ["mid"], "2x fp32's capacity but within 1.5x of its answer time"),
    (Shaky(), ["big", "quick"], "big answers within 1.5x of fp32"),
])
def test_a_second_round_is_taken_when_the_first_cannot_decide(worker, known, why):
    _, timing = _timing(worker, known)
    assert [r["kind"] for r in timing.rounds] == ["full", "full"], why
    assert not any(r.get("decisive") for r in timing.rounds)


def test_the_rule_needs_every_pair_apart_and_the_control_in_agreement():
    caps = {"fp32": 1000.0, CONTROL: 1000.0, "a": 1000.0 * DECISIVE, "b": 1000.0 * DECISIVE ** 2}
    answers = {"fp32": 1.0, CONTROL: 1.0, "a": 1 / DECISIVE, "b": 1 / DECISIVE ** 2}
    assert decisive(caps, answers)
    assert not decisive({**caps, "b": caps["a"] * 1.2}, answers)  # a and b too close to tell apart in one round
    assert not decisive({**caps, CONTROL: 1000.0 * (1 + 2 * QUIET_AA)}, answers)  # a noisy control
    assert not decisive({k: v for k, v in caps.items() if k != CONTROL}, answers)  # no control, no floor
    assert not decisive({**caps, "a": 0.0}, answers)  # a failed measurement decides nothing
