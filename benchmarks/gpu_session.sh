#!/usr/bin/env bash
# Every GPU check of the acceptance in one run on a CUDA host (no Ray, no package index):
# GPU tests, exact splits on CUDA (fp32 and fp16), `maniple devices`, the CPU+GPU
# timeline and the batch-split benchmark. Results go to $OUT (default docs/results/gpu).
# Usage: [SKIP_BATCH=1] bash benchmarks/gpu_session.sh [OUT]   (pure-Python wheels may be carried in .whl/)
set -uo pipefail
OUT=${1:-${OUT:-docs/results/gpu}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
maniple() { python3 -c 'from maniple.cli import main; main()' "$@"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
  nproc
} > "$OUT/machine.txt" 2>&1
maniple devices --json > "$OUT/devices.json" 2> "$OUT/devices.err"
python3 -m pytest -m gpu -p no:cacheprovider -q tests/test_tiling.py tests/test_devices_gpu.py \
  tests/test_batch_live.py > "$OUT/gpu-tests.log" 2>&1
echo "gpu tests rc=$?" >> "$OUT/gpu-tests.log"
for net in resnet-50 yolov2 inception_v3; do
  maniple verify $net --device cuda --trials 3 --devices 4 --json > "$OUT/verify-$net-fp32.json"
  maniple verify $net --device cuda --trials 3 --devices 4 --dtype float16 --json \
    > "$OUT/verify-$net-fp16.json"
done
python3 benchmarks/cpu_gpu_timeline.py --out "$OUT" > "$OUT/timeline.log" 2>&1
if [ "${SKIP_BATCH:-0}" != 1 ]; then
  python3 benchmarks/batch_gpu.py --out "$OUT" > "$OUT/batch-gpu.log" 2>&1
  echo "batch_gpu rc=$?" >> "$OUT/batch-gpu.log"
fi
