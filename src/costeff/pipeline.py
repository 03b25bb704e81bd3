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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from costeff.artifacts import Layout, utc_stamp
from costeff.errors import CosteffError, InputError

log = logging.getLogger("costeff.run")


@dataclass(frozen=True)
class RunConfig:
    model: Path | None = None
    observations: Path | None = None
    preset: str = "default"
    rows: int = 4096  # generated observations for the embedded policy
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    window_s: float = 0.3
    latency_budget_ms: float = 50.0
    target_rate: float = 500.0
    provider: str = "auto"
    model_name: str = "policy"
    sample_as_of: Any = None  # ramp decision date for the sample economics (default: today UTC)
    verify: bool = True  # serve the result on the real Triton and measure it at the target rate
    triton_env: Path | None = None  # that server's environment (default: the cached one, made on first use)

    def __post_init__(self) -> None:
        if (self.model is None) != (self.observations is None):
            raise InputError("--model and --observations go together: a user policy needs its observations")
        if self.rows < 512:
            raise InputError(f"--rows: {self.rows}; need at least 512 generated observations")
        for name in ("window_s", "latency_budget_ms", "target_rate"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')}: {getattr(self, name)} must be > 0")


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


@dataclass
class _Context:
    config: RunConfig
    layout: Layout
    stamp: str
    values: dict[str, Any] = field(default_factory=dict)

    def need(self, *keys: str) -> list[Any]:
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise _Skip(f"needs {', '.join(missing)} from an earlier stage")
        return [self.values[k] for k in keys]


class _Skip(Exception):
    """A stage cannot run because an earlier one it depends on failed."""


Stage = Callable[[_Context], tuple[str, list[str]]]


def run_all(config: RunConfig, on_stage: Callable[[StageResult, int, int], None] | None = None) -> RunReport:
    """Run every stage in order; ``on_stage(result, index, total)`` reports progress."""
    from costeff.artifacts import iso_utc
    from costeff.stages import STAGES

    ctx = _Context(config, Layout.default(), utc_stamp())
    report = RunReport(started_at=iso_utc(), stages=[StageResult(name) for name, _ in STAGES])
    for index, ((name, stage), result) in enumerate(zip(STAGES, report.stages)):
        if on_stage:
            on_stage(result, index, len(STAGES))
        _run_stage(stage, ctx, result)
        if on_stage:
            on_stage(result, index, len(STAGES))
    report.pack = str(ctx.values.get("pack_path")) if "pack_path" in ctx.values else None
    report.summary = str(ctx.values.get("summary_path")) if "summary_path" in ctx.values else None
    report.exit_code = next((s.exit_code for s in report.stages if s.status == "failed"), 0) or 0
    return report


def _run_stage(stage: Stage, ctx: _Context, result: StageResult) -> None:
    started = time.perf_counter()
    try:
        result.summary, result.artifacts = stage(ctx)
        result.status = "ok"
    except _Skip as skip:
        result.status, result.summary = "skipped", str(skip)
    except KeyboardInterrupt:
        raise
    except CosteffError as exc:
        result.status, result.error, result.exit_code = "failed", str(exc), exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one stage's bug must not hide the others' results
        log.debug("stage %s failed", result.name, exc_info=True)
        result.status, result.error, result.exit_code = "failed", f"{type(exc).__name__}: {exc}", 3
    result.seconds = time.perf_counter() - started
