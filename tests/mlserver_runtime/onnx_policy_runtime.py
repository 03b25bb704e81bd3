"""An MLServer runtime serving an ONNX policy with onnxruntime, for the remote-profiling tests.

Besides the model's outputs it returns ``executed_batch`` ([B, 1] int32, every row
holding B): the number of rows the model actually ran together. With adaptive
batching on, MLServer merges requests before ``predict`` and splits the outputs
after, so each client learns the size of the batch its request was part of.

``predict`` runs onnxruntime synchronously on the event loop on purpose: one batch
at a time, like one Triton model instance, which is what the simulator models.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxPolicy(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # the client shares this 2-core machine
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(self.settings.parameters.uri, opts,
                                             providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {inp.name: NumpyCodec.decode_input(inp) for inp in payload.inputs}
        names = [o.name for o in self._session.get_outputs()]
        results = self._session.run(names, feeds)
        batch = next(iter(feeds.values())).shape[0]
        outputs = [NumpyCodec.encode_output(n, r) for n, r in zip(names, results, strict=True)]
        outputs.append(NumpyCodec.encode_output("executed_batch", np.full((batch, 1), batch, dtype=np.int32)))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

