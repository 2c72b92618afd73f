#!/usr/bin/env bash
# The GPU check as one command: install from the carried wheels, then python -m evaluation.gpu_check.
# usage: deploy/gpu/gpu_check.sh [OUT_DIR] [gpu_check options]     (make gpu-check GPU_OUT=DIR ARGS=...)
# Budget: install ≈ 30 s + 450 s of checks (--budget-s) + start-up, under 9 minutes.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/gpu_check_out}
shift || true
PY=${PYTHON:-python3}
"$HERE/install.sh" "$PY"
cd "$ROOT"
exec "$PY" -m evaluation.gpu_check --out "$OUT" "$@"
