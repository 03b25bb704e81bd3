"""onnxruntime behind the :class:`costeff.runtimes.Runner` interface."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff.runtimes import RuntimeOptions


class OnnxRuntimeRunner:
    backend = "onnxruntime"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        self.session = open_session(path, options)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.provider = self.session.get_providers()[0]

    def run(self, rows: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(outputs, {self.input_name: rows})

    def bind(self, rows: np.ndarray) -> Callable[[], Any]:
        # A C-level call: no Python frame per request between the timer reads.
        return functools.partial(self.session.run, None, {self.input_name: np.ascontiguousarray(rows)})


def open_session(path: Path | str, options: RuntimeOptions = RuntimeOptions()) -> Any:
    """An onnxruntime session with ``options``; errors as :func:`costeff.modelio.create_session`."""
    from costeff.modelio import create_session

    return create_session(path, options.provider, intra_op_threads=options.resolved_threads(),
                          spinning=options.spinning, session_config=dict(options.session_config),
                          trt_fp16=options.trt_fp16)
