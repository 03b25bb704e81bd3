"""What the stages of ``costeff run`` share: the run's configuration and its context.

``pipeline`` runs the stages and ``stages`` implements them; both import this module
and neither imports the other at module level, so there is no import cycle between them
(docs/architecture.md#stages-of-costeff-run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
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
class Products:
    """What the stages hand each other, one typed field per product; None until a stage produces it."""

    model: Path | None = None  # the fp32 policy
    observations: Any = None  # np.ndarray of rows, validated against the policy's input
    policy: Any = None  # the embedded policy's artifact, when no model was given
    baseline_profile: Path | None = None  # the fp32 model's gpu_profile.json
    quant_report: Path | None = None
    selected_model: Path | None = None  # what is served: a variant, or the fp32 model
    selected_runtime: dict[str, Any] | None = None  # the selected variant's runtime settings
    selected_profile: Path | None = None  # the served model's profile
    # the quantize stage's full-round measurements (worker results) of fp32 and of the served variant: their
    # profiles are assembled from them, so every figure of the run comes from the rounds the selection used
    baseline_rounds: list[dict[str, Any]] | None = None
    selected_rounds: list[dict[str, Any]] | None = None
    batching_report: Path | None = None
    repository: Path | None = None  # the Triton model repository built
    model_name: str | None = None
    verify_report: Path | None = None
    reaper_report: Path | None = None
    ramp_decision: Path | None = None
    pack_path: Path | None = None
    summary_path: Path | None = None


PRODUCTS = frozenset(f.name for f in fields(Products))


@dataclass
class RunContext:
    """The configuration, where artifacts go, and what earlier stages produced (``products``)."""

    config: RunConfig
    layout: Workspace
    stamp: str
    products: Products = field(default_factory=Products)

    def need(self, *names: str) -> list[Any]:
        """The products ``names``; a stage that lacks one is skipped with the reason (an earlier stage failed)."""
        missing = [n for n in names if getattr(self.products, n) is None]
        if missing:
            raise Skip(f"needs {', '.join(missing)} from an earlier stage")
        return [getattr(self.products, n) for n in names]


StageFn = Callable[[RunContext], tuple[str, list[str]]]


@dataclass(frozen=True)
class Stage:
    """One stage of ``costeff run``: what it needs (``requires``: skipped without them), what it reads when
    there (``uses``) and what it may produce. ``check_graph`` holds every stage to these before a run starts,
    and the pipeline refuses a stage that writes a product it does not declare."""

    name: str
    run: StageFn
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()


def check_graph(stages: tuple[Stage, ...]) -> None:
    """Every product a stage requires or uses is one an earlier stage produces, and every name is a product.

    Raises RuntimeError naming the stage and the product: a wiring bug, found before anything is measured."""
    made: set[str] = set()
    for stage in stages:
        for name in (*stage.requires, *stage.uses, *stage.produces):
            if name not in PRODUCTS:
                raise RuntimeError(f"stage {stage.name}: {name!r} is not a run product; "
                                   f"expected one of {', '.join(sorted(PRODUCTS))}")
        for name in (*stage.requires, *stage.uses):
            if name not in made:
                raise RuntimeError(f"stage {stage.name} needs {name}, which no earlier stage produces")
        made.update(stage.produces)
