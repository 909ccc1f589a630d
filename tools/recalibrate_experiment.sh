#!/usr/bin/env bash
# BatchNorm recalibration on a shifted domain, the README's table: per seed, a SlimCLR
# ResNet-20 (4 widths) pretrained on clean Fashion-MNIST, its switchable linear probe
# trained on clean images; then a shifted copy of Fashion-MNIST (every pixel
# contrast * x + brightness, clipped: tools/shift_fashion_mnist.py), `slim-train
# recalibrate` on the shifted TRAIN split, both checkpoints exported (slim-export --all)
# and run with tract (slim-bench --data) on the clean and the shifted TEST split.
# Prints one table: per width, top-1 of the original model on clean and on shifted test
# images, and of the recalibrated one on shifted and on clean test images (mean over the
# seeds, and the spread min..max with more than one).
#
# Usage: tools/recalibrate_experiment.sh [OUT]   (default runs/recal-exp)
# Knobs (environment):
#   RECAL_SEEDS       pretraining seeds (default "1")
#   RECAL_EPOCHS      pretraining epochs (default 3)
#   RECAL_LIMIT       clean training images for pretraining and the probe (default 5000)
#   RECAL_IMAGES      shifted training images to recalibrate on (default 5000)
#   RECAL_TEST        test images per evaluation (default 2000)
#   RECAL_CONTRAST, RECAL_BRIGHTNESS   the shift (default 0.5 and 60)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
out=${1:-runs/recal-exp}
seeds=${RECAL_SEEDS:-1}
epochs=${RECAL_EPOCHS:-3}
limit=${RECAL_LIMIT:-5000}
images=${RECAL_IMAGES:-5000}
tests=${RECAL_TEST:-2000}
contrast=${RECAL_CONTRAST:-0.5}
brightness=${RECAL_BRIGHTNESS:-60}
cargo build --release -p slim-train -p slim-onnx -p slim-bench
bin=target/release
clean=$FASHION_MNIST_DIR
# "fashion" in the name: slim-data then names the classes as Fashion-MNIST's.
shifted=$out/fashion-mnist-shifted
mkdir -p "$out"
start=$(date +%s)
"$SLIM_PYTHON" tools/shift_fashion_mnist.py "$clean" "$shifted" \
  --contrast "$contrast" --brightness "$brightness"

for seed in $seeds; do
  run=$out/seed-$seed
  rm -rf "$run"
  mkdir -p "$run"
  t0=$(date +%s)
  echo "== seed $seed: pretrain $epochs epochs on $limit clean images"
  "$bin/slim-train" pretrain --data "$clean" --limit "$limit" --backbone resnet20 \
    --epochs "$epochs" --batch-size 128 --lr 0.5 --warmup-epochs 1 --crop-min-scale 0.2 \
    --seed "$seed" --out "$run/pretrain" --quiet
  ckpt=$run/pretrain/checkpoint.safetensors
  echo "== seed $seed: linear probe on clean images"
  "$bin/slim-train" linear --protocol fast --checkpoint "$ckpt" --data "$clean" --limit-train "$limit" \
    --limit-test "$tests" --epochs 30 --seed "$seed" >"$run/linear.txt"
  echo "== seed $seed: recalibrate on $images shifted training images"
  t1=$(date +%s)
  "$bin/slim-train" recalibrate --checkpoint "$ckpt" --data "$shifted" --limit "$images" \
    --seed "$seed" --out "$run/recalibrated.safetensors" --quiet
  echo "recalibrate wall $(($(date +%s) - t1)) s"
  for model in original recalibrated; do
    case $model in
      original) c=$ckpt ;;
      recalibrated) c=$run/recalibrated.safetensors ;;
    esac
    "$bin/slim-export" --checkpoint "$c" --all --out "$run/export-$model" >/dev/null
    for set in clean shifted; do
      case $set in
        clean) d=$clean ;;
        shifted) d=$shifted ;;
      esac
      "$bin/slim-bench" --model "$run/export-$model" --data "$d" --limit "$tests" \
        --backend tract --warmup 1 --runs 3 --out "$run/bench-$model-$set" >/dev/null
    done
  done
  echo "seed $seed wall $(($(date +%s) - t0)) s"
done
echo "total wall $(($(date +%s) - start)) s (without the build)"

"$SLIM_PYTHON" - "$out" $seeds <<'EOF'
import json, os, sys

out, seeds = sys.argv[1], sys.argv[2:]
columns = [
    ("original", "clean", "original, clean test"),
    ("original", "shifted", "original, shifted test"),
    ("recalibrated", "shifted", "recalibrated, shifted test"),
    ("recalibrated", "clean", "recalibrated, clean test"),
]
top1 = {}  # (model, set, width) -> [per seed]
widths = None
for seed in seeds:
    for model, data, _ in columns:
        path = os.path.join(out, f"seed-{seed}", f"bench-{model}-{data}", "report.json")
        report = json.load(open(path))
        ws = [w["width"] for w in report["widths"]]
        widths = widths or ws
        if ws != widths:
            sys.exit(f"{path}: widths {ws}, expected {widths}")
        for w in report["widths"]:
            acc = w.get("accuracy")
            if not acc or acc.get("source") != "measured":
                sys.exit(f"{path}: width {w['width']} has no measured accuracy")
            top1.setdefault((model, data, w["width"]), []).append(100 * acc["top1"])


def cell(v):
    m = sum(v) / len(v)
    return f"{m:.2f}%" if len(v) == 1 else f"{m:.2f}% ({min(v):.2f}..{max(v):.2f})"


lines = ["| width | " + " | ".join(c[2] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
for w in widths:
    lines.append(f"| {w} | " + " | ".join(cell(top1[(m, d, w)]) for m, d, _ in columns) + " |")
n = len(seeds)
lines.append("")
lines.append(f"{n} seed{'s' if n > 1 else ''} ({', '.join(seeds)})" + ("; mean (min..max)" if n > 1 else ""))
table = "\n".join(lines)
print(table)
open(os.path.join(out, "table.md"), "w").write(table + "\n")
EOF
