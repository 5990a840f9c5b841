#!/usr/bin/env bash
# The main job: prepare the embedded corpus (tiny Shakespeare), train a byte-level FELA on it
# for at most 4 minutes of wall time (--time-limit; validation bits per byte printed every 100
# steps), save the run under runs/, then print a generated sample.
set -euo pipefail
cd "$(dirname "$0")/.."
fela=build/release/fela
data=runs/data/tinyshakespeare-bytes
run=runs/shakespeare-$(date +%Y%m%d-%H%M%S)

if [ ! -f "$data/meta.json" ]; then
  $fela prepare --vocab bytes --val-fraction 0.1 --out "$data" data/tinyshakespeare/input.txt
fi
$fela train --config configs/shakespeare.json --data "$data" --out "$run" \
  --steps 1200 --batch 16 --seq 128 --lr 3e-3 --warmup 50 --eval-every 100 --eval-batches 16 \
  --save-every 200 --time-limit 240 --seed 1
ln -sfn "$(basename "$run")" runs/latest
echo
echo "checkpoint and metrics: $run (also runs/latest)"
echo "--- sample ---"
$fela generate --checkpoint "$run" --prompt "ROMEO:" --max-tokens 400 --temperature 0.8 --top-k 40 --seed 1
