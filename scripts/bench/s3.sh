# The S3 rows of `make bench` (issue 18): blobs on a three-node Garage cluster on loopback
# (`fieldseal-garage`, the tests' harness), against the same bytes moved with curl. Sourced by
# scripts/bench.sh, which provides `calc`, `median`, `row`, `cmd`, `met`, `log`, `discard`, $WORK,
# $REPS, $RUNS; uses net.sh's server and process helpers.
#
# Environment:
#   BENCH_S3_MIB=256      backlog uploaded, in 1 MiB segment files

S3_MIB=${BENCH_S3_MIB:-256}
S3_GARAGE=$PWD/target/release/fieldseal-garage
S3_PID=
S3_FIFO=

s3_cleanup() {
  # Closing the harness's standard input stops the nodes and removes their folders.
  if [ -n "$S3_PID" ]; then
    exec {S3_FD}>&- 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
  fi
}

# s3_up : a fresh cluster; sets S3_ENDPOINT, S3_BUCKET, S3_REGION, S3_KEY, S3_SECRET and
# S3_TOML (the server's [blobs] table).
s3_up() {
  S3_FIFO=$WORK/garage.in
  rm -f "$S3_FIFO"
  mkfifo "$S3_FIFO"
  "$S3_GARAGE" --creds "$WORK/s3-creds.toml" <"$S3_FIFO" >"$WORK/garage.out" 2>&1 &
  S3_PID=$!
  exec {S3_FD}>"$S3_FIFO"
  local i
  for ((i = 0; i < 1200; i++)); do grep -qs '^ready' "$WORK/garage.out" && break; sleep 0.1; done
  grep -q '^ready' "$WORK/garage.out" || { log "Garage did not start:"; tail -20 "$WORK/garage.out" >&2; return 1; }
  S3_ENDPOINT=$(sed -n 's/^endpoint=//p' "$WORK/garage.out")
  S3_BUCKET=$(sed -n 's/^bucket=//p' "$WORK/garage.out")
  S3_REGION=$(sed -n 's/^region=//p' "$WORK/garage.out")
  S3_KEY=$(sed -n 's/^key_id=//p' "$WORK/garage.out")
  S3_SECRET=$(sed -n 's/^secret=//p' "$WORK/garage.out")
  S3_TOML=$(sed -n 's/^blobs_toml=//p' "$WORK/garage.out")
}

# s3_curl ARGS… : curl signing for the cluster (Garage wants x-amz-content-sha256 on every
# request, GET included).
s3_curl() {
  curl --silent --show-error --fail --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_KEY:$S3_SECRET" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# s3_ours MEDIA TAG : upload MEDIA through a fresh server whose blobs are in the bucket, then
# verify the archive over S3; seconds of each in S3_UP and S3_VERIFY.
s3_ours() {
  local media=$1 tag=$2 t0 t1
  net_place loopback
  # The server starts on a folder store and is restarted on the bucket: init writes config.toml.
  net_server_start "$WORK/srv-$tag"
  net_stop "$NET_SERVER_PID"
  printf '\n%s\n' "$S3_TOML" >>"$WORK/srv-$tag/config.toml"
  "$NET_SERVER" run --data "$WORK/srv-$tag" --quic "$NET_SERVER_ADDR" --http "$NET_HTTP_ADDR" \
    >"$WORK/srv-$tag.log" 2>&1 &
  NET_SERVER_PID=$!
  NET_PIDS+=("$NET_SERVER_PID")
  net_wait_for "$WORK/srv-$tag/control.sock" 30
  "$NET_LOADGEN" upload --server "$NET_SERVER_ADDR" --server-data "$WORK/srv-$tag" \
    --media "$media" --seed 1 >"$WORK/$tag.out" 2>&1 || {
    log "upload $tag failed:"
    tail -20 "$WORK/$tag.out" "$WORK/srv-$tag.log" >&2
    return 1
  }
  net_stop "$NET_SERVER_PID"
  S3_UP=$(sed -n 's/^seconds=//p' "$WORK/$tag.out")
  t0=$(net_now)
  "$NET_SERVER" verify --data "$WORK/srv-$tag" >"$WORK/$tag.verify" 2>&1 || {
    log "server verify over S3 after upload $tag failed:"
    tail -20 "$WORK/$tag.verify" >&2
    return 1
  }
  t1=$(net_now)
  S3_VERIFY=$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }")
  discard "$WORK/srv-$tag"
}

# s3_base MEDIA TAG : PUT the same files with curl (as many at once as the sync client
# uploads), then GET them all back to /dev/null; seconds in S3_UP and S3_VERIFY.
s3_base() {
  local media=$1 tag=$2 t0 t1 f
  : >"$WORK/$tag.put"
  : >"$WORK/$tag.get"
  for f in "$media"/*; do
    printf 'upload-file = "%s"\nurl = "%s/%s/base-%s/%s"\n' "$f" "$S3_ENDPOINT" "$S3_BUCKET" "$tag" \
      "$(basename "$f")" >>"$WORK/$tag.put"
    printf 'url = "%s/%s/base-%s/%s"\noutput = "/dev/null"\n' "$S3_ENDPOINT" "$S3_BUCKET" "$tag" \
      "$(basename "$f")" >>"$WORK/$tag.get"
  done
  t0=$(net_now)
  s3_curl --parallel --parallel-max "$NET_STREAMS" --config "$WORK/$tag.put" \
    >"$WORK/$tag.out" 2>&1 || { log "curl PUT $tag failed:"; tail -20 "$WORK/$tag.out" >&2; return 1; }
  t1=$(net_now)
  S3_UP=$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }")
  t0=$(net_now)
  # verify reads 8 blobs at once from a bucket (blobstore::s3::PARALLEL_READS): so does curl.
  s3_curl --parallel --parallel-max 8 --config "$WORK/$tag.get" >"$WORK/$tag.out" 2>&1 || {
    log "curl GET $tag failed:"
    tail -20 "$WORK/$tag.out" >&2
    return 1
  }
  t1=$(net_now)
  S3_VERIFY=$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }")
}

bench_s3() {
  log "building the server, the load generator and the Garage harness (release)"
  cargo build -q --release -p fieldseal-server --bin fieldseal-server \
    -p fieldseal-tests --bin fieldseal-loadgen --bin fieldseal-garage
  trap 's3_cleanup; net_cleanup; rm -rf "$WORK"' EXIT
  NET_STREAMS=$(sed -n 's/.*max_uploads: \([0-9]*\),.*/\1/p' agent/src/sync/machine.rs | head -1)
  [ -n "$NET_STREAMS" ] || { log "max_uploads not found in agent/src/sync/machine.rs"; exit 1; }
  s3_up
  local media=$WORK/media-s3 i bytes
  local -a up_o=() up_b=() up_r=() ver_o=() ver_b=() ver_r=()
  net_media "$media" "$S3_MIB"
  bytes=$(cat "$media"/* | wc -c)
  for ((i = 1; i <= REPS; i++)); do
    log "S3 ($S3_MIB MiB) repetition $i/$REPS"
    if ((i % 2)); then
      s3_ours "$media" "s3-ours-$i" && up_o+=("$S3_UP") && ver_o+=("$S3_VERIFY")
      s3_base "$media" "s3-base-$i" && up_b+=("$S3_UP") && ver_b+=("$S3_VERIFY")
    else
      s3_base "$media" "s3-base-$i" && up_b+=("$S3_UP") && ver_b+=("$S3_VERIFY")
      s3_ours "$media" "s3-ours-$i" && up_o+=("$S3_UP") && ver_o+=("$S3_VERIFY")
    fi
    up_r+=("$(calc "${up_b[-1]} / ${up_o[-1]}")")
    ver_r+=("$(calc "${ver_b[-1]} / ${ver_o[-1]}")")
    log "  upload: fieldseal ${up_o[-1]} s, curl ${up_b[-1]} s; verify ${ver_o[-1]} s, curl GET ${ver_b[-1]} s"
  done
  local ur vr
  ur=$(median "${up_r[@]}")
  vr=$(median "${ver_r[@]}")
  row "Upload of a $S3_MIB MiB backlog with blobs on Garage (3 nodes, loopback) until archived (Mbit/s)" \
    "$(calc "$bytes * 8 / $(median "${up_o[@]}") / 1000000")" \
    "$(calc "$bytes * 8 / $(median "${up_b[@]}") / 1000000") (curl --aws-sigv4 PUT)" \
    "$(printf '%.2f' "$ur")×" "≥ 0.8×: $(met "$ur" '>=' 0.8)" "S3A vs S3B"
  row "verify of that archive over S3 against GET of the same objects (MB/s)" \
    "$(calc "$bytes / $(median "${ver_o[@]}") / 1000000")" \
    "$(calc "$bytes / $(median "${ver_b[@]}") / 1000000") (curl --aws-sigv4 GET, 8 at once)" \
    "$(printf '%.2f' "$vr")×" "report" "S3C vs S3D"
  cmd "S3A" "fieldseal-loadgen upload --server H:P --server-data SRV --media MEDIA  # against fieldseal-server run --data SRV with [blobs] kind = \"s3\" on fieldseal-garage's cluster"
  cmd "S3B" "curl --aws-sigv4 aws:amz:garage:s3 --user KEY:SECRET -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --parallel --parallel-max $NET_STREAMS -H 'Expect:' --config urls  # one upload-file/url pair per segment"
  cmd "S3C" "fieldseal-server verify --data SRV  # blobs read from the bucket, 8 at once, each hashed"
  cmd "S3D" "curl --aws-sigv4 … --parallel --parallel-max 8 --config urls -o /dev/null  # the same objects"
  echo "- S3, $S3_MIB MiB in $S3_MIB files ($bytes bytes), in run order: upload fieldseal s ${up_o[*]}; curl PUT s ${up_b[*]};" \
    "verify s ${ver_o[*]}; curl GET s ${ver_b[*]}" >>"$RUNS"
  discard "$media"
  s3_cleanup
}
