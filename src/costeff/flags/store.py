"""Feature flags in one JSON file, every change audited and reversible.

The file keeps each flag's full history (version 0 is the default), so any earlier
value can be restored. A rollback is itself a new version: history only grows, and
the audit trail shows who went back, when and why. Writers hold an exclusive lock
while reading, appending to the audit trail and replacing the file atomically, so
two processes never lose each other's change.

Order and recovery: the signed record is made durable first, then ``flags.json`` is
replaced. A change whose record is in the trail but whose file write failed (a full
disk, a crash between the two) is therefore never lost and never invented: every later
change first reconciles, applying from the verified trail each record made for this
store (``payload.store``) that the file lacks, in version order. A change whose record
could not be written changes nothing (the append is cut back and the command fails).
Reconciling reads the verified trail, so a change is also refused (exit 2, nothing
appended) on a trail that does not verify.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

from costeff.artifacts import SCHEMA_VERSION, Workspace, atomic_write_json, exclusive_lock, iso_utc
from costeff.audit import AuditLog
from costeff.configfile import validate
from costeff.errors import DependencyError, InputError
from costeff.flags.spec import KNOWN, parse_value, spec_for


class _Change(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    version: StrictInt
    old_value: Any
    new_value: Any
    ts: StrictStr
    actor: StrictStr
    reason: StrictStr
    action: Literal["set", "rollback"]
    rolled_back_to: StrictInt | None = None
    audit_seq: StrictInt | None = None


class _StoreFile(BaseModel):
    """``flags.json`` as written; a hand-edited entry of the wrong shape is named, not half-read."""

    schema_version: StrictInt
    history: dict[StrictStr, list[_Change]]


@dataclass(frozen=True)
class FlagChange:
    """One version of one flag, as kept in the store and in the audit trail."""

    name: str
    version: int
    old_value: Any
    new_value: Any
    ts: str
    actor: str
    reason: str
    action: str  # "set" or "rollback"
    rolled_back_to: int | None = None
    audit_seq: int | None = None


@dataclass(frozen=True)
class FlagState:
    name: str
    value: Any
    version: int
    default: Any
    changed_at: str | None
    actor: str | None


class FlagStore:
    """Flags in ``path`` (JSON), changes appended to ``audit_log``."""

    def __init__(self, path: Path | str, audit_log: AuditLog) -> None:
        self.path = Path(path)
        self.audit_log = audit_log

    @classmethod
    def of(cls, workspace: Workspace) -> "FlagStore":
        """The workspace's flags, their changes audited in its trail."""
        return cls(workspace.flags, AuditLog.of(workspace))

    def get(self, name: str) -> Any:
        return self.state(name).value

    def state(self, name: str) -> FlagState:
        spec = spec_for(name)
        history = self._load()["history"].get(name, [])
        if not history:
            return FlagState(name, spec.default, 0, spec.default, None, None)
        last = history[-1]
        return FlagState(name, last["new_value"], last["version"], spec.default, last["ts"], last["actor"])

    def all(self) -> list[FlagState]:
        """Every known flag plus every per-pipeline flag ever set."""
        names = list(KNOWN) + sorted(n for n in self._load()["history"] if n not in KNOWN)
        return [self.state(n) for n in names]

    def history(self, name: str) -> list[FlagChange]:
        spec_for(name)
        return [FlagChange(**entry) for entry in self._load()["history"].get(name, [])]

    def set(self, name: str, value: Any, actor: str = "costeff", reason: str = "") -> FlagChange:
        new_value = parse_value(name, value)
        return self._change(name, lambda history: (new_value, "set", None), actor, reason)

    def rollback(self, name: str, to_version: int | None = None, actor: str = "costeff",
                 reason: str = "") -> FlagChange:
        """Restore the value before the current one, or the value flag ``name`` had at ``to_version``."""
        spec = spec_for(name)

        def target(history: list[dict[str, Any]]) -> tuple[Any, str, int]:
            current = history[-1]["version"] if history else 0
            version = current - 1 if to_version is None else to_version
            if current == 0:
                raise InputError(f"flag {name}: never changed, nothing to roll back to")
            if not 0 <= version < current:
                raise InputError(f"flag {name}: --to-version {version} is not an earlier version; "
                                 f"expected 0..{current - 1}")
            value = spec.default if version == 0 else self._verified_value(name, version)
            return value, "rollback", version

        return self._change(name, target, actor, reason)

    def _change(self, name: str, decide: Any, actor: str, reason: str) -> FlagChange:
        spec_for(name)
        with self._locked():
            data = self._load()
            self._reconcile(data)
            history = data["history"].setdefault(name, [])
            new_value, action, to_version = decide(history)
            old_value = history[-1]["new_value"] if history else spec_for(name).default
            change = FlagChange(name, len(history) + 1, old_value, new_value, iso_utc(), actor,
                                reason, action, to_version)
            # Audit first: a change that is not in the trail must not take effect.
            record = self.audit_log.append(f"flag.{action}", {**_payload(change), "store": self._store_id()},
                                           actor=actor)
            change = FlagChange(**{**change.__dict__, "audit_seq": record["seq"]})
            history.append(change.__dict__)
            self._write(data, f"audit record {record['seq']} holds {name} v{change.version}")
        return change

    def _write(self, data: dict[str, Any], what: str) -> None:
        try:
            atomic_write_json(self.path, data)
        except OSError as exc:
            raise DependencyError(f"{self.path}: not written ({exc.strerror or exc}); the {what}, and the next "
                                  f"flag change applies it from the trail") from None

    def _store_id(self) -> str:
        return str(self.path.resolve())

    def _reconcile(self, data: dict[str, Any]) -> None:
        """Apply changes the trail holds for this store but the file lacks (see the module docstring)."""
        mine, missing = self._store_id(), []
        for record in self.audit_log.verified_records() if self.audit_log.path.exists() else []:
            payload = record.get("payload") or {}
            if str(record.get("event", "")).startswith("flag.") and payload.get("store") == mine:
                history = data["history"].setdefault(str(payload.get("flag")), [])
                if payload.get("version") == len(history) + 1:
                    history.append(FlagChange(
                        payload["flag"], payload["version"], payload.get("old_value"), payload.get("new_value"),
                        record.get("ts", ""), record.get("actor", ""), payload.get("reason", ""),
                        payload.get("action", "set"), payload.get("rolled_back_to"), record.get("seq")).__dict__)
                    missing.append(f"{payload['flag']} v{payload['version']}")
        if missing:
            self._write(data, f"reconciled {', '.join(missing)} from the audit trail")

    def _verified_value(self, name: str, version: int) -> Any:
        """The value ``name`` had at ``version``, from a signed record of a trail that verifies: the flag
        store itself is a plain file, so a value edited into it must never come back through a rollback."""
        for record in reversed(self.audit_log.verified_records()):
            payload = record.get("payload") or {}
            if str(record.get("event", "")).startswith("flag.") and payload.get("flag") == name \
                    and payload.get("version") == version:
                return payload.get("new_value")
        raise InputError(f"flag {name}: version {version} is not in the verified audit trail "
                         f"{self.audit_log.path}; refusing to roll back to a value nobody can vouch for")

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"schema_version": SCHEMA_VERSION, "history": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{self.path}: flag store is unreadable ({exc}); restore it from the audit trail") \
                from None
        if not isinstance(data, dict) or not isinstance(data.get("history"), dict):
            raise InputError(f"{self.path}: not a flag store; expected a JSON object with a 'history' table")
        validate(_StoreFile, data, str(self.path))
        _check_values(data["history"], str(self.path))
        return data

    def _locked(self) -> Any:
        return exclusive_lock(self.path.with_name(f".{self.path.name}.lock"))


def _check_values(history: dict[str, list[dict[str, Any]]], where: str) -> None:
    """Every value in the store against its flag's spec, on every read: a hand-edited value of the wrong
    type is an error (the reaper then does not reap), not something to coerce."""
    for name, changes in history.items():
        try:
            spec = spec_for(name)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        for index, change in enumerate(changes):
            for key in ("old_value", "new_value"):
                spec.check_stored(change[key], f"{where}: history.{name}[{index}].{key}")


def _payload(change: FlagChange) -> dict[str, Any]:
    return {"flag": change.name, "old_value": change.old_value, "new_value": change.new_value,
            "version": change.version, "reason": change.reason, "action": change.action,
            "rolled_back_to": change.rolled_back_to}
