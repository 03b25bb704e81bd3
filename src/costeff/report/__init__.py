"""``build_report(workspace) -> ReportResult``: one self-contained report_<stamp>.html a person can open or send."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from costeff.artifacts import Workspace
from costeff.report.collect import Sources, collect

NAME = "report_<stamp>.html"


@dataclass(frozen=True)
class ReportResult:
    schema_version: int
    path: str
    sources: dict[str, str]  # stage -> report file the page read
    missing: list[str]  # stages with no report
    criteria_passed: int
    criteria_total: int
    bytes: int
    records_from: str = ""  # which run (or which chain of records) the page was made from
    left_out: list[str] = field(default_factory=list)  # newer records not of that run or chain, with why


def build_report(workspace: Workspace, folders: dict[str, Path] | None = None, repository: Path | None = None,
                 out_dir: Path | str | None = None, run: str | None = None) -> ReportResult:
    """Write ``report_<stamp>.html`` from the named stage ``folders`` (``costeff run``'s, ``run`` its stamp), or
    from one run's or one chain's records in ``workspace`` (``costeff.pack.chain.select``, ``run`` as
    ``costeff pack --run`` takes it); ``repository`` defaults to the workspace's. The name carries the run's
    stamp: no other run's page is overwritten."""
    from costeff.artifacts import SCHEMA_VERSION, atomic_write_text, utc_stamp
    from costeff.pack.summary import acceptance, disagreements
    from costeff.report.page import render

    root, repository = workspace.root, repository or workspace.repository
    out = Path(out_dir) if out_dir is not None else root
    left_out: list[str] = []
    taken, with_repository = (f"run {run}" if run else "the folders given"), True
    if folders is None:
        folders, taken, run, with_repository, left_out = _select(workspace, repository, run)
    sources = collect(root, folders, repository, with_repository)
    if not sources.files:
        from costeff.errors import InputError

        raise InputError(f"{root}: no costeff report under {root / 'cost'}; run `costeff run` (or a stage) first")
    criteria = acceptance(sources.reports, _ledger_bytes(sources))
    text = render(sources, out.resolve(), criteria, disagreements(sources.reports))
    stamp = run or utc_stamp()
    while run is None and (out / f"report_{stamp}.html").exists():
        stamp += "_"
    path = atomic_write_text(out / f"report_{stamp}.html", text)
    return ReportResult(SCHEMA_VERSION, str(path), {k: str(v) for k, v in sources.files.items()},
                        sources.reports.missing(), sum(c.passed for c in criteria),
                        len(criteria), len(text.encode("utf-8")), taken, left_out)


def _select(workspace: Workspace, repository: Path,
            run: str | None) -> tuple[dict[str, Path], str, str | None, bool, list[str]]:
    """One run's (or one chain's) folders, by the page's stage keys; whether the Triton repository is of it."""
    from costeff.pack.chain import select

    chosen = select(workspace, repository, run)
    folders = {("fp32" if name == "profile_fp32" else name): folder for name, folder in chosen.sources.items()}
    return folders, chosen.taken, chosen.run, chosen.repository, chosen.left_out


def _ledger_bytes(sources: Sources) -> bytes | None:
    ramp = sources.reports.ramp
    path = Path(ramp.provenance.ledger.path) if ramp and ramp.provenance.ledger.path else None
    return path.read_bytes() if path and path.is_file() else None


__all__ = ["build_report", "ReportResult", "NAME"]
