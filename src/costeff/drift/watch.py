"""``DriftWatcher``: tail a folder of observation logs, check each new file, roll back on sustained drift.

Position: the state file records every file already read (name, size, mtime) and the
count of consecutive failing windows, written atomically after each file, so a
restart neither re-reads old logs nor forgets a failing streak. A file that changes
after it was read is read again (a writer still appending); write logs with a rename
to have each read once.

A log is marked read only once its windows are stored in the ledger: when the
store fails, nothing of that log counts (no streak, no rollback), the round fails
(``/readyz`` turns 503 once rounds keep failing) and the log is read again next round.

Hysteresis: one failing window does not roll back; ``fail_windows`` consecutive
failing windows do, once, and the count starts again from zero. Without ``apply``
the watcher only audits the rollback it would have done. A file that cannot be read
or does not fit the policy is skipped with an audited reason and counted; the
watcher keeps running.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costeff.artifacts import SCHEMA_VERSION, atomic_write_json, iso_utc
from costeff.daemon import LoopResult, run_rounds
from costeff.errors import CosteffError, InputError
from costeff.quantization.fidelity import Tolerances
from costeff.observations import SUFFIXES

log = logging.getLogger(__name__)
NO_RELOAD = ("only config.pbtxt was rewritten: a Triton in poll mode picks the change up itself; one in explicit "
             "mode (costeff triton serve) keeps serving the old version until `costeff triton sync --url "
             "HOST:PORT` (or run drift watch with --url)")


@dataclass(frozen=True)
class WatchConfig:
    reference: Path
    observations: Path  # a folder
    state_path: Path
    served: Path | None = None
    model_dir: Path | None = None  # <repository>/<name>: follow the served version, roll it back
    interval_s: float = 60.0
    fail_windows: int = 3
    apply: bool = False
    window_s: float = 3600.0
    tolerances: Tolerances = field(default_factory=Tolerances)
    outputs: dict[str, str] | None = None
    ledger: Path | None = None
    url: str | None = None  # Triton's HTTP HOST:PORT: after a rollback, reload the model there

    def __post_init__(self) -> None:
        if (self.served is None) == (self.model_dir is None):
            raise InputError("--served MODEL or --repository/--name: give exactly one")
        if self.url is not None and self.model_dir is None:
            raise InputError("--url reloads the rolled-back model on Triton: give --repository and --name")
        if self.apply and self.model_dir is None:
            raise InputError("--apply rolls the Triton repository back: give --repository and --name")
        if self.fail_windows < 1:
            raise InputError(f"--fail-windows: {self.fail_windows}; expected >= 1")
        if not self.interval_s > 0:
            raise InputError(f"--interval: {self.interval_s}; expected seconds > 0")
        if not Path(self.observations).is_dir():
            raise InputError(f"--observations {self.observations}: not a folder; drift watch tails a folder")


@dataclass
class FileOutcome:
    file: str
    status: str  # "checked" or "skipped"
    windows: int = 0
    windows_failed: int = 0
    reason: str = ""
    action_drift_pct: float | None = None


@dataclass
class CycleResult:
    started_at: str
    files: list[FileOutcome]
    consecutive_failures: int
    rollback: dict[str, Any] | None = None
    error: str | None = None


class DriftMetrics:
    """The watcher's Prometheus metrics, served on ``port`` (127.0.0.1 unless told otherwise)."""

    def __init__(self, port: int | None = None, addr: str = "127.0.0.1", heartbeat: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        from costeff import health

        r = self.registry = CollectorRegistry()
        self.action_drift = Gauge("costeff_action_drift_ratio", "Action drift of the last window (0..1)", registry=r)
        self.entropy_drift = Gauge("costeff_entropy_drift_ratio", "Entropy drift of the last window (0..1)",
                                   registry=r)
        self.correlation = Gauge("costeff_action_correlation", "Action-probability correlation, last window",
                                 registry=r)
        self.rows = Counter("costeff_drift_rows", "Observation rows checked", registry=r)
        self.windows = Counter("costeff_drift_windows", "Drift windows checked", ["verdict"], registry=r)
        self.skipped = Counter("costeff_drift_files_skipped", "Observation files skipped", ["reason"], registry=r)
        self.streak = Gauge("costeff_drift_consecutive_failing_windows", "Failing windows in a row", registry=r)
        self.rollbacks = Counter("costeff_drift_rollbacks", "Rollbacks triggered by drift", ["mode"], registry=r)
        self.last_success = Gauge("costeff_drift_last_success_timestamp_seconds",
                                  "When a file was last checked successfully", registry=r)
        self.heartbeat = heartbeat
        self.server = health.serve(r, port, addr, heartbeat)

    def close(self) -> None:
        from costeff import health

        health.close(self.server)


class DriftWatcher:
    def __init__(self, config: WatchConfig, metrics: DriftMetrics | None = None, flags=None, audit=None) -> None:
        from costeff.audit import default_log

        self.config = config
        self.metrics = metrics or DriftMetrics()
        self.flags = flags
        self.audit = audit or default_log()
        self.state = _load_state(config.state_path, config.observations)
        self._pair: tuple[Any, Any] | None = None
        self._served_path: Path | None = None

    def run(self, stop: threading.Event | None = None, max_cycles: int | None = None,
            on_cycle: Any = None) -> LoopResult:
        """Cycle every ``interval_s`` until SIGTERM/SIGINT, ``stop`` or ``max_cycles``; a cycle that has begun
        (a rollback included) always finishes."""
        def one() -> bool:
            result = self.cycle()
            if on_cycle is not None:
                on_cycle(result)
            return result.error is None  # a skipped file is the file's problem, not the watcher's

        return run_rounds(one, self.config.interval_s, getattr(self.metrics, "heartbeat", None), stop, max_cycles)

    def cycle(self) -> CycleResult:
        result = CycleResult(iso_utc(), [], self.state["consecutive_failures"])
        try:
            self._models()
        except CosteffError as exc:  # a model problem, not the logs': leave them unread for the next cycle
            log.error("drift watch: cannot open the models: %s", exc)
            result.error = str(exc)
            return result
        for path in self._new_files():
            try:
                outcome = self._process(path, result)
            except _NotStored as exc:  # the ledger's problem, not the log's: read it again next round
                log.error("drift watch: %s", exc)
                result.error = str(exc)
                break
            result.files.append(outcome)
            self.state["seen"][path.name] = _fingerprint(path)
            try:
                self._save()
            except OSError as exc:  # the position is kept in memory and written after the next log
                result.error = f"{self.config.state_path}: cannot save the position ({exc.strerror or exc})"
                log.error("drift watch: %s", result.error)
                break
        result.consecutive_failures = self.state["consecutive_failures"]
        return result

    def _new_files(self) -> list[Path]:
        folder = Path(self.config.observations)
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        return [p for p in files if self.state["seen"].get(p.name) != _fingerprint(p)]

    def _process(self, path: Path, result: CycleResult) -> FileOutcome:
        from costeff.drift.check import evaluate, record
        from costeff.drift.logs import read_log

        try:
            ref, var = self._models()
            report = evaluate(ref, var, [read_log(path, ref.sample_shape)], str(path), self.config.window_s,
                              self.config.tolerances)
        except CosteffError as exc:
            return self._skip(path, _reason(exc), str(exc))
        except Exception as exc:  # noqa: BLE001 - a foreign file must never stop the watcher
            return self._skip(path, "unreadable", f"{type(exc).__name__}: {exc}")
        try:
            record(report, self.config.ledger)
        except Exception as exc:  # noqa: BLE001 - nothing counts (no streak, no rollback) until it is stored
            where = self.config.ledger or "the ledger"
            raise _NotStored(f"{path}: its {len(report.windows)} window(s) could not be stored in {where} "
                             f"({type(exc).__name__}: {exc}); the log stays unread and this round failed") from None
        self._observe(report)
        for window in report.windows:
            self._count(window.passed, result)
        return FileOutcome(str(path), "checked", len(report.windows), report.windows_failed,
                           action_drift_pct=report.action_drift_pct)

    def _models(self) -> tuple[Any, Any]:
        from costeff.drift.check import open_pair
        from costeff.serving.versions import served_model

        if self.config.served is not None:
            served = self.config.served
        else:
            assert self.config.model_dir is not None  # WatchConfig requires one of the two
            served = served_model(self.config.model_dir)  # follows a rollback
        if self._pair is None or served != self._served_path:
            # after a rollback to the fp32 version the served model may be the reference itself: fine here
            self._pair = open_pair(self.config.reference, served, self.config.outputs, allow_same=True)
            self._served_path = served
        return self._pair

    def _skip(self, path: Path, reason: str, message: str) -> FileOutcome:
        log.warning("drift watch: skipped %s: %s", path, message)
        self.metrics.skipped.labels(reason).inc()
        self.audit.append("drift.skip", {"file": str(path), "reason": reason, "message": message},
                          actor="costeff drift watch")
        return FileOutcome(str(path), "skipped", reason=message)

    def _observe(self, report: Any) -> None:
        last = report.windows[-1].fidelity
        self.metrics.action_drift.set(last.action_drift_pct / 100)
        if last.entropy_drift_pct is not None:
            self.metrics.entropy_drift.set(last.entropy_drift_pct / 100)
        if last.action_correlation is not None:
            self.metrics.correlation.set(last.action_correlation)
        self.metrics.rows.inc(report.rows)
        self.metrics.last_success.set(time.time())

    def _count(self, passed: bool, result: CycleResult) -> None:
        self.metrics.windows.labels("pass" if passed else "fail").inc()
        self.state["consecutive_failures"] = 0 if passed else self.state["consecutive_failures"] + 1
        self.metrics.streak.set(self.state["consecutive_failures"])
        if self.state["consecutive_failures"] >= self.config.fail_windows:
            scored = time.perf_counter()
            result.rollback = self._roll_back()
            result.rollback["seconds_after_window"] = round(time.perf_counter() - scored, 4)
            self.state["consecutive_failures"] = 0
            self.metrics.streak.set(0)

    def _roll_back(self) -> dict[str, Any]:
        from costeff.serving.control import rollback

        k = self.config.fail_windows
        reason = f"drift watch: {k} consecutive failing window(s)"
        mode = "apply" if self.config.apply else "dry-run"
        self.metrics.rollbacks.labels(mode).inc()
        if not self.config.apply:
            payload = {"model_dir": str(self.config.model_dir or ""), "served": str(self._served_path),
                       "reason": reason, "would": "costeff triton rollback"}
            self.audit.append("drift.rollback_dry_run", payload, actor="costeff drift watch")
            log.warning("drift watch: DRY RUN, would roll %s back (%s); pass --apply to act",
                        self.config.model_dir or self._served_path, reason)
            return {"mode": mode, **payload}
        assert self.config.model_dir is not None  # WatchConfig requires it with apply
        try:
            change = rollback(self.config.model_dir, url=self.config.url, actor="costeff drift watch", reason=reason,
                              flags=self.flags, audit=self.audit)
        except CosteffError as exc:
            self.audit.append("drift.rollback_failed", {"model_dir": str(self.config.model_dir), "reason": reason,
                                                        "error": str(exc)}, actor="costeff drift watch")
            log.error("drift watch: rollback failed: %s", exc)
            return {"mode": mode, "error": str(exc)}
        log.warning("drift watch: rolled %s back from version %s to %s (%s)", change.name, change.from_version,
                    change.to_version, reason)
        served = {"mode": mode, "from_version": change.from_version, "to_version": change.to_version}
        if change.reload is None:
            return {**served, "reload": None, "note": NO_RELOAD}
        return {**served, "reload": {"address": change.reload.address, "ready": change.reload.ready,
                                     "seconds": change.reload.seconds}}

    def _save(self) -> None:
        atomic_write_json(self.config.state_path, self.state)


class _NotStored(Exception):
    """A log's windows were checked but not stored: the round fails and the log is read again."""


def _reason(exc: CosteffError) -> str:
    """A short label for the skip counter: what kind of bad file it was."""
    text = str(exc)
    for needle, label in (("shape", "shape"), ("dtype", "dtype"), ("NaN", "non_finite"), ("timestamp", "timestamps"),
                          ("cannot read", "unreadable"), ("no observation rows", "empty")):
        if needle in text:
            return label
    return "invalid"


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _load_state(path: Path, observations: Path) -> dict[str, Any]:
    fresh = {"schema_version": SCHEMA_VERSION, "observations": str(Path(observations).resolve()), "seen": {},
             "consecutive_failures": 0}
    if not Path(path).is_file():
        return fresh
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--state {path}: unreadable ({exc}); delete it to start over (every log is re-read)") \
            from None
    if not isinstance(state, dict) or state.get("observations") != fresh["observations"]:
        recorded = state.get('observations') if isinstance(state, dict) else '?'
        raise InputError(f"--state {path}: records the position in {recorded}, "
                         f"not {fresh['observations']}; use another --state file per folder")
    return {**fresh, **state}
