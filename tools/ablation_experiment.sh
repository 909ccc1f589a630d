#!/usr/bin/env bash
# The evidence behind SlimCLR's claim, at a size that runs here (issue 12): each width of
# ResNet-20 pretrained alone against the one slimmable run, and the slimmable run without
# SlimCLR's techniques, then with them added one at a time (slow start, + distillation, +
# re-weighting = SlimCLR), every row with several seeds; kNN (k 200) and the fast
# switchable linear probe per width, as mean, standard deviation and range over seeds.
#
#   tools/ablation_experiment.sh OUT [--seeds 3] [--limit 3000] [--epochs 5] [--test 2000]
#
# SimCLR on Fashion-MNIST (--limit training images evenly spaced, batch 128, warmup 1
# epoch, crop scale from 0.2), kNN with the same images as memory and --test test images,
# probe 20 epochs on the same. Every run keeps its results in OUT/<row>-s<seed>/; a run
# whose results exist is not run again, so a killed script continues where it stopped.
# OUT/ablation.md and OUT/ablation.json are the summary (tools/ablation_report.py).
# SLIM_TRAIN names a slim-train binary to use instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
out=${1:?usage: tools/ablation_experiment.sh OUT [--seeds N] [--limit N] [--epochs N] [--test N]}
shift
seeds=3 limit=3000 epochs=5 tests=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2 ;;
    --limit) limit=$2 ;;
    --epochs) epochs=$2 ;;
    --test) tests=$2 ;;
    *) echo "ablation_experiment.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
if [ -z "${SLIM_TRAIN:-}" ]; then
  cargo build --release -p slim-train
  SLIM_TRAIN=target/release/slim-train
fi
mkdir -p "$out"
started=$(date +%s)
log() { echo "ablation [$(($(date +%s) - started)) s] $*" | tee -a "$out/progress.log" >&2; }

# Row name, then its pretrain flags.
rows=(
  "slimmable|--no-slow-start --no-distill --no-reweight"
  "slow-start|--no-distill --no-reweight"
  "slow-start+distill|--no-reweight"
  "slimclr|"
  "alone-1.0|--train-alone 1.0"
  "alone-0.75|--train-alone 0.75"
  "alone-0.5|--train-alone 0.5"
  "alone-0.25|--train-alone 0.25"
)
log "$((${#rows[@]} * seeds)) runs: ${#rows[@]} rows x $seeds seeds, $limit images, $epochs epochs"
for seed in $(seq 0 $((seeds - 1))); do
  for row in "${rows[@]}"; do
    name=${row%%|*} flags=${row#*|}
    run="$out/$name-s$seed"
    if [ -f "$run/linear.json" ]; then
      log "$name seed $seed: done before"
      continue
    fi
    rm -rf "$run"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$SLIM_TRAIN" pretrain --data "$FASHION_MNIST_DIR" --limit "$limit" --batch-size 128 \
      --epochs "$epochs" --warmup-epochs 1 --crop-min-scale 0.2 --seed "$seed" --quiet \
      --out "$run/pretrain" $flags >"$run.log" 2>&1 || { cat "$run.log" >&2; exit 1; }
    ckpt="$run/pretrain/checkpoint.safetensors"
    eval_args=(--checkpoint "$ckpt" --data "$FASHION_MNIST_DIR" --limit-train "$limit" --limit-test "$tests")
    "$SLIM_TRAIN" knn "${eval_args[@]}" --json "$run/knn.json" >>"$run.log" 2>&1
    "$SLIM_TRAIN" linear --protocol fast "${eval_args[@]}" --epochs 20 --seed "$seed" --json "$run/linear.json.tmp" \
      >>"$run.log" 2>&1
    mv "$run/linear.json.tmp" "$run/linear.json"
    rm -f "$run.log"
    log "$name seed $seed: $(($(date +%s) - t0)) s"
  done
done
"$SLIM_PYTHON" tools/ablation_report.py "$out" --seeds "$seeds" \
  --setting "SimCLR, ResNet-20, $limit Fashion-MNIST images, $epochs epochs, batch 128; kNN and 20-epoch probe on $tests test images" \
  --wall-s "$(($(date +%s) - started))"
log "done: $out/ablation.md"
