#!/usr/bin/env bash
# Issue: multi-GPU runs. Batch split over cuda:0,cuda:1 (and cpu,cuda:0,cuda:1) and the
# spatial split over two GPUs, against one GPU, on a host with two CUDA GPUs (no Ray
# needed: local devices only). JSON per run and a summary go to OUT.
# Usage: bash benchmarks/multi_gpu.sh [OUT]    (carry pure-Python wheels in .whl/ if needed)
set -uo pipefail
OUT=${1:-${OUT:-docs/results/multi-gpu}}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
maniple() { python3 -c 'from maniple.cli import main; main()' "$@"; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv > "$OUT/machine.txt"
nproc >> "$OUT/machine.txt"
DB="$OUT/profiles.sqlite"
for net in resnet-50 vgg-16; do
  for batch in 256 1024; do
    for devs in cuda:0 cuda:0,cuda:1 cpu,cuda:0,cuda:1; do
      tag="infer-$net-$batch-${devs//[:,]/_}"
      maniple infer --network $net --device $devs --batch $batch --planner exact \
        --repeats 3 --profile-db "$DB" --profile-budget 20 --json > "$OUT/$tag.json" \
        2> "$OUT/$tag.err"
      echo "$tag rc=$?"
    done
  done
done
for net in vgg-16 resnet-50; do
  for devs in cuda:0 cuda:0,cuda:1; do
    tag="spatial-$net-1024-${devs//[:,]/_}"
    maniple spatial --network $net --devices $devs --input-shape 3,1024,1024 \
      --search legion --repeats 3 --json > "$OUT/$tag.json" 2> "$OUT/$tag.err"
    echo "$tag rc=$?"
  done
done
python3 benchmarks/multi_gpu_summary.py "$OUT" > "$OUT/multi-gpu.md"
cat "$OUT/multi-gpu.md"
