"""The quantization record: every variant with its fidelity, gates, speed and cost."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costeff._jsonable import to_jsonable
from costeff.gates import Gate
from costeff.quantization.batches import BatchFidelity, BatchInvariance
from costeff.quantization.fidelity import Fidelity

if TYPE_CHECKING:
    from costeff.records.quant import CostSummary, KnobRow, QuantRecord, RecipeInfo, Traffic

MD_NAME = "quantization_report.md"


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
    # each timed variant's full-round measurements, whole points included (not written: the record keeps their
    # medians); a profile of fp32 or of the served variant is assembled from them (costeff.profiling.rounds)
    measured: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, float) else str(x)


def write(rep: QuantizationReport, out: Path) -> QuantRecord:
    """The Markdown, then the JSON last (a folder holding the JSON is complete); the record as written."""
    from costeff.artifacts import atomic_write_text
    from costeff.records.kinds import QUANT

    data = to_jsonable(dataclasses.replace(rep, measured={}))
    del data["measured"]
    record = QUANT.model.model_validate(data)
    md = atomic_write_text(out / MD_NAME, to_markdown(record))
    try:
        QUANT.write(out, data)
    except BaseException:
        md.unlink(missing_ok=True)
        raise
    return record


def to_markdown(rep: QuantRecord) -> str:
    sel = rep.selected
    lines = [f"# Precision lowering: {rep.model_name}", "",
             f"- model `{rep.model_path}` sha256 `{rep.model_sha256}`",
             f"- created {rep.created_at} on {(rep.hardware or {}).get('cpu_model')} "
             f"({', '.join((rep.hardware or {}).get('isa', []))}); provider {rep.config.provider}",
             f"- split: {rep.split.calibration_rows} calibration rows, {rep.split.evaluation_rows} "
             f"held-out rows (disjoint, seed {rep.split.seed}); fidelity on held-out rows only",
             f"- int8 recipe **{rep.recipe.name}**: {rep.recipe.reason}",
             f"- selected **{sel.name}** ({sel.backend}, {sel.precision or '-'}; `{sel.path}`): {sel.reason}",
             f"- traffic assumed: {_traffic(sel.traffic)}", "",
             "## Regimes", ""] + _regime_md(rep) + _knobs_md(sel.knobs) + ["", "## Fidelity and size", "",
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
            _fmt(v.cost and v.cost.usd_per_million, ".4g")]) + " |")
    lines += ["", "## Fidelity by batch size", ""] + _by_batch_md(rep)
    lines += ["", "## Batch invariance", ""] + _invariance_md(rep)
    lines += ["", "## Gates", ""] + _gates_md(rep) + ["", "## Recipe evidence (calibration rows)", ""]
    lines += _recipe_md(rep.recipe) + _structure_md(rep) + _settings_md(rep)
    lines += ["", "## Speed (inferences/s, median of interleaved rounds)", ""]
    lines += _speed_md(rep) + ["", f"Speed measured with {rep.speed_method}.", ""] + _noise_md(rep)
    lines += _cost_md(rep.cost)
    return "\n".join(lines) + "\n"


def _traffic(t: Traffic) -> str:
    if not t.target_rate_per_s:
        return "none given: closed-loop throughput decides"
    budget = t.latency_budget_ms
    return f"{t.target_rate_per_s:g} requests/s" + (f", p99 budget {budget:g} ms" if budget else "")


def _regime_md(rep: QuantRecord) -> list[str]:
    """Every variant in every regime: what selection compares, side by side."""
    out = ["| variant | backend | precision | action drift % | batch 1 tight p50 ms | batch 1 after "
           "gaps p50 ms | optimal batch | inferences/s | p50 / p99 at target ms | instances | $/day | $/million |",
           "|" + "---|" * 12]
    for v in rep.variants:
        if v.not_tried:
            out.append(f"| {v.name} | {v.backend} | {v.precision} | not tried: {v.not_tried} |" + " |" * 8)
            continue
        f, gaps, t = v.fidelity, v.latency_by_gap, v.at_target
        tight = next((g.p50_ms for g in gaps if g.gap_ms == 0), None)
        spaced = ", ".join(f"{g.gap_ms:g} ms: {_fmt(g.p50_ms)}" for g in gaps if g.gap_ms > 0) or "-"
        target = f"{_fmt(t.p50_ms)} / {_fmt(t.p99_ms)}" + ("" if t.meets_budget else " (over budget)") \
            if t else "-"
        out.append("| " + " | ".join([
            v.name, v.backend, v.precision, _fmt(f and f.action_drift_pct), _fmt(tight), spaced,
            _fmt(v.optimal_batch), _fmt(v.optimal_throughput_per_s, ",.0f"), target, _fmt(t and t.instances),
            _fmt(t and t.usd_per_day, ".2f"), _fmt(v.cost and v.cost.usd_per_million, ".4g")]) + " |")
    return out


def _knobs_md(rows: list[KnobRow]) -> list[str]:
    if not rows:
        return []
    out = ["", "### Runtime settings of the selected variant, measured at the target", "",
           "| setting | optimal batch | inferences/s | p50 / p99 at target ms | instances | beats default "
           "| adopted |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        beats = "-" if r.beats_default is None else ("yes" if r.beats_default else "no")
        out.append(f"| {r.setting} | {_fmt(r.optimal_batch)} | {_fmt(r.throughput_per_s, ',.0f')} | "
                   f"{_fmt(r.p50_ms_at_target)} / {_fmt(r.p99_ms_at_target)} | {_fmt(r.instances)} | "
                   f"{beats} | {'yes' if r.adopted else ''} |")
    return out


def _by_batch_md(rep: QuantRecord) -> list[str]:
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


def _invariance_md(rep: QuantRecord) -> list[str]:
    tol = rep.config.tolerances.batch_action_change_pct
    out = [f"The same held-out rows alone vs inside seeded random batches; a variant whose actions change on more "
           f"than {tol} % of them fails whatever its drift. fp32 is the floor (reported, not gated).", "",
           "| variant | batch sizes | rows | action change % | rows changed | max logit diff | verdict |",
           "|" + "---|" * 7]
    for v in rep.variants:
        inv = v.batch_invariance
        if inv is None:
            continue
        gate = next((g for g in v.gates if g.name == "batch_action_change_pct"), None)
        verdict = "floor" if v.baseline else (gate.verdict if gate else "-")
        out.append(f"| {v.name} | {', '.join(map(str, inv.batch_sizes))} | {inv.rows} | "
                   f"{_fmt(inv.action_change_pct)} | {inv.changed_rows} | {_fmt(inv.max_logit_diff, '.3g')} | "
                   f"{verdict} |")
    return out


def _gates_md(rep: QuantRecord) -> list[str]:
    out = ["| variant | gate | observed | comparator | threshold | verdict |", "|---|---|---|---|---|---|"]
    for v in rep.variants:
        for g in v.gates:
            out.append(f"| {v.name} | {g.name} | {_fmt(g.observed, '.5f')} | {g.comparator} | {g.threshold} | "
                       f"{g.verdict} |")
        if v.excluded_nodes:
            out.append(f"| {v.name} | kept in fp32 | {', '.join(v.excluded_nodes)} | | | |")
    return out


def _recipe_md(recipe: RecipeInfo) -> list[str]:
    out = ["| recipe | action drift % | KL mean | session config | note |", "|---|---|---|---|---|"]
    for e in recipe.evidence:
        out.append(f"| {e.recipe} | {_fmt(e.action_drift_pct)} | {_fmt(e.kl_mean, '.2e')} | "
                   f"{e.session_config or '-'} | {e.error or e.note or ''} |")
    return out


def _structure_md(rep: QuantRecord) -> list[str]:
    probes = [(v.name, v.structure) for v in rep.variants if v.structure and "+" not in v.name]
    out = ["", "## Structural probes (a quarter of the calibration rows, at 60 % of each tolerance)", "",
           "| variant | sizes | parameters | passed | action drift % "
           "| failed gates | seconds |", "|---|---|---|---|---|---|---|"] if probes else []
    for name, s in probes:
        assert s is not None  # filtered above
        out.append(f"| {name} | {s.original_sizes} (fp32) | {_count(s.original_params)} | | | | |")
        out += [f"| {name} | {t.sizes} | {_count(t.params)} | {'yes' if t.passed else 'no'} | "
                f"{_fmt(t.action_drift_pct)} | {', '.join(t.failed_gates) or '-'} | {_fmt(t.seconds, '.1f')} |"
                for t in s.steps]
        out.append(f"| {name} | search ended: {s.stopped} | | | | | {_fmt(s.seconds, '.1f')} |")
    return out


def _settings_md(rep: QuantRecord) -> list[str]:
    """Runtime-settings variants: what each sets, on which base, and what it gave against that base."""
    rows = [v for v in rep.variants if v.settings_of]
    if not rows:
        return []
    out = ["", "## Runtime settings (same file and gates as the base, timed in the same rounds)", "",
           "| variant | base | settings | speedup vs fp32 | batch-1 p50 ms (base) | served by Triton as measured |",
           "|---|---|---|---|---|---|"]
    for v in rows:
        base = rep.variant(v.settings_of) if v.settings_of else None
        p50 = lambda x: x.latency_by_gap[0].p50_ms if x and x.latency_by_gap else None  # noqa: E731
        served = "no: no spinning parameter" if v.settings.get("spinning") is False and v.backend == "onnxruntime" \
            else "yes"
        out.append(f"| {v.name} | {v.settings_of} | {settings_label(v.settings)} | "
                   f"{_fmt(v.speedup, '.2f')} | {_fmt(p50(v))} ({_fmt(p50(base))}) | {served} |")
    return out


def _speed_md(rep: QuantRecord) -> list[str]:
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


def _noise_md(rep: QuantRecord) -> list[str]:
    """The A/A floor, each round's disturbed measurements, and where the built variants came from."""
    out = []
    f = rep.noise_floor
    if f:
        out += ["## Noise floor (fp32 against itself)", "",
                f"{f.method}: capacity {_pct(f.capacity)} %, answer time {_pct(f.answer_time)} % "
                f"over {f.rounds_used} round(s) ({f.rounds_disturbed} disturbed). A variant is selected only "
                "if it beats fp32 by more than this on every round where both ran undisturbed.", ""]
    from costeff.quantization.plan import screen_markdown

    out += screen_markdown(rep.speed_rounds)
    for r in rep.speed_rounds:
        if r.disturbed or r.repeats:
            out.append(f"- round {r.round}: {r.repeats} disturbed measurement(s) taken again; still disturbed: "
                       f"{', '.join(r.disturbed) or 'none'}")
    c = rep.cache
    if c:
        out += ["", f"Built variants: {'reused from' if c.reused else 'built; stored in'} the cache "
                    f"`{c.root}` (key {(c.key or '')[:16]}): {c.reason}", ""]
    return out


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}"


def _cost_md(cost: CostSummary) -> list[str]:
    if not cost.instance and cost.before is None:
        return []
    from costeff.records.quant import CostEstimatePart

    b, a = cost.before or CostEstimatePart(), cost.after or CostEstimatePart()
    return ["## Cost", "", f"Instance {cost.instance} at target rate {cost.target_rate_per_s} /s.", "",
            "| | $/million | instances needed |", "|---|---|---|",
            f"| before (fp32) | {_fmt(b.usd_per_million, '.4g')} | {_fmt(b.instances_needed)} |",
            f"| after ({cost.selected}) | {_fmt(a.usd_per_million, '.4g')} | "
            f"{_fmt(a.instances_needed)} |"]


def settings_label(settings: dict[str, Any]) -> str:
    """A runtime-settings variant's settings in words: ``threads=1, spinning off``."""
    words = {"spinning": lambda v: "spinning off" if v is False else "spinning on",
             "performance_hint": lambda v: f"hint {v}"}
    return ", ".join(words.get(k, lambda v, k=k: f"{k}={v}")(v) for k, v in settings.items())
