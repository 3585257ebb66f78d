#!/usr/bin/env bash
# Issue #18 on a single GPU: the peer-runtime GPU tests (two workers on cuda:0), the GPU
# precision tests as a regression check, then benchmarks/gpu_peer_one_gpu.py, all within
# DEADLINE seconds (default 450) so that one device call holds them. No Ray, no index.
# Results go to $OUT (default ./out): machine.txt, gpu-peer-tests.log,
# gpu-precision-tests.log, gpu-peer-one-gpu.log, gpu-peer-one-gpu.json.
# Usage: [DEADLINE=450] [TESTS=0] [SIZES=2048,4096] bash benchmarks/gpu_peer_one_gpu.sh [OUT]
# (carry pure-Python wheels in .whl/: typer, rich, click, pyyaml, platformdirs, ...)
# On an H200 the GPU peer tests took over 150 s (PEER_TEST_S, default 240) and the 2048
# runs plus seg-fcn at 4096 about 190 s; ResNet-50 and VGG-16 at 4096 need a call of their
# own: TESTS=0 SIZES=4096 NETWORKS=resnet-50,vgg-16 bash benchmarks/gpu_peer_one_gpu.sh
set -uo pipefail
START=$SECONDS
DEADLINE=${DEADLINE:-450}
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
left() { echo $((DEADLINE - (SECONDS - START))); }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
  echo "cpus $(nproc)"
} > "$OUT/machine.txt" 2>&1
if [ "${TESTS:-1}" != 0 ]; then
  timeout "${PEER_TEST_S:-240}" python3 -m pytest -m gpu -p no:cacheprovider -q -ra \
    --durations=8 tests/test_gpu_peer.py > "$OUT/gpu-peer-tests.log" 2>&1
  echo "gpu peer tests rc=$?" >> "$OUT/gpu-peer-tests.log"
  tail -3 "$OUT/gpu-peer-tests.log"
  timeout "${PRECISION_TEST_S:-100}" python3 -m pytest -p no:cacheprovider -q \
    tests/test_gpu_precision.py > "$OUT/gpu-precision-tests.log" 2>&1
  echo "gpu precision tests rc=$?" >> "$OUT/gpu-precision-tests.log"
  tail -2 "$OUT/gpu-precision-tests.log"
fi
# stop starting configurations 100 s before the deadline; kill whatever runs 10 s before it
timeout "$(($(left) - 10))" python3 benchmarks/gpu_peer_one_gpu.py --out "$OUT" \
  --sizes "${SIZES:-2048,4096}" --networks "${NETWORKS:-seg-fcn,resnet-50,vgg-16}" \
  --budget-s "$(($(left) - 100))" 2>&1 | grep -v Warning | tee "$OUT/gpu-peer-one-gpu.log"
echo "benchmark rc=${PIPESTATUS[0]} after $((SECONDS - START)) s" | tee -a "$OUT/gpu-peer-one-gpu.log"
