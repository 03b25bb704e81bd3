"""``ProfileConfig``: what to sweep and how to measure, validated on construction."""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any

from costeff.errors import InputError
from costeff.profiling.measure import MeasureConfig

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RULES = MeasureConfig()  # one source for the measurement defaults (perf_analyzer-like rules)


@dataclass(frozen=True)
class ProfileConfig:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    latency_budget_ms: float | None = None  # p99 per request; None = best throughput wins
    target_rate: float | None = None  # requests/s the fleet must serve (cost planning)
    provider: str = "auto"
    warmup_s: float = _RULES.warmup_s
    window_s: float = _RULES.window_s
    stability_pct: float = _RULES.stability_pct
    stable_windows: int = _RULES.stable_windows
    max_trials: int = _RULES.max_trials
    min_requests: int = _RULES.min_requests
    concurrency: tuple[int, ...] = (1,)
    intra_op_threads: int | None = None  # None = the CPUs this process may use (affinity and cgroup quota)
    spinning: bool = True  # onnxruntime: idle intra-op threads busy-wait
    ov_precision: str = "f32"  # OpenVINO IR: INFERENCE_PRECISION_HINT (f32 | bf16)
    ov_hint: str = "LATENCY"  # OpenVINO IR: PERFORMANCE_HINT (LATENCY | THROUGHPUT)
    ov_streams: int | None = None  # OpenVINO IR: NUM_STREAMS (None: what the hint picks)
    gaps_s: tuple[float, ...] = ()  # also time single batch-1 calls after each of these idle gaps
    sample_interval_s: float = _RULES.sample_interval_s
    catalog: Path | None = None
    instance: str | None = None
    compare: tuple[Path, ...] = ()
    max_utilisation: float = 0.8
    warmup: InitVar[float | None] = None  # alias of warmup_s

    def __post_init__(self, warmup: float | None) -> None:
        if warmup is not None:
            object.__setattr__(self, "warmup_s", warmup)
        object.__setattr__(self, "batch_sizes", _int_tuple("batch_sizes", self.batch_sizes))
        object.__setattr__(self, "concurrency", _int_tuple("concurrency", self.concurrency))
        object.__setattr__(self, "compare", tuple(Path(p) for p in self.compare))
        if self.provider not in PROVIDERS:
            raise InputError(f"provider: unknown provider {self.provider!r}; expected one of {', '.join(PROVIDERS)}")
        for name in ("latency_budget_ms", "target_rate"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise InputError(f"{name}: {value!r} must be a number > 0")
        if not 0 < self.max_utilisation <= 1:
            raise InputError(f"max_utilisation: {self.max_utilisation!r} must be in (0, 1]")
        if self.intra_op_threads is not None and self.intra_op_threads <= 0:
            raise InputError(f"intra_op_threads: {self.intra_op_threads!r} must be a positive integer")
        self.measure_config(self.concurrency[0])  # validates the measurement fields
        self.runtime_options()  # validates the runtime knobs

    def runtime_options(self) -> Any:
        from costeff.runtimes import RuntimeOptions

        return RuntimeOptions(threads=self.intra_op_threads, spinning=self.spinning, provider=self.provider,
                              precision=self.ov_precision, performance_hint=self.ov_hint, streams=self.ov_streams)

    def measure_config(self, concurrency: int, request_rate: float | None = None) -> MeasureConfig:
        return MeasureConfig(warmup_s=self.warmup_s, window_s=self.window_s, stability_pct=self.stability_pct,
                             stable_windows=self.stable_windows, max_trials=self.max_trials,
                             min_requests=self.min_requests, concurrency=concurrency,
                             request_rate=request_rate, sample_interval_s=self.sample_interval_s)


def _int_tuple(name: str, value: object) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) else tuple(value)  # type: ignore[arg-type]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
        raise InputError(f"{name}: {list(values)!r} must list positive integers, e.g. 1,8,64")
    return tuple(sorted(set(values)))
