#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA GPU (built beforehand with the CUDA
# backend; BIN names the build directory):
#   1. backend_ops: every CUDA op (and the whole network) against the CPU oracle;
#   2. the same 200-step run of `tiny` on the CPU and on the GPU: the loss curves must agree
#      within bf16 noise (printed every 20 steps, with the largest gap);
#   3. bench_train: the training throughput table (bench/README.md).
# Every step runs even when an earlier one fails; the exit status is non-zero if any failed.
# Set SKIP_BENCH=1 to leave out step 3.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"

failed=0
echo "== backend_ops"
"$BIN/backend_ops" ${BACKEND_ARGS:-} | tee "$WORK/backend_ops.md" || failed=1
awk -f scripts/backend_ops_summary.awk "$WORK/backend_ops.md"

echo "== tiny, 200 steps, CPU vs GPU"
data=$WORK/shakespeare-bytes
"$BIN/fela" prepare --vocab bytes --val-fraction 0.1 --out "$data" data/tinyshakespeare/input.txt
for dev in cpu cuda; do
  "$BIN/fela" train --config tiny --data "$data" --out "$WORK/tiny-$dev" --device "$dev" \
    --steps 200 --batch 16 --seq 128 --lr 3e-3 --warmup 20 --eval-every 100 --seed 1 \
    --no-progress >/dev/null || failed=1
done
# step -> loss of each run; the gap is judged on a 10-step moving average (single steps carry
# bf16 noise of the same order as the step-to-step noise of the batches).
paste <(grep -o '"loss":[-0-9.e]*' "$WORK/tiny-cpu/metrics.jsonl" | cut -d: -f2) \
      <(grep -o '"loss":[-0-9.e]*' "$WORK/tiny-cuda/metrics.jsonl" | cut -d: -f2) |
  awk '{ c[NR] = $1; g[NR] = $2 }
       END {
         worst = 0
         printf "| step | cpu loss | gpu loss |\n|---|---|---|\n"
         for (i = 1; i <= NR; i++) {
           if (i % 20 == 0 || i == 1) printf "| %d | %.4f | %.4f |\n", i, c[i], g[i]
           if (i >= 10) {
             sc = 0; sg = 0
             for (j = i - 9; j <= i; j++) { sc += c[j]; sg += g[j] }
             gap = (sg - sc) / sc; if (gap < 0) gap = -gap
             if (gap > worst) worst = gap
           }
         }
         printf "largest gap of the 10-step averages: %.2f%%\n", 100 * worst
         if (NR < 200 || worst > 0.03) { print "FAIL: the GPU run does not follow the CPU run"; exit 1 }
       }' || failed=1
grep '"val_bpb"' "$WORK/tiny-cpu/metrics.jsonl" | tail -1
grep '"val_bpb"' "$WORK/tiny-cuda/metrics.jsonl" | tail -1
# The GPU checkpoint loads on the CPU: evaluate it there.
"$BIN/fela" eval --checkpoint "$WORK/tiny-cuda" --data "$data" --context 128 2>/dev/null | tail -3
"$BIN/fela" eval --checkpoint "$WORK/tiny-cuda" --data "$data" --context 128 --device cuda 2>/dev/null | tail -3
"$BIN/fela" generate --checkpoint "$WORK/tiny-cuda" --device cuda --prompt "ROMEO:" \
  --max-tokens 80 --seed 1 || failed=1

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== bench_train"
  "$BIN/bench_train" || failed=1
fi
exit $failed
