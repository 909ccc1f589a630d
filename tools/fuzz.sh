#!/usr/bin/env bash
# Fuzzes the readers of every file the toolchain takes (fuzz/: manifest, graph,
# checkpoint, image) with AFL++ through cargo-afl, on stable Rust, for FUZZ_SECONDS each
# (default 600), as many targets at once as there are cores. Findings go to
# runs/fuzz/<target>/default/crashes; a crasher becomes a regression test in the crate
# that reads that file. Usage: tools/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest graph checkpoint image)
jobs=${FUZZ_JOBS:-$(nproc)}
if ! cargo afl --version >/dev/null 2>&1; then
  echo "== installing cargo-afl (builds AFL++)"
  cargo install cargo-afl --locked --version 0.18.2
fi
echo "== building the targets (instrumented)"
(cd fuzz && cargo afl build --release --bins)
mkdir -p runs/fuzz
# AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES: the kernel's core_pattern is not ours to change.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  echo "== fuzzing $t for ${seconds} s"
  (cd fuzz && cargo afl fuzz -V "$seconds" -i "seeds/$t" -o "../runs/fuzz/$t" \
    "target/release/$t" > "../runs/fuzz/$t.log" 2>&1) &
done
wait
status=0
for t in "${targets[@]}"; do
  stats=runs/fuzz/$t/default/fuzzer_stats
  crashes=$(find "runs/fuzz/$t/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "runs/fuzz/$t/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats" 2>/dev/null || echo "?")
  paths=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats" 2>/dev/null || echo "?")
  echo "$t: $execs runs, corpus $paths, crashes $crashes, hangs $hangs"
  [ "$crashes" -eq 0 ] || status=1
done
exit $status
