"""Decisions that do not depend on their batch neighbours.

onnxruntime's dynamic int8 computes each activation scale over the whole batch,
so one observation's logits change with the rows served beside it. Every
variant is therefore judged at batch 1 and at the largest batch the served
configuration can form (the largest profiled batch: the batcher never forms a
bigger one): its fidelity gates at each size, and the same rows run alone vs
inside seeded random batches of the largest size (``batch_invariance``).

Cost is bounded: the largest batch runs every held-out row (as many calls as
before); batch 1 runs a seeded sample of ``probe_rows`` held-out rows, one call
each, and the invariance figure compares those rows' two answers. The batch-1
figures are on that sample, so its size trades time against sample noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from costeff.gates import Gate, all_passed, check
from costeff.quantization.fidelity import Fidelity, PolicyOutputs, Tolerances, compare, gates

# Runs rows in calls of the given batch size: (rows, batch) -> outputs in row order.
RunFn = Callable[[np.ndarray, int], PolicyOutputs]


@dataclass(frozen=True)
class BatchInvariance:
    action_change_pct: float  # % probe rows whose argmax action differs alone vs inside a batch
    max_logit_diff: float  # largest |logit alone - logit inside a batch| over the probe rows
    batch_sizes: list[int]
    rows: int
    changed_rows: int


@dataclass(frozen=True)
class BatchFidelity:
    batch_size: int
    rows: int
    fidelity: Fidelity
    gates: list[Gate]
    passed: bool


def served_batch_sizes(batch_sizes: tuple[int, ...] | list[int]) -> list[int]:
    """Batch 1 and the largest batch the served configuration can form."""
    return sorted({1, max(batch_sizes)})


def probe_index(rows: int, probe_rows: int, seed: int) -> np.ndarray:
    """A seeded sample of at most ``probe_rows`` row indices, in row order."""
    if rows <= probe_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, probe_rows, replace=False))


def in_random_batches(run: RunFn, obs: np.ndarray, batch: int, seed: int) -> PolicyOutputs:
    """Each row of ``obs`` inside a seeded random batch of exactly ``batch`` rows; answers in row order.

    The last batch is filled up with rows from the start of the shuffled order (their
    second answers are dropped), so no row is judged in a smaller batch than asked.
    """
    n = len(obs)
    if batch == 1:
        return run(obs, 1)
    order = np.random.default_rng(seed).permutation(n)
    padded = np.resize(order, -(-n // batch) * batch)
    out = run(obs[padded], batch)
    logits = np.empty((n, out.logits.shape[1]), dtype=out.logits.dtype)
    logits[order] = out.logits[:n]
    value = None
    if out.value is not None:
        value = np.empty((n, *out.value.shape[1:]), dtype=out.value.dtype)
        value[order] = out.value[:n]
    return PolicyOutputs(logits, value)


def take(out: PolicyOutputs, index: np.ndarray) -> PolicyOutputs:
    return PolicyOutputs(out.logits[index], None if out.value is None else out.value[index])


def invariance(alone: PolicyOutputs, batched: PolicyOutputs, batch_sizes: list[int]) -> BatchInvariance:
    """The same rows' answers alone vs inside a batch."""
    a, b = alone.logits.astype(np.float64), batched.logits.astype(np.float64)
    changed = a.argmax(axis=1) != b.argmax(axis=1)
    return BatchInvariance(100.0 * float(changed.mean()) if len(changed) else 0.0,
                           float(np.abs(a - b).max()) if a.size else 0.0, list(batch_sizes), int(len(changed)),
                           int(changed.sum()))


def invariance_gate(inv: BatchInvariance, tol: Tolerances) -> Gate:
    return check("batch_action_change_pct", inv.action_change_pct, "<=", tol.batch_action_change_pct,
                 detail=f"{inv.rows} rows alone vs inside random batches of {max(inv.batch_sizes)}")


def judge(run: RunFn, ref: PolicyOutputs, obs: np.ndarray, tol: Tolerances, batch_sizes: list[int],
          probe_rows: int, seed: int) -> tuple[dict[str, BatchFidelity], BatchInvariance]:
    """Fidelity against ``ref`` at each batch size, and batch invariance on the probe rows.

    ``ref`` holds the fp32 answers for every row of ``obs``.
    """
    probe = probe_index(len(obs), probe_rows, seed)
    by_batch: dict[str, BatchFidelity] = {}
    answers: dict[int, PolicyOutputs] = {}
    for b in batch_sizes:
        rows = probe if b == 1 else np.arange(len(obs))
        out = in_random_batches(run, obs[rows], b, seed + b)
        answers[b] = out if b == 1 else take(out, probe)
        fid = compare(take(ref, rows), out)
        checks = gates(fid, tol)
        by_batch[str(b)] = BatchFidelity(b, int(len(rows)), fid, checks, all_passed(checks))
    smallest, largest = min(batch_sizes), max(batch_sizes)
    return by_batch, invariance(answers[smallest], answers[largest], batch_sizes)


def suffixed(by_batch: dict[str, BatchFidelity]) -> list[Gate]:
    """Every batch's gates in one list, each name suffixed with its batch size (``action_drift_pct@b1``)."""
    out = []
    for key, entry in by_batch.items():
        out += [Gate(f"{g.name}@b{key}", g.observed, g.threshold, g.comparator, g.verdict,
                     g.detail or f"batch {key}, {entry.rows} rows") for g in entry.gates]
    return out

