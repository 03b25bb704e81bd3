"""Function-preserving widening of a trained policy (Net2WiderNet, Chen et al. 2016).

Training a 6 M-parameter MLP from scratch to a sharp decision boundary takes
minutes on two shared CPU cores; a network ``factor`` times narrower learns the
same strategy in seconds. Widening then copies each hidden unit ``factor`` times
and splits its outgoing weights between the copies, so the wide network computes
the narrow one's function at the full width's serving cost.

The copies are made distinct on purpose, so the wide weight matrices are not
block repetitions: outgoing weights are split with random positive shares
(Dirichlet) instead of equally, and the copies' incoming weights get a small
independent perturbation. The result is evaluated as the wide network, never
assumed equal to the narrow one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NOISE = 0.02  # incoming-weight perturbation, relative to the layer's weight std


def widen(narrow: Any, wide: Any, seed: int = 0) -> Any:
    """Load ``wide`` (same depth, hidden widths a multiple of ``narrow``'s) with the widened weights."""
    import torch

    rng = np.random.default_rng(seed)
    src = [m for m in narrow.trunk if isinstance(m, torch.nn.Linear)]
    dst = [m for m in wide.trunk if isinstance(m, torch.nn.Linear)]
    if len(src) != len(dst):
        raise ValueError(f"cannot widen: {len(src)} narrow layers vs {len(dst)} wide layers")
    mapping: np.ndarray | None = None  # wide input unit -> narrow unit, None for the observation input
    shares: np.ndarray | None = None
    with torch.no_grad():
        for a, b in zip(src, dst, strict=True):
            w_in = _take_inputs(a.weight.numpy(), mapping, shares)
            mapping = _replicas(a.out_features, b.out_features, rng)
            shares = _shares(mapping, a.out_features, rng)
            scale = NOISE * float(w_in.std())
            b.weight.copy_(torch.from_numpy(w_in[mapping] + scale * rng.standard_normal((len(mapping), w_in.shape[1]))))
            b.bias.copy_(torch.from_numpy(a.bias.numpy()[mapping]))
        for head in ("policy_head", "value_head"):
            h_src, h_dst = getattr(narrow, head), getattr(wide, head)
            h_dst.weight.copy_(torch.from_numpy(_take_inputs(h_src.weight.numpy(), mapping, shares)))
            h_dst.bias.copy_(h_src.bias)
    return wide


def _replicas(narrow_units: int, wide_units: int, rng: np.random.Generator) -> np.ndarray:
    if wide_units % narrow_units:
        raise ValueError(f"cannot widen {narrow_units} units to {wide_units}: not a multiple")
    # Each narrow unit appears wide/narrow times, in shuffled positions.
    return rng.permutation(np.tile(np.arange(narrow_units), wide_units // narrow_units))


def _shares(mapping: np.ndarray, narrow_units: int, rng: np.random.Generator) -> np.ndarray:
    copies = len(mapping) // narrow_units
    draws = rng.dirichlet(np.full(copies, 4.0), size=narrow_units)  # [narrow, copies], rows sum to 1
    order = np.argsort(mapping, kind="stable")
    shares = np.empty(len(mapping))
    shares[order] = draws.reshape(-1)  # the k-th copy of unit u (in position order) gets draws[u, k]
    return shares


def _take_inputs(weight: np.ndarray, mapping: np.ndarray | None, shares: np.ndarray | None) -> np.ndarray:
    """Columns of a narrow layer's weight re-indexed for widened inputs, scaled by each copy's share."""
    if mapping is None or shares is None:  # set together, after the first layer
        return weight.astype(np.float32)
    return (weight[:, mapping] * shares[None, :]).astype(np.float32)
