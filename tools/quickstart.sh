#!/usr/bin/env bash
# The main job, end to end on real data (Fashion-MNIST), on the CPU in about 15 minutes
# of which ~7 are the first release build:
#   1. set everything up (tools/setup.sh);
#   2. pretrain a slimmable ResNet-20 with SlimCLR (SimCLR, 4 widths) on 10,000 images;
#   3. kNN accuracy per width, then train the switchable linear probe into the checkpoint;
#   4. export every width as its own ONNX graph (slim-export --all);
#   5. run every exported graph on the test set with tract and ONNX Runtime, then print
#      one per-width table of both (runs/quickstart/summary.md).
# Outputs land in runs/quickstart/: pretrain/ (checkpoint, metrics.jsonl), export/ (one
# graph per width, manifest.json), bench-tract/ and bench-ort/ (report.json, report.csv,
# plot.png, plot.svg; the ort plot draws tract beside it), summary.md.
#
# Knobs (environment):
#   QUICK_EPOCHS   pretraining epochs (default 4)
#   QUICK_LIMIT    training images for pretraining, the kNN memory and the probe (10000)
#   QUICK_TEST     test images for kNN, the probe and the benchmark (2000)
#   QUICK_PROFILE  release (default) or test: the test profile reuses the build of
#                  tools/test.sh (target/debug) instead of a second, release build; CI
#                  runs `QUICK_EPOCHS=1 QUICK_LIMIT=1000 QUICK_TEST=500 QUICK_PROFILE=test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
epochs=${QUICK_EPOCHS:-4}
limit=${QUICK_LIMIT:-10000}
tests=${QUICK_TEST:-2000}
case ${QUICK_PROFILE:-release} in
  release)
    cargo build --release -p slim-train -p slim-onnx -p slim-bench --features slim-bench/ort
    bin=target/release ;;
  test)
    # Exactly the build of tools/test.sh (same packages, features and profile): a no-op
    # after it, and target/debug then holds fresh binaries.
    cargo test --workspace --features "$(tools/features.sh)" --no-run
    bin=target/debug ;;
  *)
    echo "quickstart: QUICK_PROFILE=${QUICK_PROFILE} is neither release nor test" >&2
    exit 2 ;;
esac
run=runs/quickstart
data=$FASHION_MNIST_DIR
rm -rf "$run"
mkdir -p "$run"

echo "== pretrain: SlimCLR, ResNet-20, widths 1.0/0.75/0.5/0.25, $epochs epochs on $limit images"
"$bin/slim-train" pretrain --data "$data" --limit "$limit" --backbone resnet20 \
  --epochs "$epochs" --batch-size 128 --lr 0.5 --warmup-epochs 1 --crop-min-scale 0.2 \
  --out "$run/pretrain"

echo "== kNN accuracy per width (features of the frozen backbone)"
"$bin/slim-train" knn --checkpoint "$run/pretrain/checkpoint.safetensors" --data "$data" \
  --limit-train "$limit" --limit-test "$tests" --json "$run/knn.json"

echo "== switchable linear probe (backbone frozen), written into the checkpoint"
"$bin/slim-train" linear --protocol fast --checkpoint "$run/pretrain/checkpoint.safetensors" --data "$data" \
  --limit-train "$limit" --limit-test "$tests" --epochs 30

echo "== export every width"
"$bin/slim-export" --checkpoint "$run/pretrain/checkpoint.safetensors" --all --out "$run/export"

echo "== run every exported graph: tract"
"$bin/slim-bench" --model "$run/export" --data "$data" --limit "$tests" --backend tract \
  --batch 1,32 --out "$run/bench-tract"
echo "== run every exported graph: ONNX Runtime"
"$bin/slim-bench" --model "$run/export" --data "$data" --limit "$tests" --backend ort \
  --batch 1,32 --out "$run/bench-ort" --compare "$run/bench-tract/report.json"

echo "== per width, both engines"
"$SLIM_PYTHON" tools/quickstart_report.py "$run"
