"""costeff: serve a reinforcement-learning trading policy cheaply without changing what it decides.

Importing this package is cheap: it never imports onnxruntime, torch, tritonclient,
kubernetes or pynvml. Each capability imports what it needs where it is used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
