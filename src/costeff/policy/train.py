"""Behaviour cloning of the rule strategy (``strategy.decide``) onto a ``TradingPolicy``.

Presets with ``widen_factor > 1`` train a network that many times narrower and
widen it function-preservingly (``costeff.policy.widen``); on a CUDA device the
wide network is then fine-tuned on ``finetune_rows`` fresh rows. Every reported
number is measured on the final, wide network.

The action head learns the strategy's action by cross-entropy; the value head
learns the strategy's expected edge, ``position × tanh(score)``, by squared error,
so both outputs carry signal that a lower precision can distort.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator

import numpy as np

from costeff.errors import InputError
from costeff.policy import strategy
from costeff.policy.market import generate_observations
from costeff.policy.nets import PresetSpec, build_policy

log = logging.getLogger("costeff.policy")
CONFIDENT_MARGIN = 0.1
VALUE_WEIGHT = 0.25


@dataclass(frozen=True)
class TrainConfig:
    rows: int
    epochs: int
    batch_size: int
    lr: float
    heldout_rows: int = 4000
    widen_factor: int = 1  # train hidden widths / factor, then widen (see module docstring)
    finetune_rows: int = 0  # wide fine-tune rows, used only on a CUDA device
    max_seconds: float | None = None  # stop early on a slow machine; the record says so

    def __post_init__(self) -> None:
        for name in ("rows", "epochs", "batch_size", "heldout_rows", "widen_factor"):
            if getattr(self, name) <= 0:
                raise InputError(f"train config: {name}={getattr(self, name)!r} must be > 0")
        if not self.lr > 0:
            raise InputError(f"train config: lr={self.lr!r} must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# One row per preset, like PRESETS.
TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(rows=6000, epochs=6, batch_size=128, lr=3e-3, heldout_rows=2000),
    "default": TrainConfig(rows=60000, epochs=4, batch_size=256, lr=3e-3, widen_factor=8),
    "large": TrainConfig(rows=100000, epochs=3, batch_size=256, lr=3e-3, widen_factor=16,
                         finetune_rows=200000),
}


@dataclass(frozen=True)
class TrainResult:
    model: Any
    train_accuracy: float
    heldout_accuracy: float
    confident_share: float
    train_seconds: float
    epochs_run: int
    device: str
    class_share: tuple[float, float, float]


def fit(spec: PresetSpec, config: TrainConfig, seed: int = 0) -> TrainResult:
    """Generate rows, label them with the strategy, and clone it; evaluate on held-out rows."""
    import torch

    from costeff.runtimes.cpus import cap_torch_threads

    cap_torch_threads()  # evaluation and widening run on torch's own pool, sized to the host by default
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    obs = generate_observations(config.rows, seed=seed, preset=spec.name)
    teacher = strategy.decide(obs)
    narrow = replace(spec, hidden=tuple(h // config.widen_factor for h in spec.hidden))
    model = build_policy(narrow, seed=seed).to(device)
    with _cpu_threads(1 if device == "cpu" else None):
        epochs = _train(model, obs, teacher, config, device, started)
    if config.widen_factor > 1:
        model = _widen(model, spec, config, seed, device, started)
    heldout = generate_observations(config.heldout_rows, seed=seed + 1, preset=spec.name)
    train_acc = _accuracy(model, obs[: config.heldout_rows], teacher.actions[: config.heldout_rows], device)
    held_acc, confident = _evaluate(model, heldout, device)
    model = model.to("cpu").eval()
    share = np.bincount(teacher.actions, minlength=3) / len(obs)
    return TrainResult(model, train_acc, held_acc, confident, time.perf_counter() - started, epochs,
                       device, (float(share[0]), float(share[1]), float(share[2])))


def _widen(narrow: Any, spec: PresetSpec, config: TrainConfig, seed: int, device: str, started: float) -> Any:
    from costeff.policy.widen import widen

    wide = widen(narrow.to("cpu").eval(), build_policy(spec, seed=seed), seed=seed).to(device)
    log.info("widened %s -> %s hidden units (%.1f s)", narrow.spec.hidden, spec.hidden, time.perf_counter() - started)
    if device == "cuda" and config.finetune_rows:
        rows = generate_observations(config.finetune_rows, seed=seed + 3, preset=spec.name)
        tune = replace(config, rows=config.finetune_rows, epochs=1, lr=config.lr / 10, batch_size=1024)
        _train(wide, rows, strategy.decide(rows), tune, device, started)
    return wide


@contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    # Small GEMMs gain nothing from a second thread, and on a shared machine two
    # spinning threads can be several times slower than one.
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(model: Any, obs: np.ndarray, teacher: strategy.Decision, config: TrainConfig,
           device: str, started: float) -> int:
    import torch

    x = torch.from_numpy(obs).to(device)
    y = torch.from_numpy(teacher.actions).to(device)
    position = teacher.actions.astype(np.float32) - 1.0
    v = torch.from_numpy((position * np.tanh(teacher.score)).astype(np.float32)).to(device)[:, None]
    steps_per_epoch = -(-len(obs) // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    # One cycle: a warm start, then the rate decays to ~0, which sharpens the decision boundary.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps_per_epoch * config.epochs,
                                                pct_start=0.15)
    gen = torch.Generator(device="cpu").manual_seed(0)
    model.train()
    for epoch in range(1, config.epochs + 1):
        loss = _epoch(model, opt, sched, x, y, v, config.batch_size, gen)
        log.info("train epoch %d/%d: loss %.4f (%.1f s)", epoch, config.epochs, loss, time.perf_counter() - started)
        if config.max_seconds and time.perf_counter() - started > config.max_seconds:
            log.warning("training stopped after %d epochs: over max_seconds=%s", epoch, config.max_seconds)
            return epoch
    return config.epochs


def _epoch(model: Any, opt: Any, sched: Any, x: Any, y: Any, v: Any, batch: int, gen: Any) -> float:
    import torch
    import torch.nn.functional as F

    order = torch.randperm(len(x), generator=gen).to(x.device)
    total = 0.0
    for start in range(0, len(x), batch):
        idx = order[start:start + batch]
        logits, value = model(x[idx])
        loss = F.cross_entropy(logits, y[idx]) + VALUE_WEIGHT * F.mse_loss(value, v[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)


def predict(model: Any, obs: np.ndarray, device: str = "cpu", batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Logits and values of a torch policy on ``obs``, in eval mode without gradients."""
    import torch

    model.eval()
    logits, values = [], []
    with torch.inference_mode():
        for start in range(0, len(obs), batch):
            lo, va = model(torch.from_numpy(obs[start:start + batch]).to(device))
            logits.append(lo.float().cpu().numpy())
            values.append(va.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(values)


def confident_share(logits: np.ndarray, threshold: float = CONFIDENT_MARGIN) -> float:
    """Share of rows whose top-1 action probability exceeds the runner-up by ``threshold``."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    return float(np.mean(top2[:, 1] - top2[:, 0] >= threshold))


def _accuracy(model: Any, obs: np.ndarray, actions: np.ndarray, device: str) -> float:
    logits, _ = predict(model, obs, device)
    return float(np.mean(logits.argmax(axis=1) == actions))


def _evaluate(model: Any, heldout: np.ndarray, device: str) -> tuple[float, float]:
    logits, _ = predict(model, heldout, device)
    accuracy = float(np.mean(logits.argmax(axis=1) == strategy.decide(heldout).actions))
    return accuracy, confident_share(logits)
