"""Shared by costeff's Python-based Triton backends: one inference for every request of a dynamic batch.

Copied beside each backend's ``model.py`` when a server starts (Triton's python backend puts the
backend's folder on ``sys.path``). Like the C++ backends, the rows of all requests are concatenated
into one batch, run once, and the outputs are split back by each request's row count; a failed run
fails every request of the batch with the runtime's message.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


def execute(requests, inputs, outputs, run, runtime, batched=True):
    """Responses for ``requests``; ``run(feeds) -> [array per output name]``."""
    if not batched:
        return [execute([r], inputs, outputs, run, runtime)[0] for r in requests]
    feeds, sizes = {}, []
    for name in inputs:
        arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        feeds[name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    try:
        results = run(feeds)
    except Exception as exc:  # noqa: BLE001 - the runtime's own message goes back to every client
        error = pb_utils.TritonError(f"{runtime}: {exc}")
        return [pb_utils.InferenceResponse(error=error) for _ in requests]
    bounds = np.cumsum([0] + sizes)
    return [pb_utils.InferenceResponse([pb_utils.Tensor(name, np.ascontiguousarray(out[a:b]))
                                        for name, out in zip(outputs, results, strict=True)])
            for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
