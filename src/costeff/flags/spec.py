"""The known flags as pydantic models: each flag's value type, default and how a typed-in value is parsed.

A value from a command line (``"true"``, ``"unset"``) or from the store is validated
against the flag's type through pydantic, so the CLI, the reaper and the flag store
agree on what a valid value is; a wrong one is an InputError naming the flag and
what was expected, with a did-you-mean for a near miss.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints, TypeAdapter, ValidationError

from costeff.configfile import STRICT_MODEL, did_you_mean
from costeff.errors import InputError

_PIPELINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
PIPELINE_PREFIX = "pipeline_paused."
SERVED_PREFIX = "served_version."


def _text(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _unset(value: Any) -> Any:
    value = _text(value)
    return None if value in ("", "unset", "none") else value


def _version(value: Any) -> Any:
    """A Triton version number from the command line ("3") or the store (3); None for unset."""
    value = _unset(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


_TYPES: dict[str, tuple[Any, str]] = {
    # kind -> (pydantic type, what a user must give)
    "bool": (Annotated[bool, BeforeValidator(_text)], "a boolean; expected true or false"),
    "sha256": (Annotated[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None,
                         BeforeValidator(_unset)], "a SHA-256; expected 64 hex digits or 'unset'"),
    "version": (Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_version)],
                "a model version; expected a positive integer or 'unset'"),
}
_STORED = {"bool": "a JSON boolean (true or false, unquoted)",
           "sha256": "64 lowercase hex digits or null", "version": "a positive JSON integer or null"}
_ADAPTERS = {kind: TypeAdapter(t) for kind, (t, _) in _TYPES.items()}


class FlagSpec(BaseModel):
    model_config = STRICT_MODEL
    name: str
    kind: Literal["bool", "sha256", "version"]
    default: Any
    help: str

    def check_stored(self, value: Any, where: str) -> Any:
        """``value`` as read back from the store: already parsed, so of the flag's exact JSON type. A hand
        edit (``"false"`` for a boolean, ``"abc"`` for a hash, ``true`` for a version) is an error, never
        coerced: ``bool("false")`` is True."""
        ok = {
            "bool": isinstance(value, bool),
            "sha256": value is None or (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None),
            "version": value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
        }[self.kind]
        if not ok:
            raise InputError(f"{where}: flag {self.name}: stored value {value!r} is not {_STORED[self.kind]}; "
                             f"set it again with `costeff flags set {self.name} VALUE`")
        return value

    def parse(self, value: Any) -> Any:
        try:
            return _ADAPTERS[self.kind].validate_python(value)
        except ValidationError:
            raise InputError(f"flag {self.name}: {value!r} is not {_TYPES[self.kind][1]}") from None


KNOWN: dict[str, FlagSpec] = {s.name: s for s in (
    FlagSpec(name="cost_gates_enabled", kind="bool", default=True, help="ramp decisions apply the cost gates"),
    FlagSpec(name="reaper_enabled", kind="bool", default=True,
             help="the idle reaper may scale serving capacity down"),
    FlagSpec(name="pipeline_paused", kind="bool", default=False, help="every pipeline is paused"),
    FlagSpec(name="deployed_model_sha256", kind="sha256", default=None, help="SHA-256 of the model actually serving"),
)}


def spec_for(name: str) -> FlagSpec:
    """The spec of ``name``; ``pipeline_paused.<pipeline>`` is a per-pipeline pause."""
    if name in KNOWN:
        return KNOWN[name]
    if name.startswith(PIPELINE_PREFIX):
        pipeline = name[len(PIPELINE_PREFIX):]
        if not _PIPELINE.match(pipeline):
            raise InputError(f"flag {name}: pipeline name {pipeline!r} must be letters, digits, '_', '-' or '.'")
        return FlagSpec(name=name, kind="bool", default=False, help=f"pipeline {pipeline} is paused")
    if name.startswith(SERVED_PREFIX):
        model = name[len(SERVED_PREFIX):]
        if not _PIPELINE.match(model):
            raise InputError(f"flag {name}: model name {model!r} must be letters, digits, '_', '-' or '.'")
        return FlagSpec(name=name, kind="version", default=None, help=f"Triton version of model {model} that serves")
    raise InputError(f"unknown flag {name!r}; known: {', '.join(KNOWN)}, {PIPELINE_PREFIX}<pipeline>, "
                     f"{SERVED_PREFIX}<model>" + did_you_mean(name, KNOWN))


def parse_value(name: str, value: Any) -> Any:
    return spec_for(name).parse(value)
