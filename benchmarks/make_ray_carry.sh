#!/usr/bin/env bash
# Build what benchmarks/legion_device.sh carries to the device machine (Python 3.12, no
# Ray, no registry) into .whl/ (ignored by git): Ray 2.60's cp312 wheel unpacked without
# the parts maniple never loads (Java jars, RLlib, Data, Serve, Tune, Train, LLM, workflow,
# the dashboard's web client) as ray-stripped.tar.xz (~28 MB; the whole wheel is 79 MB,
# over the 64 MiB a call may carry), and the wheels Ray needs that the image lacks.
# The project's own pure-Python needs (typer, rich, platformdirs, ...) are fetched the
# same way (README of the device tool); this script adds only Ray's.
set -euo pipefail
DEST=${1:-.whl}
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
get "$TMP" ray==2.60.0
get "$DEST" jsonschema jsonschema-specifications referencing rpds-py
(cd "$TMP" && unzip -q ray-*.whl 'ray/*' 'ray-*.dist-info/*')
(cd "$TMP/ray" && rm -rf jars rllib data serve tune train llm workflow dashboard/client)
tar -C "$TMP" -cf - ray ray-2.60.0.dist-info | xz -T1 -6 > "$DEST/ray-stripped.tar.xz"
ls -la "$DEST/ray-stripped.tar.xz"
