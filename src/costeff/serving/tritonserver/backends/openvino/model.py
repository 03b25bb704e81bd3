"""Triton's ``openvino`` backend as a Python-based backend, for hosts without the C++ one.

Triton runs this file through its python backend for every model whose config says
``backend: "openvino"``; the config is used unchanged. Like the C++ backend it serves an IR
(``<version>/model.xml`` + ``model.bin``, or ``default_model_filename``) on the CPU device,
accepts exactly the C++ backend's parameter keys and refuses unknown keys and malformed values
at load time, compiles the model once per instance with ``PERFORMANCE_HINT``, ``NUM_STREAMS``,
``INFERENCE_NUM_THREADS`` and ``HINT_BF16``, and runs every request of a dynamic batch in one
inference (rows concatenated, outputs split back).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

KNOWN = {"PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS",
         "SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS", "TARGET_DEVICE",
         "CPU_EXTENSION_PATH"}
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def _fail(key, value, expected):
    raise pb_utils.TritonModelException(f"parameter {key}: '{value}' is not valid; expected {expected}")


def _compile_config(params):
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise pb_utils.TritonModelException(f"unknown parameter(s) {', '.join(unknown)} for the openvino backend")
    config = {}
    hint = params.get("PERFORMANCE_HINT")
    if hint is not None:
        if hint.upper() not in HINTS:
            _fail("PERFORMANCE_HINT", hint, " or ".join(HINTS))
        config["PERFORMANCE_HINT"] = hint.upper()
    streams = params.get("NUM_STREAMS")
    if streams is not None:
        if not (streams.upper() in ("AUTO", "NUMA") or streams.isdigit()):
            _fail("NUM_STREAMS", streams, "AUTO, NUMA or a number")
        config["NUM_STREAMS"] = streams.upper() if not streams.isdigit() else int(streams)
    for key in ("INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS"):
        if key in params:
            if not params[key].isdigit():
                _fail(key, params[key], "a non-negative number")
            config[key] = int(params[key])
    if "HINT_BF16" in params:
        if params["HINT_BF16"].upper() != "YES":
            _fail("HINT_BF16", params["HINT_BF16"], "YES")
        config["INFERENCE_PRECISION_HINT"] = "bf16"
    return config


class TritonPythonModel:
    def initialize(self, args):
        import openvino as ov

        config = json.loads(args["model_config"])
        if args.get("model_instance_kind") == "GPU":
            raise pb_utils.TritonModelException("the openvino backend serves KIND_CPU instances only")
        params = {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}
        settings = _compile_config(params)
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, config.get("default_model_filename") or "model.xml")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"unable to find '{path}' for model '{config['name']}'")
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), params.get("TARGET_DEVICE", "CPU"), settings)
        self.request = self.compiled.create_infer_request()
        self.inputs = [i["name"] for i in config.get("input", [])]
        self.outputs = [o["name"] for o in config.get("output", [])]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        if not self.batched:
            return [self._run([r])[0] for r in requests]
        return self._run(requests)

    def _run(self, requests):
        feeds, sizes = {}, []
        for name in self.inputs:
            arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            sizes = [len(a) for a in arrays]
            feeds[name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        try:
            results = self.request.infer(feeds)
            outs = [np.asarray(results[self.compiled.output(name)]) for name in self.outputs]
        except Exception as exc:
            error = pb_utils.TritonError(f"openvino: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        bounds = np.cumsum([0] + sizes)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(name, np.ascontiguousarray(out[a:b]))
                                            for name, out in zip(self.outputs, outs, strict=True)])
                for a, b in zip(bounds[:-1], bounds[1:], strict=False)]

    def finalize(self):
        self.request = self.compiled = None
