"""What the reaper does, and how each action is undone.

Every action is idempotent (doing it twice changes nothing the second time) and
records what it found before it changed anything, so ``restore`` can put back
exactly that:

- Kubernetes: scale a Deployment/StatefulSet to 0 through the scale subresource,
  after writing the original replica count into an annotation on the object (as
  kube-downscaler does), so restore needs nothing but the object itself.
- GPU power limit through NVML, within the device's constraints.
- Pipeline pause through the feature flags (which audit themselves).

The adapters are thin: the Kubernetes client and NVML are passed in, so tests
talk to them at the request level (Kubernetes) or through a fake handle (NVML
write paths, where no GPU can be written to).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from costeff.errors import DependencyError, InputError, NoCredentials
from costeff.reaper.config import ANNOTATION, Target

MERGE_PATCH = "application/merge-patch+json"
EXCLUDE_ANNOTATION = "costeff.io/exclude"

# Every Kubernetes API call KubeScaler makes, as RBAC names it: (verb, subresource), on the
# target's own object only. ``costeff reap rbac`` grants exactly these, and the API server of the
# request-level tests refuses anything the generated Role does not allow, so a new call without
# an entry here fails a test, and an entry no call uses fails another.
KUBE_API_CALLS = (("get", ""), ("get", "scale"), ("patch", ""), ("patch", "scale"))
KUBE_RESOURCES = {"deployment": "deployments", "statefulset": "statefulsets"}


@dataclass
class Outcome:
    """The result of one reap or restore on one target."""

    target: str
    kind: str
    action: str  # "reap" or "restore"
    changed: bool
    before: dict[str, Any]
    after: dict[str, Any]
    detail: str = ""
    usd_per_hour_saved: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- Kubernetes

class KubeScaler:
    """Scale through ``AppsV1Api`` ``*_scale`` calls; the original count lives in an annotation.

    An object that says so itself is never scaled down: the annotation
    ``costeff.io/exclude: "true"`` (as kube-downscaler's ``downscaler/exclude``), or
    labels matching ``exclude_labels`` (a selector: every ``key=value`` must match).
    """

    def __init__(self, api_client: Any = None, exclude_labels: tuple[tuple[str, str], ...] = ()) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.errors = (client.exceptions.ApiException,)
        self.exclude_labels = tuple(exclude_labels)

    @classmethod
    def from_kubeconfig(cls, context: str | None = None) -> "KubeScaler":
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                # KUBECONFIG is read here, not at import time (the client caches it when first imported).
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=context)
            except (config.ConfigException, OSError) as exc:
                raise NoCredentials(f"no Kubernetes credentials (in-cluster or kubeconfig): {exc}") from None
        return cls(client.ApiClient())

    def _call(self, verb: str, target: Target, *args: Any, **kwargs: Any) -> Any:
        kind = "deployment" if target.kind == "deployment" else "stateful_set"
        base, _, sub = verb.partition("_")  # "read", "read_scale", "patch", "patch_scale"
        method = getattr(self.apps, f"{base}_namespaced_{kind}" + ("_scale" if sub else ""))
        try:
            return method(target.name, target.namespace, *args, **kwargs)
        except self.errors as exc:
            raise DependencyError(f"kubernetes {verb} {target.key}: HTTP {exc.status} {exc.reason}") from None

    def state(self, target: Target) -> tuple[int, str | None]:
        """(replicas per the scale subresource, the original-replicas annotation or None)."""
        replicas, original, _ = self._read(target)
        return replicas, original

    def _read(self, target: Target) -> tuple[int, str | None, str | None]:
        obj = self._call("read", target)
        scale = self._call("read_scale", target)
        meta = obj.metadata
        annotations, labels = (meta.annotations or {}, meta.labels or {}) if meta else ({}, {})
        return int(scale.spec.replicas or 0), annotations.get(ANNOTATION), self._excluded(annotations, labels)

    def _excluded(self, annotations: dict[str, str], labels: dict[str, str]) -> str | None:
        if str(annotations.get(EXCLUDE_ANNOTATION, "")).strip().lower() in ("true", "yes", "1"):
            return f"excluded by annotation {EXCLUDE_ANNOTATION}={annotations[EXCLUDE_ANNOTATION]!r} on the object"
        if self.exclude_labels and all(labels.get(k) == v for k, v in self.exclude_labels):
            return "excluded by label selector " + ",".join(f"{k}={v}" for k, v in self.exclude_labels)
        return None

    def reap(self, target: Target, dry_run: bool = False) -> Outcome:
        """Scale to 0 (annotating first); with ``dry_run``, only read and say what would happen."""
        replicas, original, excluded = self._read(target)
        if excluded and original is None:
            outcome = self._outcome(target, "reap", False, replicas, None, replicas, excluded)
            outcome.extra["excluded"] = excluded
            return outcome
        if original is not None and replicas == 0:
            return self._outcome(target, "reap", False, replicas, original, 0, "already scaled down by the reaper")
        if original is None and replicas == 0:
            return self._outcome(target, "reap", False, 0, None, 0, "already at 0 replicas (not by the reaper)")
        if dry_run:
            return self._outcome(target, "reap", True, replicas, original, 0, f"would scale {replicas} -> 0")
        if original is None:
            # Annotate first: if we die between the two calls, restore finds the count on a running object.
            original = str(replicas)
            self._call("patch", target, {"metadata": {"annotations": {ANNOTATION: original}}},
                       _content_type=MERGE_PATCH)
        self._call("patch_scale", target, {"spec": {"replicas": 0}}, _content_type=MERGE_PATCH)
        return self._outcome(target, "reap", True, replicas, original, 0, f"scaled {replicas} -> 0")

    def restore(self, target: Target, dry_run: bool = False) -> Outcome:
        replicas, original = self.state(target)
        if original is None:
            return self._outcome(target, "restore", False, replicas, None, replicas,
                                 f"no {ANNOTATION} annotation: nothing to restore")
        wanted = _replicas(original, target)
        if dry_run:
            return self._outcome(target, "restore", True, replicas, original, wanted,
                                 f"would scale {replicas} -> {wanted}")
        if replicas != wanted:
            self._call("patch_scale", target, {"spec": {"replicas": wanted}}, _content_type=MERGE_PATCH)
        # A merge patch with null deletes the key: the object is exactly as before the reap.
        self._call("patch", target, {"metadata": {"annotations": {ANNOTATION: None}}}, _content_type=MERGE_PATCH)
        return self._outcome(target, "restore", True, replicas, original, wanted, f"scaled {replicas} -> {wanted}")

    @staticmethod
    def _outcome(target: Target, action: str, changed: bool, before: int, original: str | None, after: int,
                 detail: str) -> Outcome:
        return Outcome(target.key, target.kind, action, changed, {"replicas": before, "annotation": original},
                       {"replicas": after}, detail)


def _replicas(text: str, target: Target) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{target.key}: annotation {ANNOTATION}={text!r} is not a replica count") from None
    if value < 0:
        raise InputError(f"{target.key}: annotation {ANNOTATION}={text!r} is negative")
    return value


# ---------------------------------------------------------------- NVML power limit

class PowerLimiter:
    """Lower a GPU's power limit through NVML; the previous limit is returned for restore."""

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml = nvml

    def _handle(self, index: int) -> Any:
        try:
            self.nvml.nvmlInit()
            return self.nvml.nvmlDeviceGetHandleByIndex(index)
        except self.nvml.NVMLError as exc:
            raise DependencyError(f"NVML: GPU {index} is not available: {exc}") from None

    def limits_w(self, index: int) -> tuple[float, float, float]:
        """(current limit, min, max) in watts."""
        handle = self._handle(index)
        try:
            current = self.nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
            low, high = self.nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        except self.nvml.NVMLError as exc:
            raise DependencyError(f"NVML: cannot read the power limit of GPU {index}: {exc}") from None
        return current, low / 1000.0, high / 1000.0

    def check(self, index: int, watts: float) -> tuple[float, float, float]:
        """Refuse a limit outside the device's constraints before touching anything."""
        current, low, high = self.limits_w(index)
        if not low <= watts <= high:
            raise InputError(f"GPU {index}: power limit {watts:g} W is outside the device's constraints "
                             f"{low:g}..{high:g} W (nvmlDeviceGetPowerManagementLimitConstraints)")
        return current, low, high

    def set_limit(self, target: Target, watts: float, action: str) -> Outcome:
        current, low, high = self.check(target.gpu_index, watts)
        before = {"power_limit_w": current, "constraints_w": [low, high]}
        if abs(current - watts) < 0.5:
            return Outcome(target.key, "gpu", action, False, before, {"power_limit_w": current},
                           f"power limit already {current:g} W")
        try:
            self.nvml.nvmlDeviceSetPowerManagementLimit(self._handle(target.gpu_index), int(round(watts * 1000)))
        except self.nvml.NVMLError as exc:
            raise DependencyError(f"NVML: cannot set GPU {target.gpu_index} power limit to {watts:g} W "
                                  f"(needs root): {exc}") from None
        return Outcome(target.key, "gpu", action, True, before, {"power_limit_w": watts},
                       f"power limit {current:g} W -> {watts:g} W")

    def reap(self, target: Target) -> Outcome:
        return self.set_limit(target, float(target.power_limit_w or 0), "reap")

    def restore(self, target: Target, previous_w: float) -> Outcome:
        return self.set_limit(target, previous_w, "restore")


# ---------------------------------------------------------------- pipeline pause

class PipelinePauser:
    """Pause a pipeline through its ``pipeline_paused.<name>`` flag (the flag store audits the change)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def flag(self, target: Target) -> str:
        return f"pipeline_paused.{target.name}"

    def reap(self, target: Target) -> Outcome:
        return self._set(target, True, "reap")

    def restore(self, target: Target, previous: bool) -> Outcome:
        return self._set(target, bool(previous), "restore")

    def _set(self, target: Target, value: bool, action: str) -> Outcome:
        name = self.flag(target)
        current = bool(self.store.get(name))
        if current == value:
            return Outcome(target.key, "pipeline", action, False, {"paused": current}, {"paused": value},
                           f"{name} already {value}")
        change = self.store.set(name, value, actor="costeff-reaper", reason=f"idle reaper {action}")
        return Outcome(target.key, "pipeline", action, True, {"paused": current}, {"paused": value},
                       f"{name} {current} -> {value}", target.usd_per_hour if value else 0.0,
                       {"flag_version": change.version, "flag_audit_seq": change.audit_seq})
