"""Open Inference Protocol (KServe v2) clients over ``tritonclient``: connect, read metadata, build calls.

HTTP inputs and requested outputs are sent as JSON (``binary_data=False``): the binary
tensor extension is Triton's, and other v2 servers (MLServer) reject it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from costeff.errors import DependencyError, InputError

PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class Endpoint:
    url: str  # host:port, no scheme (what tritonclient expects)
    protocol: str
    model_name: str
    model_version: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InputError(f"--protocol: {self.protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        if not self.model_name:
            raise InputError("--model-name: empty; expected the model's name on the server")
        object.__setattr__(self, "url", normalise_url(self.url))

    @property
    def address(self) -> str:
        return f"{self.protocol}://{self.url}"


def normalise_url(url: str) -> str:
    host = re.sub(r"^(https?|grpc)://", "", url.strip()).rstrip("/")
    if not re.match(r"^[\w.\-\[\]:]+:\d+$", host):
        raise InputError(f"--url: {url!r}; expected HOST:PORT (e.g. 127.0.0.1:8000)")
    return host


def _module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def connect(endpoint: Endpoint) -> Any:
    """A client whose server answered ``live``; DependencyError naming the address otherwise."""
    module = _module(endpoint.protocol)
    try:
        if endpoint.protocol == "grpc":
            client = module.InferenceServerClient(endpoint.url)
        else:
            client = module.InferenceServerClient(endpoint.url, connection_timeout=endpoint.timeout_s,
                                                  network_timeout=endpoint.timeout_s)
        live = client.is_server_live(**_timeout(endpoint))
    except Exception as exc:  # refused, reset, garbled reply from a server speaking the other protocol
        raise DependencyError(f"{endpoint.address}: no Open Inference Protocol server answered over "
                              f"{endpoint.protocol} ({_brief(exc)}); is the address and --protocol right?") from None
    if not live:
        raise DependencyError(f"{endpoint.address}: server reports it is not live")
    return client


def _timeout(endpoint: Endpoint) -> dict[str, Any]:
    return {"client_timeout": endpoint.timeout_s} if endpoint.protocol == "grpc" else {}


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def read_signature(client: Any, endpoint: Endpoint) -> Any:
    """The model's inputs and outputs from the server's metadata, as a ``costeff.modelio.Signature``."""
    from costeff.modelio import Signature

    try:
        if endpoint.protocol == "grpc":
            meta = client.get_model_metadata(endpoint.model_name, endpoint.model_version, as_json=True,
                                             **_timeout(endpoint))
        else:
            meta = client.get_model_metadata(endpoint.model_name, endpoint.model_version)
    except Exception as exc:
        raise DependencyError(f"{endpoint.address}: no metadata for model {endpoint.model_name!r} "
                              f"({_brief(exc)})") from None
    inputs = tuple(_spec(t, endpoint) for t in meta.get("inputs", []))
    outputs = tuple(_spec(t, endpoint) for t in meta.get("outputs", []))
    if not inputs:
        raise DependencyError(f"{endpoint.address}: model {endpoint.model_name!r} declares no inputs in its metadata")
    names = [o.name for o in outputs]
    logits = next((n for n in names if n.lower() in ("logits", "action_logits")), names[0] if names else None)
    value = next((n for n in names if n.lower() in ("value", "values")), None)
    return Signature(inputs, outputs, logits, value)


def _spec(tensor: dict[str, Any], endpoint: Endpoint) -> Any:
    from tritonclient.utils import triton_to_np_dtype

    from costeff.modelio import TensorSpec

    datatype = str(tensor.get("datatype", ""))
    np_dtype = triton_to_np_dtype(datatype)
    if np_dtype is None:
        raise DependencyError(f"{endpoint.address}: tensor {tensor.get('name')!r} has datatype {datatype!r} "
                              "that tritonclient cannot map to numpy")
    shape = tuple(None if int(d) < 0 else int(d) for d in tensor.get("shape", []))
    if not shape or shape[0] is not None:
        shape = (None, *shape)  # Triton lists dims without the batch axis when the model batches
    return TensorSpec(str(tensor["name"]), np.dtype(np_dtype).name, f"TYPE_{datatype}", shape)


def make_call(endpoint: Endpoint, signature: Any, feed: dict[str, np.ndarray],
              outputs: tuple[str, ...] | None = None, on_send: Callable[[], None] | None = None) -> Callable[[], Any]:
    """A zero-argument call sending ``feed`` on a client of its own (one per thread).

    ``on_send`` runs just before each request leaves (after the thread's client exists).
    """
    module = _module(endpoint.protocol)
    binary = {} if endpoint.protocol == "grpc" else {"binary_data": False}
    inputs = []
    for spec in signature.inputs:
        array = feed[spec.name]
        tensor = module.InferInput(spec.name, list(array.shape), spec.triton_dtype.removeprefix("TYPE_"))
        tensor.set_data_from_numpy(array, **binary)
        inputs.append(tensor)
    wanted = outputs if outputs is not None else tuple(o.name for o in signature.outputs)
    requested = [module.InferRequestedOutput(name, **binary) for name in wanted]
    name, version = endpoint.model_name, endpoint.model_version
    local = threading.local()

    def call() -> Any:
        # The HTTP client runs on gevent, whose hub belongs to the thread that made it, and a
        # thread pool may run this call on any of its threads: one client per thread, made on
        # that thread's first call (warm-up pays for it).
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = connect(endpoint)
        if on_send is not None:
            on_send()
        return client.infer(name, inputs, model_version=version, outputs=requested)

    return call


def remote_failure(endpoint: Endpoint, exc: BaseException) -> DependencyError:
    return DependencyError(f"{endpoint.address}: inference on {endpoint.model_name!r} failed ({_brief(exc)})")
