#!/usr/bin/env bash
# The second half of the shipped default's recipe (the first is train_default.sh): a new VAE trained from random
# weights without the adversarial term (the first recipe's GAN term held the tiny VAE at ≈ 19 dB), then every
# rate point's intra and inter stages re-fitted to its latent space with cosine learning-rate decay, then 6-frame
# cascades against drift; installs the result as weights/default.
# Usage: training/refine_default.sh [RUNS_DIR] [SCALE] [FROM_MODEL]
# SCALE multiplies every step count (1 = the recipe used for the shipped weights: ≈ 100 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/refine}
SCALE=${2:-1}
FROM=${3:-weights/default}
S2VC=.venv/bin/s2vc
steps() { python3 -c "print(max(1, int($1 * $SCALE)))"; }
LAMBDAS=(2.0 1.0 0.5 0.25)   # rate 0 = fewest bits, as in train_default.sh
COMMON=(--corpus "$RUNS/corpus" --crop 128 --threads 2 --log-every 50 --checkpoint-every 100 --w-adv 0 --lr-schedule cosine)

[ -f "$RUNS/corpus/manifest.json" ] || .venv/bin/python -m training.data --out "$RUNS/corpus"
$S2VC train --out "$RUNS/vae" --init "$FROM" --stage vae --reinit-vae --steps "$(steps 3000)" --batch 8 --lr 2e-3 --warmup 50 "${COMMON[@]}"
prev="$RUNS/vae/model"
for r in 0 1 2 3; do
  from=(); [ $r = 0 ] || from=(--init-rate-from $((r - 1)))
  n_intra=$([ $r = 0 ] && echo 800 || echo 300)
  n_inter=$([ $r = 0 ] && echo 450 || echo 200)
  $S2VC train --out "$RUNS/r$r-intra" --init "$prev" "${from[@]}" --stage intra --rate $r --lambda "${LAMBDAS[$r]}" \
      --steps "$(steps $n_intra)" --batch 8 --lr 1e-3 --warmup 20 "${COMMON[@]}"
  $S2VC train --out "$RUNS/r$r-inter" --init "$RUNS/r$r-intra/model" --stage inter --rate $r --lambda "${LAMBDAS[$r]}" \
      --steps "$(steps $n_inter)" --batch 6 --frames 3 --lr 5e-4 --warmup 20 "${COMMON[@]}"
  prev="$RUNS/r$r-inter/model"
done
for r in 0 1 2 3; do
  $S2VC train --out "$RUNS/r$r-long" --init "$prev" --stage inter --rate $r --lambda "${LAMBDAS[$r]}" \
      --steps "$(steps 100)" --batch 2 --frames 6 --lr 1e-4 "${COMMON[@]}"
  prev="$RUNS/r$r-long/model"
done
.venv/bin/python -m training.export "$prev" weights/default
