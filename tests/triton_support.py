"""Shared by the tests that run the real Triton server: its environment and free ports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def triton_env():
    """The server environment `make test` creates (`costeff triton env`); created here when missing."""
    from costeff.errors import DependencyError
    from costeff.serving.tritonserver import default_location, ensure

    cache = Path(os.environ.get("COSTEFF_TRITON_CACHE") or Path.home() / ".cache" / "costeff")
    try:
        return ensure(default_location(cache))
    except DependencyError as exc:
        if "glibc" in str(exc) or "x86_64" in str(exc):
            pytest.skip(f"Triton cannot run on this host: {exc}")
        raise


def free_ports(count: int = 3) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1."""
    from costeff.serving.tritonserver.server import free_port_block

    return free_port_block(count)
