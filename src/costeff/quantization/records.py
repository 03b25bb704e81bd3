"""The quantization record: every variant with its fidelity, gates, speed and cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from costeff.gates import Gate
from costeff.quantization.batches import BatchFidelity, BatchInvariance
from costeff.quantization.fidelity import Fidelity


@dataclass
class Trial:
    """One fallback attempt: which nodes stayed in higher precision and what it gave."""

    trial: int
    excluded_nodes: list[str]
    action_drift_pct: float | None
    entropy_drift_pct: float | None
    action_correlation: float | None
    passed: bool
    failed_gates: list[str]


@dataclass
class VariantResult:
    name: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    runtime: dict[str, Any] = field(default_factory=dict)  # compile / session options it is served with
    not_tried: str | None = None  # why this host or these options did not try it
    path: str | None = None
    sha256: str | None = None
    built: bool = False
    error: str | None = None  # why the variant could not be built or run
    baseline: bool = False
    recipe: str | None = None
    session_config: dict[str, str] = field(default_factory=dict)
    derived_from: str | None = None  # the failing variant a mixed one falls back from
    excluded_nodes: list[str] = field(default_factory=list)
    fp32_op_types: list[str] = field(default_factory=list)  # fp16 op block list
    notes: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    size_reduction_pct: float | None = None
    fidelity: Fidelity | None = None  # at the largest served batch, every held-out row
    gates: list[Gate] = field(default_factory=list)  # every batch's fidelity gates (name@bN) + batch invariance
    passed: bool = False
    fidelity_by_batch: dict[str, BatchFidelity] = field(default_factory=dict)  # "1", "<largest served>"
    batch_invariance: BatchInvariance | None = None  # the same rows alone vs inside a served batch
    trials: list[Trial] = field(default_factory=list)
    structure: dict[str, Any] | None = None  # prune / lowrank: the sizes tried on calibration rows, seconds
    settings_of: str | None = None  # runtime-settings variant (``fp32@threads=1``): the variant whose file it runs
    settings: dict[str, Any] = field(default_factory=dict)  # the runtime options it sets, e.g. {"threads": 1}
    throughput_per_s: dict[int, float] = field(default_factory=dict)
    throughput_range_per_s: dict[int, tuple[float, float]] = field(default_factory=dict)
    latency_p99_ms: dict[int, float] = field(default_factory=dict)
    optimal_batch: int | None = None
    optimal_throughput_per_s: float | None = None
    throughput_at_baseline_batch_per_s: float | None = None
    speedup: float | None = None  # own optimal batch vs fp32 at its optimal batch
    speedup_at_baseline_batch: float | None = None  # both at fp32's optimal batch
    cost: dict[str, Any] | None = None
    latency_by_gap: list[dict[str, float]] = field(default_factory=list)  # single calls after idle gaps
    open_loop: dict[str, Any] | None = None  # Poisson arrivals at the target rate, greedy batching
    open_loop_p50_range_ms: tuple[float, float] | None = None
    at_target: dict[str, Any] | None = None  # instances, $/day, budget met: what selection compares
    # per round against fp32 of the same round: speedup, answer-time ratio, clean (neither disturbed)
    paired_rounds: list[dict[str, Any]] = field(default_factory=list)
    noise_verdict: dict[str, Any] | None = None  # beats the A/A floor on every clean round (capacity / answer)
    over_budget_runs: tuple[int, int] | None = None  # (open-loop replays over budget, replays)
    speed_measurements: dict[str, int] | None = None  # measurements behind the medians, disturbed ones


@dataclass
class QuantizationReport:
    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str
    model_path: str
    model_name: str
    hardware: dict[str, Any]
    config: dict[str, Any]
    split: dict[str, Any]
    recipe: dict[str, Any]
    preprocessing: str
    variants: list[VariantResult]
    selected: dict[str, Any]
    passed_any: bool
    cost: dict[str, Any]
    speed_method: str
    report_dir: str | None = None
    noise_floor: dict[str, Any] | None = None  # fp32 against itself (A/A), per round; what a winner must beat
    speed_rounds: list[dict[str, Any]] = field(default_factory=list)  # every measurement with its load block
    cache: dict[str, Any] | None = None  # built variants reused from, or stored to, the variant cache

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, float) else str(x)


def to_markdown(rep: QuantizationReport) -> str:
    sel = rep.selected
    lines = [f"# Precision lowering: {rep.model_name}", "",
             f"- model `{rep.model_path}` sha256 `{rep.model_sha256}`",
             f"- created {rep.created_at} on {rep.hardware.get('cpu_model')} "
             f"({', '.join(rep.hardware.get('isa', []))}); provider {rep.config.get('provider')}",
             f"- split: {rep.split['calibration_rows']} calibration rows, {rep.split['evaluation_rows']} "
             f"held-out rows (disjoint, seed {rep.split['seed']}); fidelity on held-out rows only",
             f"- int8 recipe **{rep.recipe.get('name')}**: {rep.recipe.get('reason')}",
             f"- selected **{sel['name']}** ({sel.get('backend', 'onnxruntime')}, {sel.get('precision', '-')}; "
             f"`{sel['path']}`): {sel['reason']}",
             f"- traffic assumed: {_traffic(sel.get('traffic') or {})}", "",
             "## Regimes", ""] + _regime_md(rep) + _knobs_md(sel.get("knobs")) + ["", "## Fidelity and size", "",
             "| variant | built | passed | action drift % | entropy drift % | correlation | KL p99 | value err "
             "| opt batch | speedup | speedup @fp32 batch | size MB | size -% | $/M |",
             "|" + "---|" * 14]
    for v in rep.variants:
        f = v.fidelity
        lines.append("| " + " | ".join([
            v.name, "yes" if v.built else f"no: {v.not_tried or v.error}", "PASS" if v.passed else "FAIL",
            _fmt(f and f.action_drift_pct), _fmt(f and f.entropy_drift_pct), _fmt(f and f.action_correlation, ".5f"),
            _fmt(f and f.kl_p99, ".2e"), _fmt(f and f.value_max_abs_err, ".4f"), _fmt(v.optimal_batch),
            _fmt(v.speedup, ".2f"), _fmt(v.speedup_at_baseline_batch, ".2f"),
            _fmt(v.size_bytes / 1e6 if v.size_bytes else None, ".2f"), _fmt(v.size_reduction_pct, ".1f"),
            _fmt(v.cost and v.cost.get("usd_per_million"), ".4g")]) + " |")
    lines += ["", "## Fidelity by batch size", ""] + _by_batch_md(rep)
    lines += ["", "## Batch invariance", ""] + _invariance_md(rep)
    lines += ["", "## Gates", ""] + _gates_md(rep) + ["", "## Recipe evidence (calibration rows)", ""]
    lines += _recipe_md(rep.recipe) + _structure_md(rep) + _settings_md(rep)
    lines += ["", "## Speed (inferences/s, median of interleaved rounds)", ""]
    lines += _speed_md(rep) + ["", f"Speed measured with {rep.speed_method}.", ""] + _noise_md(rep)
    lines += _cost_md(rep.cost)
    return "\n".join(lines) + "\n"


def _traffic(t: dict[str, Any]) -> str:
    if not t.get("target_rate_per_s"):
        return "none given: closed-loop throughput decides"
    budget = t.get("latency_budget_ms")
    return f"{t['target_rate_per_s']:g} requests/s" + (f", p99 budget {budget:g} ms" if budget else "")


def _regime_md(rep: QuantizationReport) -> list[str]:
    """Every variant in every regime: what selection compares, side by side."""
    out = ["| variant | backend | precision | action drift % | batch 1 tight p50 ms | batch 1 after "
           "gaps p50 ms | optimal batch | inferences/s | p50 / p99 at target ms | instances | $/day | $/million |",
           "|" + "---|" * 12]
    for v in rep.variants:
        if v.not_tried:
            out.append(f"| {v.name} | {v.backend} | {v.precision} | not tried: {v.not_tried} |" + " |" * 8)
            continue
        f, gaps, t = v.fidelity, v.latency_by_gap, v.at_target or {}
        tight = next((g["p50_ms"] for g in gaps if g["gap_ms"] == 0), None)
        spaced = ", ".join(f"{g['gap_ms']:g} ms: {g['p50_ms']:.3f}" for g in gaps if g["gap_ms"] > 0) or "-"
        target = f"{t['p50_ms']:.3f} / {t['p99_ms']:.3f}" + ("" if t.get("meets_budget") else " (over budget)") \
            if t else "-"
        out.append("| " + " | ".join([
            v.name, v.backend, v.precision, _fmt(f and f.action_drift_pct), _fmt(tight), spaced,
            _fmt(v.optimal_batch), _fmt(v.optimal_throughput_per_s, ",.0f"), target, _fmt(t.get("instances")),
            _fmt(t.get("usd_per_day"), ".2f"), _fmt(v.cost and v.cost.get("usd_per_million"), ".4g")]) + " |")
    return out


def _knobs_md(rows: list[dict[str, Any]] | None) -> list[str]:
    if not rows:
        return []
    out = ["", "### Runtime settings of the selected variant, measured at the target", "",
           "| setting | optimal batch | inferences/s | p50 / p99 at target ms | instances | beats default "
           "| adopted |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        beats = "-" if r["beats_default"] is None else ("yes" if r["beats_default"] else "no")
        out.append(f"| {r['setting']} | {_fmt(r['optimal_batch'])} | {_fmt(r['throughput_per_s'], ',.0f')} | "
                   f"{_fmt(r['p50_ms_at_target'])} / {_fmt(r['p99_ms_at_target'])} | {_fmt(r['instances'])} | "
                   f"{beats} | {'yes' if r['adopted'] else ''} |")
    return out


def _by_batch_md(rep: QuantizationReport) -> list[str]:
    """Each variant's fidelity at batch 1 and at the largest served batch; it passes only if it passes at each."""
    out = ["| variant | batch | rows | action drift % | entropy drift % | correlation | KL p99 | verdict |",
           "|" + "---|" * 8]
    for v in rep.variants:
        for key, e in v.fidelity_by_batch.items():
            f = e.fidelity
            failed = [g.name for g in e.gates if not g.passed]
            out.append(f"| {v.name} | {key} | {e.rows} | {_fmt(f.action_drift_pct)} | {_fmt(f.entropy_drift_pct)} | "
                       f"{_fmt(f.action_correlation, '.5f')} | {_fmt(f.kl_p99, '.2e')} | "
                       f"{'PASS' if e.passed else 'FAIL: ' + ', '.join(failed)} |")
    return out


def _invariance_md(rep: QuantizationReport) -> list[str]:
    tol = (rep.config.get("tolerances") or {}).get("batch_action_change_pct")
    out = [f"The same held-out rows alone vs inside seeded random batches; a variant whose actions change on more "
           f"than {tol} % of them fails whatever its drift. fp32 is the floor (reported, not gated).", "",
           "| variant | batch sizes | rows | action change % | rows changed | max logit diff | verdict |",
           "|" + "---|" * 7]
    for v in rep.variants:
        inv = v.batch_invariance
        if inv is None:
            continue
        gate = next((g for g in v.gates if g.name == "batch_action_change_pct"), None)
        verdict = "floor" if v.baseline else (gate.verdict.value if gate else "-")
        out.append(f"| {v.name} | {', '.join(map(str, inv.batch_sizes))} | {inv.rows} | "
                   f"{_fmt(inv.action_change_pct)} | {inv.changed_rows} | {_fmt(inv.max_logit_diff, '.3g')} | "
                   f"{verdict} |")
    return out


def _gates_md(rep: QuantizationReport) -> list[str]:
    out = ["| variant | gate | observed | comparator | threshold | verdict |", "|---|---|---|---|---|---|"]
    for v in rep.variants:
        for g in v.gates:
            out.append(f"| {v.name} | {g.name} | {_fmt(g.observed, '.5f')} | {g.comparator} | {g.threshold} | "
                       f"{g.verdict.value} |")
        if v.excluded_nodes:
            out.append(f"| {v.name} | kept in fp32 | {', '.join(v.excluded_nodes)} | | | |")
    return out


def _recipe_md(recipe: dict[str, Any]) -> list[str]:
    out = ["| recipe | action drift % | KL mean | session config | note |", "|---|---|---|---|---|"]
    for e in recipe.get("evidence", []):
        out.append(f"| {e['recipe']} | {_fmt(e.get('action_drift_pct'))} | {_fmt(e.get('kl_mean'), '.2e')} | "
                   f"{e.get('session_config') or '-'} | {e.get('error') or e.get('note', '')} |")
    return out


def _structure_md(rep: QuantizationReport) -> list[str]:
    probes = [v for v in rep.variants if v.structure and "+" not in v.name]
    out = ["", "## Structural probes (a quarter of the calibration rows, at 60 % of each tolerance)", "",
           "| variant | sizes | parameters | passed | action drift % "
           "| failed gates | seconds |", "|---|---|---|---|---|---|---|"] if probes else []
    for v in probes:
        s = v.structure or {}
        out.append(f"| {v.name} | {s['original_sizes']} (fp32) | {s['original_params']:,} | | | | |")
        out += [f"| {v.name} | {t['sizes']} | {t['params']:,} | {'yes' if t['passed'] else 'no'} | "
                f"{_fmt(t['action_drift_pct'])} | {', '.join(t['failed_gates']) or '-'} | {t['seconds']:.1f} |"
                for t in s["steps"]]
        out.append(f"| {v.name} | search ended: {s['stopped']} | | | | | {s['seconds']:.1f} |")
    return out


def _settings_md(rep: QuantizationReport) -> list[str]:
    """Runtime-settings variants: what each sets, on which base, and what it gave against that base."""
    rows = [v for v in rep.variants if v.settings_of]
    if not rows:
        return []
    by = {v.name: v for v in rep.variants}
    out = ["", "## Runtime settings (same file and gates as the base, timed in the same rounds)", "",
           "| variant | base | settings | speedup vs fp32 | batch-1 p50 ms (base) | served by Triton as measured |",
           "|---|---|---|---|---|---|"]
    for v in rows:
        base = by.get(v.settings_of) if v.settings_of else None
        p50 = lambda x: x.latency_by_gap[0]["p50_ms"] if x and x.latency_by_gap else None  # noqa: E731
        served = "no: no spinning parameter" if v.settings.get("spinning") is False and v.backend == "onnxruntime" \
            else "yes"
        out.append(f"| {v.name} | {v.settings_of} | {settings_label(v.settings)} | "
                   f"{_fmt(v.speedup, '.2f')} | {_fmt(p50(v))} ({_fmt(p50(base))}) | {served} |")
    return out


def _speed_md(rep: QuantizationReport) -> list[str]:
    batches = sorted({b for v in rep.variants for b in v.throughput_per_s})
    out = ["| variant | " + " | ".join(f"b={b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
    for v in rep.variants:
        if v.throughput_per_s:
            cells = []
            for b in batches:
                lo, hi = v.throughput_range_per_s.get(b, (None, None))
                cells.append(f"{v.throughput_per_s.get(b, 0):.0f} ({_fmt(lo, '.0f')}-{_fmt(hi, '.0f')})")
            out.append(f"| {v.name} | " + " | ".join(cells) + " |")
    return out


def _noise_md(rep: QuantizationReport) -> list[str]:
    """The A/A floor, each round's disturbed measurements, and where the built variants came from."""
    out = []
    f = rep.noise_floor
    if f:
        out += ["## Noise floor (fp32 against itself)", "",
                f"{f['method']}: capacity {f['capacity'] * 100:.1f} %, answer time {f['answer_time'] * 100:.1f} % "
                f"over {f['rounds_used']} round(s) ({f['rounds_disturbed']} disturbed). A variant is selected only "
                "if it beats fp32 by more than this on every round where both ran undisturbed.", ""]
    from costeff.quantization.plan import screen_markdown

    out += screen_markdown(rep.speed_rounds)
    for r in rep.speed_rounds:
        if r["disturbed"] or r["repeats"]:
            out.append(f"- round {r['round']}: {r['repeats']} disturbed measurement(s) taken again; still disturbed: "
                       f"{', '.join(r['disturbed']) or 'none'}")
    c = rep.cache
    if c:
        out += ["", f"Built variants: {'reused from' if c.get('reused') else 'built; stored in'} the cache "
                    f"`{c.get('root')}` (key {c.get('key', '')[:16]}): {c.get('reason')}", ""]
    return out


def _cost_md(cost: dict[str, Any]) -> list[str]:
    if not cost:
        return []
    b, a = cost.get("before") or {}, cost.get("after") or {}
    return ["## Cost", "", f"Instance {cost.get('instance')} at target rate {cost.get('target_rate_per_s')} /s.", "",
            "| | $/million | instances needed |", "|---|---|---|",
            f"| before (fp32) | {_fmt(b.get('usd_per_million'), '.4g')} | {_fmt(b.get('instances_needed'))} |",
            f"| after ({cost.get('selected')}) | {_fmt(a.get('usd_per_million'), '.4g')} | "
            f"{_fmt(a.get('instances_needed'))} |"]


def settings_label(settings: dict[str, Any]) -> str:
    """A runtime-settings variant's settings in words: ``threads=1, spinning off``."""
    words = {"spinning": lambda v: "spinning off" if v is False else "spinning on",
             "performance_hint": lambda v: f"hint {v}"}
    return ", ".join(words.get(k, lambda v, k=k: f"{k}={v}")(v) for k, v in settings.items())
