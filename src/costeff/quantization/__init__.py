"""Precision lowering under policy-fidelity gates: fp16, int8 (dynamic / static QDQ), mixed fallbacks."""

from costeff.quantization.config import VARIANTS, QuantizeConfig
from costeff.quantization.fidelity import Fidelity, PolicyOutputs, Tolerances, compare, gates
from costeff.quantization.records import QuantizationReport, VariantResult

__all__ = ["quantize", "QuantizeConfig", "QuantizationReport", "VariantResult", "Tolerances", "Fidelity",
           "PolicyOutputs", "compare", "gates", "VARIANTS"]


def quantize(*args, **kwargs) -> QuantizationReport:  # noqa: D103 - see engine.quantize
    from costeff.quantization.engine import quantize as _quantize

    return _quantize(*args, **kwargs)


quantize.__doc__ = "Lower a policy to each configured precision; keep only what decides like fp32."
