#!/usr/bin/env bash
# Fills the ignored folder .gpu/ with what tools/gpu_evidence.sh needs on the GPU machine,
# within the device's 64 MiB carried per call (the working tree counted in): the CUDA
# build of slim-train, stripped, as .gpu/slim-train, and as much of CIFAR-10 as then fits
# as .gpu/cifar10.zip (the first images of each class of the train split, and of the test
# split --test-per-class of each). Prints what it packed and the device call to make.
#
#   tools/gpu_evidence_pack.sh [--bin FILE] [--test-per-class 1000] [--limit-mib 64]
#
# --bin takes a slim-train built elsewhere instead of running tools/build_cuda.sh (which
# installs torch's CUDA libraries once, about 2.5 GB, and builds into target/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="" test_per_class=1000 limit_mib=64
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2 ;;
    --test-per-class) test_per_class=$2 ;;
    --limit-mib) limit_mib=$2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_evidence_pack.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
source_zip=../shared/data/cifar10-jpeg/cifar10-jpeg.zip
[ -f "$source_zip" ] || { echo "gpu_evidence_pack.sh: no $source_zip (the CIFAR-10 copy beside the checkout)" >&2; exit 1; }

if [ -z "$bin" ]; then
  tools/build_cuda.sh
  bin=target/cuda/release/slim-train
fi
mkdir -p .gpu
rm -f .gpu/cifar10.zip
cp "$bin" .gpu/slim-train
strip .gpu/slim-train

# What travels besides .gpu: tracked files and untracked ones git does not ignore.
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
binary=$(stat -c %s .gpu/slim-train)
budget=$(( limit_mib * 1048576 - tree - binary - 1048576 ))
echo "carried: working tree $tree bytes, binary $binary bytes; $budget bytes left for data (1 MiB kept free)"
"$SLIM_PYTHON" - "$source_zip" .gpu/cifar10.zip "$budget" "$test_per_class" <<'EOF'
import collections, sys, zipfile
src, dst, budget, test_per_class = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
z = zipfile.ZipFile(src)
files = [i for i in z.infolist() if not i.is_dir()]
by = collections.defaultdict(list)
for i in files:
    split, cls, _ = i.filename.split("/", 2)
    by[(split, cls)].append(i)
for v in by.values():
    v.sort(key=lambda i: i.filename)
classes = sorted({c for s, c in by if s == "train"})
# A stored entry costs its bytes, its name twice (local and central headers) and ~76 bytes.
cost = lambda i: i.file_size + 2 * len(i.filename) + 76
chosen = [i for c in classes for i in by[("test", c)][:test_per_class]]
used = sum(map(cost, chosen)) + 22
per_class = 0
while per_class < min(len(by[("train", c)]) for c in classes):
    more = sum(cost(by[("train", c)][per_class]) for c in classes)
    if used + more > budget:
        break
    used += more
    per_class += 1
chosen += [i for c in classes for i in by[("train", c)][:per_class]]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
    for i in chosen:
        out.writestr(i, z.read(i))
print(f"data: {dst}: {per_class * len(classes)} training images ({per_class} per class) and "
      f"{min(test_per_class, 1000) * len(classes)} test images, CIFAR-10 JPEG copy")
EOF
total=$(( tree + binary + $(stat -c %s .gpu/cifar10.zip) ))
echo "carried in all: $total bytes ($(( total / 1048576 )) MiB of $limit_mib)"
cat <<EOF

The device call (one run of about 9 minutes; see README, GPU evidence):
  run(command="tools/gpu_evidence.sh \$OUT", carry=[".gpu"], timeout_s=600)
then, with the returned files:
  tools/gpu_evidence_finish.sh FILES_AT runs/gpu-evidence
EOF
