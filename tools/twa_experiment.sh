#!/usr/bin/env bash
# The TWA comparison of the README: SlimCLR ResNet-20 (4 widths) pretrained on 4,000
# Fashion-MNIST images for 6 epochs with a trajectory checkpoint every 10 steps, then
# `slim-train twa --compare` (last checkpoint vs SWA vs TWA, kNN and linear per width).
# About 9 minutes on 2 idle CPU cores.
#
#   tools/twa_experiment.sh [OUT] [--seed N]    # the pretraining's seed, default 0
#
# Output: ${OUT:-runs/twa-exp}/{pre,twa}, the table in twa/comparison.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
out=${1:-runs/twa-exp}
seed=0
if [[ $# -gt 1 ]]; then
  [[ $2 == --seed && $# -eq 3 ]] || { echo "usage: $0 [OUT] [--seed N]" >&2; exit 2; }
  seed=$3
fi
cargo build --release -p slim-train
bin=target/release/slim-train
start=$(date +%s)
"$bin" pretrain --data "$FASHION_MNIST_DIR" --limit 4000 --batch-size 128 --epochs 6 \
  --warmup-epochs 1 --crop-min-scale 0.2 --seed "$seed" --out "$out/pre" --trajectory-every 10 --quiet
echo "pretrain wall $(($(date +%s) - start)) s"
start=$(date +%s)
"$bin" twa --checkpoints "$out/pre/trajectory" --data "$FASHION_MNIST_DIR" --limit 4000 \
  --out "$out/twa" --epochs 2 --compare --limit-train 4000 --limit-test 2000 --quiet
echo "twa+compare wall $(($(date +%s) - start)) s"
