"""GPU power-limit action: constraint checks and restore (fake NVML handle), and a read-only real-GPU test."""

import pytest

from costeff.errors import InputError
from costeff.reaper.actions import PowerLimiter
from costeff.reaper.config import Target


class FakeNvml:
    """Stands in for pynvml's write path only: no GPU here, and a real one must never be written by a test."""

    class NVMLError(Exception):
        pass

    def __init__(self, limit_mw=300_000, low_mw=100_000, high_mw=350_000):
        self.limit_mw, self.constraints = limit_mw, (low_mw, high_mw)
        self.writes = []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise self.NVMLError("Invalid Argument")
        return "handle0"

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return self.limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle):
        return self.constraints

    def nvmlDeviceSetPowerManagementLimit(self, handle, milliwatts):
        self.writes.append(milliwatts)
        self.limit_mw = milliwatts


def test_limit_outside_constraints_is_refused_before_any_write():
    nvml = FakeNvml()
    with pytest.raises(InputError, match=r"400 W is outside the device's constraints 100\.\.350 W"):
        PowerLimiter(nvml).reap(Target("gpu0", kind="gpu", power_limit_w=400))
    with pytest.raises(InputError, match="outside"):
        PowerLimiter(nvml).reap(Target("gpu0", kind="gpu", power_limit_w=50))
    assert nvml.writes == []


def test_reap_records_previous_limit_and_restore_puts_it_back():
    nvml = FakeNvml()
    limiter, target = PowerLimiter(nvml), Target("gpu0", kind="gpu", power_limit_w=150)
    outcome = limiter.reap(target)
    assert outcome.changed and outcome.before["power_limit_w"] == 300 and nvml.writes == [150_000]
    assert not limiter.reap(target).changed and nvml.writes == [150_000]  # idempotent
    restored = limiter.restore(target, outcome.before["power_limit_w"])
    assert restored.changed and nvml.limit_mw == 300_000
    assert not limiter.restore(target, 300).changed


def test_unknown_gpu_is_a_dependency_error():
    from costeff.errors import DependencyError

    with pytest.raises(DependencyError, match="GPU 3"):
        PowerLimiter(FakeNvml()).reap(Target("gpu3", kind="gpu", gpu_index=3, power_limit_w=150))


def test_gpu_target_needs_a_power_limit():
    with pytest.raises(InputError, match="power_limit_w"):
        Target("gpu0", kind="gpu")


def _real_nvml():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            pytest.skip("no NVIDIA GPU")
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML not available: {exc}")
    return pynvml


@pytest.mark.gpu
def test_real_gpu_limits_are_read_and_bad_limits_refused_without_writing():
    pynvml = _real_nvml()
    limiter = PowerLimiter(pynvml)
    current, low, high = limiter.limits_w(0)
    assert 0 < low <= current <= high
    with pytest.raises(InputError, match="outside"):
        limiter.check(0, high + 1000)  # refused before nvmlDeviceSetPowerManagementLimit is reached
    assert limiter.limits_w(0)[0] == current


@pytest.mark.gpu
def test_real_nvml_signals():
    _real_nvml()
    from costeff.reaper.signals import nvml_samples

    samples = nvml_samples()
    assert samples and 0 <= samples[0].gpu_util_pct <= 100
    assert samples[0].requests is None and samples[0].influence_pct is None  # NVML alone never reaps
