"""``ProfileReport``: the record, its Markdown twin and the plots (docs/architecture.md#records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costeff.profiling.analysis import Optimal, Recommendation
from costeff.profiling.measure import Point

JSON_NAME, MD_NAME = "gpu_profile.json", "gpu_profile.md"
PLOTS = ("throughput_vs_batch.png", "p99_vs_batch.png")


@dataclass
class ProfileReport:
    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str | None
    model_path: str | None
    hardware: dict[str, Any]
    provider: str  # the execution provider that ran (or "remote:<protocol>")
    config: dict[str, Any]
    inputs: dict[str, Any]  # where the batches came from and the input tensors' shapes
    points: list[Point]
    optimal: Optimal
    cost: dict[str, Any] | None
    right_sizing: list[dict[str, Any]]
    recommendations: list[Recommendation]
    duration_s: float
    target: dict[str, Any] = field(default_factory=dict)  # {"kind": "local"} or the remote server
    latency_by_gap: list[dict[str, float]] = field(default_factory=list)  # batch-1 calls after idle gaps

    def point(self, batch_size: int, concurrency: int | None = None) -> Point:
        for p in self.points:
            if p.batch_size == batch_size and concurrency in (None, p.concurrency):
                return p
        raise KeyError(f"no point for batch {batch_size}")

    def markdown(self) -> str:
        """``gpu_profile.md``: the record for a reader."""
        return to_markdown(self)

    def write(self, out_dir: Path | str) -> list[Path]:
        """Plots, Markdown, then the JSON last: a folder holding gpu_profile.json is complete."""
        from costeff._jsonable import to_jsonable
        from costeff.artifacts import atomic_write_text
        from costeff.records.kinds import PROFILE

        out = Path(out_dir)
        written: list[Path] = []
        try:
            written += write_plots(self, out)
            written.append(atomic_write_text(out / MD_NAME, self.markdown()))
            written.append(PROFILE.write(out, to_jsonable(self)))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return written


def _f(value: float | None, fmt: str = ".3g") -> str:
    return "—" if value is None else format(value, fmt)


def to_markdown(r: ProfileReport) -> str:
    lines = [f"# Inference profile: {Path(r.model_path).name if r.model_path else r.target.get('model', 'model')}", "",
             f"- created: {r.created_at} (costeff {r.costeff_version}), sweep took {r.duration_s:.1f} s",
             f"- model sha256: `{r.model_sha256}`", f"- provider: {r.provider}",
             f"- hardware: {r.hardware.get('cpu_model')} ({r.hardware.get('cpu_count')} cores), GPUs: "
             f"{', '.join(g['name'] for g in r.hardware.get('gpus', [])) or 'none'}",
             f"- inputs: {r.inputs.get('source')}", "", "## Points", "",
             "| batch | conc. | inferences/s | mean ms | p50 ms | p90 ms | p95 ms | p99 ms | stable | windows "
             "| CPU % | RSS MB | GPU SM % | GPU mem MB | GPU W |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|"]
    for p in r.points:
        lat, g = p.latency_ms, p.gpu
        lines.append(f"| {p.batch_size} | {p.concurrency} | {p.throughput_per_s:,.0f} | {_f(lat.mean)} | "
                     f"{_f(lat.p50)} | {_f(lat.p90)} | {_f(lat.p95)} | {_f(lat.p99)} | "
                     f"{'yes' if p.stable else '**no**'} | {p.trials} | {_f(p.cpu_util_pct, '.0f')} | "
                     f"{_f(p.rss_peak_mb, '.0f')} | {_f(g.sm_util_pct if g else None, '.0f')} | "
                     f"{_f(g.memory_used_mb if g else None, '.0f')} | {_f(g.power_w if g else None, '.0f')} |")
    gpu_reason = next((p.gpu_null_reason for p in r.points if p.gpu is None and p.gpu_null_reason), None)
    if gpu_reason:
        lines += ["", f"GPU fields are empty: {gpu_reason}."]
    lines += ["", "## Optimal batch", "", f"- {r.optimal.reason}"]
    if r.optimal.batch_size is not None:
        lines.append(f"- batch {r.optimal.batch_size} (concurrency {r.optimal.concurrency}): "
                     f"{r.optimal.throughput_per_s:,.0f} inferences/s, p99 {r.optimal.latency_p99_ms:.3g} ms")
    lines += _gaps_md(r) + _cost_md(r) + _recs_md(r) + ["", "## Plots", ""] + [f"![{p}]({p})" for p in PLOTS]
    return "\n".join(lines) + "\n"


def _gaps_md(r: ProfileReport) -> list[str]:
    if not r.latency_by_gap:
        return []
    out = ["", "## Batch-1 latency after idle gaps", "",
           "Single calls with the gap of idleness before each: what sparse traffic sees (threads asleep, "
           "caches cold), which a back-to-back loop never does.", "",
           "| gap ms | calls | p50 ms | p99 ms | p50 vs back to back |", "|---:|---:|---:|---:|---:|"]
    warm = next((g["p50_ms"] for g in r.latency_by_gap if g["gap_ms"] == 0), None)
    for g in r.latency_by_gap:
        ratio = f"{g['p50_ms'] / warm:.2f}x" if warm else "—"
        out.append(f"| {g['gap_ms']:g} | {g['calls']} | {_f(g['p50_ms'])} | {_f(g['p99_ms'])} | {ratio} |")
    return out


def _cost_md(r: ProfileReport) -> list[str]:
    if not r.cost:
        return []
    c = r.cost
    lines = ["", "## Cost", "", f"- instance: {c['instance']} (${c['usd_per_hour']:.4g}/hour; {c['price_source']})",
             f"- ${c['usd_per_million']:.4g} per million inferences at the optimal batch"]
    if c["target_rate_per_s"]:
        lines.append(f"- {c['target_rate_per_s']:g} requests/s: {c['instances_needed']} instance(s) at "
                     f"<= {100 * c['max_utilisation']:.0f}% load, ${c['usd_per_day']:.2f}/day, "
                     f"${c['usd_per_month']:.0f}/month")
    if r.right_sizing:
        lines += ["", "| profile | instance | inferences/s | $/hour | $ per million | instances | $/day |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in r.right_sizing:
            lines.append(f"| {row['profile']} | {row['instance']} | {row['throughput_per_s']:,.0f} | "
                         f"{row['usd_per_hour']:.4g} | {row['usd_per_million']:.4g} | "
                         f"{row['instances_needed'] or '—'} | {_f(row['usd_per_day'], '.2f')} |")
    return lines


def _recs_md(r: ProfileReport) -> list[str]:
    if not r.recommendations:
        return []
    return ["", "## Recommendations", ""] + [
        f"- **{x.kind}**: {x.message} (`{x.metric}` = {x.observed}"
        + (f", threshold {x.threshold})" if x.threshold is not None else ")") for x in r.recommendations]


def write_plots(r: ProfileReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, key, ylabel in ((PLOTS[0], "throughput", "inferences / s"), (PLOTS[1], "p99", "p99 latency (ms)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for conc in sorted({p.concurrency for p in r.points}):
            pts = sorted((p for p in r.points if p.concurrency == conc), key=lambda p: p.batch_size)
            ys = [p.throughput_per_s if key == "throughput" else p.latency_ms.p99 for p in pts]
            ax.plot([p.batch_size for p in pts], ys, marker="o", label=f"concurrency {conc}")
            bad = [(p.batch_size, y) for p, y in zip(pts, ys, strict=True) if not p.stable]
            if bad:
                labelled = "unstable" in ax.get_legend_handles_labels()[1]
                ax.scatter(*zip(*bad, strict=True), marker="x", color="red", zorder=3,
                           label=None if labelled else "unstable")
        if key == "p99" and r.optimal.latency_budget_ms:
            ax.axhline(r.optimal.latency_budget_ms, color="grey", linestyle="--", label="p99 budget")
        ax.set_xscale("log", base=2)
        batches = sorted({p.batch_size for p in r.points})
        ax.set_xticks(batches, [str(b) for b in batches])  # plain batch sizes, not 2^n
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, out / name))
        plt.close(fig)
    return paths


def _save(fig: Any, path: Path) -> Path:
    import io

    from costeff.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())
