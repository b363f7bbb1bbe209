# The network rows of `make bench`: upload of a backlog, on loopback and over a lossy link, and
# simulated devices against one server. Sourced by scripts/bench.sh, which provides `measure`,
# `median`, `calc`, `row`, `cmd`, `met`, `log`, $WORK, $REPS, $ROWS, $RUNS, $BOUNDS.
#
# Environment:
#   BENCH_NET_MIB=1024          backlog on loopback, in 1 MiB segment files
#   BENCH_NET_LOSSY_MIB=32      backlog over the lossy link (TCP at 2 % loss is slow: see below)
#   BENCH_NET_LOSS=0.02         loss per direction on the lossy link
#   BENCH_NET_DELAY_MS=20       one-way delay on the lossy link (round trip twice that)
#   BENCH_DEVICE_COUNTS=10,50,100,200,300,400,500,600,800,1000,2000
#   BENCH_DEVICE_SECONDS=24     measured window per device count (after an 8 s warm-up)
#   BENCH_READS_SECONDS=16      each window of the reads row, after an 8 s warm-up
#   BENCH_READS_PAIRS=3         pairs of windows (with and without the reads) of the reads row
#   BENCH_READS_RATE=1000       reads a second of GET /api/cases/{id} in its windows with reads
#   BENCH_NET_ROWS="loopback lossy devices reads"   which network rows to run

NET_SERVER=$PWD/target/release/fieldseal-server
NET_LOADGEN=$PWD/target/release/fieldseal-loadgen
NET_MIB=${BENCH_NET_MIB:-1024}
NET_LOSSY_MIB=${BENCH_NET_LOSSY_MIB:-32}
NET_LOSS=${BENCH_NET_LOSS:-0.02}
NET_DELAY_MS=${BENCH_NET_DELAY_MS:-20}
NET_DEVICE_COUNTS=${BENCH_DEVICE_COUNTS:-10,50,100,200,300,400,500,600,800,1000,2000}
NET_DEVICE_SECONDS=${BENCH_DEVICE_SECONDS:-24}
NET_READS_SECONDS=${BENCH_READS_SECONDS:-16}
NET_READS_RATE=${BENCH_READS_RATE:-1000}
NET_READS_PAIRS=${BENCH_READS_PAIRS:-3}
NET_ROWS=${BENCH_NET_ROWS:-"loopback lossy devices reads"}
# Names of the namespaces and TUN devices of the lossy link (removed at exit).
NET_NS_CLI=fsbench-cli
NET_NS_SRV=fsbench-srv
NET_CLI_IP=10.77.0.1
NET_SRV_IP=10.77.0.2
NET_PIDS=()
NET_RELAY_PID=

# Where servers and clients run: on loopback in this namespace, or in the lossy link's two
# namespaces. Set by net_place.
NET_SRV_EXEC=()
NET_CLI_EXEC=()
NET_HOST=127.0.0.1

net_place() {
  if [ "$1" = lossy ]; then
    NET_SRV_EXEC=(ip netns exec "$NET_NS_SRV")
    NET_CLI_EXEC=(ip netns exec "$NET_NS_CLI")
    NET_HOST=$NET_SRV_IP
  else
    NET_SRV_EXEC=()
    NET_CLI_EXEC=()
    NET_HOST=127.0.0.1
  fi
}

net_cleanup() {
  local p
  for p in "${NET_PIDS[@]}" $NET_RELAY_PID; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${NET_PIDS[@]}" $NET_RELAY_PID; do
    wait "$p" 2>/dev/null || true
  done
  NET_PIDS=()
  NET_RELAY_PID=
  ip netns del "$NET_NS_CLI" 2>/dev/null || true
  ip netns del "$NET_NS_SRV" 2>/dev/null || true
}

# net_stop PID : end one background process of ours and forget it.
net_stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${NET_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  NET_PIDS=("${keep[@]}")
}

# net_free_port : a UDP and TCP port free on loopback right now.
net_free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# net_wait_for FILE SECONDS : wait until FILE exists.
net_wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  log "timed out waiting for $1"
  return 1
}

# net_media DIR MIB : MIB segment files of 1 MiB of random bytes (media does not compress,
# and the agent's segments at 2 Mbit/s are about 1 MB).
net_media() {
  local i
  mkdir -p "$1"
  for ((i = 1; i <= $2; i++)); do
    head -c 1048576 /dev/urandom >"$(printf '%s/seg-%05d.ts' "$1" "$i")"
  done
}

# net_tls DIR : a self-signed certificate for nginx, for both places the server runs.
net_tls() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=fieldseal-bench -addext "subjectAltName=IP:127.0.0.1,IP:$NET_SRV_IP" \
    -keyout "$1/nginx.key" -out "$1/nginx.crt" 2>/dev/null
}

# net_link_up : two namespaces joined only through tunrelay.py (loss and delay per direction).
net_link_up() {
  ip netns del "$NET_NS_CLI" 2>/dev/null || true
  ip netns del "$NET_NS_SRV" 2>/dev/null || true
  ip netns add "$NET_NS_CLI"
  ip netns add "$NET_NS_SRV"
  python3 scripts/bench/tunrelay.py fsb0 fsb1 "$NET_LOSS" "$NET_DELAY_MS" 7 >"$WORK/relay.out" 2>&1 &
  NET_RELAY_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do grep -qs ready "$WORK/relay.out" && break; sleep 0.1; done
  grep -q ready "$WORK/relay.out" || { log "the TUN relay did not start:"; cat "$WORK/relay.out" >&2; return 1; }
  ip link set fsb0 netns "$NET_NS_CLI"
  ip link set fsb1 netns "$NET_NS_SRV"
  ip -n "$NET_NS_CLI" addr add "$NET_CLI_IP/24" dev fsb0
  ip -n "$NET_NS_SRV" addr add "$NET_SRV_IP/24" dev fsb1
  for ns in "$NET_NS_CLI" "$NET_NS_SRV"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$NET_NS_CLI" link set fsb0 up
  ip -n "$NET_NS_SRV" link set fsb1 up
}

# net_probe : round trip and loss through the link, measured with 200 small UDP echoes.
net_probe() {
  ip netns exec "$NET_NS_SRV" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9))
while True:
    d, a = s.recvfrom(64); s.sendto(d, a)' "$NET_SRV_IP" &
  local echo=$!
  sleep 0.5
  ip netns exec "$NET_NS_CLI" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5); rtt = []; lost = 0
for i in range(200):
    t = time.monotonic(); s.sendto(b"%d" % i, (sys.argv[1], 9))
    try:
        while s.recvfrom(64)[0] != b"%d" % i: pass
        rtt.append(time.monotonic() - t)
    except socket.timeout:
        lost += 1
rtt.sort()
print("round trip p50 %.1f ms, p90 %.1f ms; %d of 200 echoes lost (%.1f %%; 2 %% each way gives 4 %%)" % (
    rtt[len(rtt) // 2] * 1000, rtt[len(rtt) * 9 // 10] * 1000, lost, lost / 2))' "$NET_SRV_IP"
  kill "$echo" 2>/dev/null || true
  wait "$echo" 2>/dev/null || true
}

# net_server_start DIR : a fresh fieldseal server (release) in DIR, serving QUIC on $NET_HOST and
# its HTTP API on loopback (user admin, password $NET_ADMIN_PASSWORD); sets NET_SERVER_PID,
# NET_SERVER_ADDR and NET_HTTP_ADDR.
NET_ADMIN_PASSWORD=bench-password
net_server_start() {
  local dir=$1 port
  rm -rf "$dir"
  FIELDSEAL_ADMIN_PASSWORD=$NET_ADMIN_PASSWORD "$NET_SERVER" init --data "$dir" --name "$NET_SRV_IP" >/dev/null 2>&1
  # The load generator enrols and connects up to 2,000 devices from one
  # address: lift the per-address limits meant for strangers (docs/SERVER.md,
  # "Connection limits"), or it would measure them instead of the server.
  sed -i -e 's/^max_unauthenticated_per_address = .*/max_unauthenticated_per_address = 4096/' \
    -e 's/^max_unauthenticated = .*/max_unauthenticated = 4096/' \
    -e 's/^handshakes_per_address_per_minute = .*/handshakes_per_address_per_minute = 1000000/' \
    -e 's/^enrolments_per_address_per_minute = .*/enrolments_per_address_per_minute = 1000000/' \
    "$dir/config.toml"
  if [ "$NET_HOST" = 127.0.0.1 ]; then port=$(net_free_port); else port=4433; fi
  NET_SERVER_ADDR=$NET_HOST:$port
  NET_HTTP_ADDR=127.0.0.1:$(net_free_port)
  "${NET_SRV_EXEC[@]}" "$NET_SERVER" run --data "$dir" --quic "$NET_SERVER_ADDR" --http "$NET_HTTP_ADDR" >"$dir.log" 2>&1 &
  NET_SERVER_PID=$!
  NET_PIDS+=("$NET_SERVER_PID")
  net_wait_for "$dir/control.sock" 30
}

# net_nginx_start DIR : nginx (Debian's) serving HTTPS PUT on $NET_HOST into DIR/www;
# sets NET_NGINX_PID and NET_NGINX_URL.
net_nginx_start() {
  local dir=$1 port
  rm -rf "$dir"
  mkdir -p "$dir/www/up" "$dir/body" "$dir/logs"
  if [ "$NET_HOST" = 127.0.0.1 ]; then port=$(net_free_port); else port=8443; fi
  cat >"$dir/nginx.conf" <<EOF
# Written by scripts/bench/net.sh. The dav module's PUT: the request body is written to a file
# under client_body_temp_path, then renamed to its URL's path; nginx calls no fsync, so a file
# it answered 201 for may still be only in the page cache (fieldseal fsyncs before it answers).
user root;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  client_max_body_size 0;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen $NET_HOST:$port ssl;
    ssl_certificate $WORK/nginx.crt;
    ssl_certificate_key $WORK/nginx.key;
    ssl_protocols TLSv1.3;
    root $dir/www;
    location /up/ {
      dav_methods PUT;
      create_full_put_path on;
    }
  }
}
EOF
  "${NET_SRV_EXEC[@]}" nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/logs/stdout" 2>&1 &
  NET_NGINX_PID=$!
  NET_PIDS+=("$NET_NGINX_PID")
  NET_NGINX_URL=https://$NET_HOST:$port/up
  net_wait_for "$dir/nginx.pid" 30
}

# net_curl_config MEDIA URL FILE : one `upload-file`/`url` pair per segment file.
net_curl_config() {
  local f
  {
    for f in "$1"/*; do
      printf 'upload-file = "%s"\nurl = "%s/%s"\n' "$f" "$2" "$(basename "$f")"
    done
  } >"$3"
}

# Seconds since the epoch, with nanoseconds.
net_now() { date +%s.%N; }

# The three runs below leave their seconds in NET_SECONDS (not printed: a command substitution
# would run them in a subshell, out of reach of net_cleanup's list of processes).

# net_ours MEDIA TAG : upload MEDIA through a fresh fieldseal server.
net_ours() {
  local media=$1 tag=$2
  net_server_start "$WORK/srv-$tag"
  "${NET_CLI_EXEC[@]}" "$NET_LOADGEN" upload --server "$NET_SERVER_ADDR" \
    --server-data "$WORK/srv-$tag" --media "$media" --seed 1 >"$WORK/$tag.out" 2>&1 || {
    log "upload $tag failed:"
    tail -20 "$WORK/$tag.out" "$WORK/srv-$tag.log" >&2
    return 1
  }
  net_stop "$NET_SERVER_PID"
  # Everything acknowledged must be in the archive: the server's own full check.
  "$NET_SERVER" verify --data "$WORK/srv-$tag" >"$WORK/$tag.verify" 2>&1 || {
    log "server verify after upload $tag failed:"
    tail -20 "$WORK/$tag.verify" >&2
    return 1
  }
  NET_SECONDS=$(sed -n 's/^seconds=//p' "$WORK/$tag.out")
  discard "$WORK/srv-$tag"
}

# net_base MEDIA TAG [CC] : upload MEDIA with curl to a fresh nginx; on the lossy link, with TCP
# congestion control CC in both namespaces.
net_base() {
  local media=$1 tag=$2 cc=${3:-} t0 t1 probe=
  if [ -n "$cc" ]; then
    # Per route: a namespace other than the first may only pick its default from
    # tcp_allowed_congestion_control, which is the host's to set.
    ip -n "$NET_NS_CLI" route replace 10.77.0.0/24 dev fsb0 src "$NET_CLI_IP" congctl "$cc"
    ip -n "$NET_NS_SRV" route replace 10.77.0.0/24 dev fsb1 src "$NET_SRV_IP" congctl "$cc"
  fi
  net_nginx_start "$WORK/nginx-$tag"
  net_curl_config "$media" "$NET_NGINX_URL" "$WORK/$tag.curl"
  if [ -n "$cc" ]; then
    # Which congestion control the sending sockets really use, as the kernel reports it.
    (sleep 0.5; ip netns exec "$NET_NS_CLI" ss -tin dst "$NET_SRV_IP" |
      grep -o -m1 -w 'cubic\|bbr\|reno' >"$WORK/$tag.cc" || true) &
    probe=$!
  fi
  t0=$(net_now)
  "${NET_CLI_EXEC[@]}" curl --silent --show-error --fail --cacert "$WORK/nginx.crt" \
    --parallel --parallel-max "$NET_STREAMS" -H 'Expect:' --config "$WORK/$tag.curl" \
    >"$WORK/$tag.out" 2>&1 || {
    log "curl $tag failed:"
    tail -20 "$WORK/$tag.out" "$WORK/nginx-$tag/logs/error.log" >&2
    return 1
  }
  t1=$(net_now)
  [ -z "$probe" ] || wait "$probe"
  net_stop "$NET_NGINX_PID"
  # Every file arrived whole.
  local sent got
  sent=$(cat "$media"/* | sha256sum)
  got=$(cat "$WORK/nginx-$tag/www/up"/* | sha256sum)
  [ "$sent" = "$got" ] || { log "nginx holds other bytes than were sent ($tag)"; return 1; }
  NET_SECONDS=$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }")
  discard "$WORK/nginx-$tag"
}

# net_ceiling MEDIA TAG : the same bytes over one quinn connection to a sink.
net_ceiling() {
  local media=$1 tag=$2 port
  net_server_start "$WORK/srv-$tag" # for its CA and TLS keys only
  net_stop "$NET_SERVER_PID"
  if [ "$NET_HOST" = 127.0.0.1 ]; then port=$(net_free_port); else port=4434; fi
  "${NET_SRV_EXEC[@]}" "$NET_LOADGEN" sink --listen "$NET_HOST:$port" \
    --server-data "$WORK/srv-$tag" --seed 7 >"$WORK/$tag.sink" 2>&1 &
  local sink=$!
  NET_PIDS+=("$sink")
  local i
  for ((i = 0; i < 100; i++)); do grep -qs listening "$WORK/$tag.sink" && break; sleep 0.1; done
  "${NET_CLI_EXEC[@]}" "$NET_LOADGEN" ceiling --server "$NET_HOST:$port" \
    --server-data "$WORK/srv-$tag" --media "$media" --seed 7 >"$WORK/$tag.out" 2>&1 || {
    log "ceiling $tag failed:"
    tail -20 "$WORK/$tag.out" "$WORK/$tag.sink" >&2
    return 1
  }
  net_stop "$sink"
  NET_SECONDS=$(sed -n 's/^seconds=//p' "$WORK/$tag.out")
  discard "$WORK/srv-$tag"
}

# net_plain MEDIA TAG : the same bytes from memory over bare quinn (the reference of the ceiling).
net_plain() {
  local media=$1 tag=$2 port i
  if [ "$NET_HOST" = 127.0.0.1 ]; then port=$(net_free_port); else port=4435; fi
  "${NET_SRV_EXEC[@]}" "$NET_LOADGEN" plain-sink --listen "$NET_HOST:$port" \
    --cert-out "$WORK/$tag.der" >"$WORK/$tag.sink" 2>&1 &
  local sink=$!
  NET_PIDS+=("$sink")
  for ((i = 0; i < 100; i++)); do grep -qs listening "$WORK/$tag.sink" && break; sleep 0.1; done
  "${NET_CLI_EXEC[@]}" "$NET_LOADGEN" plain --server "$NET_HOST:$port" \
    --cert "$WORK/$tag.der" --media "$media" >"$WORK/$tag.out" 2>&1 || {
    log "plain $tag failed:"
    tail -20 "$WORK/$tag.out" "$WORK/$tag.sink" >&2
    return 1
  }
  net_stop "$sink"
  NET_SECONDS=$(sed -n 's/^seconds=//p' "$WORK/$tag.out")
}

# bench_net_upload PLACE MIB GOAL : the backlog rows, on loopback or over the lossy link.
bench_net_upload() {
  local place=$1 mib=$2 goal=$3 i
  local media=$WORK/media-$place
  local -a ours=() base=() ceil=() ratio=() frac=() loads=() bbr=() bbr_ratio=() plain=() cplain=() oplain=()
  # On the lossy link TCP runs twice: with Cubic, Debian's default, and with BBR, which quinn
  # uses here and which some hosts (this one among them) make their TCP default.
  local cc=
  [ "$place" = lossy ] && cc=cubic
  net_place "$place"
  net_media "$media" "$mib"
  local bytes
  bytes=$(cat "$media"/* | wc -c)
  for ((i = 1; i <= REPS; i++)); do
    log "upload $place ($mib MiB) repetition $i/$REPS"
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    if ((i % 2)); then
      net_ours "$media" "$place-ours-$i" && ours+=("$NET_SECONDS")
      net_base "$media" "$place-base-$i" $cc && base+=("$NET_SECONDS")
    else
      net_base "$media" "$place-base-$i" $cc && base+=("$NET_SECONDS")
      net_ours "$media" "$place-ours-$i" && ours+=("$NET_SECONDS")
    fi
    net_ceiling "$media" "$place-ceil-$i" && ceil+=("$NET_SECONDS")
    if [ "$place" = loopback ]; then
      net_plain "$media" "$place-plain-$i" && plain+=("$NET_SECONDS")
      cplain+=("$(calc "${plain[-1]} / ${ceil[-1]}")")
      oplain+=("$(calc "${plain[-1]} / ${ours[-1]}")")
    fi
    if [ -n "$cc" ]; then
      net_base "$media" "$place-bbr-$i" bbr && bbr+=("$NET_SECONDS")
      bbr_ratio+=("$(calc "${bbr[-1]} / ${ours[-1]}")")
    fi
    ratio+=("$(calc "${base[-1]} / ${ours[-1]}")")
    frac+=("$(calc "${ceil[-1]} / ${ours[-1]}")")
    log "  fieldseal ${ours[-1]} s, curl/nginx ${base[-1]} s, quinn ceiling ${ceil[-1]} s"
  done
  local os bs cs r f om bm cm
  os=$(median "${ours[@]}")
  bs=$(median "${base[@]}")
  cs=$(median "${ceil[@]}")
  r=$(median "${ratio[@]}")
  f=$(median "${frac[@]}")
  om=$(calc "$bytes * 8 / $os / 1000000")
  bm=$(calc "$bytes * 8 / $bs / 1000000")
  cm=$(calc "$bytes * 8 / $cs / 1000000")
  # The devices row sets its count against this: no QUIC server here can carry more.
  [ "$place" = loopback ] && NET_LOOP_CEIL_MBIT=$cm
  local what label
  if [ "$place" = lossy ]; then
    what="Upload of a $mib MiB backlog, $(calc "$NET_LOSS * 100") % loss each way, $((2 * NET_DELAY_MS)) ms round trip (Mbit/s)"
    label="Nlossy"
  else
    what="Upload of a $mib MiB backlog until archived and verified, loopback (Mbit/s)"
    label="Nloop"
  fi
  row "$what" "$om" "$bm (curl → nginx${cc:+, Cubic})" "$(printf '%.2f' "$r")×" "≥ $goal×: $(met "$r" '>=' "$goal")" \
    "${label}A vs ${label}B"
  if [ -n "$cc" ]; then
    local bb br
    bb=$(median "${bbr[@]}")
    br=$(median "${bbr_ratio[@]}")
    row "… the same, TCP with BBR instead of Cubic (Mbit/s)" "$om" \
      "$(calc "$bytes * 8 / $bb / 1000000") (curl → nginx, BBR)" "$(printf '%.2f' "$br")×" \
      "≥ $goal×: $(met "$br" '>=' "$goal")" "${label}A vs ${label}B"
  fi
  row "… fraction of the ceiling: the same bytes over one quinn connection, no storage (Mbit/s)" \
    "$om" "$cm (ceiling)" "$(printf '%.2f' "$f")" "report" "${label}A vs ${label}C"
  if [ "$place" = loopback ]; then
    local pm pr po
    pm=$(calc "$bytes * 8 / $(median "${plain[@]}") / 1000000")
    pr=$(median "${cplain[@]}")
    po=$(median "${oplain[@]}")
    row "The ceiling against a plain quinn sender from memory (quinn's defaults, perf's socket buffers) (Mbit/s)" \
      "$cm (ceiling)" "$pm (plain quinn)" "$(printf '%.2f' "$pr")×" "≥ 0.9×: $(met "$pr" '>=' 0.9)" "${label}C vs ${label}P"
    row "… the loopback upload, archived and verified, against the plain quinn sender (Mbit/s)" \
      "$om" "$pm (plain quinn)" "$(printf '%.2f' "$po")×" "≥ 0.5×: $(met "$po" '>=' 0.5)" "${label}A vs ${label}P"
    cmd "${label}P" "fieldseal-loadgen plain --server H:P --cert SINK.der --media MEDIA  # files read into memory first; against fieldseal-loadgen plain-sink --listen H:P --cert-out SINK.der"
  fi
  cmd "${label}A" "fieldseal-loadgen upload --server H:P --server-data SRV --media MEDIA  # against fieldseal-server run --data SRV --quic H:P (fresh SRV each run); then fieldseal-server verify --data SRV"
  cmd "${label}B" "curl --cacert nginx.crt --parallel --parallel-max $NET_STREAMS -H 'Expect:' --config urls  # one upload-file/url pair per segment; nginx -c nginx.conf (dav PUT, TLS 1.3, below)"
  cmd "${label}C" "fieldseal-loadgen ceiling --server H:P --server-data SRV --media MEDIA  # against fieldseal-loadgen sink --listen H:P"
  {
    echo "- upload, $place, $mib MiB in $mib files ($bytes bytes), in run order: fieldseal s ${ours[*]};" \
      "curl/nginx s ${base[*]}; quinn ceiling s ${ceil[*]}; ratios (curl s ÷ fieldseal s) ${ratio[*]};" \
      "fractions of the ceiling ${frac[*]}; load average (1 min) at the start of each pair ${loads[*]}"
    [ "$place" = loopback ] && echo "  - plain quinn s ${plain[*]}; ceiling ÷ plain ${cplain[*]}; fieldseal ÷ plain ${oplain[*]}"
    [ -n "$cc" ] && echo "  - TCP: curl/nginx with Cubic s ${base[*]}, with BBR s ${bbr[*]} (ratios ${bbr_ratio[*]});" \
      "congestion control seen by \`ss\` on curl's sockets: $(cat "$WORK"/lossy-base-*.cc | tr '\n' ' ')/ $(cat "$WORK"/lossy-bbr-*.cc | tr '\n' ' ')"
    [ "$place" = lossy ] && echo "  - link: $NET_LINK_PROBE"
  } >>"$RUNS"
  discard "$media"
}

# bench_net_devices : simulated devices against one server, stepped up until one fails.
bench_net_devices() {
  net_place loopback
  local sha rate limit
  # The machine's SHA-256 rate on 16 KiB blocks (bytes/s): every segment byte is hashed once
  # by the server, so this over 2 Mbit/s is how many devices one core could hash at all.
  sha=$(openssl speed -evp sha256 -bytes 16384 -seconds 3 -mr 2>/dev/null |
    awk -F: '/^\+F:/ { print $4 }')
  limit=$(calc "$sha * 8 / 2000000")
  net_server_start "$WORK/srv-devices"
  mkdir -p /dev/shm/fieldseal-bench-$$
  log "simulated devices: steps $NET_DEVICE_COUNTS, $NET_DEVICE_SECONDS s each"
  "$NET_LOADGEN" devices --server "$NET_SERVER_ADDR" --server-data "$WORK/srv-devices" \
    --work "/dev/shm/fieldseal-bench-$$" --counts "$NET_DEVICE_COUNTS" \
    --seconds "$NET_DEVICE_SECONDS" --rate-bps 2000000 --segment-secs 4 \
    --server-pid "$NET_SERVER_PID" >"$WORK/devices.out" 2>"$WORK/devices.err" || {
    log "devices failed:"
    tail -20 "$WORK/devices.err" >&2
  }
  rm -rf "/dev/shm/fieldseal-bench-$$"
  net_stop "$NET_SERVER_PID"
  local best p50 p99 line
  best=$(awk '/ok=1/ { sub("devices=", "", $1); n = $1 } END { print n + 0 }' "$WORK/devices.out")
  NET_DEVICES_SUSTAINED=$best # for the capacity section (scripts/bench/archive.sh)
  line=$(grep '^devices=100 ' "$WORK/devices.out" || true)
  p50=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$line")
  row "Simulated devices sustained (2 Mbit/s each, own QUIC connection; receipt p99 < 1 s, no growing backlog)" \
    "$best" "$(printf '%.0f' "$limit") (SHA-256 limit)" "$(calc "$best / $limit")" \
    "≥ 1000: $(met "$best" '>=' 1000)" "NdevA vs NdevB"
  if [ -n "${NET_LOOP_CEIL_MBIT:-}" ]; then
    local cdev
    cdev=$(calc "$NET_LOOP_CEIL_MBIT / 2")
    row "… the same against the quinn ceiling of this run: its loopback Mbit/s ÷ 2 Mbit/s (devices)" \
      "$best" "$(printf '%.0f' "$cdev") (ceiling, no storage)" "$(calc "$best / $cdev")" "report" \
      "NdevA vs NloopC"
  fi
  # CPU of each side at the largest count sustained, in cores over its window.
  local bline sc lc
  bline=$(grep "^devices=$best " "$WORK/devices.out" || true)
  sc=$(sed -n 's/.* server_cores=\([0-9.]*\).*/\1/p' <<<"$bline")
  lc=$(sed -n 's/.* loadgen_cores=\([0-9.]*\).*/\1/p' <<<"$bline")
  if [ -n "$sc" ] && [ -n "$lc" ] && [ "$best" -gt 0 ]; then
    NET_SERVER_CORES_PER_100=$(calc "$sc * 100 / $best") # for the capacity section
    row "CPU at $best devices: server / load generator (cores; server per 100 devices)" \
      "$sc / $lc; $NET_SERVER_CORES_PER_100 per 100" "—" "—" "report" "NdevA"
  fi
  row "Hash-first receipt latency at 100 devices, p50 / p99 (ms)" "${p50:-—} / ${p99:-—}" "—" "—" \
    "p99 ≤ 20 ms: $(met "${p99:-1e9}" '<=' 20)" "NdevA"
  cmd "NdevA" "fieldseal-loadgen devices --server H:P --server-data SRV --work /dev/shm/D --counts $NET_DEVICE_COUNTS --seconds $NET_DEVICE_SECONDS --rate-bps 2000000 --segment-secs 4 --server-pid PID  # against fieldseal-server run --data SRV --quic H:P on this machine"
  cmd "NdevB" "openssl speed -evp sha256 -bytes 16384 -seconds 3  # bytes/s × 8 ÷ 2 Mbit/s"
  {
    echo "- simulated devices (one line per step; load average when the window opened):"
    sed 's/^/  - /' "$WORK/devices.out"
    echo "  - SHA-256 (openssl, 16 KiB blocks): $sha bytes/s"
  } >>"$RUNS"
}

# bench_net_reads : authenticated reads of one case over HTTP at NET_READS_RATE a second while 100
# simulated devices sync, and the devices' receipt latency with and without the reads, in
# alternating windows of one run (`fieldseal-loadgen reads`).
bench_net_reads() {
  net_server_start "$WORK/srv-reads"
  mkdir -p /dev/shm/fieldseal-bench-reads-$$
  log "reads: 100 devices, $NET_READS_RATE reads/s, windows of $NET_READS_SECONDS s"
  "$NET_LOADGEN" reads --server "$NET_SERVER_ADDR" --server-data "$WORK/srv-reads" \
    --work "/dev/shm/fieldseal-bench-reads-$$" --http "$NET_HTTP_ADDR" --password "$NET_ADMIN_PASSWORD" \
    --devices 100 --rate "$NET_READS_RATE" --connections 8 --seconds "$NET_READS_SECONDS" --pairs "$NET_READS_PAIRS" \
    --server-pid "$NET_SERVER_PID" >"$WORK/reads.out" 2>"$WORK/reads.err" || {
    log "reads failed:"
    tail -20 "$WORK/reads.err" >&2
  }
  rm -rf "/dev/shm/fieldseal-bench-reads-$$"
  net_stop "$NET_SERVER_PID"
  discard "$WORK/srv-reads"
  local sum
  sum=$(grep '^devices=' "$WORK/reads.out" || true)
  [ -n "$sum" ] || { log "reads: no summary"; return 1; }
  # key : one value of the summary line.
  key() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $sum"; }
  local rate p50 p99 qp50 qp99 lp50 lp99 errs qw lw
  rate=$(key read_rate) p50=$(key read_p50_ms) p99=$(key read_p99_ms) errs=$(key read_errors)
  qp50=$(key quiet_p50_ms) qp99=$(key quiet_p99_ms) lp50=$(key reads_p50_ms) lp99=$(key reads_p99_ms)
  qw=$(key quiet_window_p99_median_ms) lw=$(key reads_window_p99_median_ms)
  # Met at 99 % of the rate asked: the count over a window loses up to one read per connection
  # at its edges.
  row "Authenticated reads of \`GET /api/cases/{id}\` while 100 devices sync, $NET_READS_RATE/s asked over 8 keep-alive connections: achieved (/s); latency p50 / p99 (ms); errors" \
    "$rate; $p50 / $p99; $errs" "—" "—" \
    "$NET_READS_RATE/s: $(met "$rate" '>=' "$NET_READS_RATE * 0.99")" "NreadA"
  # p99 per window, the median over the windows of each kind (the pooled p99 beside it); the ratio
  # is the median of the pairs' ratios, as elsewhere in this table.
  row "Hash-first receipt latency at 100 devices during those reads: p50; p99, median of $NET_READS_PAIRS windows (pooled) (ms)" \
    "$lp50; $lw ($lp99)" "$qp50; $qw ($qp99) (no reads, same run)" "$(key p99_ratio)× (p99)" \
    "p99 ≤ 20 ms: $(met "${lw:-1e9}" '<=' 20)" "NreadA"
  row "CPU of the server at 100 devices, with / without the reads (cores)" \
    "$(key reads_server_cores)" "$(key quiet_server_cores)" "—" "report" "NreadA"
  cmd "NreadA" "fieldseal-loadgen reads --server H:P --server-data SRV --work /dev/shm/D --http 127.0.0.1:HP --password P --devices 100 --rate $NET_READS_RATE --connections 8 --seconds $NET_READS_SECONDS --pairs $NET_READS_PAIRS --server-pid PID  # against fieldseal-server run --data SRV --quic H:P --http 127.0.0.1:HP (fresh SRV); windows with and without the reads in ABBA order; receipt p99 per window, its median per kind and the pooled p99"
  # Written after the network section's heading and list (net_bounds).
  cat >"$WORK/bounds-reads.md" <<'EOF'

Reads of a case (`fieldseal-loadgen reads`): each `GET /api/cases/{id}` is a session lookup (the
token's SHA-256 in a map), one sled read and the case's JSON, on the server's async workers, with no
leaf in the access log (reading a case is not reading evidence); the load generator sends them
over 8 keep-alive connections, each read due at a fixed time and its latency counted from then,
so a read held back by the one before it, or by the load generator's own scheduling next to the
devices, counts late. The CPU row gives what the reads cost the server: the difference of its
cores with and without them, over windows of the same run. The receipts' p99 is the noisiest
figure of this table: on 2026-11-29 it moved between 9 and 470 ms from one 16 s window to the
next, with and without the reads alike (Raw runs), as other work came and went on the 2 cores
(and the first windows after a server start tended to be worse); hence the median of the
windows' p99s, and the per-pair ratio.
EOF
  {
    echo "- reads during 100 devices (one line per window, in run order; load average when it opened):"
    grep '^window=' "$WORK/reads.out" | sed 's/^/  - /'
    echo "  - pooled: $sum"
  } >>"$RUNS"
}

bench_net() {
  log "building the server and the load generator (release)"
  cargo build -q --release -p fieldseal-server --bin fieldseal-server \
    -p fieldseal-tests --bin fieldseal-loadgen
  trap 'net_cleanup; rm -rf "$WORK"' EXIT
  ulimit -n 20000 2>/dev/null || true
  # Transfers at once: the sync client's uploads in flight (MachineConfig::max_uploads), which
  # curl gets too (HTTP/1.1 has one request at a time per connection: two connections).
  NET_STREAMS=$(sed -n 's/.*max_uploads: \([0-9]*\),.*/\1/p' agent/src/sync/machine.rs | head -1)
  [ -n "$NET_STREAMS" ] || { log "max_uploads not found in agent/src/sync/machine.rs"; exit 1; }
  net_tls "$WORK"
  local r
  for r in $NET_ROWS; do
    case $r in
      loopback) bench_net_upload loopback "$NET_MIB" 1.0 ;;
      lossy)
        net_link_up
        NET_LINK_PROBE=$(net_probe)
        log "lossy link: $NET_LINK_PROBE"
        bench_net_upload lossy "$NET_LOSSY_MIB" 1.5
        net_cleanup
        ;;
      devices) bench_net_devices ;;
      reads) bench_net_reads ;;
      *) log "unknown network row $r" ;;
    esac
  done
  net_cleanup
  net_bounds
}

net_bounds() {
  cat >>"$BOUNDS" <<EOF

### Network

What each side does. **fieldseal**: \`fieldseal-loadgen upload\` signs one segment entry per file
(before the clock starts, as the agent would have while recording), enrols a fresh device with a
fresh \`fieldseal-server run\` (release), then runs the agent's sync client
(\`fieldseal_agent::sync::sync_until_drained\`) until every entry has a verified receipt and every
segment is acknowledged: the server checked the entry's signature and link, stored it, checked
each segment's SHA-256 against its signed entry and fsynced the blob (and every 1 MiB of a
partial) before it answered. The agent's store in the load generator is in memory (it does not
fsync receipts and acknowledgements as the agent's \`FsSyncStore\` does: that is the device's cost,
not the link's or the server's). \`fieldseal-server verify\` then re-checks the whole archive (not
timed). **curl → nginx**: Debian's nginx with the dav module's PUT over HTTPS (TLS 1.3, a P-256
self-signed certificate); nginx writes each body to a temporary file and renames it into place,
with no fsync and no check of the content, so its 201 means "in the page cache". curl gets the
same number of transfers at once as the sync client uploads at once ($NET_STREAMS; HTTP/1.1 has one
request at a time per connection, so that is $NET_STREAMS TCP connections), and \`Expect:\` is
switched off so that no request waits a round trip for "100 Continue". The script checks that
nginx holds exactly the bytes sent. **Ceiling**: the same files over one quinn connection with the
sync client's TLS and transport settings and the same $NET_STREAMS streams at once, to a sink that
reads and discards them.

The lossy link: the kernel has no netem, and a TCP proxy cannot lose packets (it would only
delay bytes, and a stall is not what loss does to TCP: fast retransmit, SACK and the congestion
window's reaction are the point). So both protocols run between two network namespaces joined
only by two TUN devices and \`scripts/bench/tunrelay.py\`, which reads every IP packet, drops
$(calc "$NET_LOSS * 100") % in each direction at random and delays the rest by $NET_DELAY_MS ms, in order. Server and nginx run
in one namespace, the clients in the other; both protocols see the same relay, with Linux's
TCP (SACK, RACK) run twice, with Cubic (Debian's default) and with BBR (this host's
default, and what quinn runs as the agent and server configure it). The relay is a
Python process on the same loaded 2 cores: the probe under Raw runs gives the round trip it really
achieved. The backlog is smaller there (BENCH_NET_LOSSY_MIB) because loss-based TCP at 2 % loss
and 40 ms moves only a few Mbit/s (Mathis et al.: ≈ MSS/RTT × 1.22/√p ≈ 2.5 Mbit/s per
connection), and 1 GiB would take most of an hour.

Simulated devices: \`fieldseal-loadgen devices\`, each device its own QUIC connection (own UDP
socket, mutual TLS with its own enrolled key) and the agent's sync client (\`run_sync\`), signing a
real segment entry every 4 s and writing a 1 MB segment (2 Mbit/s) to /dev/shm for upload; a
receipt's latency is from the moment the entry is in the device's store to the moment its
verified receipt is saved. A step is sustained when the receipts' p99 over the window is under
1 s and the unacknowledged segments at the window's end are not more than one per device above
where they were at its start. Load generator and server share the machine's 2 cores, and the
load generator's cost (TLS, QUIC, signing) is of the same order as the server's.
EOF
  cat >>"$BOUNDS" <<'EOF'

What bounds each network figure (profiles with `perf record -g` from Debian's linux-perf on
2026-11-28, this machine, load average 2–14 from other builds; the figures quoted are from the
runs of that day). Ratios moved between runs by up to a third with the machine's load; the
medians of three pairs are steadier:

- **Loopback: the quinn ceiling (1.9–2.7 Gbit/s) is at or below curl → nginx (1.5–3.8 Gbit/s
  from pair to pair; nginx moves most with the machine's load)**, so no QUIC upload can meet
  the "≥ 1.0× curl/nginx" goal here with any margin. Kernel TCP on loopback moves 64 KiB
  segments (MTU 65536, no per-packet work in user space); quinn sends datagrams of at most 1452
  bytes (its MTU discovery's upper bound), ~740,000 per GiB, and each one is built, encrypted,
  header-protected, tracked for acknowledgement and received in user space. The profile of both
  ends is flat: AES-GCM 6–8 %, `memmove` 6 %, `poll_transmit`/`process_payload` and the rest of
  quinn-proto's per-packet bookkeeping, and 20–25 % thread wake-ups and context switches.
  Larger datagrams were tried (2026-11-28): with MTU discovery's upper bound at 9000 or 65527
  and the endpoints' `max_udp_payload_size` to match, discovery reached ~8,700 bytes and then a
  burst of large datagrams was lost on loopback, black-hole detection fell back to 1200 bytes,
  and neither the ceiling nor the upload got faster; on a real path (MTU 1500) there is nothing
  to gain. Left at quinn's defaults.
- **The ceiling against a plain quinn sender (issue 17, goal ≥ 0.9×): about 0.6×, and the
  congestion controller is most of it.** Measured by hand on 2026-11-29 18:15–18:25 UTC (load
  average 15–17 from four builds; 64 files of 2 MiB on loopback, 8 streams, release
  `fieldseal-loadgen`): `plain` (from memory, quinn's defaults: Cubic, 1.25 MB stream window)
  moved 2.35–2.89 Gbit/s and `ceiling` 1.55–1.64 in the same minutes (0.58–0.61×). Changing one
  thing at a time in `plain`: the sync client's and server's whole transport settings on both
  ends, 1.67–1.87; their windows (1 MiB a stream, 4 MiB a connection and to send) with Cubic,
  2.40–2.88, so the windows cost nothing here; the same windows with BBR, 1.87–2.17; BBR with a
  1 or 4 MiB initial window, 1.43–1.93. So quinn's BBR costs a quarter to a third of loopback
  throughput, and reading the files and the sink's copies about a tenth more. BBR stays: on a
  lossy radio link Cubic collapses (4 MiB in over 45 s against BBR's ~7 s at 300 ms and 2 % loss,
  FORMAT.md 7.9), and the device's uplink is what it is chosen for. The goal is not met; the
  `plain` rows (command NloopP) measure it in every `make bench` from now on.
- **Loopback: the UDP receive buffer.** With Linux's default (208 KiB, ~140 datagrams) the
  kernel dropped 7–15 % of the upload's packets on loopback (quinn's path statistics: 13,921 of
  203,278 lost in one ceiling run), each resent and counted as congestion. The server now asks
  for 8 MiB (`quic::RECV_BUFFER_BYTES`; the kernel caps it at `net.core.rmem_max`, 4 MiB here,
  and doubles it): 0 packets lost, the 256 MiB upload went from 2.1–2.5 s to 1.7–1.9 s, and the
  simulated devices sustained went from 200 to 400. `fieldseal-loadgen ceiling` prints the lost
  packets of its run.
- **Loopback: fieldseal at about half the ceiling.** Both ends are busy: in a 256 MiB upload
  (1.8–2.3 s) the server used 2.0–2.5 CPU-seconds, two thirds of it in the kernel (fsync
  write-out through virtio, page-cache writes, UDP receive, futex wake-ups), and the sender
  1.3 CPU-seconds, on 2 cores: the machine is saturated. Per segment the server writes the
  bytes, hashes them, fsyncs the file and its folder, renames the blob into place, and only then
  acknowledges; the entry before it costs a share of a group commit. nginx does none of this: no
  fsync, no hash; its 201 means "in the page cache". Changes on 2026-11-28, with what each
  did: stream data gathered into 512 KiB writes (was one `tokio::fs` write per 29 KB QUIC read:
  the server's 22 % in `finish_task_switch`); the partial file fsynced once when complete (was
  every MiB); hashing, fsync, rename and index update on the blocking pool (they stalled the
  async workers); the "media held" flag not flushed per segment; stream data kept in quinn's own
  buffers and hashed as it is written (`storage::PartWriter`: `memmove` from 8.7 % to 2.7 % of
  the server's samples, wall time unchanged). The fsyncs are not the bound by themselves: with
  `eatmydata` (fsync a no-op) 256 × 1 MiB took the same time. Files freed by `rm -rf` shortly
  before cost ext4 without a journal (this machine's) a scan on every create
  (`recently_deleted`, 5–12 % of the server); the bench no longer deletes between runs.
- **Lossy link.** Each segment's upload spent two round trips with its stream idle
  (UploadQuery → UploadOffset before the first byte; the server's fsync and UploadAck after the
  last). Since protocol 4 (2026-11-29) a segment new to the server is sent pipelined, without
  the query (FORMAT.md 7.5), so one idle round trip is left. In runs of only these rows on
  2026-11-29 (load about 2) the lossy upload went from 134 Mbit/s (0.61× TCP with BBR, 0.73 of
  the ceiling) the day before to 167 Mbit/s (0.79×, 0.79): better, still short of the goal of
  1.0×; the ceiling itself (210 Mbit/s) is about level with TCP/BBR (208), so what is left is
  the server's per-segment fsync and acknowledgement and quinn's BBR under random loss. With the agent's former 2 uploads at a time that cost about half the link (48–60
  Mbit/s, 0.6–0.8× TCP with BBR); `fieldseal-loadgen upload --max-uploads 8` through the same
  relay moved 95–105 Mbit/s, level with TCP/BBR, so `MachineConfig::max_uploads` is now 8. The
  flow-control windows of quic.rs (1 MiB a stream, 4 MiB a connection, ~800 Mbit/s at 40 ms) are
  not the bound. TCP with Cubic at 2 % loss is bound by its response to loss (Mathis et al.:
  ≈ MSS/RTT × 1.22/√p, ~2.5 Mbit/s a connection; two connections gave ~4 Mbit/s); with BBR, which
  like quinn's BBR does not treat random loss as congestion, TCP keeps the link's pace.
- **Simulated devices: 300–500 sustained (400–600 failed) in runs of 2026-11-28, against a
  SHA-256 limit of ~6,000.** Hashing is not the bound; the machine's 2 cores are. The devices
  row reads each side's CPU over its window (`--server-pid`): in the `make bench` run of 10:42
  UTC the server used 0.26 / 0.54 / 0.83 / 0.98 cores at 100 / 200 / 300 / 500 devices and the
  load generator 0.17 / 0.36 / 0.55 / 0.65, so the server costs about 0.2–0.27 cores per 100
  devices (2 Mbit/s each: ~8 ns of CPU per byte ingested, all in) and the load generator about
  0.15. The kernel's own share comes on top and is in neither figure: the write-out of fsynced
  blobs runs in kernel threads, and loopback's receive work is charged to whichever process
  happens to run. At 400–600 devices the two processes together use 1.6–1.8 cores with a load
  average of 5–6, receipts fall seconds behind and the segment backlog grows, and whether 400 or
  500 passes depends on the run. 1,000 devices would need ~2–2.7 cores for the server alone,
  more than the machine has. Per thread the server is spread out (`top -H` at 500 devices: two
  async workers at ~24 % each, the rest on the blocking pool's writes and fsyncs; no single
  thread saturated). A profile of the server at 300 devices is flat: thread wake-ups and
  context switches 11 % (`finish_task_switch`: hundreds of connections, each a few packets at a
  time), SHA-256 6 %, the virtio doorbell of each fsync's write-out 4 %, network softirq 4 %,
  `memmove` 3 %, AES-GCM 2 %, the rest spread over quinn, ext4 and malloc. The quinn ceiling
  itself (one connection, nothing stored) is 2–2.4 Gbit/s here, the 1,000 devices' rate (the
  row "against the quinn ceiling" divides it by 2 Mbit/s). Asking peers to acknowledge every
  10th packet instead of every 2nd (QUIC's ACK-frequency extension) saved ~10 % of both sides'
  CPU at 300 devices but slowed the lossy link (122 against 130 Mbit/s), so it was left out.
  A profile of 15 s at 200 devices on 2026-11-29 (release server, data folder on tmpfs, load
  average 12 from builds; `perf record -g -p PID`; the server used 0.33 cores, 0.165 per 100
  devices): 59 % kernel, of which 18 % copying segment bytes into the page cache
  (`copy_folio_from_iter_atomic` under the partial file's `write`) and 10 % context switches;
  SHA-256 8.6 %, `malloc`/`free` about 4 %, AES-GCM 2.5 %, quinn's per-packet work about 2 %. The
  goal of 0.1 cores per 100 devices (issue 17) is not met; what is left to cut is the copies and
  wake-ups, not the cryptography.
  One server of this size holds the cameras in "What one server holds" below; more need more
  cores, not another design (entries are group-committed, uploads are per-byte work).
- **Receipt latency at 100 devices.** Before group commit p99 was 34–54 ms: every entry cost three
  fsyncs under one lock, queued behind the others and behind blob fsyncs on the same ext4 file
  system (data=ordered: a journal commit first writes the other files' dirty data). With group
  commit (up to 256 entries per three fsyncs) it measured 19 ms and 43 ms in two runs on
  2026-11-28 (p50 4–5 ms), and with the larger UDP receive buffer 11.5 ms at 200 devices and
  14.8 ms at 300 (16 s windows, load 1.8): the remaining tail is the journal commit shared with bulk blob writes
  and the 2 cores shared with 100 senders; with tiny segments p99 was 6.9 ms. Blobs on another
  file system than the chain logs would take the blob fsyncs out of the receipts' way.
EOF
  [ ! -f "$WORK/bounds-reads.md" ] || cat "$WORK/bounds-reads.md" >>"$BOUNDS"
  echo >>"$BOUNDS"
}
