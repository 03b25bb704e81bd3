"""Observation sets: load `.npy` / `.npz` / `.parquet`, validate against a policy, split.

Calibration and held-out evaluation rows come from one seeded permutation and
never overlap: fidelity measured on calibration rows would flatter a variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from costeff.errors import InputError

SUFFIXES = (".npy", ".npz", ".parquet")


def load_observations(path: Path | str, key: str | None = None) -> np.ndarray:
    """Load an observation array; ``key`` picks an array in an ``.npz`` (default: the only one or 'obs')."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such observations file; expected one of {', '.join(SUFFIXES)}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            return _from_npz(path, key)
        if suffix == ".parquet":
            return _from_parquet(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read observations ({type(exc).__name__}: {exc})") from None
    raise InputError(f"{path}: unsupported observations format {suffix!r}; expected {', '.join(SUFFIXES)}")


def _from_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.keys())
        if key is None:
            key = "obs" if "obs" in names else (names[0] if len(names) == 1 else None)
        if key not in names:
            raise InputError(f"{path}: choose the observations array with --observations-key; arrays: {names}")
        return data[key]


def _from_parquet(path: Path) -> np.ndarray:
    """One row per observation; numeric columns are features, list columns are flattened windows."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = [np.stack(c.to_numpy(zero_copy_only=False)) if c.type.num_fields == 0 and
               str(c.type).startswith(("list", "fixed_size_list", "large_list"))
               else c.to_numpy(zero_copy_only=False).reshape(-1, 1) for c in table.columns]
    return np.concatenate([c.reshape(c.shape[0], -1) for c in columns], axis=1).astype(np.float32)


def validate_observations(obs: np.ndarray, sample_shape: tuple[int | None, ...], source: str) -> np.ndarray:
    """Check shape, dtype and finiteness against the policy input; returns float32 rows."""
    if obs.dtype.kind not in "fiu":
        raise InputError(f"{source}: observations have dtype {obs.dtype}; expected a numeric array")
    expected = tuple(sample_shape)
    if obs.ndim == 1 + len(expected) and all(e is None or e == d for e, d in zip(expected, obs.shape[1:], strict=True)):
        pass
    elif (obs.ndim == 2 and all(e is not None for e in expected)
          and obs.shape[1] == int(np.prod([e for e in expected if e is not None]))):
        obs = obs.reshape((obs.shape[0], *expected))  # flattened windows, e.g. from parquet
    else:
        raise InputError(f"{source}: observations have shape {list(obs.shape)}; expected [rows, "
                         f"{', '.join('*' if e is None else str(e) for e in expected)}]")
    if obs.shape[0] == 0:
        raise InputError(f"{source}: no observation rows (shape {list(obs.shape)}); expected at least one row")
    bad = ~np.isfinite(obs.reshape(obs.shape[0], -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{source}: {bad.sum()} observation row(s) contain NaN or inf "
                         f"(first: row {rows[0]}); clean them before profiling or quantizing")
    return obs


@dataclass(frozen=True)
class Split:
    calibration: np.ndarray
    evaluation: np.ndarray
    calibration_rows: int
    evaluation_rows: int
    seed: int


def split(obs: np.ndarray, calibration_fraction: float = 0.3, seed: int = 0,
          min_calibration: int = 64, min_evaluation: int = 256, source: str = "observations") -> Split:
    """Disjoint calibration / held-out rows from one seeded permutation."""
    need = min_calibration + min_evaluation
    if obs.shape[0] < need:
        raise InputError(f"{source}: {obs.shape[0]} rows is too few; need at least {need} "
                         f"({min_calibration} for calibration + {min_evaluation} held out for evaluation)")
    order = np.random.default_rng(seed).permutation(obs.shape[0])
    n_cal = max(min_calibration, int(round(obs.shape[0] * calibration_fraction)))
    n_cal = min(n_cal, obs.shape[0] - min_evaluation)
    cal, ev = obs[order[:n_cal]], obs[order[n_cal:]]
    return Split(cal, ev, len(cal), len(ev), seed)
