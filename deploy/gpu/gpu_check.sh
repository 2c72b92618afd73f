#!/usr/bin/env bash
# The GPU check as one command: install from the carried wheels, then python -m s2vc_evaluation.gpu_check.
# usage: deploy/gpu/gpu_check.sh [OUT_DIR] [gpu_check options]     (make gpu-check GPU_OUT=DIR ARGS=...)
# Time: GPU_CHECK_TOTAL_S (default 480 s) covers the install and every phase; the checks get what the install left
# (minus 20 s of start-up), and stop themselves at most 30 s past it, so the whole command stays under 9 minutes.
set -euo pipefail
START=$(date +%s)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/gpu_check_out}
shift || true
PY=${PYTHON:-python3}
"$HERE/install.sh" "$PY"
BUDGET=$(( ${GPU_CHECK_TOTAL_S:-480} - ($(date +%s) - START) - 20 ))
echo "gpu_check.sh: installed in $(( $(date +%s) - START )) s; $BUDGET s for the checks"
cd "$ROOT"
exec "$PY" -m s2vc_evaluation.gpu_check --out "$OUT" --budget-s "$BUDGET" "$@"
