"""Reading config files into pydantic v2 models, with one error format for all of them.

A config file is TOML validated by a pydantic model (or pydantic dataclass) whose
scalar fields are strict (``StrictFloat``, ``StrictInt``, ``StrictStr``,
``StrictBool``: ``"900"`` is not a number, ``"policy-a"`` is not a list), which
refuses unknown keys (``extra="forbid"``) and TOML's ``nan`` and ``inf``
(``allow_inf_nan=False``). Whatever is wrong becomes one
``InputError`` (exit 2) naming the file, the dotted key, what was found and what
was expected, with a did-you-mean for a misspelt key::

    reaper.toml: decision.windw_s: unknown key (did you mean 'window_s'?); allowed: factors, ...
    plan.toml: steps[2].min_days: 'seven' is not allowed; expected a whole number

API: ``did_you_mean(text, choices)`` (from ``costeff.hints``), ``read_toml(path, what)``,
``validate(model, data, source)``, ``describe(error, source, model)``, ``STRICT`` (config of a
pydantic dataclass), ``STRICT_MODEL`` (config of a ``BaseModel``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from costeff.errors import InputError
from costeff.hints import did_you_mean

# For pydantic dataclasses read from files (freeze them in the decorator): unknown keys refused, and
# TOML's nan and inf refused wherever a number is read (a NaN threshold makes every comparison false).
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
# For pydantic models read from files: unknown keys refused, values frozen, numbers finite.
STRICT_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

_EXPECTED = {
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "list_type": "an array", "tuple_type": "an array", "set_type": "an array", "frozen_set_type": "an array",
    "dict_type": "a table", "model_type": "a table", "dataclass_type": "a table", "model_attributes_type": "a table",
    "time_type": "a time of day 'HH:MM'", "time_parsing": "a time of day 'HH:MM'",
    "date_type": "a date YYYY-MM-DD", "date_parsing": "a date YYYY-MM-DD",
    "date_from_datetime_parsing": "a date YYYY-MM-DD",
}


def read_toml(path: Path | str, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; an unreadable or invalid file is an InputError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None


def validate(model: Any, data: Any, source: str) -> Any:
    """``model`` (a pydantic model, pydantic dataclass or type) from ``data``; errors name ``source``."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise InputError(describe(exc, source, model)) from None
    except InputError as exc:  # a model's own check (__post_init__) that already says what is wrong
        raise InputError(f"{source}: {exc}") from None


def describe(exc: ValidationError, source: str, model: Any = None) -> str:
    """The first error of ``exc`` as one line: ``source: key: problem; expected ...``."""
    errors = exc.errors(include_url=False)
    # A misspelt key also makes the real one "missing": name the unknown key first, it explains both.
    err = next((e for e in errors if e["type"] in ("extra_forbidden", "unexpected_keyword_argument")), errors[0])
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = _dotted(loc) or "(top level)"
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(model, loc[:-1])
        prefix = _dotted(loc[:-1])
        hint = did_you_mean(str(loc[-1]), allowed) if allowed else ""
        if hint and prefix:
            hint = hint.replace(" (did you mean '", f" (did you mean '{prefix}.")
        listing = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
        return f"{source}: {key}: unknown key{hint}{listing}"
    if kind in ("missing", "missing_argument"):
        return f"{source}: {key}: missing; it is required"
    expected = _EXPECTED.get(kind) or err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
    return f"{source}: {key}: {_show(err.get('input'))} is not allowed; expected {expected}"


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: Any, path: list[Any]) -> list[str]:
    """The field names of the (nested) model at ``path``, for the did-you-mean hint."""
    current = model
    for part in path:
        if isinstance(part, int):
            current = _item_type(current)
            continue
        current = _field_types(current).get(part)
        if current is None:
            return []
    return sorted(_field_types(current))


def _field_types(model: Any) -> dict[str, Any]:
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {name: f.annotation for name, f in model.model_fields.items()}
    if dataclasses.is_dataclass(model):
        hints = typing.get_type_hints(model)
        return {f.name: hints.get(f.name) for f in dataclasses.fields(model)}
    return {}


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(_unwrap(annotation))
    return args[0] if args else None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` to ``X``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return _unwrap(args[0])
    return annotation
