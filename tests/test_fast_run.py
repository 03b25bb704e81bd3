"""One consistent measurement (A/A floor, load blocks, reproduced verdicts) and a fast default run (cache, no
wasted accuracy control). Timings are synthetic: no test here depends on how busy the machine is."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from costeff.gates import Gate, Verdict
from costeff.quantization import QuantizeConfig, load, quantize
from costeff.quantization.records import VariantResult
from costeff.quantization.select import choose, fill_all
from costeff.quantization.speed import CONTROL, measure_rounds
from workspace_support import env_workspace

FAST = dict(batch_sizes=(1, 16), window_s=0.05, speed_rounds=1)
CLEAN = {"other_share": 0.0, "steal_share": 0.0, "disturbed": False}
BUSY = {"other_share": 0.9, "steal_share": 0.0, "disturbed": True}


def _config(rounds: int = 2) -> SimpleNamespace:
    return SimpleNamespace(speed_rounds=rounds, finalists=None, latency_budget_ms=None, batch_sizes=(1,),
                           window_s=0.05, gaps_s=(0.0,), target_rate=None, max_utilisation=0.8, open_loop_s=1.0,
                           provider="cpu")


def _variants() -> list[VariantResult]:
    fp32 = VariantResult("fp32", built=True, baseline=True, passed=True, path="fp32.onnx")
    return [fp32, VariantResult("int8-dynamic", built=True, passed=True, path="int8-dynamic.onnx")]


class FakeRunner:
    """Answers each measurement task from a table: path -> list of (throughput, load) consumed in order.

    fp32's two processes per round (the A/A control) take consecutive entries."""

    def __init__(self, table: dict[str, list[tuple[float, dict]]]):
        self.table = {k: list(v) for k, v in table.items()}
        self.calls: list[str] = []

    def __call__(self, task: dict) -> dict:
        self.calls.append(task["path"])
        thr, state = self.table[task["path"]].pop(0)
        p50 = 1000.0 / thr
        return {"closed_loop": {1: {"throughput_per_s": thr, "p50_ms": p50, "p99_ms": 2 * p50, "stable": True}},
                "gaps": [{"gap_ms": 0.0, "calls": 10, "p50_ms": p50, "p99_ms": 2 * p50}], "open_loop": None,
                "runtime": {}, "load": dict(state)}


def _timed(fp32: list[float], variant: list[float], variant_load: list[dict] | None = None, rounds: int = 2):
    variant_load = variant_load or [CLEAN] * len(variant)
    runner = FakeRunner({"fp32.onnx": [(t, CLEAN) for t in fp32],
                         "int8-dynamic.onnx": list(zip(variant, variant_load, strict=True))})
    variants = _variants()
    timing = measure_rounds(variants, _config(rounds), np.zeros((8, 4), np.float32), runner=runner)
    fill_all([v for v in variants if v.built], timing)
    return variants, timing, runner


def test_fp32_runs_twice_per_round_and_the_aa_spread_is_recorded():
    _, timing, runner = _timed([1000, 1250, 1250, 1000], [1300, 1300])
    assert runner.calls.count("fp32.onnx") == 4  # two separately started processes in each of two rounds
    assert all(set(r["measurements"]) == {"fp32", CONTROL, "int8-dynamic"} for r in timing.rounds)
    assert timing.noise_floor["capacity"] == pytest.approx(0.25)
    assert timing.noise_floor["capacity_ratios"] == [1.25, 1.25]  # the control took the 1,250s, fp32 the 1,000s
    assert [{r["order"][0], r["order"][-1]} for r in timing.rounds] == [{"fp32", CONTROL}] * 2  # first and last


def test_a_variant_within_the_noise_floor_is_not_selected():
    variants, timing, _ = _timed([1000, 1250, 1250, 1000], [1300, 1300])  # 1.16x, fp32 varies by 25 %
    assert choose(variants, 1.05, noise_floor=None)["name"] == "int8-dynamic"  # without the control it would win
    chosen = choose(variants, 1.05, noise_floor=timing.noise_floor)
    assert chosen["name"] == "fp32" and "within the A/A noise floor" in chosen["reason"]
    assert variants[1].noise_verdict == {**variants[1].noise_verdict, "capacity": False, "clean_rounds": 2}


def test_a_variant_beyond_the_noise_floor_is_selected():
    variants, timing, _ = _timed([1000, 1050, 1050, 1000], [2000, 2100])
    assert timing.noise_floor["capacity"] == pytest.approx(0.05)
    assert choose(variants, 1.05, noise_floor=timing.noise_floor)["name"] == "int8-dynamic"


def test_every_measurement_has_a_load_block_and_a_disturbed_one_is_taken_once_more():
    # the variant's first try is disturbed: only it is measured again, and the clean answer is kept
    variants, timing, runner = _timed([1000] * 4, [3000, 4000], [BUSY, CLEAN], rounds=1)
    first = timing.rounds[0]
    assert first["repeats"] == 1 and first["disturbed"] == [] and len(runner.calls) == 3 + 1
    assert first["measurements"]["int8-dynamic"]["optimal_throughput_per_s"] == 4000
    assert first["discarded"]["int8-dynamic"]["load"]["disturbed"] is True
    assert all(m["load"] is not None and "disturbed" in m["load"] for r in timing.rounds
               for m in r["measurements"].values())


def test_a_variant_that_only_won_on_disturbed_rounds_is_not_selected():
    variants, timing, runner = _timed([1000] * 4, [3000] * 2, [BUSY] * 2, rounds=1)
    assert len(runner.calls) == 4  # bounded: taken once more, then marked
    assert [(r["repeats"], r["disturbed"]) for r in timing.rounds] == [(1, ["int8-dynamic"])]
    assert all(not p["clean"] for p in variants[1].paired_rounds)
    chosen = choose(variants, 1.05, noise_floor=timing.noise_floor)
    assert chosen["name"] == "fp32" and "no round ran undisturbed" in chosen["reason"]


def test_load_block_reads_the_machine_around_a_measurement():
    before = load.snapshot()
    sum(i * i for i in range(200_000))  # some CPU time of our own: it must not count as others'
    got = load.block(before, load.snapshot())
    assert {"other_cpu_s", "steal_s", "loadavg_1m", "freq_mhz_before", "own_cpu_s", "disturbed"} <= set(got)
    assert got["own_cpu_s"] > 0 and (got["other_cpu_s"] is None or got["other_cpu_s"] >= 0)
    assert load.is_disturbed({"other_share": 0.9}) and not load.is_disturbed({"other_share": 0.0})


def test_over_budget_holds_only_when_it_reproduces():
    from costeff.quantization.select import _at_target

    cfg = SimpleNamespace(target_rate=100.0, latency_budget_ms=5.0, max_utilisation=0.8)
    inst = SimpleNamespace(usd_per_hour=1.0)
    once, twice = _variants()
    for v, runs in ((once, (1, 4)), (twice, (2, 4))):
        v.optimal_batch, v.optimal_throughput_per_s, v.throughput_range_per_s = 1, 1000.0, {1: (900.0, 1100.0)}
        v.open_loop = {"instances": 1, "saturated": False, "p50_ms": 1.0, "p99_ms": 6.0}
        v.over_budget_runs = runs
    _at_target([once, twice], cfg, inst)
    assert once.at_target["meets_budget"] and not twice.at_target["meets_budget"]


def _gate(name: str, ok: bool) -> Gate:
    return Gate(name, 0.0, 1.0, "<=", Verdict.PASS if ok else Verdict.FAIL)


@pytest.mark.parametrize("int8_passed, built_ac", [(True, False), (False, True)])
def test_accuracy_control_is_built_only_after_plain_int8_failed(monkeypatch, int8_passed, built_ac):
    from costeff import hardware
    from costeff.quantization import engine, openvino

    asked: list[list[str]] = []
    monkeypatch.setattr(openvino, "build_variants", lambda ctx, names, tick: asked.append(names) or [
        VariantResult(n, backend="openvino", built=True, passed=int8_passed,
                      gates=[_gate("action_drift_pct@b1", int8_passed)]) for n in names])
    monkeypatch.setattr(hardware, "detect", lambda: SimpleNamespace(has_vnni=True, cpu_model="test"))
    ctx = SimpleNamespace(config=SimpleNamespace(variants=None))
    out = engine._openvino(ctx, ["ov-int8", "ov-int8-ac", "ov-int8-ac-bf16"], [], None)
    ac = [v for v in out if v.name.startswith("ov-int8-ac")]
    assert [n for names in asked for n in names if "-ac" in n] == (["ov-int8-ac", "ov-int8-ac-bf16"] if built_ac
                                                                   else [])
    assert all((v.not_tried is None) == built_ac for v in ac)
    if not built_ac:
        assert "already passed" in ac[0].not_tried


# --- the variant cache, on the tiny policy ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy(tiny_policy) -> Path:
    return tiny_policy.onnx_path


def _quantize(policy, obs, cache, tmp_path, tag):
    cfg = QuantizeConfig(variants=("int8-dynamic",), **FAST)
    return quantize(policy, obs, cfg, out_dir=tmp_path / tag, cache=cache, workspace=env_workspace())


def test_a_second_quantize_reuses_the_built_variants_and_says_so(policy, tiny_observations, tmp_path):
    cache = tmp_path / "cache"
    first = _quantize(policy, tiny_observations, cache, tmp_path, "a")
    second = _quantize(policy, tiny_observations, cache, tmp_path, "b")
    assert first.cache["reused"] is False and first.cache["stored"] is True
    built = [v.name for v in first.variants if v.built and not v.baseline]
    assert second.cache["reused"] is True and second.cache["variants_reused"] == len(built) >= 1
    a, b = first.variant("int8-dynamic"), second.variant("int8-dynamic")
    assert b.fidelity == a.fidelity and b.gates == a.gates and b.sha256 == a.sha256 and b.passed == a.passed
    record = json.loads((Path(second.report_dir) / "quantization_report.json").read_text())
    assert record["cache"]["reused"] is True and record["noise_floor"]["rounds_used"] == 1
    assert all(m["load"] is not None for r in record["speed_rounds"] for m in r["measurements"].values())
    assert "reused from" in (Path(second.report_dir) / "quantization_report.md").read_text()


@pytest.mark.parametrize("damage", ["corrupt", "partial"])
def test_a_corrupted_or_partial_entry_is_rebuilt(policy, tiny_observations, tmp_path, damage):
    cache = tmp_path / "cache"
    first = _quantize(policy, tiny_observations, cache, tmp_path, "a")
    entry = Path(first.cache["entry"])
    if damage == "corrupt":
        model = next(entry.glob("v*/*.onnx"))
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    else:  # a build interrupted before its manifest was written
        (entry / "manifest.json").unlink()
    again = _quantize(policy, tiny_observations, cache, tmp_path, "b")
    assert again.cache["reused"] is False and again.variant("int8-dynamic").built
    assert _quantize(policy, tiny_observations, cache, tmp_path, "c").cache["reused"] is True  # rebuilt entry


def test_an_entry_made_by_other_code_is_never_trusted(policy, tiny_observations, tmp_path, monkeypatch):
    """A cache entry pickled by another costeff (another VariantResult shape) must be rebuilt, not loaded:
    a run once failed on an entry whose variants lacked a field added since."""
    from costeff.quantization import cache as variant_cache

    root = tmp_path / "cache"
    first = _quantize(policy, tiny_observations, root, tmp_path, "a")
    monkeypatch.setattr(variant_cache, "code_fingerprint", lambda: "other code")
    again = _quantize(policy, tiny_observations, root, tmp_path, "b")
    assert first.cache["stored"] is True and again.cache["reused"] is False
    assert again.variant("int8-dynamic").built


def test_variants_missing_a_field_are_not_loaded(tmp_path):
    from costeff.quantization import cache as variant_cache
    from costeff.quantization.records import VariantResult

    k = variant_cache.key("ab" * 32, "cd" * 32, {}, {"isa": []})
    old = VariantResult("fp32", backend="onnxruntime", precision="fp32", baseline=True)
    del old.__dict__["settings"]  # the shape of an entry written before the field existed
    variant_cache.store(tmp_path, k, [old], {})
    stored, why = variant_cache.load(tmp_path, k)
    assert stored is None and "another version" in why


# --- one measurement in the summary ------------------------------------------------------------------------------


def test_the_summary_states_one_speedup_and_one_cost_from_the_interleaved_rounds():
    from costeff.pack.summary import render_summary

    def profile(sha, per_s, usd_per_day):
        return {"model_sha256": sha, "provider": "cpu",
                "optimal": {"batch_size": 64, "throughput_per_s": per_s, "latency_p99_ms": 1.0},
                "points": [{"batch_size": 64, "throughput_per_s": per_s, "stable": True,
                            "windows": [{"throughput_per_s": per_s}]}],
                "cost": {"usd_per_day": usd_per_day, "instances_needed": 3, "instance": "c", "target_rate_per_s": 500}}

    at = lambda n: {"instances": n, "usd_per_day": 2.0 * n, "meets_budget": True}  # noqa: E731
    quant = {"selected": {"name": "int8-mixed"}, "cost": {"instance": "c", "target_rate_per_s": 500.0},
             "variants": [{"name": "fp32", "baseline": True, "sha256": "f" * 64, "optimal_throughput_per_s": 10_000.0,
                           "optimal_batch": 64, "at_target": at(2), "throughput_per_s": {"64": 10_000.0},
                           "throughput_range_per_s": {"64": [9_000.0, 11_000.0]}},
                          {"name": "int8-mixed", "sha256": "a" * 64, "speedup": 2.94, "optimal_batch": 64,
                           "optimal_throughput_per_s": 29_400.0, "at_target": at(1), "passed": True,
                           "throughput_per_s": {"64": 29_400.0},
                           "throughput_range_per_s": {"64": [28_000.0, 30_000.0]}}]}
    files = {"profile/gpu_profile.json": json.dumps(profile("a" * 64, 603.0, 9.0)).encode(),
             "profile_fp32/gpu_profile.json": json.dumps(profile("f" * 64, 3_346.0, 9.0)).encode(),
             "quant/quantization_report.json": json.dumps(quant).encode()}
    text = render_summary(files)
    assert "at 2.94x fp32 throughput" in text and "29,400 inferences/s" in text and "10,000 inferences/s" in text
    assert "603" not in text and "3,346" not in text  # the dedicated profiles' throughput is not a second figure
    assert "| serving cost per day $ at 500/s | projected | 4.00 (2 x c) | 2.00 (1 x c) | `quant/" in text


def test_a_variant_slower_than_fp32_in_capacity_and_answer_time_is_not_timed_again():
    variants = _variants() + [VariantResult("fp16", built=True, passed=True, path="fp16.onnx")]
    runner = FakeRunner({"fp32.onnx": [(1000, CLEAN)] * 4, "int8-dynamic.onnx": [(1200, CLEAN)] * 2,
                         "fp16.onnx": [(500, CLEAN)] * 2})  # fp16: half fp32's capacity, twice its answer time
    # (int8-dynamic within 1.5x of fp32: the first round cannot decide alone, so there is a second one)
    timing = measure_rounds(variants, _config(2), np.zeros((8, 4), np.float32), runner=runner)
    assert runner.calls.count("fp16.onnx") == 1 and runner.calls.count("int8-dynamic.onnx") == 2
    assert "fp16" not in timing.rounds[1]["measurements"] and timing.speeds["fp16"].measurements == 1


def test_the_variant_cache_keeps_the_most_recently_used_entries_and_spares_one_in_use(tmp_path):
    import os

    from costeff.quantization import cache as variant_cache

    root = tmp_path / "variants"
    root.mkdir()
    now = 1_000_000_000.0
    ages_h = [0.1, 0.3, 0.5, 2, 3]  # hours since each entry was last used (read or stored)
    digests = [f"{i:064x}" for i in range(len(ages_h))]
    for digest, age in zip(digests, ages_h, strict=True):
        (root / digest).mkdir()
        (root / f"{digest}{variant_cache.FINALISTS_SUFFIX}").write_text("{}")
        os.utime(root / digest, (now - age * 3600, now - age * 3600))
    removed = variant_cache.prune(root, keep=2, now=now)
    # kept: the two most recent, and the third, beyond them but used within the hour (another run may read it);
    # removed with their finalists hints: the entries not used for hours
    assert sorted(removed) == digests[3:]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == digests[:3]
    assert not any((root / f"{d}{variant_cache.FINALISTS_SUFFIX}").exists() for d in removed)
