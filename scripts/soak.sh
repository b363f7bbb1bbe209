#!/usr/bin/env bash
# The long form of the fault-injection suite (issue 6), and docs/RELIABILITY.md.
#
#   scripts/soak.sh            the full soak: ≥ 500 agent kills, ≥ 100 server kills,
#                              1 h of impaired network traffic, 5 min of fuzzing per target
#   SOAK_SCALE=0.1 scripts/soak.sh   a reduced run (every count × 0.1); the report says so
#   SOAK_ONLY="powercut sim" scripts/soak.sh   only these parts; the others keep
#                              their figures from the run that last ran them
#
# Parts: network attacks spool binaries server_crash powercut fuzz_corpus sim
# access_log fuzz (every cargo-fuzz target). Each part's figures are kept in
# docs/soak/ (figures.jsonl, parts.jsonl: scripts/soak_merge.py), and the
# report is written from them, naming the date, commit and scale of each part.
#
# Every scenario is seeded and prints its seed; each appends one JSON line of
# figures to $FIELDSEAL_FAULT_LOG, from which the report is written. A failing
# scenario does not stop the soak: its failure is in the report, with its seed.
set -uo pipefail
cd "$(dirname "$0")/.."

SCALE="${SOAK_SCALE:-1}"
scaled() { python3 -c "import math,sys; print(max(1, math.ceil($1 * float(sys.argv[1]))))" "$SCALE"; }

export FIELDSEAL_AGENT_KILLS="${FIELDSEAL_AGENT_KILLS:-$(scaled 500)}"
export FIELDSEAL_SERVER_KILLS="${FIELDSEAL_SERVER_KILLS:-$(scaled 100)}"
export FIELDSEAL_NET_SECONDS="${FIELDSEAL_NET_SECONDS:-$(scaled 3600)}"
export FIELDSEAL_NET_PROFILES="${FIELDSEAL_NET_PROFILES:-$(scaled 60)}"
export FIELDSEAL_PARTITIONS="${FIELDSEAL_PARTITIONS:-$(scaled 100)}"
export FIELDSEAL_REBINDS="${FIELDSEAL_REBINDS:-$(scaled 20)}"
export FIELDSEAL_CLOCK_JUMPS="${FIELDSEAL_CLOCK_JUMPS:-$(scaled 40)}"
export FIELDSEAL_FLOOD="${FIELDSEAL_FLOOD:-$(scaled 3000)}"
export FIELDSEAL_BAD_FRAMES="${FIELDSEAL_BAD_FRAMES:-$(scaled 600)}"
# Power cuts of each whole data folder on the FUSE power-cut filesystem
# (tests/powercut.rs): random and sampled exact ones; `make test` runs 6 each.
export FIELDSEAL_POWER_CUTS="${FIELDSEAL_POWER_CUTS:-$(scaled 200)}"
export FIELDSEAL_SPOOL_STEPS="${FIELDSEAL_SPOOL_STEPS:-$(scaled 40)}"
# The simulated pair (tests/sim.rs): seeded steps of the real sync machine
# against the real ingest decisions; `make test` runs 120,000.
export FIELDSEAL_SIM_STEPS="${FIELDSEAL_SIM_STEPS:-$(scaled 20000000)}"
# The access log as an outside witness checks it (tests/access_log.rs):
# rounds of logins, refusals and evidence reads, every leaf proved.
export FIELDSEAL_AUDIT_ROUNDS="${FIELDSEAL_AUDIT_ROUNDS:-$(scaled 5000)}"
FUZZ_SECONDS="${FUZZ_SECONDS:-$(scaled 300)}"

OUT="${SOAK_OUT:-target/soak}"
RESULTS="${SOAK_RESULTS:-docs/soak}"
ONLY=" $(echo "${SOAK_ONLY:-network attacks spool binaries server_crash powercut fuzz_corpus sim access_log fuzz}" | tr ',' ' ') "
mkdir -p "$OUT" "$RESULTS"
OUT=$(cd "$OUT" && pwd)
STATUS="$OUT/status.txt"
: > "$STATUS"
START=$(date -u +%FT%TZ)
SOAK_COMMIT=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || SOAK_COMMIT="$SOAK_COMMIT+changes"
export SOAK_COMMIT
wants() { [[ "$ONLY" == *" $1 "* ]]; }
# keep NAME STATUS SECONDS LOG: fold one part's outcome into $RESULTS.
keep() {
  python3 scripts/soak_merge.py "$RESULTS" "$1" "$2" "$3" "$4" "$OUT/figures-$1.jsonl" \
    "$START" "$SOAK_COMMIT" "$SCALE" || exit 1
}

cargo build --workspace --all-targets || exit 1

run() { # name, then the cargo test arguments
  local name=$1; shift
  wants "$name" || return 0
  local t0=$SECONDS st=ok
  echo "soak: $name"
  export FIELDSEAL_FAULT_LOG="$OUT/figures-$name.jsonl"
  : > "$FIELDSEAL_FAULT_LOG"
  if ! cargo test -p fieldseal-tests "$@" -- --include-ignored --test-threads=1 --nocapture > "$OUT/$name.log" 2>&1; then
    st=FAILED
  fi
  echo "$name $st $((SECONDS - t0))" >> "$STATUS"
  keep "$name" "$st" "$((SECONDS - t0))" "$OUT/$name.log"
}

run network --test faults
run attacks --test faults_attacks
run spool --test faults_spool
run binaries --test faults_binaries
run server_crash --test server_crash
run powercut --test powercut
run fuzz_corpus --test fuzz_corpus
run sim --test sim
run access_log --test access_log

# Each fuzz target for a while, starting from the stored seeds; what it adds
# stays in fuzz/corpus (ignored by git) for the next run.
if wants fuzz; then
  if command -v cargo-fuzz >/dev/null; then
    for t in frame receipt entry chainlog checkpoint proof leaf enroll; do
      mkdir -p "fuzz/corpus/$t"
      t0=$SECONDS st=ok
      : > "$OUT/figures-fuzz-$t.jsonl"
      if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" seeds/"$t" -- \
            -max_total_time="$FUZZ_SECONDS" -max_len=65536 > "$OUT/fuzz-$t.log" 2>&1); then
        st=FAILED
        echo "fuzz-$t FAILED (see $OUT/fuzz-$t.log and fuzz/artifacts/$t)" >> "$STATUS"
      else
        echo "fuzz-$t ok" >> "$STATUS"
      fi
      keep "fuzz-$t" "$st" "$((SECONDS - t0))" "$OUT/fuzz-$t.log"
    done
  else
    echo "fuzz SKIPPED (cargo-fuzz is not installed: cargo install cargo-fuzz --locked)" >> "$STATUS"
  fi
fi

python3 scripts/reliability_report.py "$RESULTS" > docs/RELIABILITY.md || exit 1
echo "soak: wrote docs/RELIABILITY.md from $RESULTS (commit both)"
cat "$STATUS"
! grep -q FAILED "$STATUS"
