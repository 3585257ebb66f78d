#!/usr/bin/env bash
# The Legion reproduction (`maniple bench legion`) on a host with cores to spare for the
# coordinator: the device machine (16 cores; no Ray and no package registry there).
# Why: on the 2-core VM the coordinator's Ray calls, stitching and the classifier share two
# cores with the emulated boards' processes and cost ~60 ms per VGG-16 inference, counted
# undivided; the study's coordinator was a 6-core desktop. Same code, same emulated boards,
# calibrated on that host.
#
# What travels in .whl/ (ignored by git): the pure-Python and cp312 wheels the package
# needs beyond that machine's image (see README's set-up; jsonschema, referencing,
# jsonschema-specifications and rpds-py for Ray), and ray-stripped.tar.xz: the Ray 2.60
# cp312 wheel unpacked without its Java jars, RLlib, Data, Serve, Tune, Train, LLM and the
# dashboard's web client, to fit the 64 MiB a call may carry (none of those is used);
# `bash benchmarks/make_ray_carry.sh` builds those.
#
# Usage: bash benchmarks/legion_device.sh NETWORK [OUT]   (one network per call: each
# takes 5-10 minutes there). Merge the per-network results with
# `python benchmarks/merge_legion.py OUT/*/legion.json --out docs/results/legion-16core`.
set -uo pipefail
NET=${1:?usage: legion_device.sh NETWORK [OUT]}
OUT=${2:-${OUT:-docs/results/legion-16core}}
mkdir -p "$OUT/$NET" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
[ -d /tmp/site/ray ] || tar -xJf .whl/ray-stripped.tar.xz -C /tmp/site || exit 1
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 MANIPLE_CACHE_DIR="$PWD/.device-cache"
maniple() { python3 -c 'from maniple.cli import main; main()' "$@"; }
{ nproc; lscpu | grep -E "Model name|^CPU\(s\)"; python3 -c 'import torch; print("torch", torch.__version__)'; } \
  > "$OUT/$NET/machine.txt"
python3 -m maniple.devices.calibration > "$OUT/$NET/calibration.json" 2> "$OUT/$NET/log.txt"
# Figures are drawn again after the merge: only the JSON and the page come back (a call
# returns at most 8 files).
maniple bench legion --networks "$NET" --repeats 2 --out /tmp/bench-$NET 2>&1 | tee -a "$OUT/$NET/log.txt"
cp /tmp/bench-$NET/legion.json /tmp/bench-$NET/legion.md "$OUT/$NET/"
