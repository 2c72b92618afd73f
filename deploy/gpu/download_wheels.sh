#!/usr/bin/env bash
# Fetch the wheels of deploy/gpu/requirements.txt into deploy/gpu/wheels/ (run on a machine with PyPI access), for
# CPython 3.11-3.14 on manylinux x86_64, so that deploy/gpu/install.sh works on the GPU machine without a network.
# usage: deploy/gpu/download_wheels.sh [PYTHON]      (any Python with pip; default: .venv/bin/python, else python3)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${1:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
OUT=${S2VC_WHEELS:-$HERE/wheels}
VERSIONS=${PY_VERSIONS:-"3.11 3.12 3.13 3.14"}  # diffusers 0.42 needs Python >= 3.11
mkdir -p "$OUT"
REQS=$(mktemp)
trap 'rm -f "$REQS"' EXIT
grep -v '^\s*#' "$HERE/requirements.txt" | awk 'NF {print $1}' > "$REQS"
for v in $VERSIONS; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp --python-version "$v" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$OUT" -r "$REQS"
done
ls -l "$OUT"
du -sh "$OUT"
