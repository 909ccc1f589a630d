#!/usr/bin/env bash
# The main job, end to end on real data (Fashion-MNIST), on the CPU in about 15 minutes
# of which ~7 are the first release build:
#   1. set everything up (tools/setup.sh);
#   2. pretrain a slimmable ResNet-20 with SlimCLR (SimCLR, 4 widths) on 10,000 images;
#   3. kNN accuracy per width, then train the switchable linear probe into the checkpoint;
#   4. export every width as its own ONNX graph (slim-export --all);
#   5. run every exported graph on the test set with tract and ONNX Runtime: a table.
# Outputs land in runs/quickstart/. Environment knobs: QUICK_EPOCHS, QUICK_LIMIT.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
cargo build --release -p slim-train -p slim-onnx -p slim-bench --features slim-bench/ort
bin=target/release
run=runs/quickstart
data=$FASHION_MNIST_DIR
epochs=${QUICK_EPOCHS:-4}
limit=${QUICK_LIMIT:-10000}
rm -rf "$run"
mkdir -p "$run"

echo "== pretrain: SlimCLR, ResNet-20, widths 1.0/0.75/0.5/0.25, $epochs epochs on $limit images"
"$bin/slim-train" pretrain --data "$data" --limit "$limit" --backbone resnet20 \
  --epochs "$epochs" --batch-size 128 --lr 0.5 --warmup-epochs 1 --crop-min-scale 0.2 \
  --out "$run/pretrain"

echo "== kNN accuracy per width (features of the frozen backbone)"
"$bin/slim-train" knn --checkpoint "$run/pretrain/checkpoint.safetensors" --data "$data" \
  --limit-train 10000 --limit-test 2000

echo "== switchable linear probe (backbone frozen), written into the checkpoint"
"$bin/slim-train" linear --checkpoint "$run/pretrain/checkpoint.safetensors" --data "$data" \
  --limit-train 10000 --limit-test 2000 --epochs 30

echo "== export every width"
"$bin/slim-export" --checkpoint "$run/pretrain/checkpoint.safetensors" --all --out "$run/export"

for backend in tract ort; do
  echo "== run every exported graph: $backend"
  "$bin/slim-bench" --model "$run/export" --data "$data" --limit 2000 --backend "$backend" \
    --batch 1,32 --json "$run/bench-$backend.json"
done
