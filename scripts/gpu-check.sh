#!/usr/bin/env bash
# GPU checks on a machine with an NVIDIA GPU: install with the [gpu] extra, run the
# tests that skip on CPU machines, then measure the default and large policies
# (python -m benchmarks.gpu). Everything lands in $OUT (default ./gpu-out).
#
# On a machine with a package index:   pip install -e '.[gpu]' && scripts/gpu-check.sh
# Offline, set ORT_GPU_ARCHIVE to a tar.zst of an onnxruntime-gpu install and WHEELS
# to a folder of extra wheels; they are installed into /tmp/site.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 COSTEFF_CACHE=${COSTEFF_CACHE:-/tmp/costeff-cache}
export COSTEFF_ARTIFACTS=${COSTEFF_ARTIFACTS:-/tmp/costeff-artifacts}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-330}

echo "== machine"; date -u; nvidia-smi; $PY --version
if [ -n "${ORT_GPU_ARCHIVE:-}" ]; then
    echo "== install (offline): onnxruntime-gpu, extra wheels and costeff into /tmp/site"
    mkdir -p /tmp/site
    zstd -q -d --long=31 -c "$ORT_GPU_ARCHIVE" | tar -x -C /tmp/site || echo "onnxruntime-gpu archive: extract FAILED"
    [ -n "${WHEELS:-}" ] && $PY -m pip install -q --no-index --no-deps --target /tmp/site "$WHEELS"/*.whl
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site '.[gpu]' \
        || echo "costeff install FAILED"
    export PYTHONPATH=/tmp/site
else
    echo "== install: pip install -e '.[gpu]'"
    $PY -m pip install -q -e '.[gpu]' || echo "costeff [gpu] install FAILED"
fi
$PY - <<'PY'
import importlib.metadata as md, onnxruntime as ort, costeff
print("costeff", costeff.__version__, "from", costeff.__file__)
print("onnxruntime", ort.__version__, ort.get_available_providers())
for dist in ("onnxruntime-gpu", "nvidia-ml-py", "onnx", "numpy", "torch", "onnxconverter-common"):
    try: print(dist, md.version(dist))
    except md.PackageNotFoundError: print(dist, "not installed")
PY

echo "== GPU tests (skipped on CPU machines)"
$PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_profiling_gpu.py tests/test_reap_power.py

echo "== GPU measurements (timeout ${BENCH_TIMEOUT}s)"
timeout "$BENCH_TIMEOUT" $PY -m benchmarks.gpu --out "$OUT" ${GPU_BENCH_ARGS:-}
echo "benchmarks.gpu exit code $?"
[ -f "$OUT/gpu_results.md" ] && tail -n 40 "$OUT/gpu_results.md"
