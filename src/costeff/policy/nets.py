"""The trading actor-critic network and its presets.

The network flattens the observation window ``[batch, window, features]`` and runs
it through a wide MLP trunk; an action head gives 3 logits (short, flat, long)
and a value head one state value. Wide dense layers are where serving cost goes
on a CPU, which is what makes precision and batching matter for the ``default``
preset (int8 weights are 4x smaller, large batches reach GEMM throughput).

Presets are data: add a row to ``PRESETS`` to add a size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from costeff.errors import InputError

ACTIONS = ("short", "flat", "long")


@dataclass(frozen=True)
class PresetSpec:
    name: str
    window: int
    features: int
    hidden: tuple[int, ...]
    purpose: str

    @property
    def observation_shape(self) -> tuple[int, int]:
        return (self.window, self.features)

    @property
    def n_params(self) -> int:
        """Parameter count, computed from the shapes without building the network."""
        widths = (self.window * self.features, *self.hidden)
        trunk = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        return trunk + (widths[-1] * len(ACTIONS) + len(ACTIONS)) + (widths[-1] + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, PresetSpec] = {spec.name: spec for spec in (
    PresetSpec("tiny", window=8, features=8, hidden=(64, 64),
               purpose="tests: builds and trains in about a second"),
    PresetSpec("default", window=32, features=16, hidden=(2048, 2048, 512),
               purpose="the embedded default: ~7 M parameters, precision and batching matter on a CPU"),
    PresetSpec("large", window=32, features=16, hidden=(8192, 8192, 6144, 512),
               purpose="~125 M parameters (~500 MB fp32), the size of a production policy; for GPU runs"),
)}


def preset_spec(name: str) -> PresetSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"preset: unknown policy preset {name!r}; expected one of {', '.join(PRESETS)}") from None


def build_policy(preset: str | PresetSpec = "default", seed: int = 0) -> Any:
    """A freshly initialised ``TradingPolicy`` torch module for ``preset``."""
    import torch

    spec = preset if isinstance(preset, PresetSpec) else preset_spec(preset)
    torch.manual_seed(seed)
    return _policy_class()(spec)


def _policy_class() -> type:
    # Defined lazily so importing this module never imports torch.
    global _TradingPolicy
    if _TradingPolicy is None:
        _TradingPolicy = _define_policy()
    return _TradingPolicy


_TradingPolicy: type | None = None


def _define_policy() -> type:
    import torch
    from torch import nn

    class TradingPolicy(nn.Module):
        """obs ``[B, window, features]`` -> (logits ``[B, 3]``, value ``[B, 1]``)."""

        def __init__(self, spec: PresetSpec) -> None:
            super().__init__()
            self.spec = spec
            self.observation_shape = spec.observation_shape
            widths = (spec.window * spec.features, *spec.hidden)
            layers: list[nn.Module] = []
            for a, b in zip(widths, widths[1:], strict=False):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.trunk = nn.Sequential(*layers)
            self.policy_head = nn.Linear(widths[-1], len(ACTIONS))
            self.value_head = nn.Linear(widths[-1], 1)

        def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.trunk(obs.flatten(1))
            return self.policy_head(h), self.value_head(h)

    return TradingPolicy
