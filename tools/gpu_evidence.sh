#!/usr/bin/env bash
# The GPU evidence in one run (issue 18), made to be carried to a GPU machine that has
# torch 2.11.0 in /opt/torch/.venv but no cargo and no network, and to fit its limits:
#
#   (a) one slimmable 4-width SimCLR step and one full-width-only step of ResNet-18 (CIFAR
#       stem) at batch 512, bf16 convolutions and channels-last: `slim-train bench-step`
#       and tools/bench_step_torch.py (PyTorch eager, same step and settings), alternately;
#   (b) SlimCLR pretraining of ResNet-18 on CIFAR-10 for as many epochs as the bench says
#       fit in --train-s seconds, then per-width kNN (and random init) and the fast
#       switchable linear probe on the test split;
#   (a') a data-parallel group of one rank (`slim-train launch --nproc 1`, NCCL on the
#       GPU) trains 4 steps, to show the backend initialises (issue 17);
#   (c) OUT/summary.json and OUT/summary.md (tools/gpu_evidence_report.py), OUT/run.log,
#       OUT/metrics.jsonl and the model (`slim-train strip`: no training state) split into
#       pieces under 16 MiB, OUT/model.safetensors.part-NN, with their sha256.
#
#   tools/gpu_evidence.sh OUT [--tiny] [--bin FILE] [--data ZIP] [--budget-s 540]
#                             [--train-s 300] [--python PY]
#
# --bin defaults to .gpu/slim-train, else target/release/slim-train; --data to
# .gpu/cifar10.zip, else ../shared/data/cifar10-jpeg/cifar10-jpeg.zip (an ImageFolder zip
# with train/ and test/). tools/gpu_evidence_pack.sh builds and fills .gpu/ and prints
# the device call; tools/gpu_evidence_finish.sh takes the returned files on from there.
#
# --tiny runs the same steps on the CPU in a minute or two (ResNet-20, a few hundred
# images, tiny batches): what CI runs and checks (tools/gpu_evidence_report.py --check),
# so that GPU time is not spent finding bugs.
# The PyTorch reference runs where `import torch` works (the GPU machine; here after
# tools/full_torch.sh); elsewhere the summary says it was skipped and why.
#
# OUT holds at most 8 files (the device's limit on returned files); the working files
# go to OUT.work beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }

[ $# -ge 1 ] || { sed -n '2,30p' "$0"; exit 2; }
out=$1
shift
tiny=0 bin="" data="" budget=540 train_s=300 python=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1; shift; continue ;;
    --bin) bin=$2 ;;
    --data) data=$2 ;;
    --budget-s) budget=$2 ;;
    --train-s) train_s=$2 ;;
    --python) python=$2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_evidence.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
for n in "$budget" "$train_s"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_evidence.sh: --budget-s and --train-s take whole seconds >= 1, not $n" >&2; exit 2; }
done

# The binary, the data and a Python: carried ones first, then this checkout's.
first() { for f in "$@"; do [ -e "$f" ] && { echo "$f"; return; }; done; echo "$1"; }
bin=${bin:-$(first .gpu/slim-train target/release/slim-train)}
data=${data:-$(first .gpu/cifar10.zip ../shared/data/cifar10-jpeg/cifar10-jpeg.zip)}
[ -x "$bin" ] || { echo "gpu_evidence.sh: no slim-train binary at $bin (--bin; tools/gpu_evidence_pack.sh builds one)" >&2; exit 2; }
[ -f "$data" ] || { echo "gpu_evidence.sh: no data at $data (--data: an ImageFolder zip with train/ and test/)" >&2; exit 2; }

# The GPU machine's torch: its libraries for the binary, its Python for the reference.
ref_env=()
if [ -x /opt/torch/.venv/bin/python ]; then
  python=${python:-/opt/torch/.venv/bin/python}
  site=$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  nv=$(find "$site/nvidia" -mindepth 2 -maxdepth 3 -type d -name lib 2>/dev/null | paste -sd: -)
  export LD_LIBRARY_PATH="$site/torch/lib${nv:+:$nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  # shellcheck source=/dev/null
  [ -f .deps/env.sh ] && source .deps/env.sh
  python=${python:-${SLIM_PYTHON:-python3}}
  if [ -d .deps/torch-full ]; then
    # shellcheck source=tools/full_torch.sh
    source tools/full_torch.sh 2>/dev/null || true
    ref_env=(env "PYTHONPATH=${FULL_TORCH_PYTHONPATH:-}" "LD_LIBRARY_PATH=${FULL_TORCH_LIBS:-}:${LD_LIBRARY_PATH:-}")
  fi
fi

if [ "$tiny" = 1 ]; then
  device=cpu backbone=resnet20 batch=16 bench_batch=8 bench_warmup=0 bench_steps=2 rounds=1
  train_limit=256 test_limit=128 max_epochs=3 workers=2 eval_batch=64 probe_epochs=3
  [ "$train_s" = 300 ] && train_s=20
else
  device=cuda backbone=resnet18-cifar batch=512 bench_batch=512 bench_warmup=5 bench_steps=20 rounds=2
  train_limit="" test_limit="" max_epochs=200 workers=$(nproc) eval_batch=1024 probe_epochs=30
fi

mkdir -p "$out"
work="$out.work"
rm -rf "$work"
mkdir -p "$work"
log="$out/run.log"
: >"$log"
say() { echo "gpu_evidence [$(elapsed) s] $*" | tee -a "$log" >&2; }
# Runs a step with its output in the log; a failed step fails the run, naming itself.
step() {
  local name=$1
  shift
  say "$name: $*"
  if ! "$@" >>"$log" 2>&1; then
    say "$name failed; the end of the log:"
    tail -n 30 "$log" >&2
    exit 1
  fi
}

say "bin $bin, data $data, device $device, tiny $tiny, budget ${budget}s, training ${train_s}s"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  >"$work/gpu.txt"
say "gpu: $(cat "$work/gpu.txt")"

# (a) One step, ours and PyTorch's, alternately.
common=(--backbone "$backbone" --batch "$bench_batch" --warmup "$bench_warmup" --steps "$bench_steps"
  --device "$device" --bf16 on --channels-last on)
ref_ok=1
if ! "${ref_env[@]}" "$python" -c 'import torch' >"$work/ref-import.txt" 2>&1; then
  ref_ok=0
  say "reference skipped: $python cannot import torch ($(tail -n 1 "$work/ref-import.txt"))"
fi
for r in $(seq 1 "$rounds"); do
  step "bench ours $r" "$bin" bench-step "${common[@]}" --json "$work/bench-ours-$r.json"
  if [ "$ref_ok" = 1 ]; then
    step "bench reference $r" "${ref_env[@]}" "$python" tools/bench_step_torch.py "${common[@]}" \
      --json "$work/bench-ref-$r.json"
  fi
done

# (a') Issue 17: a data-parallel group of one rank initialises (NCCL on a GPU when the
# binary has it, Gloo on the CPU) and trains a few steps; its line goes to the log.
step "one-rank group" "$bin" launch --nproc 1 -- pretrain --data "$data" --limit $((8 * batch)) \
  --backbone "$backbone" --device "$device" --batch-size "$batch" --epochs 1 --warmup-epochs 0 \
  --max-steps 4 --workers "$workers" --quiet --out "$work/one-rank-group"
say "one-rank group: $(tail -n 1 "$work/one-rank-group/metrics.jsonl")"

# (b) As many epochs as fit: an epoch is 2n view-images, at the full-width-only rate
# before the slow start (half the run) and the slimmable rate after it; 75% of the
# bench's rate leaves room for data loading and checkpoints.
limit_args=()
[ -n "$train_limit" ] && limit_args=(--limit "$train_limit")
n_train=$("$python" - "$data" "$train_limit" <<'EOF'
import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith("train/") and not n.endswith("/")]
print(min(len(names), int(sys.argv[2])) if sys.argv[2] else len(names))
EOF
)
left=$((budget - $(elapsed) - 90))
[ "$left" -lt "$train_s" ] && train_s=$((left > 10 ? left : 10))
epochs=$("$python" - "$work/bench-ours-1.json" "$n_train" "$train_s" "$max_epochs" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
n, seconds, cap = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
epoch_s = n * (1 / b["full"]["images_per_s"] + 1 / b["slimmable"]["images_per_s"])
print(max(2, min(cap, int(0.75 * seconds / epoch_s))))
EOF
)
steps_per_epoch=$(( n_train / batch ))
[ "$steps_per_epoch" -ge 1 ] || { say "only $n_train training images for batch $batch"; exit 1; }
warmup=$(( epochs / 10 > 0 ? epochs / 10 : 1 ))
say "$n_train training images, $epochs epochs of $steps_per_epoch steps planned in ${train_s}s"
echo "$epochs $n_train $train_s $warmup $batch" >"$work/plan.txt"
run="$work/pretrain"
t0=$(date +%s)
set +e
SLIM_PROGRESS_SECS=10 timeout --signal=TERM $((train_s * 3 / 2 + 30)) \
  "$bin" pretrain --data "$data" "${limit_args[@]}" --backbone "$backbone" --device "$device" \
  --epochs "$epochs" --batch-size "$batch" --warmup-epochs "$warmup" --workers "$workers" \
  --checkpoint-every "$steps_per_epoch" --out "$run" >>"$log" 2>&1
status=$?
set -e
echo "$status $(($(date +%s) - t0))" >"$work/pretrain-status.txt"
case "$status" in
  0) say "pretraining done in $(($(date +%s) - t0)) s" ;;
  124) say "pretraining stopped by the time limit; its last checkpoint is evaluated" ;;
  *) say "pretraining failed ($status); the end of the log:"; tail -n 30 "$log" >&2; exit 1 ;;
esac
[ -f "$run/checkpoint.safetensors" ] || { say "no checkpoint was written"; exit 1; }
cp "$run/metrics.jsonl" "$out/metrics.jsonl"

eval_args=(--checkpoint "$run/checkpoint.safetensors" --data "$data" --device "$device"
  --workers "$workers" --batch-size "$eval_batch")
[ -n "$train_limit" ] && eval_args+=(--limit-train "$train_limit" --limit-test "$test_limit")
step "knn" "$bin" knn "${eval_args[@]}" --compare-random --json "$work/knn.json"
step "linear probe" "$bin" linear --protocol fast "${eval_args[@]}" --epochs "$probe_epochs" --json "$work/linear.json"

# (c) The model without training state, in pieces that come back.
step "strip" "$bin" strip --checkpoint "$run/checkpoint.safetensors" --out "$work/model.safetensors"
split -b 15M -d "$work/model.safetensors" "$out/model.safetensors.part-"
(cd "$work" && sha256sum model.safetensors) >"$work/model.sha256"
say "model: $(stat -c %s "$work/model.safetensors") bytes in $(find "$out" -name 'model.safetensors.part-*' | wc -l) pieces"

say "summary"
"$python" tools/gpu_evidence_report.py "$work" "$out" --tiny "$tiny" --bin "$bin" --data "$data" \
  --wall-s "$(elapsed)" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
cat "$out/summary.md"
say "done: $(find "$out" -type f | wc -l) files in $out"
