"""Triton's ``onnxruntime`` backend as a Python-based backend, for hosts without the C++ one.

Triton runs this file through its python backend for every model whose config says
``backend: "onnxruntime"``; the config is used unchanged. Like the C++ backend, each model
instance creates its own session from ``<version>/model.onnx`` (or ``default_model_filename``),
reads the thread parameters ``intra_op_thread_count``, ``inter_op_thread_count`` and
``execution_mode`` (refusing values the C++ backend cannot parse), and runs every request of a
dynamic batch in one session call: the rows of all requests are concatenated and the outputs
split back, so a batch of B one-row requests costs one B-row inference, as in the server.
A KIND_GPU instance runs onnxruntime's CUDA execution provider on its device.
"""

import json
import os

import costeff_batched
import triton_python_backend_utils as pb_utils

_INT_PARAMETERS = ("intra_op_thread_count", "inter_op_thread_count", "execution_mode")


def _parameters(config):
    return {key: str(value.get("string_value", "")) for key, value in (config.get("parameters") or {}).items()}


def _int_parameter(params, key):
    text = params[key].strip()
    try:
        return int(text)
    except ValueError:
        raise pb_utils.TritonModelException(
            f"failed to convert '{key}' value '{params[key]}' to an integer") from None


def _session_options(ort, params):
    options = ort.SessionOptions()
    values = {key: _int_parameter(params, key) for key in _INT_PARAMETERS if key in params}
    if values.get("intra_op_thread_count", 0) > 0:
        options.intra_op_num_threads = values["intra_op_thread_count"]
    if values.get("inter_op_thread_count", 0) > 0:
        options.inter_op_num_threads = values["inter_op_thread_count"]
    mode = values.get("execution_mode", 0)
    if mode not in (0, 1):
        raise pb_utils.TritonModelException(
            f"execution_mode {mode}: expected 0 (sequential) or 1 (parallel)")
    options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if mode == 1
                              else ort.ExecutionMode.ORT_SEQUENTIAL)
    return options


def _providers(ort, args):
    if args.get("model_instance_kind") == "GPU":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise pb_utils.TritonModelException(
                "KIND_GPU instance, but this onnxruntime has no CUDAExecutionProvider")
        return [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id") or 0)})]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, config.get("default_model_filename") or "model.onnx")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"unable to find '{path}' for model '{config['name']}'")
        params = _parameters(config)
        self.session = ort.InferenceSession(path, _session_options(ort, params), providers=_providers(ort, args))
        self.inputs = [i["name"] for i in config.get("input", [])] or [i.name for i in self.session.get_inputs()]
        self.outputs = [o["name"] for o in config.get("output", [])] or [o.name for o in self.session.get_outputs()]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        return costeff_batched.execute(requests, self.inputs, self.outputs,
                                       lambda feeds: self.session.run(self.outputs, feeds), "onnxruntime",
                                       self.batched)

    def finalize(self):
        self.session = None
