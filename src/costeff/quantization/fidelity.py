"""Fidelity: how closely a variant decides like fp32 on held-out observations.

Metrics follow the product contract (action agreement and drift, confident
agreement, probability correlation, entropy drift, KL, value error). Every metric
is computed from the two models' raw outputs on the same rows, so a report's
verdicts can be recomputed from the saved models and the held-out observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from costeff.gates import Gate, check

# A row whose fp32 top-1 probability leads top-2 by less than this is a near-tie,
# not a decision; flips there are reported apart (confident_agreement_pct).
CONFIDENT_MARGIN = 0.1


@dataclass(frozen=True)
class PolicyOutputs:
    logits: np.ndarray  # [rows, actions]
    value: np.ndarray | None  # [rows, ...] or None without a value head


@dataclass(frozen=True)
class Fidelity:
    rows: int
    action_agreement_pct: float
    action_drift_pct: float
    confident_rows: int
    confident_agreement_pct: float | None
    action_correlation: float | None
    entropy_mean_fp32: float
    entropy_mean_variant: float
    entropy_drift_pct: float | None
    kl_mean: float
    kl_p99: float
    value_max_abs_err: float | None


@dataclass(frozen=True)
class Tolerances:
    """Fidelity gates; None switches an optional gate off."""

    action_drift_pct: float = 0.5
    entropy_drift_pct: float = 0.5
    action_correlation: float = 0.997
    kl_p99: float | None = None
    value_max_abs_err: float | None = None
    batch_action_change_pct: float = 0.05  # rows whose action changes alone vs inside a served batch

    def __post_init__(self) -> None:
        from costeff.errors import InputError

        for name in ("action_drift_pct", "entropy_drift_pct", "kl_p99", "value_max_abs_err",
                     "batch_action_change_pct"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise InputError(f"tolerance {name}: {value!r}; expected a number >= 0")
        if not (isinstance(self.action_correlation, (int, float)) and -1 <= self.action_correlation <= 1):
            raise InputError(f"tolerance action_correlation: {self.action_correlation!r}; expected -1..1")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _entropy(logp: np.ndarray) -> np.ndarray:
    return -(np.exp(logp) * logp).sum(axis=1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else None  # undefined for constant outputs
    return float(np.corrcoef(a, b)[0, 1])


def compare(ref: PolicyOutputs, var: PolicyOutputs) -> Fidelity:
    """Fidelity of ``var`` against the fp32 reference ``ref`` on the same rows."""
    lp_ref, lp_var = log_softmax(ref.logits), log_softmax(var.logits)
    p_ref, p_var = np.exp(lp_ref), np.exp(lp_var)
    same = ref.logits.argmax(axis=1) == var.logits.argmax(axis=1)
    top2 = np.sort(p_ref, axis=1)[:, -2:] if p_ref.shape[1] > 1 else np.c_[np.zeros(len(p_ref)), p_ref]
    confident = (top2[:, 1] - top2[:, 0]) >= CONFIDENT_MARGIN
    h_ref, h_var = float(_entropy(lp_ref).mean()), float(_entropy(lp_var).mean())
    kl = (p_ref * (lp_ref - lp_var)).sum(axis=1)
    agreement = 100.0 * float(same.mean())
    return Fidelity(
        rows=int(len(same)), action_agreement_pct=agreement, action_drift_pct=100.0 - agreement,
        confident_rows=int(confident.sum()),
        confident_agreement_pct=100.0 * float(same[confident].mean()) if confident.any() else None,
        action_correlation=_correlation(p_ref, p_var),
        entropy_mean_fp32=h_ref, entropy_mean_variant=h_var,
        entropy_drift_pct=100.0 * abs(h_var - h_ref) / h_ref if h_ref > 0 else None,
        kl_mean=float(kl.mean()), kl_p99=float(np.percentile(kl, 99)),
        value_max_abs_err=_value_err(ref.value, var.value))


def _value_err(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def gates(fid: Fidelity, tol: Tolerances) -> list[Gate]:
    """One gate per configured tolerance; a missing metric is NO-DATA (fails closed)."""
    out = [check("action_drift_pct", fid.action_drift_pct, "<=", tol.action_drift_pct),
           check("entropy_drift_pct", _finite(fid.entropy_drift_pct), "<=", tol.entropy_drift_pct),
           check("action_correlation", _finite(fid.action_correlation), ">=", tol.action_correlation)]
    if tol.kl_p99 is not None:
        out.append(check("kl_p99", _finite(fid.kl_p99), "<=", tol.kl_p99))
    if tol.value_max_abs_err is not None:
        out.append(check("value_max_abs_err", _finite(fid.value_max_abs_err), "<=", tol.value_max_abs_err,
                         detail="" if fid.value_max_abs_err is not None else "the policy has no value head"))
    return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def run_policy(path: Path | str, obs: np.ndarray, logits: str, value: str | None, *, provider: str = "cpu",
               chunk: int = 1024, session_config: dict[str, str] | None = None, backend: str | None = None,
               options: Any = None) -> PolicyOutputs:
    """The policy's logits (and value) on ``obs``, in chunks, on any backend.

    Without ``options`` an onnxruntime session does not spin: several sessions
    alternate in one process here, and spinning threads would slow each other.
    """
    from costeff.runtimes import RuntimeOptions, open_runner

    if options is None:
        options = RuntimeOptions(provider=provider, spinning=False,
                                 session_config=tuple((session_config or {}).items()))
    return policy_outputs(open_runner(path, backend, options), obs, logits, value, chunk)


def policy_outputs(runner: Any, obs: np.ndarray, logits: str, value: str | None, chunk: int) -> PolicyOutputs:
    """``runner`` (a ``costeff.runtimes`` runner) on ``obs``, ``chunk`` rows per call: the chunk bounds the
    memory a runtime's arena keeps for the largest batch it has seen."""
    wanted = [logits] + ([value] if value else [])
    parts: list[list[np.ndarray]] = [[] for _ in wanted]
    for start in range(0, len(obs), chunk):
        for i, out in enumerate(runner.run(obs[start:start + chunk], wanted)):
            parts[i].append(np.asarray(out, dtype=np.float32))
    arrays = [np.concatenate(p) for p in parts]
    return PolicyOutputs(arrays[0].reshape(len(obs), -1), arrays[1] if value else None)


def open_session(path: Path | str, provider: str = "cpu", session_config: dict[str, str] | None = None) -> Any:
    """A non-spinning onnxruntime session (several sessions alternate in one process) plus extra config."""
    from costeff.runtimes import RuntimeOptions
    from costeff.runtimes.ort import open_session as ort_session

    return ort_session(path, RuntimeOptions(provider=provider, spinning=False,
                                            session_config=tuple((session_config or {}).items())))
