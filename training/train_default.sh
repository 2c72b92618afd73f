#!/usr/bin/env bash
# Trains the shipped default model (tiny preset, 4 rate points) stage by stage on the registry-package corpus,
# then installs it as weights/default. Usage: training/train_default.sh [RUNS_DIR] [SCALE]
# SCALE multiplies every step count (1 = the recipe used for the shipped weights, on 2 CPU cores ≈ 45 min).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/default}
SCALE=${2:-1}
S2VC=.venv/bin/s2vc
steps() { python3 -c "print(max(1, int($1 * $SCALE)))"; }
LAMBDAS=(2.0 1.0 0.5 0.25)   # rate 0 = fewest bits
COMMON=(--corpus "$RUNS/corpus" --crop 128 --threads 2 --log-every 50 --checkpoint-every 100)
# The version-1 widths (tiny-v1): this recipe trained them; training/recipes/tiny-v2.json trains version 2

[ -f "$RUNS/corpus/manifest.json" ] || .venv/bin/python -m training.data --out "$RUNS/corpus"
$S2VC train --out "$RUNS/vae" --preset tiny-v1 --stage vae --steps "$(steps 1500)" --batch 8 --lr 2e-3 "${COMMON[@]}"
$S2VC train --out "$RUNS/r0-intra" --init "$RUNS/vae/model" --stage intra --rate 0 --lambda "${LAMBDAS[0]}" \
    --steps "$(steps 1500)" --batch 4 --lr 1e-3 --adv-start "$(steps 1000)" "${COMMON[@]}"
$S2VC train --out "$RUNS/r0-inter" --init "$RUNS/r0-intra/model" --stage inter --rate 0 --lambda "${LAMBDAS[0]}" \
    --steps "$(steps 900)" --batch 4 --frames 3 --lr 5e-4 --adv-start "$(steps 600)" "${COMMON[@]}"
prev="$RUNS/r0-inter/model"
for r in 1 2 3; do
  $S2VC train --out "$RUNS/r$r-intra" --init "$prev" --stage intra --rate $r --init-rate-from $((r - 1)) \
      --lambda "${LAMBDAS[$r]}" --steps "$(steps 200)" --batch 4 --lr 5e-4 --adv-start 0 "${COMMON[@]}"
  $S2VC train --out "$RUNS/r$r-inter" --init "$RUNS/r$r-intra/model" --stage inter --rate $r \
      --lambda "${LAMBDAS[$r]}" --steps "$(steps 200)" --batch 4 --frames 3 --lr 3e-4 --adv-start 0 "${COMMON[@]}"
  prev="$RUNS/r$r-inter/model"
done
# longer cascades against drift: P-frames see their own errors over 6 frames
for r in 0 1 2 3; do
  $S2VC train --out "$RUNS/r$r-long" --init "$prev" --stage inter --rate $r --lambda "${LAMBDAS[$r]}" \
      --steps "$(steps 300)" --batch 2 --frames 6 --lr 2e-4 --adv-start 0 "${COMMON[@]}"
  prev="$RUNS/r$r-long/model"
done
.venv/bin/python -m training.export "$prev" weights/default
