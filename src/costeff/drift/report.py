"""Write ``drift_report.json`` and its Markdown twin (atomically, both or an error)."""

from __future__ import annotations

from pathlib import Path

from costeff._jsonable import to_jsonable
from costeff.artifacts import atomic_write_text
from costeff.drift.check import DriftReport

JSON_NAME = "drift_report.json"
MD_NAME = "drift_report.md"
METRICS = ("action_drift_pct", "confident_agreement_pct", "action_correlation", "entropy_drift_pct", "kl_mean",
           "kl_p99", "value_max_abs_err")


def write(report: DriftReport, out_dir: Path | str) -> Path:
    """The Markdown, then the record last: a folder holding drift_report.json is complete."""
    from costeff.records.kinds import DRIFT

    out = Path(out_dir)
    md = atomic_write_text(out / MD_NAME, markdown(report))
    try:
        return DRIFT.write(out, to_jsonable(report))
    except BaseException:
        md.unlink(missing_ok=True)  # no Markdown left without its record
        raise


def markdown(r: DriftReport) -> str:
    verdict = "PASS" if r.passed else f"FAIL ({r.windows_failed} of {len(r.windows)} windows failed)"
    lines = [f"# Drift check: {verdict}", "",
             f"- served: `{r.served['path']}` ({r.served['kind']}, sha256 {r.served['sha256'][:12]}…)",
             f"- reference: `{r.reference['path']}` ({r.reference['kind']}, sha256 {r.reference['sha256'][:12]}…)",
             f"- observations: `{r.observations}`: {r.rows} rows in {len(r.files)} file(s); "
             f"time windows of {r.window_s:g} s where rows carry timestamps, one window per file otherwise",
             f"- both models and every metric: {r.compute_s:.3f} s ({r.rows_per_minute:,.0f} rows/minute)",
             f"- ledger: {r.ledger or 'not recorded'} ({r.ledger_rows} window rows)", "",
             "## Over all rows", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {m} | {_fmt(getattr(r.overall, m))} |" for m in METRICS]
    lines += ["", "| gate | observed | comparator | threshold | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {g.name} | {_fmt(g.observed)} | {g.comparator} | {g.threshold} | {g.verdict.value} |"
              for g in r.gates]
    inv = r.batch_invariance
    if inv is not None:
        lines += ["", "## Batch invariance (served model)", "",
                  f"{inv.rows} logged rows answered alone vs inside seeded random batches of "
                  f"{max(inv.batch_sizes)}: actions changed on {inv.changed_rows} ({_fmt(inv.action_change_pct)} %), "
                  f"max logit diff {_fmt(inv.max_logit_diff)}. Reported, not gated here: `costeff quantize` gates it."]
    lines += ["", "## Windows", "", "| start | end | source | rows | " + " | ".join(METRICS) + " | verdict |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in METRICS) + " | --- |"]
    for w in r.windows:
        failed = [g.name for g in w.gates if not g.passed]
        cells = " | ".join(_fmt(getattr(w.fidelity, m)) for m in METRICS)
        lines.append(f"| {w.start if w.timed else '-'} | {w.end if w.timed else '-'} | {Path(w.source).name} | "
                     f"{w.rows} | {cells} | {'PASS' if w.passed else 'FAIL: ' + ', '.join(failed)} |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
