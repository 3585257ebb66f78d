#!/usr/bin/env bash
# Does a change keep Legion's behaviour? Runs `maniple bench legion` on the code before
# (BEFORE, a git revision) and after (this checkout), alternately, twice each, on this
# machine, then compares plans and latencies (benchmarks/compare_legion.py).
#   bash benchmarks/legion_check.sh [BEFORE] [NETWORKS] [SETS]
# Defaults: the revision before the restructuring (a4a9468), vgg-16, 2F,6F. ~30 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-a4a9468}; NETS=${2:-vgg-16}; SETS=${3:-2F,6F}
OUT=docs/results/legion-check; WORK=$(mktemp -d); mkdir -p "$OUT"
git worktree add -q --detach "$WORK/before" "$BEFORE"
trap 'git worktree remove --force "$WORK/before"' EXIT
# 1. Exact: every band, input row and alpha table, with both versions (no timing).
(cd "$WORK" && PYTHONPATH="$WORK/before/src" python3 "$OLDPWD/benchmarks/rows_dump.py" rows-before.json)
python3 benchmarks/rows_dump.py "$WORK/rows-after.json"
if cmp -s "$WORK/rows-before.json" "$WORK/rows-after.json"; then ROWS="identical"; else ROWS="DIFFERENT"; fi
# 2. Timed: the benchmark, alternately before and after, twice each.
bench() { "$@" bench legion --networks "$NETS" --sets "$SETS" --repeats 2 --out "$RUN"; }
for i in 1 2; do
  RUN=$WORK/before-$i; bench env PYTHONPATH="$WORK/before/src" python3 -c \
    'from maniple.cli import main; main()'
  cp "$RUN/legion.json" "$OUT/before-$i.json"
  RUN=$WORK/after-$i; bench python3 -c 'from maniple.cli import main; main()'
  cp "$RUN/legion.json" "$OUT/after-$i.json"
done
python3 benchmarks/compare_legion.py --before "$OUT"/before-{1,2}.json \
  --after "$OUT"/after-{1,2}.json --out "$OUT/README.md" \
  --title "Legion benchmark before and after the restructuring ($BEFORE vs this checkout)"
cat >> "$OUT/README.md" <<NOTE

Exact check (no timing): bands, input rows of every step and Legion's alpha tables for
vgg-16, vgg-19, yolov2 and resnet-50 under 4 weight vectors and 5 fused-layer
configurations each (\`benchmarks/rows_dump.py\`, run with both versions): **$ROWS**.
NOTE
[ "$ROWS" = identical ]
