#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPUs (issue 17): images/s of SimCLR pretraining
# with 2 ranks x 1 thread against 1 rank x 1 thread at the same per-rank batch (ideal
# ratio 2.0), with per-rank and with synchronised BatchNorm, and the time rank 0 waits in
# collectives per step. ResNet-20 at widths 1.0/0.75/0.5/0.25 on Fashion-MNIST (28 px).
#
#   tools/dp_scaling.sh OUT [--batch 64] [--steps 12]
#
# The first 2 steps of each run are left out of the means (warm-up). OUT/scaling.md is
# the summary. SLIM_TRAIN names a slim-train binary to use instead of building the
# release one.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
out=${1:?usage: tools/dp_scaling.sh OUT [--batch N] [--steps N]}
shift
batch=64 steps=12
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch=$2 ;;
    --steps) steps=$2 ;;
    *) echo "dp_scaling.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
if [ -z "${SLIM_TRAIN:-}" ]; then
  cargo build --release -p slim-train
  SLIM_TRAIN=target/release/slim-train
fi
rm -rf "$out" && mkdir -p "$out"
# Enough images for every step of the 2-rank run (global batch 2 x batch).
args=(pretrain --data /usr/share/datasets/fashion-mnist --limit $((2 * batch * (steps + 1)))
      --epochs 1 --warmup-epochs 0 --max-steps "$steps" --batch-size "$batch" --workers 1
      --quiet)
echo "dp_scaling: 1 rank x 1 thread" >&2
OMP_NUM_THREADS=1 "$SLIM_TRAIN" "${args[@]}" --out "$out/one" >/dev/null
echo "dp_scaling: 2 ranks x 1 thread" >&2
OMP_NUM_THREADS=1 "$SLIM_TRAIN" launch --nproc 2 -- "${args[@]}" --out "$out/two" >/dev/null
echo "dp_scaling: 2 ranks x 1 thread, synchronised BatchNorm" >&2
OMP_NUM_THREADS=1 "$SLIM_TRAIN" launch --nproc 2 -- "${args[@]}" --sync-bn --out "$out/two-sync" >/dev/null
"$SLIM_PYTHON" - "$out" "$batch" <<'PY'
import json, pathlib, platform, statistics, sys
out, batch = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def steps(run):
    lines = [json.loads(l) for l in (out / run / "metrics.jsonl").read_text().splitlines()]
    return lines[2:]
rows = {}
for run in ["one", "two", "two-sync"]:
    s = steps(run)
    ips = statistics.mean(x["images_per_s"] for x in s)
    wait = statistics.mean(x.get("collective_s", 0.0) for x in s)
    step = statistics.mean(2 * batch * (1 if run == "one" else 2) / x["images_per_s"] for x in s)
    rows[run] = (ips, wait, step)
base = rows["one"][0]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
md = [f"Data-parallel scaling, {cpu}, SimCLR ResNet-20 x 4 widths, Fashion-MNIST 28 px, "
      f"batch {batch} per rank, 1 thread per rank, mean of steps 3 on:", "",
      "| run | images/s (both views) | vs 1 rank | s per step | of which collectives |",
      "|---|---|---|---|---|"]
names = {"one": "1 rank", "two": "2 ranks, per-rank BatchNorm", "two-sync": "2 ranks, synchronised BatchNorm"}
for run, (ips, wait, step) in rows.items():
    share = f"{wait:.3f} s ({100 * wait / step:.1f}%)" if run != "one" else "-"
    md.append(f"| {names[run]} | {ips:.1f} | {ips / base:.2f}x | {step:.2f} | {share} |")
(out / "scaling.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
PY
