"""Observation logs: the rows the trading system fed the policy, as ``.npy``/``.npz``/``.parquet`` files.

A parquet log may carry a timestamp column (``timestamp``, ``ts``, ``time`` or any
arrow timestamp column) and an ``.npz`` a ``timestamp`` array; those rows are grouped
into time windows. A log without timestamps is one window of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from costeff.errors import InputError
from costeff.observations import SUFFIXES, validate_observations

TIME_NAMES = ("timestamp", "ts", "time", "event_time")


@dataclass(frozen=True)
class ObservationLog:
    source: str
    obs: np.ndarray  # [rows, *sample_shape]
    timestamps: np.ndarray | None  # [rows] seconds since the epoch (float64), or None


def list_logs(path: Path | str) -> list[Path]:
    """The log files under ``path`` (a file, or a folder read in name order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"--observations {path}: no such file or folder")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise InputError(f"--observations {path}: the folder holds no {', '.join(SUFFIXES)} files")
    return found


def read_log(path: Path, sample_shape: tuple[int | None, ...]) -> ObservationLog:
    """Load and check one log against the policy's input; InputError naming the file otherwise."""
    obs, stamps = _load(Path(path))
    obs = validate_observations(obs, sample_shape, str(path))
    if stamps is not None:
        stamps = _seconds(stamps, path)
        if len(stamps) != len(obs):
            raise InputError(f"{path}: {len(stamps)} timestamps for {len(obs)} observation rows; expected one each")
    return ObservationLog(str(path), obs, stamps)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            return _npz(path)
        if suffix == ".parquet":
            return _parquet(path)
    except InputError:
        raise
    except Exception as exc:  # numpy / pyarrow raise many kinds for a truncated or foreign file
        raise InputError(f"{path}: cannot read observations ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})") from None
    raise InputError(f"{path}: unsupported observations format {suffix!r}; expected {', '.join(SUFFIXES)}")


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.keys())
        stamp = next((n for n in names if n in TIME_NAMES), None)
        rest = [n for n in names if n != stamp]
        key = "obs" if "obs" in rest else (rest[0] if len(rest) == 1 else None)
        if key is None:
            raise InputError(f"{path}: expected an 'obs' array (and optionally 'timestamp'); arrays: {names}")
        return data[key], (data[stamp] if stamp else None)


def _parquet(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    stamp = next((c for c in table.column_names if c.lower() in TIME_NAMES
                  or pa.types.is_timestamp(table.schema.field(c).type)), None)
    stamps = None
    if stamp is not None:
        column = table.column(stamp)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us")).cast(pa.int64())
            stamps = column.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
        else:
            stamps = column.to_numpy(zero_copy_only=False)
        table = table.drop_columns([stamp])
    if table.num_columns == 0:
        raise InputError(f"{path}: no observation columns besides the timestamp")
    return _features(table, path), stamps


def _features(table, path: Path) -> np.ndarray:
    """One row per observation; numeric columns are features, list columns are flattened windows."""
    import pyarrow.compute as pc

    columns = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if str(col.type).startswith(("list", "fixed_size_list", "large_list")):
            # flatten once in arrow: stacking per-row numpy arrays costs more than running the model
            bounds = pc.min_max(pc.list_value_length(col)).as_py()
            if bounds["min"] != bounds["max"]:
                raise InputError(f"{path}: column {name!r} holds lists of {bounds['min']}..{bounds['max']} values; "
                                 "expected one length (one observation window per row)")
            flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            columns.append(flat.reshape(len(col), -1))
        else:
            columns.append(col.to_numpy(zero_copy_only=False).reshape(-1, 1))
    return np.concatenate([c.reshape(c.shape[0], -1) for c in columns], axis=1)


def _seconds(stamps: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(stamps.dtype, np.datetime64):
        return stamps.astype("datetime64[us]").astype(np.int64).astype(np.float64) / 1e6
    if stamps.dtype.kind not in "fiu":
        raise InputError(f"{path}: timestamps have dtype {stamps.dtype}; expected a timestamp type or "
                         "seconds since the epoch")
    stamps = stamps.astype(np.float64)
    if not np.isfinite(stamps).all():
        raise InputError(f"{path}: a timestamp is NaN or inf")
    return stamps
