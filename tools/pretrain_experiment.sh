#!/usr/bin/env bash
# One small-scale pretraining run on real data, evaluated per width: the setting of the
# README's framework comparison. Pretrains a slimmable ResNet-20 (4 widths) on 4,000
# Fashion-MNIST images for 6 epochs (batch 128), then kNN (4,000-image memory, 2,000
# test images; with a randomly initialised network as the baseline) and the switchable
# linear probe (30 epochs). Extra arguments go to `slim-train pretrain`, e.g.
#   tools/pretrain_experiment.sh runs/moco-v3 --framework moco-v3 --temperature 0.2
# About 30-35 minutes on 2 CPU cores. Output in OUT: pretrain/, knn.json, linear.log.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
out=${1:?usage: tools/pretrain_experiment.sh OUT [slim-train pretrain flags...]}
shift
cargo build --release -p slim-train
bin=target/release/slim-train
ckpt=$out/pretrain/checkpoint.safetensors
start=$(date +%s)
"$bin" pretrain --data "$FASHION_MNIST_DIR" --limit 4000 --batch-size 128 --epochs 6 \
  --warmup-epochs 1 --crop-min-scale 0.2 --out "$out/pretrain" --quiet "$@"
echo "pretrain wall $(($(date +%s) - start)) s"
"$bin" knn --checkpoint "$ckpt" --data "$FASHION_MNIST_DIR" --limit-train 4000 \
  --limit-test 2000 --compare-random --json "$out/knn.json"
"$bin" linear --protocol fast --checkpoint "$ckpt" --data "$FASHION_MNIST_DIR" --limit-train 4000 \
  --limit-test 2000 --epochs 30 | tee "$out/linear.log"
