from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Module- and session-scoped fixtures run before the per-test one below: keep their key off ~/.costeff too."""
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_HOME", str(tmp_path_factory.mktemp("costeff_home")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _isolated_artifacts(tmp_path, monkeypatch):
    """Every test writes artifacts, flags, ledgers and the Triton repository under its own tmp dir."""
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("COSTEFF_MODEL_REPOSITORY", str(tmp_path / "model_repository"))
    # The audit signing key and the checkpoint anchor live outside the artifacts folder.
    monkeypatch.setenv("COSTEFF_HOME", str(tmp_path / "costeff_home"))
    for name in ("COSTEFF_AUDIT_KEY", "COSTEFF_AUDIT_PUBKEY", "COSTEFF_AUDIT_ANCHOR"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory):
    """The ``tiny`` embedded policy (PolicyArtifact), built once per session in a private cache."""
    from costeff.policy import default_policy

    patch, cache = pytest.MonkeyPatch(), tmp_path_factory.mktemp("costeff_cache")
    patch.setenv("COSTEFF_CACHE", str(cache))  # and the commands these tests run keep their caches there too
    try:
        yield default_policy("tiny", cache=cache)
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def tiny_observations():
    """2000 seeded market observation windows shaped for the ``tiny`` policy, float32 [2000, 8, 8]."""
    from costeff.policy import generate_observations

    return generate_observations(2000, seed=1, preset="tiny")
