"""Live reaping: read signals, decide, act (or say what it would do), audit; restore from the audit trail.

Signals for every target are read before anything is acted on, so a Prometheus
failure part-way means no action at all. Applied actions are found again in the
audit trail (``mode: apply``); a reap is open until a later applied restore names
its ``action_id``. Replayed and dry-run records never count as open.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from costeff.artifacts import Layout
from costeff.audit import AuditLog
from costeff.daemon import LoopResult, run_rounds
from costeff.errors import CosteffError, DependencyError, InputError, NoCredentials
from costeff.reaper.actions import KubeScaler, Outcome, PipelinePauser, PowerLimiter
from costeff.reaper.config import ReaperConfig, Target
from costeff.reaper.decision import Verdict, decide, has_demand
from costeff.reaper.metrics import ReaperMetrics
from costeff.reaper.signals import Sample

log = logging.getLogger("costeff.reaper")
ACTOR = "costeff-reaper"
LOCK_NAME = "reaper.lock"


class ReaperBusy(CosteffError):
    """Another reaper holds the lock (exit 3: retry when it has stopped)."""

    exit_code = 3


@contextmanager
def reaper_lock(path: Path | None = None) -> Iterator[Path]:
    """One reaper at a time per artifacts root: two would fight over the same replicas."""
    path = path or Layout.default().reaper / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ReaperBusy(f"another reaper is running (pid {holder}, lock {path}); stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)


class Actuators:
    """The adapters, created on first use (no Kubernetes credentials are needed for a GPU-only setup)."""

    def __init__(self, kube: KubeScaler | None = None, power: PowerLimiter | None = None,
                 pipelines: PipelinePauser | None = None, kube_context: str | None = None,
                 exclude_labels: tuple[tuple[str, str], ...] = (), triton: Any = None) -> None:
        self._kube, self._power, self._pipelines, self._triton = kube, power, pipelines, triton
        self.kube_context, self.exclude_labels = kube_context, exclude_labels

    def reap(self, target: Target) -> Outcome:
        return self._for(target).reap(target)

    def restore(self, target: Target, before: dict[str, Any]) -> Outcome:
        if target.kind == "gpu":
            return self._for(target).restore(target, float(before["power_limit_w"]))
        if target.kind == "pipeline":
            return self._for(target).restore(target, bool(before["paused"]))
        if target.kind == "triton":
            return self._for(target).restore(target, before)
        return self._for(target).restore(target)

    def held_off(self, target: Target) -> str | None:
        """Why a reap of ``target`` is not tried this round (Triton refused it recently), or None."""
        return self._for(target).held_off(target) if target.kind == "triton" else None

    def preview(self, target: Target, action: str) -> Outcome | None:
        """What ``action`` would do to a Deployment / StatefulSet, read from the object (GETs only), so a
        dry run shows what applying would: the exclusion annotation, replicas already at 0, the real count.
        None where nothing can be read (no Kubernetes credentials here, or not a Kubernetes target)."""
        if target.kind == "triton":  # read-only: the repository index
            models = self._for(target)
            return models.reap(target, dry_run=True) if action == "reap" else \
                models.restore(target, {"loaded": True}, dry_run=True)
        if target.kind not in ("deployment", "statefulset"):
            return None
        try:
            scaler = self._for(target)
        except NoCredentials as exc:
            log.info("dry run: %s not read (%s)", target.key, exc)
            return None
        return scaler.reap(target, dry_run=True) if action == "reap" else scaler.restore(target, dry_run=True)

    def _for(self, target: Target) -> Any:
        if target.kind == "gpu":
            self._power = self._power or PowerLimiter()
            return self._power
        if target.kind == "pipeline":
            self._pipelines = self._pipelines or PipelinePauser()
            return self._pipelines
        if target.kind == "triton":
            from costeff.reaper.triton_target import TritonModels

            self._triton = self._triton or TritonModels()
            return self._triton
        if self._kube is None:
            self._kube = KubeScaler.from_kubeconfig(self.kube_context)
            self._kube.exclude_labels = self.exclude_labels
        return self._kube


@dataclass
class TickResult:
    mode: str
    verdicts: list[dict[str, Any]]
    actions: list[dict[str, Any]] = field(default_factory=list)
    savings_usd_per_hour: float = 0.0


def open_actions(audit: AuditLog) -> list[dict[str, Any]]:
    """Applied reaps without an applied restore, oldest first, from a trail that verifies (signatures, anchor):
    a forged or edited record must never make the reaper change infrastructure."""
    opened: dict[str, dict[str, Any]] = {}
    for record in audit.verified_records():
        payload = record.get("payload", {})
        if record.get("event") != "reaper.action" or payload.get("mode") != "apply":
            continue
        if payload.get("action") == "reap" and payload.get("changed"):
            opened[payload["action_id"]] = payload
        elif payload.get("action") == "restore":
            opened.pop(payload.get("restores"), None)
    return list(opened.values())


def tick(config: ReaperConfig, source: Any, apply: bool, actuators: Actuators, audit: AuditLog,
         usd_per_gpu_hour: float, dry_down: set[str] | None = None, now: float | None = None) -> TickResult:
    """One decision round over every configured target."""
    if not config.targets:
        raise InputError("reaper config: no [[targets]] configured; live reaping needs to know what to act on")
    now = time.time() if now is None else now
    signals = {t.key: source.samples(t, config.decision.window_s, now) for t in config.targets}
    down = {p["target"]: p for p in open_actions(audit)} if apply else {k: {} for k in (dry_down or set())}
    enabled = _reaper_enabled() if apply else True
    result = TickResult("apply" if apply else "dry-run", [])
    for target in config.targets:
        verdict = decide(signals[target.key], now, config.decision, target, config.schedule,
                         config.exclude.excludes(target))
        result.verdicts.append({**asdict(verdict), "target": target.key, "down": target.key in down})
        action = _next_action(target, verdict, signals[target.key], target.key in down, enabled)
        held = actuators.held_off(target) if action == "reap" else None
        if held:  # a refused action is one audited failure, not one per round
            result.verdicts[-1]["held_off"], action = held, None
        if action:
            try:
                result.actions.append(_act(action, target, verdict, down.get(target.key), apply, actuators, audit,
                                           usd_per_gpu_hour))
            except CosteffError as exc:
                _record_partial(audit, result, target, exc)
                raise
            if result.actions[-1].get("excluded"):
                result.verdicts[-1]["excluded"] = result.actions[-1]["excluded"]
            if action == "restore" or result.actions[-1].get("would_change", result.actions[-1].get("changed")):
                _track(dry_down, target.key, action)  # a dry run follows what applying would have done
    result.savings_usd_per_hour = sum(p.get("usd_per_hour_saved", 0.0) for p in open_actions(audit)) if apply \
        else sum(a["usd_per_hour_saved"] for a in result.actions if a["action"] == "reap")
    return result


def _record_partial(audit: AuditLog, result: TickResult, failed: Target, exc: Exception) -> None:
    """A round that fails after changing some targets says so, with what it changed, before it fails."""
    changed = [a["target"] for a in result.actions if a.get("changed")]
    if changed:
        audit.append("reaper.round_partial", {"mode": result.mode, "changed": changed, "failed_target": failed.key,
                                              "error": str(exc)}, actor=ACTOR)


def _reaper_enabled() -> bool:
    from costeff.flags import FlagStore

    return bool(FlagStore.default().get("reaper_enabled"))


def _next_action(target: Target, verdict: Verdict, samples: list[Sample], down: bool, enabled: bool) -> str | None:
    if not down:
        return "reap" if verdict.reap and enabled else None
    latest = samples[-1] if samples else None
    if verdict.protected or (latest is not None and has_demand(latest)):
        return "restore"
    return None


def _track(dry_down: set[str] | None, key: str, action: str) -> None:
    if dry_down is not None:
        (dry_down.add if action == "reap" else dry_down.discard)(key)


def _act(action: str, target: Target, verdict: Verdict, opened: dict[str, Any] | None, apply: bool,
         actuators: Actuators, audit: AuditLog, usd_per_gpu_hour: float) -> dict[str, Any]:
    payload: dict[str, Any] = {"mode": "apply" if apply else "dry-run", "action": action, "target": target.key,
                               "resource": target.resource, "target_spec": asdict(target),
                               "verdict": {"idle_for_s": verdict.idle_for_s, "reasons": verdict.reasons,
                                           "protected": verdict.protected}}
    if action == "restore" and opened:
        payload["restores"] = opened.get("action_id")
    if apply:
        if action == "reap":
            outcome = actuators.reap(target)
        else:
            assert opened is not None  # a restore is decided only for a target that is down
            outcome = actuators.restore(target, opened["before"])
        payload.update(_outcome_fields(outcome, target, usd_per_gpu_hour))
    else:
        payload.update(_preview_fields(actuators.preview(target, action), action, target, usd_per_gpu_hour))
    payload["action_id"] = uuid.uuid4().hex
    audit.append("reaper.action", payload, actor=ACTOR)
    log.info("%s %s %s: %s", payload["mode"], action, target.key, payload["detail"])
    return payload


def _preview_fields(preview: Outcome | None, action: str, target: Target, usd_per_gpu_hour: float) -> dict[str, Any]:
    """A dry run's record: ``would_change`` says whether applying would change the target."""
    if preview is None:  # nothing read: say what the verdict asks for, with the per-replica estimate
        return {"changed": False, "would_change": True, "detail": f"dry run: would {action}",
                "usd_per_hour_saved": _estimate_saving(target, usd_per_gpu_hour) if action == "reap" else 0.0}
    fields = _outcome_fields(preview, target, usd_per_gpu_hour)
    return {**fields, "changed": False, "would_change": preview.changed, "detail": f"dry run: {preview.detail}"}


def _outcome_fields(outcome: Outcome, target: Target, usd_per_gpu_hour: float) -> dict[str, Any]:
    saved = outcome.usd_per_hour_saved
    if target.kind in ("deployment", "statefulset") and outcome.action == "reap":
        saved = float(outcome.before.get("replicas") or 0) * target.gpus_per_replica * usd_per_gpu_hour
    return {"changed": outcome.changed, "before": outcome.before, "after": outcome.after, "detail": outcome.detail,
            "usd_per_hour_saved": round(saved, 4) if outcome.changed else 0.0, **outcome.extra}


def _estimate_saving(target: Target, usd_per_gpu_hour: float) -> float:
    if target.kind in ("deployment", "statefulset"):
        return round(target.gpus_per_replica * usd_per_gpu_hour, 4)  # per replica: the count is not read in a dry run
    return target.usd_per_hour if target.kind == "pipeline" else 0.0


def restore_all(audit: AuditLog, apply: bool, actuators: Actuators,
                reason: str = "costeff reap restore") -> list[dict[str, Any]]:
    """Undo every open applied action, newest first; a dry run only says what it would undo."""
    done = []
    for opened in reversed(open_actions(audit)):
        target = _target_from(opened["target_spec"])
        payload = {"mode": "apply" if apply else "dry-run", "action": "restore", "target": target.key,
                   "resource": target.resource, "target_spec": opened["target_spec"],
                   "restores": opened["action_id"], "reason": reason}
        if apply:
            payload.update(_outcome_fields(actuators.restore(target, opened["before"]), target, 0.0))
        else:
            payload.update(changed=False, detail=f"dry run: would restore {opened['before']}")
        payload["action_id"] = uuid.uuid4().hex
        audit.append("reaper.action", payload, actor=ACTOR)
        done.append(payload)
    return done


def _target_from(spec: dict[str, Any]) -> Target:
    spec = dict(spec)
    spec["labels"] = tuple(tuple(pair) for pair in spec.get("labels", ()))
    return Target(**spec)


# ---------------------------------------------------------------- daemon

def watch(config: ReaperConfig, source: Any, apply: bool, actuators: Actuators, audit: AuditLog,
          usd_per_gpu_hour: float, interval_s: float, metrics: ReaperMetrics,
          stop: threading.Event | None = None, max_rounds: int | None = None) -> LoopResult:
    """Tick every ``interval_s`` until SIGTERM/SIGINT (or ``stop``), finishing the round in progress."""
    state = _WatchState()
    result = LoopResult(0)

    def one() -> bool:
        ok = _watch_tick(config, source, apply, actuators, audit, usd_per_gpu_hour, metrics, state)
        result.rounds += 1  # counted here too: a round that raises ends the loop before it returns
        return ok

    try:
        result = run_rounds(one, interval_s, metrics.heartbeat, stop, max_rounds)
    finally:
        audit.append("reaper.stopped", {"ticks": result.rounds, "mode": "apply" if apply else "dry-run",
                                        "signal": result.signal}, actor=ACTOR)
    return result


@dataclass
class _WatchState:
    dry_down: set[str] = field(default_factory=set)
    unavailable_since: float | None = None  # first round of the current run of rounds without signals


def _watch_tick(config: ReaperConfig, source: Any, apply: bool, actuators: Actuators, audit: AuditLog,
                usd_per_gpu_hour: float, metrics: ReaperMetrics, state: Any, now: float | None = None) -> bool:
    """One daemon round; True when the signals were read (the round did its job)."""
    state = state if isinstance(state, _WatchState) else _WatchState(dry_down=state)
    now = time.time() if now is None else now
    try:
        result = tick(config, source, apply, actuators, audit, usd_per_gpu_hour, state.dry_down)
    except DependencyError as exc:
        # Uncertain data: no action this round; the daemon keeps going and tries again.
        log.error("no action this round: %s", exc)
        audit.append("reaper.signals_unavailable", {"error": str(exc)}, actor=ACTOR)
        metrics.failed()
        state.unavailable_since = state.unavailable_since or now
        _fail_safe(config, apply, actuators, audit, now - state.unavailable_since)
        return False
    state.unavailable_since = None
    metrics.observe(result)
    metrics.succeeded(now)
    return True


def _fail_safe(config: ReaperConfig, apply: bool, actuators: Actuators, audit: AuditLog, blind_s: float) -> None:
    """Signals gone for too long: demand can no longer be seen, so what the reaper took down comes back."""
    limit = config.decision.restore_when_blind_s
    if not apply or limit is None or blind_s < limit or not open_actions(audit):
        return
    log.warning("no signals for %.0f s (limit %.0f s): restoring reaped capacity", blind_s, limit)
    restore_all(audit, True, actuators, reason=f"signals unavailable for {blind_s:.0f} s: fail safe to capacity")
