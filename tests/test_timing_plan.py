"""How much timing a run plans: a screening round, then full rounds only for fp32, its A/A twin and the
finalists. Timings are synthetic (a fake worker answers from a table): nothing here depends on the clock."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from costeff.gates import Gate, Verdict
from costeff.quantization import QuantizeConfig, plan
from costeff.quantization.records import VariantResult
from costeff.quantization.select import choose, fill_all
from costeff.quantization.speed import CONTROL, measure_rounds
from costeff.runctx import RunConfig

CLEAN = {"other_share": 0.0, "steal_share": 0.0, "disturbed": False}
# capacity (inferences/s) and answer time (ms) per variant: a dominated one, a fast one, a quick-answering one
NUMBERS = {"fp32": (1000.0, 1.0), "slow": (500.0, 2.0), "big": (9000.0, 0.8), "quick": (3000.0, 0.1),
           "mid": (2000.0, 0.9), "other": (1500.0, 0.95)}
AFTER_GAP_MS = {"nospin": 0.05}  # batch-1 p50 after an idle gap, where it differs from back to back
NUMBERS["nospin"] = (2500.0, 0.2)  # less capacity and a later answer back to back than "quick"
NUMBERS["slow2"] = (600.0, 1.8)  # another dominated one


class Worker:
    """Answers every measurement task from NUMBERS, by the model path's stem; keeps every task it got."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []

    def __call__(self, task: dict) -> dict:
        self.tasks.append(task)
        thr, p50 = NUMBERS[Path(task["path"]).stem]
        sparse = AFTER_GAP_MS.get(Path(task["path"]).stem, p50)  # a replay at a light rate answers after gaps
        ol = {"p50_ms": sparse, "p99_ms": 2 * sparse, "saturated": False, "instances": 1} if task["target_rate"] \
            else None
        return {"closed_loop": {b: {"throughput_per_s": thr * b / max(task["batch_sizes"]), "p50_ms": p50,
                                    "p99_ms": 2 * p50, "stable": True} for b in task["batch_sizes"]},
                "gaps": [{"gap_ms": g * 1e3, "calls": 10, "p50_ms": AFTER_GAP_MS.get(Path(task["path"]).stem, p50)
                          if g else p50, "p99_ms": 2 * p50} for g in task["gaps_s"]],
                "open_loop": ol, "runtime": {}, "load": dict(CLEAN)}

    def named(self, kind: str) -> list[str]:
        screen = [t for t in self.tasks if t["window_s"] <= 0.1]  # short windows (a setting's screen replays too)
        return [Path(t["path"]).stem for t in (screen if kind == "screen" else
                                                [t for t in self.tasks if t not in screen])]


def _run_config(**over) -> QuantizeConfig:
    """The quantize config `costeff run` uses by default (stages.stage_quantize)."""
    from costeff.stages import RUN_FINALISTS

    run = RunConfig()
    return QuantizeConfig(batch_sizes=run.batch_sizes, target_rate=run.target_rate, provider="cpu",
                          window_s=run.window_s, speed_rounds=2, finalists=RUN_FINALISTS,
                          latency_budget_ms=run.latency_budget_ms, **over)


def _variants(names=("slow", "big", "quick", "mid", "other")) -> list[VariantResult]:
    return [VariantResult(n, built=True, passed=True, baseline=(n == "fp32"), path=f"{n}.onnx")
            for n in ("fp32",) + tuple(names)]


def _timed(config, known=None, names=("slow", "big", "quick", "mid", "other")):
    worker, variants = Worker(), _variants(names)
    timing = measure_rounds(variants, config, np.zeros((8, 4), np.float32), runner=worker, known=known)
    return worker, variants, timing


def test_the_default_runs_planned_timing_work_is_bounded():
    cfg = _run_config()
    candidates = 9  # every variant the default policy passes on a host with OpenVINO (prune included)
    planned = plan.planned(cfg, candidates)
    unscreened = plan.planned(replace(cfg, finalists=None), candidates)
    # full rounds: fp32, its A/A twin and the best 1-3 (by capacity, answer time, answer after an idle gap)
    assert planned["screen"] and planned["full_workers_per_round"] <= 3 * cfg.finalists + 2 == 5
    # screening: every candidate and fp32 twice; full rounds: the finalists and fp32 twice; disturbed repeats
    assert planned["workers_max"] <= (candidates + 2 + 4) + 2 * (3 * cfg.finalists + 2 + 4)
    assert planned["measuring_s_max"] <= 0.7 * unscreened["measuring_s_max"]  # busy: repeats in every round
    quiet = (plan.planned(cfg, candidates, repeats=False), plan.planned(replace(cfg, finalists=None), candidates,
                                                                        repeats=False))
    assert quiet[0]["measuring_s_max"] <= 0.55 * quiet[1]["measuring_s_max"]
    # the screen measures two batch sizes briefly and replays no traffic
    assert plan.screen(cfg).seconds(cfg.target_rate) * 4 < plan.full(cfg).seconds(cfg.target_rate)
    # a second run that knows its finalists plans no screening and no more full workers
    known = plan.planned(cfg, candidates, known=["prune"])
    assert not known["screen"] and known["workers_max"] < planned["workers_max"]


def test_a_run_starts_no_more_workers_than_planned_and_screens_briefly():
    cfg = _run_config()
    worker, _, timing = _timed(cfg)
    assert len(worker.tasks) <= plan.planned(cfg, 5)["workers_max"]
    screen = [t for t in worker.tasks if t["target_rate"] is None]
    assert len(screen) == 5 + 2 and all(t["batch_sizes"] == [1, 128] and t["window_s"] <= 0.1 for t in screen)
    full = [t for t in worker.tasks if t not in screen]
    assert all(t["batch_sizes"] == [1, 8, 32, 128] and t["open_loop_s"] == cfg.open_loop_s for t in full)
    # full rounds: fp32 twice (the A/A control) and the best by capacity (big) and by answer time (quick)
    assert sorted(worker.named("full")) == sorted(["fp32", "fp32", "big", "quick"] * 2)
    assert [r["kind"] for r in timing.rounds] == ["screen", "full", "full"]
    assert all({r["order"][0], r["order"][-1]} == {"fp32", CONTROL} for r in timing.rounds)
    assert sorted(timing.finalists) == ["big", "quick"]


def test_a_dropped_variant_says_why_and_is_never_selected():
    cfg = _run_config()
    worker, variants, timing = _timed(cfg)
    assert "slower than fp32 in capacity and every answer time" in timing.dropped["slow"]
    assert "not among the best 1" in timing.dropped["mid"]
    fill_all(variants, timing)
    by = {v.name: v for v in variants}
    assert by["mid"].speedup is None and by["mid"].paired_rounds == []  # no full round, no speed to select on
    assert [p["round"] for p in by["big"].paired_rounds] == [2, 3]  # the screening round is not a paired round
    assert timing.noise_floor["rounds_used"] == 2  # the floor is the full rounds' A/A spread
    assert choose(variants, 1.05, noise_floor=timing.noise_floor)["name"] == "big"
    from costeff.records.quant import SpeedRound

    table = "\n".join(plan.screen_markdown([SpeedRound.model_validate(r) for r in timing.rounds]))
    assert "| mid | 2,000 | 0.900 |  | no |" in table and "| big | 9,000 | 0.800 |  | yes |" in table


def test_when_the_screen_drops_every_variant_the_reason_says_so():
    cfg = _run_config()  # one finalist per criterion: two candidates are screened
    _, variants, timing = _timed(cfg, names=("slow", "slow2"))
    fill_all(variants, timing)
    reason = choose(variants, 1.05, cfg.target_rate, cfg.latency_budget_ms, timing.noise_floor)["reason"]
    assert "the screening round found no variant passing the fidelity gates faster than fp32 (slow, slow2" in reason
    assert "meets the budget" not in reason


def test_known_finalists_are_timed_without_screening():
    cfg = _run_config()
    worker, _, timing = _timed(cfg, known=["mid"])  # 2x fp32's capacity but about its answer time: two rounds
    assert [r["kind"] for r in timing.rounds] == ["full", "full"]
    assert sorted(worker.named("full")) == sorted(["fp32", "fp32", "mid"] * 2) and not worker.named("screen")
    assert "not a finalist" in timing.dropped["big"]
    # finalists no longer among the variants: screened again rather than timing fp32 alone
    _, _, again = _timed(cfg, known=["gone"])
    assert again.rounds[0]["kind"] == "screen"


def test_few_candidates_are_not_screened():
    cfg = _run_config()
    worker, _, timing = _timed(cfg, names=("big",))
    assert [r["kind"] for r in timing.rounds] == ["full", "full"] and not worker.named("screen")


def test_knob_alternatives_slower_than_their_default_are_not_timed_further():
    cfg = _run_config()
    worker = Worker()
    default = VariantResult("quick", built=True, passed=True, path="quick.onnx")  # timed in the main rounds
    tries = [VariantResult(n, built=True, passed=True, path=f"{n}.onnx") for n in ("slow", "big", "nospin")]
    timing = measure_rounds(tries, cfg, np.zeros((8, 4), np.float32), runner=worker, control=False,
                            reference=default)  # as knobs.tune asks through measure_all
    # slow: less capacity and later answers than the default; nospin is slower back to back but answers
    # sooner in the screen's short replay of the (sparse) target traffic, so it is timed fully
    assert set(timing.speeds) == {"big", "nospin"}
    assert all(t["gaps_s"] == [0.0, 0.01] for t in worker.tasks if t["target_rate"] is None)
    assert sorted(worker.named("screen")) == ["big", "nospin", "quick", "slow"]
    assert sorted(worker.named("full")) == ["big", "big", "nospin", "nospin"]  # the default is not timed again


def test_the_cache_remembers_finalists_and_ignores_a_damaged_hint(tmp_path):
    from costeff.quantization import cache

    assert cache.finalists(tmp_path, "k1") is None
    cache.remember_finalists(tmp_path, "k1", ["quick", "big"])
    assert cache.finalists(tmp_path, "k1") == ["big", "quick"] and cache.finalists(tmp_path, "k2") is None
    hint = tmp_path / f"k1{cache.FINALISTS_SUFFIX}"
    hint.write_text("{not json")
    assert cache.finalists(tmp_path, "k1") is None
    hint.write_text(json.dumps({"key": "other", "finalists": ["big"]}))
    assert cache.finalists(tmp_path, "k1") is None


@pytest.mark.parametrize("restored_all", [True, False])
def test_accuracy_control_that_restored_every_matmul_before_is_not_searched_again(monkeypatch, tmp_path,
                                                                                  restored_all):
    from costeff import hardware
    from costeff.quantization import cache, engine, openvino

    k = cache.key("ab" * 32, "cd" * 32, {}, {"isa": ["avx512_vnni"]})
    detail = "accuracy control restored all 5 MatMuls to float: no layer stays int8" if restored_all else None
    cache.remember_ac(tmp_path, k, {"restored_all": restored_all, "detail": detail})
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "other code")  # outcomes outlive code changes
    known = cache.ac_outcome(tmp_path, cache.key("ab" * 32, "cd" * 32, {}, {"isa": ["avx512_vnni"]}))
    assert known is not None and known["restored_all"] is restored_all
    asked: list[str] = []
    drift = Gate("action_drift_pct@b1", 1.07, 0.5, "<=", Verdict.FAIL)  # plain int8 fails on drift
    monkeypatch.setattr(openvino, "build_variants", lambda ctx, names, tick: [asked.extend(names)] and [
        VariantResult(n, backend="openvino", built=True, passed=False, gates=[drift]) for n in names])
    monkeypatch.setattr(hardware, "detect", lambda: SimpleNamespace(has_vnni=True, cpu_model="test"))
    ctx = SimpleNamespace(config=SimpleNamespace(variants=None), ac_known=known, ac_outcome=None)
    out = engine._openvino(ctx, ["ov-int8", "ov-int8-ac"], [], None)
    ac = next(v for v in out if v.name == "ov-int8-ac")
    assert ("ov-int8-ac" in asked) is not restored_all
    if restored_all:
        assert "restored all 5 MatMuls" in ac.not_tried and "--variants" in ac.not_tried
    else:
        assert ctx.ac_outcome == {"restored_all": False, "detail": None}


def test_costeff_quantize_reuses_built_variants_and_says_so(tiny_policy, tiny_observations, tmp_path, capsys,
                                                            monkeypatch):
    from costeff.cli import main

    monkeypatch.setenv("COSTEFF_CACHE", str(tmp_path / "cache"))
    obs = tmp_path / "obs.npy"
    np.save(obs, tiny_observations[:1200])
    args = ["quantize", str(tiny_policy.onnx_path), "--observations", str(obs), "--variants", "int8-dynamic",
            "--batch-sizes", "1,16", "--window-s", "0.05", "--rounds", "1", "--gaps", "0"]
    main([*args, "--out", str(tmp_path / "a")])
    assert "reused" not in capsys.readouterr().out
    main([*args, "--out", str(tmp_path / "b")])
    reused = json.loads((tmp_path / "b" / "quantization_report.json").read_text())["cache"]
    assert reused["reused"] is True and reused["variants_reused"] >= 1  # int8-dynamic (and its fallback)
    assert f"reused {reused['variants_reused']} built variant(s) and their fidelity from the cache" \
        in capsys.readouterr().out
    main([*args, "--out", str(tmp_path / "c"), "--no-cache"])
    assert "reused" not in capsys.readouterr().out


def test_only_an_undisturbed_screening_is_remembered(tmp_path):
    from costeff.quantization import cache
    from costeff.quantization.engine import remember_finalists

    info = {"root": str(tmp_path), "key": "k1"}
    busy = SimpleNamespace(rounds=[{"kind": "screen", "disturbed": ["fp32"]}], finalists=["big"])
    assert not remember_finalists(info, busy) and cache.finalists(tmp_path, "k1") is None
    unscreened = SimpleNamespace(rounds=[{"kind": "full", "disturbed": []}], finalists=["big"])
    assert not remember_finalists(info, unscreened) and not remember_finalists(None, busy)
    quiet = SimpleNamespace(rounds=[{"kind": "screen", "disturbed": []}], finalists=["big"])
    assert remember_finalists(info, quiet) and cache.finalists(tmp_path, "k1") == ["big"]


class KnobWorker(Worker):
    """Like Worker; a session without spinning threads is twice as fast; every load is ``load``."""

    def __init__(self, load: dict) -> None:
        super().__init__()
        self.load = load

    def __call__(self, task: dict) -> dict:
        out = super().__call__(task)
        if task["options"].get("spinning") is False:
            for point in out["closed_loop"].values():
                point["throughput_per_s"] *= 2
            out["open_loop"] = out["open_loop"] and {**out["open_loop"], "p50_ms": out["open_loop"]["p50_ms"] / 2}
        return {**out, "load": dict(self.load)}


@pytest.mark.parametrize("disturbed, adopted", [(False, "spinning=False"), (True, "default (as timed above)")])
def test_a_runtime_setting_is_adopted_only_on_rounds_the_load_did_not_disturb(monkeypatch, disturbed, adopted):
    from costeff.quantization import select, speed

    load = {**CLEAN, "disturbed": disturbed, "other_share": 0.9 if disturbed else 0.0}
    worker, obs, cfg = KnobWorker(load), np.zeros((8, 4), np.float32), _run_config()
    monkeypatch.setattr(speed, "measure_all", lambda tries, config, o, reference=None, margin=None: measure_rounds(
        tries, config, o, runner=worker, control=False, reference=reference, margin=margin))
    variants = _variants(())  # fp32 alone: the selection keeps it, then its runtime settings are tried
    timing = measure_rounds(variants, cfg, obs, runner=worker)
    fill_all(variants, timing)
    selected, _ = select.select_and_cost(variants, cfg, obs, timing.noise_floor)
    rows = {r["setting"].split(" (")[0] if r["setting"].startswith("spinning") else r["setting"]: r
            for r in selected["knobs"]}
    assert [name for name, r in rows.items() if r["adopted"]] == [adopted]
    if disturbed:  # every round was busy: no setting could be adopted, so none is timed, and the rows say why
        assert all("not tried: every round the selection used was disturbed" in r["setting"]
                   for r in selected["knobs"][1:]) and len(selected["knobs"]) == 3
        assert not any(t["options"].get("spinning") is False for t in worker.tasks)
        assert variants[0].speedup == pytest.approx(1.0)  # fp32 is not "faster than fp32"


class BusyKnobWorker(KnobWorker):
    """Quiet for the selection's rounds; busy whenever a runtime setting is timed."""

    def __call__(self, task: dict) -> dict:
        out = super().__call__(task)
        busy = task["options"].get("spinning") is False or task["options"].get("threads") == 1
        return {**out, "load": {**CLEAN, "disturbed": True, "other_share": 0.9} if busy else dict(CLEAN)}


def test_a_setting_measured_only_while_the_machine_was_busy_is_not_adopted(monkeypatch):
    from costeff.quantization import select, speed

    worker, obs, cfg = BusyKnobWorker(CLEAN), np.zeros((8, 4), np.float32), _run_config()
    monkeypatch.setattr(speed, "measure_all", lambda tries, config, o, reference=None, margin=None: measure_rounds(
        tries, config, o, runner=worker, control=False, reference=reference, margin=margin))
    variants = _variants(())
    timing = measure_rounds(variants, cfg, obs, runner=worker)
    fill_all(variants, timing)
    selected, _ = select.select_and_cost(variants, cfg, obs, timing.noise_floor)
    assert [r["setting"] for r in selected["knobs"] if r["adopted"]] == ["default (as timed above)"]
    assert any("not adopted: measured only while the machine was disturbed" in r["setting"]
               for r in selected["knobs"])  # twice as fast, but only ever measured under load
