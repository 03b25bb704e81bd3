"""``build_report(root) -> ReportResult``: one self-contained report.html a person can open or send."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from costeff.report.collect import Sources, collect

NAME = "report.html"


@dataclass(frozen=True)
class ReportResult:
    schema_version: int
    path: str
    sources: dict[str, str]  # stage -> report file the page read
    missing: list[str]  # stages with no report
    criteria_passed: int
    criteria_total: int
    bytes: int


def build_report(root: Path | str, folders: dict[str, Path] | None = None, repository: Path | None = None,
                 out_dir: Path | str | None = None) -> ReportResult:
    """Read the reports under the artifacts ``root`` (or the named stage ``folders``) and write ``report.html``."""
    from costeff.artifacts import SCHEMA_VERSION, atomic_write_text
    from costeff.pack.summary import acceptance, disagreements
    from costeff.report.page import render

    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root
    sources = collect(root, folders, repository)
    if not sources.files:
        from costeff.errors import InputError

        raise InputError(f"{root}: no costeff report under {root / 'cost'}; run `costeff run` (or a stage) first")
    criteria = acceptance(sources.reports, _ledger_bytes(sources))
    text = render(sources, out.resolve(), criteria, disagreements(sources.reports))
    path = atomic_write_text(out / NAME, text)
    return ReportResult(SCHEMA_VERSION, str(path), {k: str(v) for k, v in sources.files.items()},
                        [k for k, v in sources.reports.items() if v is None], sum(c.passed for c in criteria),
                        len(criteria), len(text.encode("utf-8")))


def _ledger_bytes(sources: Sources) -> bytes | None:
    ledger = (((sources.reports.get("ramp") or {}).get("provenance") or {}).get("ledger") or {}).get("path")
    path = Path(ledger) if ledger else None
    return path.read_bytes() if path and path.is_file() else None


__all__ = ["build_report", "ReportResult", "NAME"]
