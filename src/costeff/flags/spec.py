"""The known flags: their types, defaults and how a value typed on a command line is parsed."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

from costeff.errors import InputError

PRECISIONS = ("fp32", "fp16", "mixed", "int8-dynamic", "int8-static", "int8-mixed")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PIPELINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
PIPELINE_PREFIX = "pipeline_paused."
SERVED_PREFIX = "served_version."


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"flag {name}: {value!r} is not a boolean; expected true or false")


def _precision(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in PRECISIONS:
        raise InputError(f"flag {name}: {value!r} is not a precision; expected one of {', '.join(PRECISIONS)}"
                         + _hint(text, PRECISIONS))
    return text


def _sha256(name: str, value: Any) -> str | None:
    if value is None or str(value).strip().lower() in ("", "unset", "none"):
        return None
    text = str(value).strip().lower()
    if not _SHA256.match(text):
        raise InputError(f"flag {name}: {value!r} is not a SHA-256; expected 64 hex digits or 'unset'")
    return text


def _version(name: str, value: Any) -> int | None:
    if value is None or str(value).strip().lower() in ("", "unset", "none"):
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"flag {name}: {value!r} is not a model version; expected a positive integer or 'unset'")
    return int(text)


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: str  # "bool", "precision", "sha256" or "version"
    default: Any
    help: str
    parse: Callable[[str, Any], Any]


KNOWN: dict[str, FlagSpec] = {s.name: s for s in (
    FlagSpec("serve_precision", "precision", "fp32", "precision variant the serving stack loads", _precision),
    FlagSpec("cost_gates_enabled", "bool", True, "ramp decisions apply the cost gates", _bool),
    FlagSpec("reaper_enabled", "bool", True, "the idle reaper may scale serving capacity down", _bool),
    FlagSpec("pipeline_paused", "bool", False, "every pipeline is paused", _bool),
    FlagSpec("deployed_model_sha256", "sha256", None, "SHA-256 of the model actually serving", _sha256),
)}


def _hint(text: str, choices: Any) -> str:
    close = difflib.get_close_matches(text, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def spec_for(name: str) -> FlagSpec:
    """The spec of ``name``; ``pipeline_paused.<pipeline>`` is a per-pipeline pause."""
    if name in KNOWN:
        return KNOWN[name]
    if name.startswith(PIPELINE_PREFIX):
        pipeline = name[len(PIPELINE_PREFIX):]
        if not _PIPELINE.match(pipeline):
            raise InputError(f"flag {name}: pipeline name {pipeline!r} must be letters, digits, '_', '-' or '.'")
        return FlagSpec(name, "bool", False, f"pipeline {pipeline} is paused", _bool)
    if name.startswith(SERVED_PREFIX):
        model = name[len(SERVED_PREFIX):]
        if not _PIPELINE.match(model):
            raise InputError(f"flag {name}: model name {model!r} must be letters, digits, '_', '-' or '.'")
        return FlagSpec(name, "version", None, f"Triton version of model {model} that serves", _version)
    raise InputError(f"unknown flag {name!r}; known: {', '.join(KNOWN)}, {PIPELINE_PREFIX}<pipeline>, "
                     f"{SERVED_PREFIX}<model>"
                     + _hint(name, KNOWN))


def parse_value(name: str, value: Any) -> Any:
    return spec_for(name).parse(name, value)
