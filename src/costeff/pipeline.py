"""``costeff run``: the whole programme, end to end, on one policy.

profile (fp32) -> quantize -> profile (selected variant) -> batching optimize ->
Triton repository -> reaper replay (shipped sample day) -> ramp decision (shipped
sample economics) -> pack.

Each stage calls the same verb as its own command. A stage that fails does not
hide the others: stages that do not depend on it still run, the ones that do are
skipped with the reason, and the run's exit code is the first failure's.
Gate outcomes (a HOLD, no variant passing) are results, not failures: they are
shown in the summary and the run still exits 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import Callable

from costeff.artifacts import Workspace, utc_stamp
from costeff.errors import CosteffError
from costeff.runctx import Products, RunConfig, RunContext, Skip, Stage, check_graph

__all__ = ["RunConfig", "RunReport", "StageResult", "run_all"]

log = logging.getLogger("costeff.run")


@dataclass
class StageResult:
    name: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    summary: str = ""
    artifacts: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int | None = None


@dataclass
class RunReport:
    started_at: str
    stages: list[StageResult]
    pack: str | None = None
    summary: str | None = None
    exit_code: int = 0


def run_all(config: RunConfig, workspace: Workspace,
            on_stage: Callable[[StageResult, int, int], None] | None = None) -> RunReport:
    """Run every stage in order, each writing into ``workspace``; ``on_stage(result, index, total)`` reports
    progress."""
    from costeff.artifacts import iso_utc
    from costeff.stages import STAGES

    check_graph(STAGES)  # a stage needing what no earlier stage produces is a bug: found before anything runs
    ctx = RunContext(config, workspace, utc_stamp())
    report = RunReport(started_at=iso_utc(), stages=[StageResult(s.name) for s in STAGES])
    for index, (stage, result) in enumerate(zip(STAGES, report.stages, strict=True)):
        if on_stage:
            on_stage(result, index, len(STAGES))
        _run_stage(stage, ctx, result)
        if on_stage:
            on_stage(result, index, len(STAGES))
    made = ctx.products
    report.pack = str(made.pack_path) if made.pack_path is not None else None
    report.summary = str(made.summary_path) if made.summary_path is not None else None
    report.exit_code = next((s.exit_code for s in report.stages if s.status == "failed"), 0) or 0
    return report


def _run_stage(stage: Stage, ctx: RunContext, result: StageResult) -> None:
    started = time.perf_counter()
    before = _identities(ctx.products)
    try:
        result.summary, result.artifacts = stage.run(ctx)
        result.status = "ok"
        _check_products(stage, before, ctx.products)
    except Skip as skip:
        result.status, result.summary = "skipped", str(skip)
    except KeyboardInterrupt:
        raise
    except CosteffError as exc:
        result.status, result.error, result.exit_code = "failed", str(exc), exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one stage's bug must not hide the others' results
        log.debug("stage %s failed", result.name, exc_info=True)
        result.status, result.error, result.exit_code = "failed", f"{type(exc).__name__}: {exc}", 3
    result.seconds = time.perf_counter() - started


def _identities(products: Products) -> dict[str, int]:
    return {f.name: id(getattr(products, f.name)) for f in fields(products)}


def _check_products(stage: Stage, before: dict[str, int], products: Products) -> None:
    """A stage wrote only the products it declares (``Stage.produces``); anything else is a wiring bug."""
    changed = [name for name, ident in _identities(products).items() if ident != before[name]]
    undeclared = [name for name in changed if name not in stage.produces]
    if undeclared:
        raise RuntimeError(f"stage {stage.name} wrote {', '.join(undeclared)}, which it does not declare")
