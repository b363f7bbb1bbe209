# Benchmarks of the web page, sourced by scripts/bench.sh (which defines row, cmd, log, $WORK,
# $RUNS, $BOUNDS).
#
# Time to first frame of a recording and of the live view, as the browser test
# (tests/tests/web_browser.rs, tests/browser/web.mjs) measures them: headless Chromium against a
# server in the test's process on loopback, the real agent recording 1 s segments. No baseline:
# the figures are milliseconds from the page's navigation start to the video's first `playing`
# event (and first `timeupdate`). One run; the test is a functional test first and takes minutes.
# It is built in debug (as `make test` builds it): the server's part of a first frame is a few
# small HTTP reads, and a release build of the whole test crate costs more than it would change.

bench_web() {
  log "building the workspace binaries and the browser test (debug)"
  cargo build -q -p fieldseal-agent -p fieldseal-proto -p fieldseal-server --bins
  log "time to first frame (browser test, once)"
  local out=$WORK/web_browser.out
  if ! cargo test -q -p fieldseal-tests --test web_browser -- --nocapture >"$out" 2>&1; then
    log "the browser test failed:"
    tail -20 "$out" >&2
    return 1
  fi
  if grep -q '^SKIPPED' "$out"; then
    log "browser test skipped: $(grep -m1 '^SKIPPED' "$out")"
    row "Time to first frame (browser test)" "skipped" "—" "—" "report" "W"
    return 0
  fi
  local m=target/browser-artifacts/measurements.txt
  # figure NAME : the value of NAME in the test's measurements.
  figure() { tr ' ' '\n' <"$m" | sed -n "s/^$1=//p" | head -1; }
  row "Time to first frame of a recording, loopback, 1 s segments (ms from navigation start: first \`playing\`; first \`timeupdate\`)" \
    "$(figure recording_first_playing_ms); $(figure recording_first_timeupdate_ms)" "—" "—" "report" "W"
  row "Time to first frame of the live view of a recording device, loopback, 1 s segments (ms, as above)" \
    "$(figure live_first_playing_ms); $(figure live_first_timeupdate_ms)" "—" "—" "report" "W"
  row "… live view behind capture after 4 s of watching (s; segments behind the newest arrived)" \
    "$(figure live_lag_s); $(figure live_behind_segments)" "—" "—" "≤ 3 s; ≤ 2" "W"
  cmd "W" "cargo test -p fieldseal-tests --test web_browser -- --nocapture  # debug build; headless Chromium (playwright-core) on loopback; prints measure lines, kept in target/browser-artifacts/measurements.txt"
  echo "- web: $(tr '\n' ' ' <"$m")load average (1 min) $(cut -d' ' -f1 /proc/loadavg)" >>"$RUNS"
  cat >>"$BOUNDS" <<'TEXT'
Time to first frame: the player (hls.js) fetches the playlist, then the first segment (1 s of
video on loopback), then starts; the figure also holds the page's own start (scripts, the session
check, the case or device record) and the browser's decoder start-up; it was not broken down
further. Live: the playlist of the recording in progress, with the newest segments that arrived.
One run of a functional test on a shared machine: read it as an order of magnitude, not to the
millisecond.
TEXT
}
