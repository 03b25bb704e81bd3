"""``project(...) -> Projection``: what serving would cost with every measured lever, against the ledger's PnL.

PROJECTED numbers, never a bill. The chain starts from the fp32 profile served
always-on with the naive capacity rule (instances = target rate / (throughput x
max utilisation)), then applies one measured lever at a time:

1. precision: the selected variant's measured throughput under the latency budget;
2. batching: the servers the batching optimizer needs at the target rate under the SLO;
3. right-sizing: the cheapest instance of the catalog for that rate (CPU families
   scaled by vCPUs from the measured instance: an assumption, said so);
4. reaping: the idle share the reaper replay removed.

Each lever's saving and share of the total is kept. Against the ledger's recent
window (observed), the projected infrastructure cost per day is the observed
non-serving cost plus the projected serving cost; the projected cost ratio
divides it by the observed gross PnL per day, and what remains to reach the cap
is given as cost to cut or PnL needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costeff.errors import InputError

if TYPE_CHECKING:
    from costeff.records.batching import BatchingRecord
    from costeff.records.profile import ProfileRecord
    from costeff.records.reaper import ReaperRecord

LABEL = "PROJECTED from measured throughput, the batching optimizer, the reaper replay and catalog prices; not a bill"
HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class ProjectionInputs:
    profile: Path | None = None  # the selected (served) variant's gpu_profile.json
    baseline_profile: Path | None = None  # fp32's gpu_profile.json
    batching_report: Path | None = None
    reaper_report: Path | None = None
    catalog: Path | None = None


@dataclass(frozen=True)
class Lever:
    name: str
    usd_per_day_before: float
    usd_per_day_after: float
    saving_usd_per_day: float
    share_pct: float | None  # of the total projected saving
    detail: str
    source: str
    assumption: str | None = None


@dataclass(frozen=True)
class Observed:
    days: int
    infra_usd_per_day: float | None
    serving_usd_per_day: float | None
    other_usd_per_day: float | None
    gross_pnl_usd_per_day: float | None
    cost_ratio_pct: float | None
    serving_basis: str
    serving_instances: list[str] = field(default_factory=list)  # as the ledger names them, where it does


@dataclass(frozen=True)
class Projection:
    label: str
    available: bool
    reason: str
    instance: str | None = None
    target_rate_per_s: float | None = None
    baseline_serving_usd_per_day: float | None = None
    serving_usd_per_day: float | None = None
    levers: list[Lever] = field(default_factory=list)
    observed: Observed | None = None
    projected_infra_usd_per_day: float | None = None
    projected_cost_ratio_pct: float | None = None
    cost_ratio_cap_pct: float | None = None
    to_reach_cap: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema_version: int = 1
    created_at: str = field(default_factory=lambda: _header()["created_at"])
    costeff_version: str = field(default_factory=lambda: _header()["costeff_version"])


def _header() -> dict[str, Any]:
    from costeff.artifacts import provenance

    return provenance(None, hardware=False)


def unavailable(reason: str, inputs: ProjectionInputs | None = None) -> Projection:
    return Projection(LABEL, False, reason, inputs=_input_paths(inputs or ProjectionInputs()))


def project(inputs: ProjectionInputs, observed: Observed | None, cap_pct: float | None) -> Projection:
    """The projection; an input that is missing or unreadable gives ``available=False`` with the reason."""
    profile_path, batching_path, reaper_path = inputs.profile, inputs.batching_report, inputs.reaper_report
    if profile_path is None or batching_path is None or reaper_path is None:
        missing = [n for n in ("profile", "batching_report", "reaper_report") if getattr(inputs, n) is None]
        return unavailable(f"no {', '.join(missing)} to project from (run costeff profile / batching optimize / "
                           "reap, or costeff run)", inputs)
    from costeff.records.kinds import BATCHING, PROFILE, REAPER

    profile = PROFILE.read(profile_path)
    baseline = PROFILE.read(inputs.baseline_profile) if inputs.baseline_profile else profile
    serving, levers, instance, rate = _levers(profile, baseline, BATCHING.read(batching_path),
                                              REAPER.read(reaper_path), inputs)
    base = levers[0].usd_per_day_before
    projected_infra, ratio, remaining = _against_ledger(serving, observed, cap_pct)
    return Projection(LABEL, True, "every input present", instance, rate, base, serving,
                      _with_shares(levers), observed, projected_infra, ratio, cap_pct, remaining,
                      _input_paths(inputs), _notes(instance, observed))


def _notes(instance: str, observed: Observed | None) -> list[str]:
    others = [i for i in (observed.serving_instances if observed else []) if i != instance]
    if not others:
        return []
    return [f"the ledger's serving cost is for {', '.join(others)}; the projection prices the measured {instance}: "
            "the two describe different hardware, so the projected ratio is only as comparable as they are"]


def _levers(profile: ProfileRecord, baseline: ProfileRecord, batching: BatchingRecord, reaper: ReaperRecord,
            inputs: ProjectionInputs) -> tuple[float, list[Lever], str, float]:
    from costeff.cost import estimate, load_catalog

    catalog = load_catalog(inputs.catalog)
    cost = profile.cost
    if cost is None or not cost.instance or not cost.target_rate_per_s or cost.max_utilisation is None:
        raise InputError(f"{inputs.profile}: the profile has no cost at a target rate; re-run costeff profile "
                         "with --target-rate")
    inst, rate, mu = _measured_instance(catalog, cost.instance), float(cost.target_rate_per_s), \
        float(cost.max_utilisation)
    fp32 = estimate(inst, _throughput(baseline, inputs.baseline_profile or inputs.profile), rate, mu)
    served = estimate(inst, _throughput(profile, inputs.profile), rate, mu)
    levers = [_precision(fp32, served, baseline, profile, inputs)]
    levers.append(_batching(levers[-1].usd_per_day_after, served, batching, inputs))
    levers.append(_right_sizing(levers[-1].usd_per_day_after, inst, served, catalog, rate, mu, inputs))
    levers.append(_reaping(levers[-1].usd_per_day_after, reaper, inputs))
    return levers[-1].usd_per_day_after, levers, inst.name, rate


def _measured_instance(catalog, name: str):
    """The catalog instance a profile was priced on; ``NAME/Nvcpu`` is NAME's price per vCPU times N.

    A CPU host is priced by the vCPUs it used of an instance of its ISA family
    (``Catalog.for_cpu``), so the profile names that slice, not a whole instance.
    """
    from dataclasses import replace

    base_name, _, scaled = name.partition("/")
    inst = catalog.get(base_name)
    if not scaled:
        return inst
    try:
        cores = int(scaled.removesuffix("vcpu"))
    except ValueError:
        raise InputError(f"profile cost instance {name!r}: expected NAME or NAME/<N>vcpu") from None
    if not inst.vcpus:
        raise InputError(f"{catalog.path}: instance {base_name} has no vcpus to scale to {name}")
    return replace(inst, name=name, usd_per_hour=inst.usd_per_hour / inst.vcpus * cores, vcpus=cores)


def _throughput(profile: ProfileRecord, path: Path | None) -> float:
    value = profile.optimal.throughput_per_s if profile.optimal else None
    if value is None or value <= 0:
        raise InputError(f"{path}: no optimal throughput under the latency budget to project from")
    return float(value)


def _precision(fp32, served, baseline: ProfileRecord, profile: ProfileRecord, inputs: ProjectionInputs) -> Lever:
    detail = (f"{fp32.instances_needed} -> {served.instances_needed} x {served.instance} at "
              f"{served.target_rate_per_s:g}/s: {fp32.throughput_per_s:,.0f}/s (fp32) -> "
              f"{served.throughput_per_s:,.0f}/s per replica (batch {_batch(profile)})")
    return _lever("precision", fp32.usd_per_day, served.usd_per_day, detail,
                  f"{inputs.baseline_profile or inputs.profile}, {inputs.profile}")


def _batch(profile: ProfileRecord) -> int | None:
    return profile.optimal.batch_size if profile.optimal else None


def _batching(before: float, served, batching: BatchingRecord, inputs: ProjectionInputs) -> Lever:
    chosen = batching.chosen
    if chosen is None:
        return _lever("batching", before, before, "no batcher configuration met the SLO: no change projected",
                      str(inputs.batching_report))
    after = chosen.instances * served.usd_per_hour * HOURS_PER_DAY
    detail = (f"{chosen.instances} server(s) meet the p99 SLO at the target rate (max batch "
              f"{chosen.max_batch_size}, queue delay {chosen.max_queue_delay_us:g} us) vs "
              f"{served.instances_needed} by the capacity rule")
    return _lever("batching", before, after, detail, str(inputs.batching_report))


def _right_sizing(before: float, inst, served, catalog, rate: float, mu: float, inputs: ProjectionInputs) -> Lever:
    best = _cheapest_family(inst, served.throughput_per_s, catalog, rate, mu)
    if best is None or best[1] >= before - 1e-9:
        return _lever("right-sizing", before, before, f"{inst.name} is already the cheapest catalog instance for "
                      f"{rate:g}/s", f"catalog {catalog.path}", _VCPU if inst.kind == "cpu" else None)
    name, after, needed = best
    return _lever("right-sizing", before, after, f"{needed} x {name} instead", f"catalog {catalog.path}", _VCPU)


_VCPU = ("throughput on other instances of the same CPU ISA family scaled by vCPUs from the measured one "
         "(not measured)")


def _cheapest_family(inst, throughput: float, catalog, rate: float, mu: float) -> tuple[str, float, int] | None:
    """CPU instances of the measured ISA family only: another GPU, or another ISA (AMX vs AVX2), changes
    which precisions run fast in ways no vCPU ratio predicts."""
    if inst.kind != "cpu" or not inst.vcpus:
        return None
    options = []
    for other in catalog.instances.values():
        if other.kind == "cpu" and other.vcpus and other.cpu_family == inst.cpu_family:
            per_replica = throughput * other.vcpus / inst.vcpus
            needed = max(1, math.ceil(rate / (per_replica * mu)))
            options.append((other.name, needed * other.usd_per_hour * HOURS_PER_DAY, needed))
    return min(options, key=lambda o: (o[1], o[0] != inst.name)) if options else None


def _reaping(before: float, reaper: ReaperRecord, inputs: ProjectionInputs) -> Lever:
    share = (reaper.reduction_pct or 0.0) / 100.0
    source = reaper.source.path or reaper.source.kind or reaper.source.trace or ""
    detail = (f"idle share {100 * share:.1f} % removed by the reaper replay"
              + (f" of {Path(str(source)).name}" if source else ""))
    return _lever("reaping", before, before * (1.0 - share), detail, str(inputs.reaper_report),
                  "the replayed day's idle pattern holds for the served policy")


def _lever(name: str, before: float, after: float, detail: str, source: str, assumption: str | None = None) -> Lever:
    return Lever(name, before, after, before - after, None, detail, source, assumption)


def _with_shares(levers: list[Lever]) -> list[Lever]:
    from dataclasses import replace

    total = sum(lv.saving_usd_per_day for lv in levers)
    return [replace(lv, share_pct=100.0 * lv.saving_usd_per_day / total if total > 0 else None) for lv in levers]


def _against_ledger(serving: float, observed: Observed | None,
                    cap_pct: float | None) -> tuple[float | None, float | None, dict[str, Any]]:
    if observed is None or observed.gross_pnl_usd_per_day is None:
        return None, None, {"met": None, "why": "no ledger window with both PnL and cost"}
    infra = (observed.other_usd_per_day or 0.0) + serving
    pnl = observed.gross_pnl_usd_per_day
    ratio = 100.0 * infra / pnl if pnl > 0 else math.inf
    if cap_pct is None:
        return infra, ratio, {"met": None, "why": "no cap"}
    allowed = cap_pct / 100.0 * pnl
    if ratio <= cap_pct:
        return infra, ratio, {"met": True, "headroom_usd_per_day": allowed - infra}
    return infra, ratio, {"met": False, "cost_to_cut_usd_per_day": infra - max(allowed, 0.0),
                          "pnl_needed_usd_per_day": infra / (cap_pct / 100.0) - pnl,
                          "serving_alone_exceeds_cap": serving > allowed}


def observed_window(ledger, end, days: int) -> Observed:
    """The ledger's trailing window, split into the serving component and the rest (days in both ledgers only)."""
    from costeff.ramp.economics import window_economics

    from datetime import date

    econ = window_economics(ledger, end, days)
    n = econ.window.covered_days
    if not n or econ.infra_cost_usd is None or econ.gross_pnl_usd is None:  # both known once a day is covered
        return Observed(0, None, None, None, None, None, "no day with both PnL and cost in the window")
    missing = set(econ.window.missing_dates)
    rows = [r for r in ledger.costs(date.fromisoformat(econ.window.start), end) if r.date not in missing]
    serving = sum(r.usd for r in rows if r.component == "serving")
    has_serving = any(r.component == "serving" for r in rows)
    basis = ("component 'serving' of the cost ledger" if has_serving
             else "no 'serving' component: all infrastructure cost counted as serving")
    total = econ.infra_cost_usd
    serving = serving if has_serving else total
    instances = sorted({r.instance for r in rows if r.instance and (r.component == "serving" or not has_serving)})
    return Observed(n, total / n, serving / n, (total - serving) / n, econ.gross_pnl_usd / n, econ.cost_ratio_pct,
                    basis, instances)


def default_inputs(layout, quant_report: Path | None, catalog: Path | None = None) -> ProjectionInputs:
    """The newest reports under ``layout``: profiles matched to the selected variant and fp32 by model hash."""
    profiles = sorted(layout.cost.glob("*/gpu_profile.json")) if layout.cost.is_dir() else []
    selected_sha = model_sha = None
    if quant_report is not None and Path(quant_report).is_file():
        from costeff.records.kinds import QUANT

        q = QUANT.read(quant_report)
        selected_sha, model_sha = q.selected.sha256, q.model_sha256
    chosen = _newest_with(profiles, selected_sha) if selected_sha else (profiles[-1] if profiles else None)
    base = _newest_with(profiles, model_sha) if model_sha else None
    return ProjectionInputs(chosen, base, layout.latest("batching", "batching_report.json"),
                            layout.latest("reaper", "reaper_report.json"), catalog)


def _newest_with(profiles: list[Path], sha: str) -> Path | None:
    """The newest profile of the model with SHA-256 ``sha``; a corrupt profile is an error naming it."""
    from costeff.records.kinds import PROFILE

    return next((path for path in reversed(profiles) if PROFILE.read(path).model_sha256 == sha), None)


def _input_paths(inputs: ProjectionInputs) -> dict[str, str | None]:
    return {k: (str(v) if v is not None else None) for k, v in inputs.__dict__.items()}
