from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_artifacts(tmp_path, monkeypatch):
    """Every test writes artifacts, flags, ledgers and the Triton repository under its own tmp dir."""
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("COSTEFF_MODEL_REPOSITORY", str(tmp_path / "model_repository"))
    yield
