"""Turn records (dataclasses, numpy values, paths) into strict JSON."""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types.

    Non-finite floats have no JSON spelling: NaN becomes ``None`` and an infinity the
    string ``"inf"`` / ``"-inf"`` (a cost ratio with PnL <= 0 is infinite, not missing).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "shape", None) == ():
        return to_jsonable(item())
    tolist = getattr(obj, "tolist", None)  # numpy arrays
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x
