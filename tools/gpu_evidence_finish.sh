#!/usr/bin/env bash
# The second half of the GPU evidence, here: takes the files tools/gpu_evidence.sh left
# in its OUT (the device call's files_at), puts the model back together and checks its
# sha256 against summary.json, exports every width (slim-export --all, with the probe the
# GPU run trained) and measures the graphs on the test split with slim-bench, tract and
# ONNX Runtime.
#
#   tools/gpu_evidence_finish.sh FILES OUT [--data ZIP] [--limit N] [--profile release|test]
#
# --data defaults to ../shared/data/cifar10-jpeg/cifar10-jpeg.zip (the whole test split;
# --limit takes fewer); --profile test reuses the build of tools/test.sh, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
files=$1 out=$2
shift 2
data=../shared/data/cifar10-jpeg/cifar10-jpeg.zip limit="" profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2 ;;
    --limit) limit=$2 ;;
    --profile) profile=$2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_evidence_finish.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -f "$files/summary.json" ] || { echo "gpu_evidence_finish.sh: $files/summary.json is missing: not a gpu_evidence.sh output" >&2; exit 1; }
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh

case "$profile" in
  release) cargo build --release -p slim-onnx -p slim-bench --features slim-bench/ort; bin=target/release ;;
  test) cargo test --workspace --features "$(tools/features.sh)" --no-run; bin=target/debug ;;
  *) echo "gpu_evidence_finish.sh: --profile release or test, not $profile" >&2; exit 2 ;;
esac

mkdir -p "$out"
cat "$files"/model.safetensors.part-* >"$out/model.safetensors"
"$SLIM_PYTHON" - "$files/summary.json" "$out/model.safetensors" <<'EOF'
import hashlib, json, sys
want = json.load(open(sys.argv[1]))["model"]["sha256"]
got = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
if got != want:
    sys.exit(f"gpu_evidence_finish.sh: {sys.argv[2]} has sha256 {got}, summary.json says {want}: a piece is missing or damaged")
print(f"model: sha256 {got} matches summary.json")
EOF

"$bin/slim-export" --checkpoint "$out/model.safetensors" --all --out "$out/export"
limit_args=()
[ -n "$limit" ] && limit_args=(--limit "$limit")
"$bin/slim-bench" --model "$out/export" --data "$data" "${limit_args[@]}" --backend tract \
  --batch 1,32 --out "$out/bench-tract"
"$bin/slim-bench" --model "$out/export" --data "$data" "${limit_args[@]}" --backend ort \
  --batch 1,32 --out "$out/bench-ort" --compare "$out/bench-tract/report.json"
echo "done: $out/export (graphs), $out/bench-tract and $out/bench-ort (report.json, plot.png)"
