"""Write a BatchingReport: batching_report.json, its Markdown twin and two plots."""

from __future__ import annotations

import io
from pathlib import Path

from costeff._jsonable import to_jsonable
from costeff.artifacts import atomic_write_bytes, atomic_write_text
from costeff.batching.optimizer import BatchingReport
from costeff.records.kinds import BATCHING

PLOTS = ("p99_vs_queue_delay.png", "cost_vs_p99.png")


def write_report(report: BatchingReport, out_dir: Path | str) -> list[Path]:
    """Render everything first, then write: a failure leaves no partial report."""
    out = Path(out_dir)
    images = {PLOTS[0]: _plot_delay(report), PLOTS[1]: _plot_frontier(report)}
    report.plots = list(images)
    markdown = render_markdown(report)
    written = [atomic_write_bytes(out / name, data) for name, data in images.items()]
    written.append(atomic_write_text(out / "batching_report.md", markdown))
    written.append(BATCHING.write(out, to_jsonable(report)))  # last: a folder holding the record is complete
    return written


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(7, 4.5))


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# Lines that coincide stay visible: each its own marker and dash, drawn bigger first and smaller on top.
STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", (0, (5, 1))), ("P", (0, (3, 1, 1, 1))))


def _plot_delay(report: BatchingReport) -> bytes:
    plt, fig, ax = _delay_axes(report)
    return _png(plt, fig)


def _delay_axes(report: BatchingReport):
    """p99 against queue delay, one line per max batch size, at the chosen (or best) instance count."""
    plt, (fig, ax) = _figure()
    ref = report.chosen or report.best_achievable
    n = ref["instances"] if ref else None
    series = _delay_series(report.evaluated, n)
    for i, (label, xs, ys) in enumerate(series):
        marker, dash = STYLES[i % len(STYLES)]
        ax.plot([x / 1e3 for x in xs], ys, marker=marker, linestyle=dash, markersize=max(4, 8 - 2 * i),
                markerfacecolor="none" if i % 2 else None, linewidth=1.6, zorder=2 + i, label=label)
    ax.axhline(report.target["p99_ms"], color="red", linestyle="--", label="p99 SLO", zorder=1)
    ax.set_xlabel("max queue delay (ms)")
    ax.set_ylabel("predicted p99 latency (ms)")
    _readable_log_y(ax)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.set_title(f"p99 vs queue delay at {n} instance(s), {report.target['rate_per_s']:.4g} req/s "
                 "(best preferred sizes)")
    ax.legend(fontsize=8)
    return plt, fig, ax


def _delay_series(evaluated: list[dict], instances: int | None) -> list[tuple[str, list[float], list[float]]]:
    """(label, delays in us, best p99 ms) per max batch size; identical curves become one labelled line."""
    lines: dict[int, dict[float, float]] = {}
    for c in evaluated:
        if c["instances"] != instances:
            continue
        per = lines.setdefault(c["max_batch_size"], {})
        d, p99 = c["max_queue_delay_us"], c["predicted"]["p99_ms"]
        per[d] = min(p99, per.get(d, p99))
    groups: list[tuple[dict[float, float], list[int]]] = []
    for mbs, per in sorted(lines.items()):
        same = next((g for g in groups if _coincide(g[0], per)), None)
        if same is None:
            groups.append((per, [mbs]))
        else:
            same[1].append(mbs)
    out = []
    for per, sizes in groups:
        label = f"max batch {sizes[0]}" if len(sizes) == 1 else \
            f"max batch {', '.join(map(str, sizes))} (p99 within {SAME_P99:.0%})"
        xs = sorted(per)
        out.append((label, xs, [per[x] for x in xs]))
    return out


SAME_P99 = 0.02  # curves closer than this everywhere draw on top of each other on a log axis: one line


def _coincide(a: dict[float, float], b: dict[float, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[x] - b[x]) <= SAME_P99 * max(a[x], b[x]) for x in a)


def _readable_log_y(ax) -> None:
    """A log axis with plain-number ticks at 1-2-5 steps (every digit when the data span less than a decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if high / max(low, 1e-12) >= 10 else tuple(float(s) for s in range(1, 10))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _plot_frontier(report: BatchingReport) -> bytes:
    plt, (fig, ax) = _figure()
    pts = sorted((c["predicted"]["p99_ms"], c["predicted"]["usd_per_hour"]) for c in report.evaluated)
    ax.scatter([p for p, _ in pts], [u for _, u in pts], s=12, alpha=0.5, label="simulated settings")
    frontier, best = [], float("inf")
    for p99, usd in pts:  # cheapest cost reachable at or below each p99
        if usd < best:
            frontier.append((p99, usd))
            best = usd
    ax.step([p for p, _ in frontier], [u for _, u in frontier], where="post", color="black", label="frontier")
    ax.axvline(report.target["p99_ms"], color="red", linestyle="--", label="p99 SLO")
    if report.chosen:
        ax.scatter([report.chosen["predicted"]["p99_ms"]], [report.chosen["predicted"]["usd_per_hour"]],
                   marker="*", s=200, color="gold", edgecolor="black", label="chosen", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("predicted p99 latency (ms)")
    ax.set_ylabel("USD per hour")
    ax.set_title("cost vs p99")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def _row(c: dict) -> str:
    p = c["predicted"]
    prefs = ",".join(map(str, c["preferred_batch_size"])) or "-"
    util = ", ".join(f"{u:.0%}" for u in p["utilisation"])
    return (f"| {c['max_batch_size']} | {prefs} | {c['max_queue_delay_us']:g} | {c['instances']} "
            f"| {p['p50_ms']:.3g} | {p['p99_ms']:.3g} | {p['mean_batch_size']:.3g} | {util} "
            f"| {p['usd_per_hour']:.4g} | {p['usd_per_million']:.4g} | {'yes' if c['meets_slo'] else 'no'} |")


def render_markdown(report: BatchingReport) -> str:
    t, inst = report.target, report.instance
    lines = [
        "# Dynamic-batching settings", "",
        f"- target: {t['rate_per_s']:.6g} requests/s ({t['arrivals']}), p99 <= {t['p99_ms']:g} ms, "
        f"batcher {t['policy']}, {t['rows_per_request']} row(s) per request",
        f"- profile: {report.profile['path'] or '(in memory)'} (model sha256 {report.model_sha256})",
        *([f"- service times: {report.service_times['source']}, "
           f"{report.service_times['per_request_ms']:.3g} ms per extra request in a batch"]
          if report.service_times["per_request_ms"] else []),
        f"- price: {inst['name']} at ${inst['usd_per_instance_hour']:.4g} per instance-hour ({inst['price_source']})",
        f"- simulated {report.search['simulations']} runs over {report.search['batcher_settings']} batcher settings; "
        f"screening on {t['requests']} requests, finalists re-checked on {t['verify_requests']}",
        "",
    ]
    if report.chosen:
        c = report.chosen
        lines += ["## Chosen", "", "```", "dynamic_batching {"]
        lines += [f"  preferred_batch_size: {p}" for p in c["preferred_batch_size"]]
        lines += [f"  max_queue_delay_microseconds: {int(c['max_queue_delay_us'])}", "}",
                  f"max_batch_size: {c['max_batch_size']}", f"instance count: {c['instances']}", "```", ""]
    else:
        b = report.binding
        assert b is not None  # set whenever nothing is chosen
        lines += ["## No configuration meets the SLO", "",
                  f"Binding constraint: **{b['constraint']}**: {b['detail']}.",
                  f"Best achievable p99: {b['best_p99_ms']:.4g} ms.", ""]
    lines += ["## Top configurations", "",
              "| max batch | preferred | delay (us) | instances | p50 (ms) | p99 (ms) | mean batch | utilisation "
              "| $/hour | $/million | meets SLO |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(c) for c in report.top]
    lines += ["", *[f"![{p}]({p})" for p in report.plots], ""]
    return "\n".join(lines)
