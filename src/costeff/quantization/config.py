"""What ``quantize`` is asked to do: a frozen config validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from costeff.errors import InputError
from costeff.quantization.build import CALIBRATION_METHODS
from costeff.quantization.fidelity import Tolerances

ORT_VARIANTS = ("fp16", "int8-dynamic", "int8-static")
OV_VARIANTS = ("ov-fp32", "ov-bf16", "ov-int8", "ov-int8-ac", "ov-int8-ac-bf16", "ov-w8", "ov-w8-bf16")
STRUCTURAL = ("prune", "lowrank")  # fewer units / lower rank, fp32 (see quantization.structural)
# Precision variants built on a structural one; any "<structural>+<precision variant>" can be asked for.
STACKED = ("prune+int8-dynamic", "prune+ov-int8")
VARIANTS = ORT_VARIANTS + OV_VARIANTS + STRUCTURAL + STACKED
# Tried only when asked for (--variants): on the default policy lowrank passed at 0.8-1.3x fp32 (within
# the noise) after a ~29 s search, while prune recovers the same redundancy at 29-82x.
ON_REQUEST = {"lowrank": "tried only when asked for (--variants lowrank): its search is slow and prune removes "
                         "the same redundancy faster"}
BACKENDS = ("onnxruntime", "openvino")
PROVIDERS = ("cpu", "cuda", "tensorrt", "auto")


def known_variant(name: str) -> bool:
    """A variant name, or ``<fp32 | variant>@<runtime settings>`` (see quantization.settings)."""
    from costeff.quantization.settings import split

    name, settings = split(name)
    if settings is not None:
        return name == "fp32" or ("@" not in name and known_variant(name))
    kind, _, lower = name.partition("+")
    return name in VARIANTS or (kind in STRUCTURAL and lower in ORT_VARIANTS + OV_VARIANTS)


@dataclass(frozen=True)
class QuantizeConfig:
    variants: tuple[str, ...] | None = None  # None: every variant this host and these backends can try
    backends: tuple[str, ...] = BACKENDS
    calibration_method: str = "MinMax"
    tolerances: Tolerances = field(default_factory=Tolerances)
    batch_sizes: tuple[int, ...] = (1, 16, 64, 256)
    target_rate: float | None = None
    provider: str = "cpu"
    trials: int = 4  # fallback retries per failing variant family (fp16 -> mixed, int8 -> int8-mixed)
    fallback: bool = True
    calibration_fraction: float = 0.3
    min_calibration: int = 64
    min_evaluation: int = 256
    seed: int = 0
    window_s: float = 1.0  # per profiled point
    speed_rounds: int = 2  # interleaved passes; medians reported
    finalists: int | None = 3  # rounds after the first time fp32 and the best few by capacity and by
    # answer time only (None: every variant every round, as benchmarks do)
    latency_budget_ms: float | None = None
    name: str | None = None  # model name in <name>_<variant>.onnx (default: the file's stem)
    outputs: tuple[tuple[str, str], ...] = ()  # (role, output name), e.g. (("logits", "pi"),)
    op_block_list: tuple[str, ...] = ()  # extra op types kept fp32 in fp16 variants
    min_speedup: float = 1.05  # a variant replaces fp32 only when at least this much faster
    gaps_s: tuple[float, ...] = (0.0, 0.01)  # single-call latency after these idle gaps
    open_loop_s: float = 1.5  # longest open-loop replay per variant and round (fewer rows at low rates)
    max_utilisation: float = 0.8  # instances are planned at this share of measured capacity
    speed_of_failing: bool = False  # also time variants that failed a gate (benchmarks)
    # Time alternative runtime settings: fp32's as variants in the rounds (fp32@threads=1, fp32@nospin; see
    # quantization.settings), and, with a target rate, the selected lowered variant's after selection.
    tune_knobs: bool = True
    # Held-out rows also run alone (batch 1): fidelity there and batch invariance. On the default policy a
    # variant at a third of the entropy tolerance failed by sample noise alone in 15 % of seeded draws of 256
    # rows, 0.5 % of draws of 1024; 1024 single calls cost about 0.5 s per variant (0.5 ms each, fp32).
    probe_rows: int = 1024

    def __post_init__(self) -> None:
        if self.variants is not None:
            bad = [v for v in self.variants if not known_variant(v)]
            if bad or not self.variants:
                raise InputError(f"variants: {bad or 'none'}; allowed: {', '.join(VARIANTS)}, or "
                                 "<prune|lowrank>+<precision variant>, or <fp32|variant>@<runtime settings>")
            self._check_settings()
        bad_backends = [b for b in self.backends if b not in BACKENDS]
        if bad_backends or not self.backends:
            raise InputError(f"backends: {bad_backends or 'none'}; allowed: {', '.join(BACKENDS)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise InputError(f"calibration_method: {self.calibration_method!r}; allowed: "
                             f"{', '.join(CALIBRATION_METHODS)}")
        if not self.batch_sizes or any(not isinstance(b, int) or b <= 0 for b in self.batch_sizes):
            raise InputError(f"batch_sizes: {list(self.batch_sizes)}; expected positive integers")
        if self.provider not in PROVIDERS:
            raise InputError(f"provider: {self.provider!r}; allowed: {', '.join(PROVIDERS)}")
        self._check_numbers()

    def _check_settings(self) -> None:
        from costeff.quantization.settings import backend_of, parse, split

        for name in self.variants or ():
            base, text = split(name)
            if text is not None:
                parse(text, backend_of(base), name)

    def _check_numbers(self) -> None:
        checks = {"trials": self.trials >= 0, "speed_rounds": self.speed_rounds >= 1,
                  "window_s": self.window_s > 0, "calibration_fraction": 0 < self.calibration_fraction < 1,
                  "min_calibration": self.min_calibration >= 1, "min_evaluation": self.min_evaluation >= 1,
                  "probe_rows": isinstance(self.probe_rows, int) and self.probe_rows >= 1,
                  "target_rate": self.target_rate is None or self.target_rate > 0,
                  "latency_budget_ms": self.latency_budget_ms is None or self.latency_budget_ms > 0,
                  "min_speedup": self.min_speedup >= 1.0, "open_loop_s": self.open_loop_s > 0,
                  "max_utilisation": 0 < self.max_utilisation <= 1,
                  "gaps_s": all(0 <= g <= 60 for g in self.gaps_s)}
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"{name}: {getattr(self, name)!r} is out of range")
