#!/usr/bin/env bash
# Run every fuzz target for FUZZ_SECONDS (default 30) from the stored seeds.
# A crash is written to fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
for t in frame receipt entry chainlog checkpoint proof leaf enroll; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${FUZZ_SECONDS:-30} s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="${FUZZ_SECONDS:-30}" -max_len=65536 2>&1 | grep -E "^Done|ERROR|panicked" || true
  [ -z "$(ls -A "artifacts/$t" 2>/dev/null)" ] || { echo "fuzz: $t found a crash in fuzz/artifacts/$t" >&2; exit 1; }
done
