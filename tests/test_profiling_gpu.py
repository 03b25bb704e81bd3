"""NVML sampling on a real NVIDIA GPU (skipped where there is none)."""

from __future__ import annotations

import time

import pytest

from costeff.profiling import MeasureConfig, ResourceSampler, measure


def _nvml_gpu_count() -> int:
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


needs_gpu = pytest.mark.skipif(_nvml_gpu_count() == 0, reason="no NVIDIA GPU / NVML on this machine")


@pytest.mark.gpu
@needs_gpu
def test_nvml_sampler_reads_utilisation_memory_and_power():
    with ResourceSampler(0, interval_s=0.02) as sampler:
        point = measure(lambda: time.sleep(0.001), 1, MeasureConfig(warmup_s=0.01, window_s=0.1, max_trials=3),
                        sampler=sampler)
    gpu = point.gpu
    assert gpu is not None and point.gpu_null_reason is None
    assert gpu.name and gpu.samples >= 2
    assert 0 < gpu.memory_used_mb <= gpu.memory_total_mb
    assert gpu.sm_util_pct is None or 0 <= gpu.sm_util_pct <= 100
    assert gpu.power_w is None or gpu.power_w > 0


@pytest.mark.gpu
@needs_gpu
def test_cuda_profile_fills_gpu_fields(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    from test_profiling_cli import _policy  # tests/ is on sys.path under pytest's default import mode

    from costeff.profiling import ProfileConfig, profile

    report = profile(_policy(tmp_path / "p.onnx"), ProfileConfig(batch_sizes=(1, 64), provider="cuda",
                                                                 window_s=0.1, warmup_s=0.05))
    assert report.provider == "CUDAExecutionProvider"
    assert all(p.gpu is not None and p.gpu.memory_used_mb > 0 for p in report.points)
    assert report.cost["instance_kind"] == "gpu"


def test_sampler_without_a_gpu_says_why():
    with ResourceSampler(None, gpu_null_reason="no NVIDIA GPU") as sampler:
        with sampler.track() as tracked:
            time.sleep(0.02)
    stats = tracked.result()
    assert stats.gpu is None and stats.gpu_null_reason == "no NVIDIA GPU"
    assert stats.rss_peak_mb > 0


def test_sampler_on_a_missing_gpu_index_degrades_to_a_reason():
    with ResourceSampler(99) as sampler:
        with sampler.track() as tracked:
            pass
    assert tracked.result().gpu is None and tracked.result().gpu_null_reason


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_fp16_profile_or_a_clear_reason(tmp_path):
    """TensorRT either runs the profile or fails loudly: never a CUDA profile labelled TensorRT."""
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no TensorRT provider")
    from test_profiling_cli import _policy

    from costeff.errors import DependencyError
    from costeff.profiling import ProfileConfig, profile

    try:
        report = profile(_policy(tmp_path / "p.onnx"), ProfileConfig(batch_sizes=(8,), provider="tensorrt",
                                                                     window_s=0.1, warmup_s=0.05))
    except DependencyError as exc:
        assert "TensorrtExecutionProvider failed to load" in str(exc)
        pytest.skip(f"TensorRT libraries are not installed here: {exc}")
    assert report.provider == "TensorrtExecutionProvider"
