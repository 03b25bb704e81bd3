"""``check_drift(config) -> DriftReport``: the served variant vs the fp32 reference on live observations.

Both models run on every logged row; the fidelity metrics (docs/architecture.md#fidelity-metrics)
are computed per time window (rows with timestamps) or per log file (rows without), and over all
rows. Every window is gated with the same tolerances as the offline quantization
report, and recorded in the ledger for the ramp's live-drift gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from costeff.artifacts import iso_utc, provenance
from costeff.errors import InputError
from costeff.gates import Gate
from costeff.quantization.batches import BatchInvariance
from costeff.quantization.fidelity import Fidelity, PolicyOutputs, Tolerances, compare, gates
from costeff.drift.logs import ObservationLog, list_logs, read_log
from costeff.drift.runners import Runner, open_runner

DEFAULT_WINDOW_S = 3600.0
DEFAULT_BATCH_SIZE = 256  # the largest batch the server forms, when no repository says
PROBE_ROWS = 256  # logged rows run alone and inside a batch: the served model's batch invariance


@dataclass(frozen=True)
class DriftConfig:
    reference: Path
    served: Path
    observations: Path
    window_s: float = DEFAULT_WINDOW_S
    tolerances: Tolerances = field(default_factory=Tolerances)
    outputs: dict[str, str] | None = None
    ledger: Path | None = None  # where the windows are recorded (the CLI: the workspace's); None with record False
    record: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE  # largest served batch: batch invariance is judged against it
    probe_rows: int = PROBE_ROWS

    def __post_init__(self) -> None:
        if not (isinstance(self.window_s, (int, float)) and self.window_s > 0):
            raise InputError(f"--window-s: {self.window_s!r}; expected seconds > 0")
        if self.record and self.ledger is None:
            raise InputError("--ledger: no ledger to record the windows in; expected a SQLite ledger path")
        for name in ("batch_size", "probe_rows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise InputError(f"--{name.replace('_', '-')}: {value!r}; expected an integer >= 1")


@dataclass(frozen=True)
class DriftWindow:
    start: str
    end: str
    timed: bool
    source: str
    rows: int
    fidelity: Fidelity
    gates: list[Gate]
    passed: bool


@dataclass
class DriftReport:
    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str  # the served model's
    hardware: dict[str, Any]
    reference: dict[str, Any]
    served: dict[str, Any]
    observations: str
    files: list[str]
    rows: int
    window_s: float
    tolerances: Tolerances
    windows: list[DriftWindow]
    overall: Fidelity
    action_drift_pct: float
    entropy_drift_pct: float | None
    action_correlation: float | None
    gates: list[Gate]
    windows_failed: int
    passed: bool
    compute_s: float
    rows_per_minute: float
    ledger: str | None = None
    ledger_rows: int = 0
    batch_invariance: BatchInvariance | None = None  # the served model: rows alone vs inside a served batch


def open_pair(reference: Path, served: Path, outputs: dict[str, str] | None = None, *,
              allow_same: bool = False) -> tuple[Runner, Runner]:
    """Both models, checked to be different models (unless ``allow_same``) with the same observation input."""
    ref, var = open_runner(reference, outputs, reference=True), open_runner(served, outputs)
    if ref.sha256 == var.sha256 and not allow_same:
        raise InputError(f"--served {served} is the same model as --reference {reference} (sha256 "
                         f"{ref.sha256[:12]}…): drift against itself is zero by construction; pass the fp32 "
                         "reference and the served variant")
    if tuple(ref.sample_shape) != tuple(var.sample_shape):
        raise InputError(f"--served {served} takes observations {list(var.sample_shape)} but --reference "
                         f"{reference} takes {list(ref.sample_shape)}: not variants of one policy")
    return ref, var


def check_drift(config: DriftConfig, task: Any = None) -> DriftReport:
    """``task`` (a progress task, optional) advances once per file read and once per file scored."""
    ref, var = open_pair(config.reference, config.served, config.outputs)
    logs = []
    for path in list_logs(config.observations):
        logs.append(read_log(path, ref.sample_shape))
        _advance(task, f"read {path.name}")
    report = evaluate(ref, var, logs, str(config.observations), config.window_s, config.tolerances, task)
    rows = np.concatenate([log.obs for log in logs]) if logs else np.empty((0, *(d or 0 for d in ref.sample_shape)))
    report.batch_invariance = batch_invariance(var, rows, config.batch_size, config.probe_rows)
    if config.record and config.ledger is not None:
        record(report, config.ledger)
    return report


def evaluate(ref: Runner, var: Runner, logs: list[ObservationLog], source: str, window_s: float,
             tol: Tolerances, task: Any = None) -> DriftReport:
    """Run both models on ``logs`` and gate every window; nothing is written."""
    started = time.perf_counter()
    outs = []
    for log in logs:
        outs.append((log, ref.run(log.obs), var.run(log.obs)))
        _advance(task, f"scored {Path(log.source).name}")
    windows = _timed_windows([o for o in outs if o[0].timestamps is not None], source, window_s, tol)
    windows += [_window(iso_utc(), iso_utc(), False, log.source, r, v, tol)
                for log, r, v in outs if log.timestamps is None]
    overall = compare(_cat([o[1] for o in outs]), _cat([o[2] for o in outs]))
    overall_gates = gates(overall, tol)
    seconds = time.perf_counter() - started
    rows = sum(len(log.obs) for log in logs)
    header = provenance(None)
    failed = sum(not w.passed for w in windows)
    return DriftReport(
        header["schema_version"], header["created_at"], header["costeff_version"], var.sha256, header["hardware"],
        _describe(ref), _describe(var), source, [log.source for log in logs], rows, float(window_s), tol,
        sorted(windows, key=lambda w: (w.start, w.source)), overall, overall.action_drift_pct,
        overall.entropy_drift_pct, overall.action_correlation, overall_gates, failed,
        failed == 0 and all(g.passed for g in overall_gates), round(seconds, 4),
        round(rows / seconds * 60, 1) if seconds > 0 else 0.0)


def batch_invariance(runner: Runner, obs: np.ndarray, batch: int, probe_rows: int,
                     seed: int = 0) -> BatchInvariance | None:
    """``probe_rows`` logged rows answered alone vs inside seeded random batches of ``batch`` logged rows.

    Bounded: at most max(probe_rows, batch) rows, each batched once and the probe rows once alone.
    """
    from costeff.quantization.batches import in_random_batches, invariance, probe_index, served_batch_sizes

    if not len(obs):
        return None
    pool = probe_index(len(obs), max(probe_rows, batch), seed)
    rng = np.random.default_rng(seed)
    probe = np.sort(rng.choice(len(pool), min(probe_rows, len(pool)), replace=False))
    run = lambda rows, chunk: runner.run(rows, chunk)  # noqa: E731
    batched = in_random_batches(run, obs[pool], batch, seed + batch)
    alone = runner.run(obs[pool][probe], 1)
    return invariance(alone, PolicyOutputs(batched.logits[probe], None), served_batch_sizes([batch]))


def record(report: DriftReport, ledger: Path) -> None:
    """Append the report's windows to the drift table of the ledger at ``ledger``."""
    from costeff.ledger.drift import DriftLedger, DriftRow

    store = DriftLedger(ledger)
    rows = [DriftRow(report.served["sha256"], report.reference["sha256"], w.source, w.start, w.end, w.timed,
                     w.rows, w.fidelity.action_drift_pct, w.fidelity.confident_agreement_pct,
                     w.fidelity.action_correlation, w.fidelity.entropy_drift_pct, w.fidelity.kl_mean,
                     w.fidelity.kl_p99, w.fidelity.value_max_abs_err, w.passed,
                     [g.name for g in w.gates if not g.passed]) for w in report.windows]
    report.ledger, report.ledger_rows = str(store.path), store.record(rows)


def _timed_windows(outs: list[tuple[ObservationLog, PolicyOutputs, PolicyOutputs]], source: str, window_s: float,
                   tol: Tolerances) -> list[DriftWindow]:
    if not outs:
        return []
    stamps = np.concatenate([log.timestamps for log, _, _ in outs])
    ref, var = _cat([o[1] for o in outs]), _cat([o[2] for o in outs])
    buckets = np.floor(stamps / window_s).astype(np.int64)
    windows = []
    for bucket in np.unique(buckets):
        mask = buckets == bucket
        start = bucket * window_s
        windows.append(_window(_iso(start), _iso(start + window_s), True, source, _take(ref, mask),
                               _take(var, mask), tol))
    return windows


def _window(start: str, end: str, timed: bool, source: str, ref: PolicyOutputs, var: PolicyOutputs,
            tol: Tolerances) -> DriftWindow:
    fid = compare(ref, var)
    checks = gates(fid, tol)
    return DriftWindow(start, end, timed, source, fid.rows, fid, checks, all(g.passed for g in checks))


def _advance(task: Any, description: str) -> None:
    if task is not None:
        task.advance(1, description)


def _cat(parts: list[PolicyOutputs]) -> PolicyOutputs:
    values = [p.value for p in parts if p.value is not None]
    value = np.concatenate(values) if values and len(values) == len(parts) else None
    return PolicyOutputs(np.concatenate([p.logits for p in parts]), value)


def _take(out: PolicyOutputs, mask: np.ndarray) -> PolicyOutputs:
    return PolicyOutputs(out.logits[mask], None if out.value is None else out.value[mask])


def _iso(seconds: float) -> str:
    return iso_utc(datetime.fromtimestamp(float(seconds), timezone.utc))


def _describe(runner: Runner) -> dict[str, Any]:
    return {"path": runner.path, "kind": runner.kind, "sha256": runner.sha256, "precision": runner.precision,
            "logits": runner.logits, "value": runner.value}
