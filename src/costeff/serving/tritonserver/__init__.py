"""The real Triton Inference Server (2.51) on this host: its environment, backends and process."""

from costeff.serving.tritonserver.env import TRITON_VERSION, TritonEnv, default_location, ensure, find
from costeff.serving.tritonserver.server import Ports, TritonServer, describe, repository_models

__all__ = ["TRITON_VERSION", "Ports", "TritonEnv", "TritonServer", "default_location", "describe", "ensure", "find",
           "repository_models"]
