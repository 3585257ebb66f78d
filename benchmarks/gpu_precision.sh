#!/usr/bin/env bash
# The GPU-precision acceptance on a CUDA host (no Ray, no package index): the GPU tests,
# then benchmarks/gpu_precision.py's parts. Results go to $OUT (default docs/results/gpu-precision).
# Usage: [TESTS=0] [PARTS=single,cpu-gpu,exact,spatial] bash benchmarks/gpu_precision.sh [OUT]
# (pure-Python wheels may be carried in .whl/: typer, rich, click, pyyaml, platformdirs, ...)
set -uo pipefail
OUT=${1:-${OUT:-docs/results/gpu-precision}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
  nproc
} > "$OUT/machine.txt" 2>&1
if [ "${TESTS:-1}" != 0 ]; then
  timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -m gpu -p no:cacheprovider -q \
    tests/test_gpu_precision.py tests/test_devices_gpu.py > "$OUT/gpu-precision-tests.log" 2>&1
  echo "gpu tests rc=$?" >> "$OUT/gpu-precision-tests.log"
  tail -5 "$OUT/gpu-precision-tests.log"
fi
python3 benchmarks/gpu_precision.py --out "$OUT" --store /tmp/gpu-precision.sqlite \
  --parts "${PARTS:-single,cpu-gpu,exact,spatial}" 2>&1 | grep -v Warning | tee -a "$OUT/gpu-precision.log"
