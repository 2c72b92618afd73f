#!/usr/bin/env bash
# Make the training data a GPU slot carries: the corpus (built from the pinned data packages) packed under 20 MB
# into deploy/gpu/carry/corpus.npz (git-ignored). With the wheels (≈ 41 MB) it stays within a run's 64 MiB.
# usage: deploy/gpu/prepare_train_carry.sh [CORPUS_DIR=runs/corpus]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-.venv/bin/python}
CORPUS=${1:-runs/corpus}
[ -f "$CORPUS/manifest.json" ] || "$PY" -m training.data --out "$CORPUS"
"$PY" -m training.corpus_pack pack --corpus "$CORPUS" --out "$HERE/carry/corpus.npz" --max-mb 20 --frames 13 --crop 160
