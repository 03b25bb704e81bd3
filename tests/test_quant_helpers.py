"""Tiny policies for the quantization tests, built and trained in well under a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WINDOW, FEATURES = 8, 4


def observations(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, WINDOW, FEATURES)).astype(np.float32)


def _rule(obs: np.ndarray) -> np.ndarray:
    """short / flat / long from the trend of the last feature: a decision with clear margins."""
    s = obs[:, :, -1].sum(axis=1)
    return np.where(s < -1.0, 0, np.where(s > 1.0, 2, 1))


def build_policy(path: Path, hidden: int = 32, steps: int = 150, seed: int = 0) -> Path:
    """A small actor-critic MLP trained on ``_rule`` so its decisions are confident; ONNX at ``path``."""
    import torch

    torch.manual_seed(seed)
    net = _ActorCritic(hidden)
    obs = torch.from_numpy(observations(2048, seed + 1))
    target = torch.from_numpy(_rule(obs.numpy()))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        logits, value = net(obs)
        loss = torch.nn.functional.cross_entropy(logits, target) + (value.squeeze(1) - obs[:, :, -1].sum(1)).pow(2).mean() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    torch.onnx.export(net, (obs[:2],), str(path), input_names=["obs"], output_names=["logits", "value"],
                      dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}, "value": {0: "batch"}},
                      dynamo=False, opset_version=17)
    return path


def _actor_critic_cls():
    import torch

    class ActorCritic(torch.nn.Module):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(WINDOW * FEATURES, hidden),
                                            torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU())
            self.actor = torch.nn.Linear(hidden, 3)
            self.critic = torch.nn.Linear(hidden, 1)

        def forward(self, obs):
            h = self.body(obs)
            return self.actor(h), self.critic(h)

    return ActorCritic


def _ActorCritic(hidden: int):
    return _actor_critic_cls()(hidden)
