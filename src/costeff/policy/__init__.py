"""The embedded default policy, its market observations, and export of user policies.

``default_policy(preset, cache=home.cache)`` returns a trained, verified ONNX policy
(behaviour-cloned from a documented rule strategy at first use, cached by recipe hash);
``generate_observations(n, seed, preset)`` returns seeded synthetic market windows.
Importing this package does not import torch or onnxruntime.
"""

from costeff.policy.default import PolicyArtifact, default_policy
from costeff.policy.market import FEATURES, generate_observations
from costeff.policy.nets import ACTIONS, PRESETS

__all__ = ["ACTIONS", "FEATURES", "PRESETS", "PolicyArtifact", "default_policy", "generate_observations"]
