#!/usr/bin/env bash
# One GPU slot of training: install from the carried wheels, unpack the carried corpus, go on with the recipe from
# the kit in git for MINUTES, and leave the new kit (and the run's logs) in OUT_DIR (every file well under 16 MiB).
# usage: deploy/gpu/train_slot.sh OUT_DIR [MINUTES=8] [RECIPE=tiny-v2]
# Before the slot, on a machine with PyPI:  deploy/gpu/download_wheels.sh && deploy/gpu/prepare_train_carry.sh
# (device tool: carry deploy/gpu/wheels and deploy/gpu/carry). After it, install the kit it brought back:
#   rm -rf training/state/tiny-v2 && cp -r OUT_DIR/kit training/state/tiny-v2   (then commit it)
set -euo pipefail
START=$(date +%s)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:?usage: train_slot.sh OUT_DIR [MINUTES] [RECIPE]}
MINUTES=${2:-8}
RECIPE=${3:-tiny-v2}
PY=${PYTHON:-python3}
CARRY=${S2VC_CARRY:-$HERE/carry}
WORK=${S2VC_WORK:-/tmp/s2vc-train}
DEVICE=${S2VC_DEVICE:-cuda}   # cpu: the smoke test of this script (tests/test_training_recipe.py)
[ -f "$CARRY/corpus.npz" ] || { echo "train_slot.sh: $CARRY/corpus.npz missing (run deploy/gpu/prepare_train_carry.sh and carry it)" >&2; exit 2; }
mkdir -p "$OUT" "$WORK"
[ "${S2VC_SKIP_INSTALL:-0}" = 1 ] || "$HERE/install.sh" "$PY"
cd "$ROOT"
"$PY" -m training.corpus_pack unpack "$CARRY/corpus.npz" --out "$WORK/corpus"
LEFT=$("$PY" -c "print(max(0.5, $MINUTES - ($(date +%s) - $START) / 60))")
KIT=()
KIT_DIR=${S2VC_KIT:-training/state/$RECIPE}
[ -f "$KIT_DIR/recipe.json" ] && KIT=(--kit "$KIT_DIR")
"$PY" -m training.recipe --recipe "$RECIPE" --out "$WORK/runs" --corpus "$WORK/corpus" --device "$DEVICE" \
    --minutes "$LEFT" "${KIT[@]}" --write-kit "$OUT/kit" 2>&1 | tee "$OUT/train.log"
"$PY" -m training.recipe --recipe "$RECIPE" --out "$WORK/runs" --status | tee "$OUT/status.txt"
for run in "$WORK"/runs/*/; do  # the logs of every stage touched (small): metrics and where it stands
  name=$(basename "$run"); mkdir -p "$OUT/runs/$name"
  cp "$run"/metrics.csv "$run"/status.json "$OUT/runs/$name/" 2>/dev/null || true
done
echo "train_slot.sh: done in $(( $(date +%s) - START )) s"
