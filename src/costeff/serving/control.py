"""Which version serves: the ``served_version.<model>`` flag decides, the config follows.

The flag is the source of truth. ``rollback`` and ``promote`` change the flag (audited)
and then make the repository's ``config.pbtxt`` match it; ``sync`` only does the second
half, for a flag changed by hand (``costeff flags set`` / ``costeff flags rollback``).
A crash between the two leaves the flag ahead of the config, and ``sync`` repairs it.
Given a server address, the server is then asked to reload the model through the
model-repository API, so the change reaches the running process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff.artifacts import SCHEMA_VERSION, iso_utc
from costeff.errors import DependencyError, InputError
from costeff.serving import versions

FLAG_PREFIX = "served_version."
ACTIONS = ("build", "rollback", "promote", "sync")


@dataclass(frozen=True)
class Reload:
    address: str
    model_name: str
    ready: bool
    seconds: float


@dataclass(frozen=True)
class ServeChange:
    schema_version: int
    created_at: str
    action: str
    model_dir: str
    name: str
    from_version: int | None
    to_version: int
    changed: bool
    flag: str
    flag_version: int | None
    model_sha256: str | None
    audit_seq: int | None
    reload: Reload | None = None
    warning: str | None = None  # the served version's bytes differ from its build record


def flag_name(model: str) -> str:
    return f"{FLAG_PREFIX}{model}"


def after_build(model_dir: Path, version: int, sha256: str | None, flags, audit) -> ServeChange:
    """Record a fresh build as the served version (the build already pinned it in the config)."""
    previous = flags.get(flag_name(Path(model_dir).name))
    return _record("build", Path(model_dir), previous, version, flags, audit, "costeff triton build")


def rollback(model_dir: Path, to: int | None = None, *, url: str | None = None, protocol: str = "http",
             actor: str = "costeff", reason: str = "", flags, audit) -> ServeChange:
    """Serve an earlier version: ``to``, else the newest one below the served version."""
    with versions.entry_lock(model_dir):
        state = versions.describe(model_dir)
        change = _move("rollback", Path(model_dir), state.served, _earlier(state, to), actor, reason, flags, audit)
    return _with_reload(change, url, protocol)


def promote(model_dir: Path, to: int | None = None, *, url: str | None = None, protocol: str = "http",
            actor: str = "costeff", reason: str = "", flags, audit) -> ServeChange:
    """Serve a newer version: ``to``, else the oldest one above the served version."""
    with versions.entry_lock(model_dir):
        state = versions.describe(model_dir)
        change = _move("promote", Path(model_dir), state.served, _newer(state, to), actor, reason, flags, audit)
    return _with_reload(change, url, protocol)


def sync(model_dir: Path, *, url: str | None = None, protocol: str = "http", actor: str = "costeff",
         flags, audit) -> ServeChange:
    """Make the config serve what the flag says (and reload the server when ``url`` is given)."""
    model_dir = Path(model_dir)
    with versions.entry_lock(model_dir):
        change = _sync(model_dir, actor, flags, audit)
    return _with_reload(change, url, protocol)


def _sync(model_dir: Path, actor: str, flags, audit) -> ServeChange:
    state = versions.describe(model_dir)
    flag = flags.state(flag_name(model_dir.name))
    if flag.value is None:
        raise InputError(f"flag {flag.name} is unset: nothing says which version to serve; set it with "
                         f"`costeff flags set {flag.name} N` (versions: {_numbers(state)})")
    changed = flag.value != state.served or not state.pinned
    if changed:
        versions.serve(model_dir, int(flag.value))
    record = audit.append("triton.sync", {"model_dir": str(model_dir), "from_version": state.served,
                                          "to_version": flag.value, "changed": changed,
                                          "flag_version": flag.version}, actor=actor)
    return ServeChange(SCHEMA_VERSION, iso_utc(), "sync", str(model_dir), model_dir.name, state.served,
                       int(flag.value), changed, flag.name, flag.version, _sha(state, flag.value), record["seq"])


def reload_model(url: str, protocol: str, model_name: str, timeout_s: float = 30.0) -> Reload:
    """Ask a running server to (re)load ``model_name`` through the model-repository API."""
    from costeff.remote.client import Endpoint, connect

    endpoint = Endpoint(url, protocol, model_name, timeout_s=timeout_s)
    client = connect(endpoint)
    started = time.perf_counter()
    try:
        client.load_model(model_name)
        ready = bool(client.is_model_ready(model_name))
    except Exception as exc:  # tritonclient raises InferenceServerException for a refused load
        raise DependencyError(f"{endpoint.address}: the server did not reload {model_name!r} "
                              f"({' '.join(str(exc).split())[:200]})") from None
    return Reload(endpoint.address, model_name, ready, round(time.perf_counter() - started, 3))


def _move(action: str, model_dir: Path, current: int, target: int, actor: str, reason: str, flags,
          audit) -> ServeChange:
    change = flags.set(flag_name(model_dir.name), target, actor=actor, reason=reason or f"triton {action}")
    versions.serve(model_dir, target)
    state = versions.describe(model_dir)
    _set_deployed(flags, state, target, actor, action)
    record = audit.append(f"triton.{action}", {"model_dir": str(model_dir), "from_version": current,
                                               "to_version": target, "flag_version": change.version,
                                               "model_sha256": _sha(state, target), "reason": reason},
                          actor=actor)
    return ServeChange(SCHEMA_VERSION, iso_utc(), action, str(model_dir), model_dir.name, current, target,
                       current != target, change.name, change.version, _sha(state, target), record["seq"],
                       warning=_replaced(state, target))


def _record(action: str, model_dir: Path, previous: int | None, version: int, flags, audit,
            reason: str) -> ServeChange:
    change = flags.set(flag_name(model_dir.name), version, reason=reason)
    state = versions.describe(model_dir)
    _set_deployed(flags, state, version, "costeff", action)
    record = audit.append(f"triton.{action}", {"model_dir": str(model_dir), "from_version": previous,
                                               "to_version": version, "flag_version": change.version})
    return ServeChange(SCHEMA_VERSION, iso_utc(), action, str(model_dir), model_dir.name, previous, version,
                       True, change.name, change.version, _sha(state, version), record["seq"])


def _set_deployed(flags, state: versions.ModelVersions, version: int, actor: str, action: str) -> None:
    """Keep ``deployed_model_sha256`` (what the ramp checks by default) on the bytes now served."""
    sha = _sha(state, version)
    if sha and flags.get("deployed_model_sha256") != sha:
        flags.set("deployed_model_sha256", sha, actor=actor, reason=f"triton {action}: {state.name} v{version}")


def _earlier(state: versions.ModelVersions, to: int | None) -> int:
    numbers = _numbers(state)
    if to is None:
        below = [n for n in numbers if n < state.served]
        if not below:
            raise InputError(f"{state.model_dir}: version {state.served} is the oldest on disk ({numbers}); "
                             "nothing earlier to roll back to")
        return below[-1]
    _known(state, to)
    if to >= state.served:
        raise InputError(f"--to {to}: not earlier than the served version {state.served}; use `triton promote`")
    return to


def _newer(state: versions.ModelVersions, to: int | None) -> int:
    numbers = _numbers(state)
    if to is None:
        above = [n for n in numbers if n > state.served]
        if not above:
            raise InputError(f"{state.model_dir}: version {state.served} is the newest on disk ({numbers}); "
                             "nothing newer to promote")
        return above[0]
    _known(state, to)
    if to <= state.served:
        raise InputError(f"--to {to}: not newer than the served version {state.served}; use `triton rollback`")
    return to


def _known(state: versions.ModelVersions, to: int) -> None:
    if to not in _numbers(state):
        raise InputError(f"--to {to}: {state.model_dir} has no version {to}; versions on disk: {_numbers(state)}")


def _numbers(state: versions.ModelVersions) -> list[int]:
    return [v.version for v in state.versions]


def _sha(state: versions.ModelVersions, version: Any) -> str | None:
    """The bytes the version serves, hashed on disk now (a model.onnx replaced after its build included)."""
    return next((v.sha256 for v in state.versions if v.version == version), None)


def _replaced(state: versions.ModelVersions, version: int) -> str | None:
    info = next((v for v in state.versions if v.version == version), None)
    if info is None or info.bytes_match is not False:
        return None
    return (f"version {version}'s model file was replaced after its build: sha256 {info.disk_sha256} on disk, "
            f"{info.model_sha256} when built; deployed_model_sha256 records the bytes on disk")


def _with_reload(change: ServeChange, url: str | None, protocol: str) -> ServeChange:
    if url is None:
        return change
    from dataclasses import replace

    try:
        return replace(change, reload=reload_model(url, protocol, change.name))
    except DependencyError as exc:
        raise DependencyError(f"the repository now serves {change.name} v{change.to_version}, but {exc}; "
                              "rerun `costeff triton sync --url ...` once the server is back") from None
