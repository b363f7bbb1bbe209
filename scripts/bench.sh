#!/usr/bin/env bash
# Benchmarks of the agent against plain tools doing the same work, measured in the same run,
# written to docs/PERFORMANCE.md. Run it with `make bench`.
#
# Every figure is a ratio against a baseline measured in this run: the machines are shared and
# noisy, so absolute numbers from another day mean little. Runs alternate ours/baseline in ABBA
# order (ours first in odd repetitions, baseline first in even ones) so that drift in the
# machine's load falls on both alike; the table gives medians.
#
# Adding a benchmark: write a `bench_*` function that measures ours and its baseline with
# `measure`, then calls `row` (one table row per figure) and `cmd` (the exact commands, once
# per label), and call it from `main`. The document is assembled from those at the end.
#
# Environment:
#   BENCH_REPS=3          repetitions (pairs) per benchmark
#   BENCH_SECONDS=20      length of each real-time recording
#   BENCH_SIZES="1280x720 1920x1080"
#   BENCH_OUT=docs/PERFORMANCE.md
#   BENCH_ONLY="archive net s3 compute sign verifychain web capture"   which groups to run (default: all; commas or
#                         spaces); each group's variables are listed in its file under scripts/bench/
#   BENCH_SKIP_CAPTURE=1  the same as leaving capture out of BENCH_ONLY
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=" ${BENCH_ONLY:-archive net s3 compute sign verifychain web capture} "
ONLY=${ONLY//,/ }
if [ -n "${BENCH_SKIP_CAPTURE:-}" ]; then ONLY=${ONLY//capture/}; fi
# wants GROUP : whether BENCH_ONLY selects the group of rows.
wants() { [[ "$ONLY" == *" $1 "* ]]; }
# shellcheck source=scripts/bench/net.sh
. scripts/bench/net.sh
# shellcheck source=scripts/bench/s3.sh
. scripts/bench/s3.sh
# shellcheck source=scripts/bench/compute.sh
. scripts/bench/compute.sh
# shellcheck source=scripts/bench/web.sh
. scripts/bench/web.sh

REPS=${BENCH_REPS:-3}
SECS=${BENCH_SECONDS:-20}
SIZES=${BENCH_SIZES:-"1280x720 1920x1080"}
OUT=${BENCH_OUT:-docs/PERFORMANCE.md}
FPS=30

# The agent's encoder settings (agent/src/capture/encode.rs and the config.rs defaults), given to
# the baseline word for word: the fixed GOP, and the memory settings read from encode.rs so that
# the two cannot drift apart. `check_same_x264` also compares the option strings x264 writes into
# both streams and fails the benchmark if they differ.
GOP=$((4 * FPS))
# (the string may sit on the line after the name, where rustfmt puts a long one)
X264_MEMORY=$(awk '/X264_MEMORY_PARAMS: &str/ { f = 1 } f && /"/ { match($0, /"[^"]*"/); print substr($0, RSTART + 1, RLENGTH - 2); exit }' agent/src/capture/encode.rs)
[ -n "$X264_MEMORY" ] || { echo "bench: X264_MEMORY_PARAMS not found in encode.rs" >&2; exit 1; }
X264_PARAMS="keyint=$GOP:min-keyint=$GOP:scenecut=0:$X264_MEMORY"

AGENT=target/release/fieldseal-agent
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fieldseal-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROWS=$WORK/rows.md
COMMANDS=$WORK/commands.md
RUNS=$WORK/runs.md
BOUNDS=$WORK/bounds.md
: >"$ROWS"
: >"$COMMANDS"
: >"$RUNS"
: >"$BOUNDS"

# discard DIR : set a finished run's files aside; they are deleted when the bench ends.
# This machine's ext4 has no journal, and without one ext4 will not reuse an inode freed in the
# last 5 s (300 s while its inode table block is dirty): every file created soon after a large
# `rm -rf` first steps over each of those inodes (`recently_deleted`, 12 % of the server's time at
# 400 simulated devices on 2026-11-28). A server does not delete its archive between uploads, so
# neither do the runs measured here.
mkdir -p "$WORK/discarded"
discard() {
  [ -e "$1" ] || return 0
  mv "$1" "$(mktemp -d "$WORK/discarded/XXXXXX")/"
}

log() { echo "bench: $*" >&2; }

# measure NAME CMD... : runs CMD under GNU time, keeps its output in $WORK/NAME.{out,time};
# prints "cpu_seconds peak_rss_kb wall_seconds" (cpu = user + sys).
measure() {
  local name=$1
  shift
  /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>&1 || {
    log "$name failed:"
    tail -20 "$WORK/$name.out" >&2
    return 1
  }
  awk -F': ' '
    /User time \(seconds\)/ { u = $2 }
    /System time \(seconds\)/ { s = $2 }
    /Maximum resident set size \(kbytes\)/ { r = $2 }
    /Elapsed \(wall clock\) time/ { n = split($NF, t, ":"); e = 0; for (i = 1; i <= n; i++) e = e * 60 + t[i] }
    END { printf "%.2f %d %.2f\n", u + s, r, e }' "$WORK/$name.time"
}

# median V... : the median of numbers (the mean of the middle two for an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR : floating-point arithmetic.
calc() { awk "BEGIN { printf \"%.2f\n\", $1 }"; }

# row FIGURE OURS BASELINE RATIO GOAL COMMAND : one row of the table.
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@" >>"$ROWS"; }

# cmd LABEL TEXT : the exact command behind a label of the table's command column.
cmd() { printf -- '- **%s**: `%s`\n' "$1" "$2" >>"$COMMANDS"; }

# met VALUE OP LIMIT : "met" or "**not met**".
met() { awk "BEGIN { exit !($1 $2 $3) }" && echo "met" || echo "**not met**"; }

# x264_options FILE.ts : the option string x264 writes into the stream's SEI (read from the
# elementary stream: in the transport stream it is split across 188-byte packets).
x264_options() {
  ffmpeg -nostdin -v error -i "$1" -map 0:v -c copy -f h264 - 2>/dev/null |
    grep -a -o -m1 'options: [^[:cntrl:]]*' | head -1 || true
}

check_same_x264() {
  local ours=$1 base=$2 a b
  a=$(x264_options "$ours")
  b=$(x264_options "$base")
  if [ -z "$a" ] || [ "$a" != "$b" ]; then
    log "x264 settings differ between the agent and the baseline:"
    log "  agent:    $a"
    log "  baseline: $b"
    exit 1
  fi
  echo "$a"
}

# bench_capture W H : a real-time recording of SECS seconds from the synthetic camera, agent
# (capture, encode, mux, hash, sign, fsync) vs the ffmpeg CLI (capture, encode, mux to files).
bench_capture() {
  local w=$1 h=$2 tag="${2}p" i
  local data=$WORK/agent-$tag base=$WORK/ffmpeg-$tag
  local -a ours_cpu=() ours_rss=() base_cpu=() base_rss=() cpu_ratio=() rss_ratio=() dropped=()
  local -a ours_wall=() base_wall=()
  local -a ffmpeg_cmd=(ffmpeg -nostdin -hide_banner -loglevel error
    -re -f lavfi -i "testsrc2=size=${w}x${h}:rate=$FPS"
    -f lavfi -re -i "sine=frequency=1000:sample_rate=48000"
    -t "$SECS" -c:v libx264 -preset veryfast -b:v 2M -x264-params "$X264_PARAMS"
    -c:a aac -b:a 96k -ac 1 -f segment -segment_time 4 -segment_format mpegts "$base/out%03d.ts")
  local -a agent_cmd=("$AGENT" record --data "$data" --duration "$SECS")

  run_ours() {
    rm -rf "$data"
    "$AGENT" init --data "$data" >/dev/null
    sed -i -e "s/^width = .*/width = $w/" -e "s/^height = .*/height = $h/" "$data/config.toml"
    local -a m
    m=($(measure "agent-$tag-$i" "${agent_cmd[@]}"))
    ours_cpu+=("${m[0]}")
    ours_rss+=("${m[1]}")
    ours_wall+=("${m[2]}")
    local d
    d=$(grep -o '[0-9]* frames dropped' "$WORK/agent-$tag-$i.out" | awk '{ print $1 }')
    dropped+=("${d:-?}")
  }
  run_base() {
    rm -rf "$base"
    mkdir -p "$base"
    local -a m
    m=($(measure "ffmpeg-$tag-$i" "${ffmpeg_cmd[@]}"))
    base_cpu+=("${m[0]}")
    base_rss+=("${m[1]}")
    base_wall+=("${m[2]}")
  }

  for ((i = 1; i <= REPS; i++)); do
    log "${w}x${h} repetition $i/$REPS"
    if ((i % 2)); then run_ours; run_base; else run_base; run_ours; fi
    cpu_ratio+=("$(calc "${ours_cpu[-1]} / ${base_cpu[-1]}")")
    rss_ratio+=("$(calc "${ours_rss[-1]} / ${base_rss[-1]}")")
    log "  agent ${ours_cpu[-1]} s ${ours_rss[-1]} kB, dropped ${dropped[-1]}; ffmpeg ${base_cpu[-1]} s ${base_rss[-1]} kB"
  done

  local x264
  x264=$(check_same_x264 "$(ls "$data"/media/*.ts | head -1)" "$base/out000.ts")

  local oc bc orss brss cr rr dmax
  oc=$(calc "$(median "${ours_cpu[@]}")")
  bc=$(calc "$(median "${base_cpu[@]}")")
  # GNU time's kbytes are KiB; the table's MB are 10^6 bytes.
  orss=$(calc "$(median "${ours_rss[@]}") * 1024 / 1000000")
  brss=$(calc "$(median "${base_rss[@]}") * 1024 / 1000000")
  cr=$(median "${cpu_ratio[@]}")
  rr=$(median "${rss_ratio[@]}")
  dmax=$(printf '%s\n' "${dropped[@]}" | sort -g | tail -1)
  local label="A$tag vs B$tag" cpu_goal rss_goal drop_goal
  # The issue states the goals at 1280x720 and 1920x1080 alike.
  cpu_goal="≤ 1.10×: $(met "$cr" '<=' 1.10)"
  rss_goal="≤ 120 MB: $(met "$orss" '<=' 120)"
  drop_goal="0: $(met "$dmax" '==' 0)"
  row "CPU time, ${w}x${h}@$FPS, $SECS s real time (user+sys, s)" "$oc" "$bc" \
    "$(printf '%.2f' "$cr")×" "$cpu_goal" "$label"
  row "Peak RSS, ${w}x${h}@$FPS (MB)" "$orss" "$brss" "$(printf '%.2f' "$rr")×" "$rss_goal" "$label"
  row "Frames dropped, ${w}x${h}@$FPS (worst run)" "$dmax" "—" "—" "$drop_goal" "A$tag"
  row "Wall time, ${w}x${h}@$FPS (s; real time is $SECS)" "$(calc "$(median "${ours_wall[@]}")")" \
    "$(calc "$(median "${base_wall[@]}")")" "—" "—" "$label"
  cmd "A$tag" "fieldseal-agent record --data D --duration $SECS  # D/config.toml: width = $w, height = $h"
  local shown=("${ffmpeg_cmd[@]//$base\//}")
  cmd "B$tag" "${shown[*]}"
  {
    echo "- ${w}x${h}, in run order of pairs: agent CPU s ${ours_cpu[*]}; ffmpeg CPU s ${base_cpu[*]};" \
      "CPU ratios ${cpu_ratio[*]}; agent RSS kB ${ours_rss[*]}; ffmpeg RSS kB ${base_rss[*]};" \
      "agent frames dropped ${dropped[*]};" \
      "wall s agent ${ours_wall[*]}, ffmpeg ${base_wall[*]}"
    echo "  - x264 settings of both streams: \`${x264#options: }\`"
  } >>"$RUNS"
}

write_doc() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  {
    cat <<EOF
# Performance

Written by \`make bench\` (\`scripts/bench.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'); do not edit by hand.

Machine: $(nproc) CPUs ($cpu), $(free -m | awk '/^Mem:/ { print $2 }') MB RAM, $(uname -sr),
$(ffmpeg -version | head -1 | cut -d' ' -f1-3). The machine is shared with other work, so every figure is
set against a baseline measured in the same run: $REPS alternating pairs (ours first in odd
repetitions, the baseline first in even ones), medians shown. **ratio** is the median of the
per-pair ratios, which cancels load that both runs of a pair saw; it can differ a little from
ours ÷ baseline of the medians.

| figure | ours | baseline | ratio | goal | command |
| --- | --- | --- | --- | --- | --- |
EOF
    cat "$ROWS"
    [ ! -f "$WORK/micro.md" ] || cat "$WORK/micro.md"
    echo
    echo "## Commands"
    echo
    cat "$COMMANDS"
    echo
    cat <<'EOF'
CPU time is user + system time and peak RSS the "Maximum resident set size" of `/usr/bin/time -v`
(GNU time). The agent's figure covers everything it does per segment beyond ffmpeg's: SHA-256 of
the segment, the signed chain entry, fsync of file, folder and chain log, and the sled index.
MB are 10⁶ bytes (GNU time reports KiB), the stricter reading of the goal.
EOF
    echo
    echo "The baseline gets the agent's x264 settings word for word, its memory settings"
    echo "\`$X264_MEMORY\` included (read from \`X264_MEMORY_PARAMS\` in agent/src/capture/encode.rs,"
    echo "where each value's reason is written). The script also compares the option strings x264 writes"
    echo "into the first segment of each (under Raw runs) and fails if they differ (\`sync-lookahead\` is"
    echo "not among the options x264 prints; it reaches both through the same \`-x264-params\` string)."
    echo
    echo "## What bounds it"
    echo
    cat "$BOUNDS"
    echo
    capacity_section
    echo
    echo "## Raw runs"
    echo
    cat "$RUNS"
  } >"$OUT"
  log "wrote $OUT"
}

# shellcheck source=scripts/bench/archive.sh
. scripts/bench/archive.sh

main() {
  if wants archive; then
    bench_archive
  fi
  if wants net; then
    bench_net
  fi
  if wants s3; then
    bench_s3
  fi
  if wants compute; then
    bench_compute
  fi
  if wants sign; then
    bench_sign
  fi
  if wants verifychain; then
    bench_chain_verify
  fi
  if wants web; then
    bench_web
  fi
  if wants capture; then
    log "building the agent (release)"
    cargo build -q --release -p fieldseal-agent
    bench_capture_all
  fi
  write_doc
}

bench_capture_all() {
  for size in $SIZES; do
    bench_capture "${size%x*}" "${size#*x}"
  done
  cat >>"$BOUNDS" <<'EOF'
CPU: x264 dominates both processes, then testsrc2 drawing the picture and the AAC encoder. Both
sides run the same FFmpeg libraries with the same settings, so the ratio measures the agent's own
work on top (handing frames between threads, the in-memory muxer, SHA-256, signing, fsync), which
is small next to encoding; the noise of the shared machine is of the same order.

Memory, from `/proc/PID/smaps` at the agent's peak (sampled every 0.2 s) on 2026-11-29, at
1920x1080 (720p in brackets), in MiB (2^20 bytes, as smaps counts) of a 115 MiB (120.4 MB) peak:
- 56 MiB of shared libraries (the same at 720p): 47 MiB of their pages and 9 MiB of relocated
  data. Debian's FFmpeg links some 215 of them (codecs, filters down to three text-to-speech
  voices of 1.5 MiB each; 9 MiB are the 49 that only libavdevice, the v4l2 and ALSA inputs,
  brings); the ffmpeg CLI maps the same. Only an FFmpeg built with fewer components would
  shrink it, and it is half of the agent's peak at 1080p.
- 37.5 MiB x264 (~17 MiB): 2 reference frames of 10 MiB (a picture with three half-pel planes)
  and 3 input frames of 5.8 MiB (with quarter-size lookahead planes). `X264_MEMORY_PARAMS` in
  agent/src/capture/encode.rs sets how many and gives each value's measured saving and, for the
  last (no B-frames and no lookahead, 2026-11-29: 3 reference and 7 input frames before, 71
  MiB), its cost in compression at the same bit rate; x264's defaults on 2 cores held 7
  reference and 10 input frames (135 MB at 1080p). The baseline gets the same settings. The
  agent also turns transparent huge pages off for itself (agent/src/capture/thp.rs): x264 asks
  for them, and rounding each buffer up to 2 MiB pages cost 8–9 MB.
- 6 MiB (2.6 MiB) of raw frames between camera and encoder, 3 MiB each at 1080p: the one being
  encoded and the next. FFmpeg's frame pool keeps as many as were ever out at once; a stall
  queues at most 12 MB of them (`RAW_VIDEO_BUDGET_BYTES` in agent/src/capture/source.rs, 3
  frames at 1080p with the one being encoded) and then drops. The synthetic camera makes each
  picture when its time has come (it used to make it and wait a frame interval with it in
  hand), and the default one, `testsrc2` made at the encoder's size and rate, has no `fps`
  filter, which held one more frame to time the next (a custom lavfi spec, a file or a camera
  keeps it).
- ~15 MiB the rest: the segment being muxed and the one being written (~1.1 MB each), malloc's
  heap and per-thread arenas, the stacks of 22 threads (7 of them sled's), sled's cache.
  Allocator slack is not where it goes: `malloc_trim(0)` called into a running agent gave back
  nothing measurable, and `GLIBC_TUNABLES` with a fixed `mmap_threshold` or with `arena_max=1`
  changed the peak by less than the noise between runs.

Measured with `/usr/bin/time -v` of `fieldseal-agent record --duration 20`, 3 runs each, on
2026-11-29 at a load of 10–16 on the 2 cores from other work: before these settings 155.7,
156.6, 156.8 MB at 1080p (232–412 frames dropped) and 104.6, 114.3, 114.9 MB at 720p (0–80
dropped); after, 123.4, 120.4, 120.7 MB at 1080p (2, 0, 0 dropped) and 90.9, 90.1, 99.6 MB at
720p (0, 0, 149 dropped). A run that drops frames peaks higher (its queue was full), so the
figure to hold against the goal is that of a run without drops: 120.4–120.7 MB, still 0.4–0.7
MB over 120, of which the libraries alone are 58.6. In the same hour the ffmpeg CLI went from
181.0 to 152.4 MB at 1080p and from 118.5 to 105.2 MB at 720p with the old and the new x264
settings, and with the new ones kept real time at 1080p where with the old it lagged (25–40 s
of wall time for 20 s). CPU time fell by a fifth on both sides (1080p: agent 7.6 s, ffmpeg
7.5–7.7 s; 720p: 4.4 and 4.3–4.6 s), so the ratio stays at about 1.0.

A busy machine raises the agent's peak only as far as the raw-video budget: past it frames are
dropped, and counted: a camera cannot wait. ffmpeg reading a synthetic source can, so where the
machine cannot keep up, ffmpeg's wall time runs past the recording's length (it lags) while the
agent drops frames and does not encode them, which also lowers its CPU time; the wall time rows
show whether the baseline kept up. With the machine's load at 7–12 from other work (2026-11-28),
neither kept real time at 1080p, and ffmpeg took 21–45 s for 8 s of video.

The budget is what 1080p's memory goal costs in drops: 3 frames there (0.1 s), so a stall of
the capture thread longer than that drops frames where ffmpeg, which may lag and catch up, does
not (in a run at 07:50 UTC on 2026-11-28 ffmpeg kept real time in the first 1080p pair, 20.25 s,
and the agent dropped 8 frames; at a load of 6–7 on the 2 cores both fell behind in the others).
Each frame more would add 3 MB to the peak. One less (7 MB, tried on 2026-11-29) saves memory
only in a stall, and there it drops a frame instead. Without B-frames x264 needs a fifth less
CPU per frame, so stalls are rarer: at a load of 10–12 the agent dropped no frame in 4 of 6
runs at 1080p (2 and 12 in the others), where with B-frames it dropped hundreds at 15–16. A
quiet machine, where the goal of 0 drops applies, was not available on the day of these
figures.

EOF
}

main "$@"
