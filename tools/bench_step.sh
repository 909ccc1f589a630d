#!/usr/bin/env bash
# Speed of one SlimCLR training step: `slim-train bench-step` (ours, tch) against the
# PyTorch eager reference tools/bench_step_torch.py (same torch 2.11.0), run alternately
# (ours, reference, ours, reference, ...) with the same arguments, then a summary:
# slimmable and full-width-only images/s, their time ratio (ideal: the MACs ratio, 1.882
# for ResNet-20 at widths 1/0.75/0.5/0.25) and ours / reference.
#
#   tools/bench_step.sh [--backbone resnet20] [--image-size 32] [--channels 3] [--batch 64]
#                       [--warmup 2] [--steps 5] [--threads NPROC] [--rounds 2]
#                       [--device cpu] [--bf16 on|off] [--channels-last on|off] [--out DIR]
#
# --bf16 and --channels-last default to on for --device cuda, off otherwise, and go to
# both implementations alike. A benchmark, not a test: it asserts nothing about time.
# --out keeps every run's JSON.
#
# The project venv holds the torch wheel without its CUDA libraries (tch links only
# libtorch_cpu), which is enough for libtorch but not for `import torch`. When
# $SLIM_PYTHON cannot import torch, tools/full_torch.sh installs what the import needs
# once into .deps/torch-full (about 2.5 GB), put on PYTHONPATH / LD_LIBRARY_PATH for the
# reference only.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh

backbone=resnet20 image_size=32 channels=3 batch=64 warmup=2 steps=5
threads=$(nproc) rounds=2 device=cpu out="" bf16="" channels_last=""
while [ $# -gt 0 ]; do
  case "$1" in
    --backbone) backbone=$2 ;;
    --image-size) image_size=$2 ;;
    --channels) channels=$2 ;;
    --batch) batch=$2 ;;
    --warmup) warmup=$2 ;;
    --steps) steps=$2 ;;
    --threads) threads=$2 ;;
    --rounds) rounds=$2 ;;
    --device) device=$2 ;;
    --bf16) bf16=$2 ;;
    --channels-last) channels_last=$2 ;;
    --out) out=$2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench_step.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done

on_for_cuda=off
[ "$device" = cuda ] && on_for_cuda=on
bf16=${bf16:-$on_for_cuda} channels_last=${channels_last:-$on_for_cuda}

echo "== cargo build --release -p slim-train" >&2
cargo build --release -p slim-train >&2
ours="${CARGO_TARGET_DIR:-target}/release/slim-train"

# The reference covers the CIFAR ResNets only.
case "$backbone" in
  resnet20 | resnet18-cifar) with_ref=1 ;;
  *) with_ref=0; echo "bench_step.sh: no reference for $backbone; timing ours only" >&2 ;;
esac

ref_env=()
if [ "$with_ref" = 1 ] && ! "$SLIM_PYTHON" -c 'import torch' 2>/dev/null; then
  # shellcheck source=tools/full_torch.sh
  source tools/full_torch.sh
  ref_env=(env "PYTHONPATH=$FULL_TORCH_PYTHONPATH" "LD_LIBRARY_PATH=$FULL_TORCH_LIBS:$LD_LIBRARY_PATH")
fi

dir=${out:-$(mktemp -d)}
mkdir -p "$dir"
common=(--backbone "$backbone" --image-size "$image_size" --channels "$channels" --batch "$batch"
  --warmup "$warmup" --steps "$steps" --threads "$threads" --device "$device"
  --bf16 "$bf16" --channels-last "$channels_last")
for r in $(seq 1 "$rounds"); do
  echo "== round $r: ours" >&2
  "$ours" bench-step "${common[@]}" --json "$dir/ours-$r.json"
  if [ "$with_ref" = 1 ]; then
    echo "== round $r: reference" >&2
    "${ref_env[@]}" "$SLIM_PYTHON" tools/bench_step_torch.py "${common[@]}" --json "$dir/ref-$r.json" | sed '$d'
  fi
done

"$SLIM_PYTHON" - "$dir" "$rounds" <<'EOF'
import json, sys, os, platform, datetime
d, rounds = sys.argv[1], int(sys.argv[2])
def load(kind):
    return [json.load(open(f"{d}/{kind}-{r}.json")) for r in range(1, rounds + 1) if os.path.exists(f"{d}/{kind}-{r}.json")]
ours, ref = load("ours"), load("ref")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
o = ours[0]
print()
print(f"== summary {datetime.date.today()}: {o['backbone']} {o['channels']}x{o['image_size']}x{o['image_size']}, "
      f"batch {o['batch']} x 2 views, widths {o['widths']}, {o['device']}, {o['threads']} threads, "
      f"{o['steps']} timed steps per round{', bf16 convs' if o['bf16'] else ''}{', channels-last' if o['channels_last'] else ''}; "
      f"{cpu}, {os.cpu_count()} cores")
print(f"{'run':<22} {'slimmable img/s':>16} {'full img/s':>11} {'ratio':>7}")
rows = []
for r in range(rounds):
    for name, runs in (("ours", ours), ("reference", ref)):
        if r < len(runs):
            x = runs[r]
            print(f"{name + ' round ' + str(r + 1):<22} {x['slimmable']['images_per_s']:>16.1f} {x['full']['images_per_s']:>11.1f} {x['ratio']:>7.3f}")
def mean(runs, key):
    return sum(x[key]["images_per_s"] for x in runs) / len(runs)
agg = {}
for name, runs in (("ours", ours), ("reference", ref)):
    if runs:
        s, f = mean(runs, "slimmable"), mean(runs, "full")
        agg[name] = (s, f)
        print(f"{name + ' (mean)':<22} {s:>16.1f} {f:>11.1f} {f / s:>7.3f}")
print(f"{'ideal ratio (MACs)':<22} {'':>16} {'':>11} {o['macs_ratio']:>7.3f}")
if "reference" in agg:
    (os_, of), (rs, rf) = agg["ours"], agg["reference"]
    print(f"{'ours / reference':<22} {os_ / rs:>16.3f} {of / rf:>11.3f}   (images/s; > 1: ours faster)")
EOF
[ -n "$out" ] || rm -rf "$dir"
