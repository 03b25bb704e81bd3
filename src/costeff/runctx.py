"""What the stages of ``costeff run`` share: the run's configuration and its context.

``pipeline`` runs the stages and ``stages`` implements them; both import this module
and neither imports the other at module level, so there is no import cycle between them
(docs/architecture.md#stages-of-costeff-run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable

from costeff.artifacts import Workspace
from costeff.errors import InputError

MIN_ROWS = 512
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # a Triton model directory name


@dataclass(frozen=True)
class RunConfig:
    model: Path | None = None
    observations: Path | None = None
    preset: str = "default"
    rows: int = 4096  # generated observations for the embedded policy
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    window_s: float = 0.3
    latency_budget_ms: float = 50.0
    target_rate: float = 500.0
    provider: str = "auto"
    model_name: str = "policy"  # the model's name in the Triton repository
    sample_as_of: date | None = None  # ramp decision date for the sample economics (default: today UTC)
    verify: bool = True  # serve the result on the real Triton and measure it at the target rate
    triton_env: Path | None = None  # that server's environment (default: the cached one, made on first use)

    def __post_init__(self) -> None:
        if (self.model is None) != (self.observations is None):
            raise InputError("--model and --observations go together: a user policy needs its observations")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < MIN_ROWS:
            raise InputError(f"--rows: {self.rows!r}; need at least {MIN_ROWS} generated observations")
        for name in ("window_s", "latency_budget_ms", "target_rate"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')}: {getattr(self, name)} must be > 0")
        if not isinstance(self.model_name, str) or not _MODEL_NAME.match(self.model_name) \
                or ".." in self.model_name:
            raise InputError(f"--model-name: {self.model_name!r} is not a usable Triton model name; expected "
                             "letters, digits, '_', '-' or '.', starting with a letter, digit or '_'")
        if self.sample_as_of is not None and not isinstance(self.sample_as_of, date):
            raise InputError(f"--sample-as-of: {self.sample_as_of!r} is not a date; expected YYYY-MM-DD")


class Skip(Exception):
    """A stage cannot run because an earlier one it depends on failed."""


@dataclass
class RunContext:
    """The configuration, where artifacts go, and what earlier stages produced (``values``)."""

    config: RunConfig
    layout: Workspace
    stamp: str
    values: dict[str, Any] = field(default_factory=dict)

    def need(self, *keys: str) -> list[Any]:
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise Skip(f"needs {', '.join(missing)} from an earlier stage")
        return [self.values[k] for k in keys]


Stage = Callable[[RunContext], tuple[str, list[str]]]
