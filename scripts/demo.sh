#!/usr/bin/env bash
# The main job, end to end, on the embedded defaults: a server on loopback, an
# enrolled device recording ~20 s from the synthetic camera, live sync
# (entries hash-first, then segment bytes), verification on the device, on the
# server's copy and offline, and a damaged copy that the verifier catches.
set -euo pipefail
dir=${1:-demo-data}
secs=${DEMO_SECONDS:-20}
port=${DEMO_PORT:-47443}
http_port=${DEMO_HTTP_PORT:-47480}
echo "== building (release)"
cargo build -q --release -p fieldseal-agent -p fieldseal-server -p fieldseal-proto --bins
bin=$(pwd)/target/release
agent="$bin/fieldseal-agent"
server="$bin/fieldseal-server"
rm -rf "$dir"
mkdir -p "$dir"
export RUST_LOG=${RUST_LOG:-warn}

server_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  true
}
trap cleanup EXIT

echo
echo "== 1. A server: CA, TLS certificate, receipt-signing key, admin user ($dir/server)"
FIELDSEAL_ADMIN_PASSWORD=${FIELDSEAL_ADMIN_PASSWORD:-demo-password} "$server" init --data "$dir/server"
# A supervisor for the web page (the admin manages users and devices, not evidence).
FIELDSEAL_USER_PASSWORD=demo-supervisor "$server" user add --data "$dir/server" --name supervisor --role supervisor
"$server" run --data "$dir/server" --quic "127.0.0.1:$port" --http "127.0.0.1:$http_port" > "$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -S "$dir/server/control.sock" ] && break; sleep 0.1; done

echo
echo "== 2. A new device enrols with a one-time token ($dir/device)"
"$agent" init --data "$dir/device"
token=$("$server" device add --data "$dir/server" --name body-cam-01 | sed -n 's/^token: *//p')
"$agent" enroll --data "$dir/device" --server "127.0.0.1:$port" --token "$token" --ca "$dir/server/ca.crt"

echo
echo "== 3. Record a seizure: ${secs} s from the synthetic camera (testsrc2 1280x720@30 + tone), syncing live;"
echo "      the officer shows identity (Art. 26) as the recording starts"
RUST_LOG=fieldseal_agent::run=info,warn "$agent" run --data "$dir/device" --pre-event 0 > "$dir/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
  "$agent" start --data "$dir/device" --case CJ-2026-0001 --activity seizure 2>/dev/null && break
  sleep 0.2
done
started_us=$(date +%s%6N)
"$agent" mark --data "$dir/device" identity-shown --officer CJ-001
sleep "$secs"
stopped_us=$(date +%s%6N)
"$agent" stop --data "$dir/device"
sleep 2
kill -TERM "$agent_pid"; wait "$agent_pid" || true
"$agent" sync --data "$dir/device" --until-drained
"$agent" status --data "$dir/device"

echo
echo "== 4. The device verifies its chain against its media and the server's receipts"
"$agent" verify --data "$dir/device"

echo
echo "== 5. The server holds every entry and every byte"
id=$("$agent" status --json --data "$dir/device" | sed -n 's/.*"device": "\([0-9a-f]*\)".*/\1/p')
cmp "$dir/device/chain.log" "$dir/server/devices/$id/chain.log" && echo "chain.log: byte-identical on the server"
python3 - "$dir/device" "$dir/server" <<'PY'
import hashlib, os, struct, sys
dev, srv = sys.argv[1], sys.argv[2]
data = open(os.path.join(dev, "chain.log"), "rb").read()
pos = n = 0
while pos < len(data):
    (ln,) = struct.unpack(">H", data[pos:pos + 2])
    rec = data[pos + 2:pos + 2 + ln]
    pos += 2 + ln
    # kind byte after prefix(19) version(1) device(8) seq(8) prev(32) wall(8) mono(8) boot(4) + position
    off = 19 + 1 + 8 + 8 + 32 + 8 + 8 + 4
    off += 1 + (10 if rec[off] == 1 else 0)
    if rec[off] != 1:
        continue
    sha = rec[off + 1 + 16 + 4: off + 1 + 16 + 4 + 32].hex()
    blob = os.path.join(srv, "blobs", sha[:2], sha)
    assert hashlib.sha256(open(blob, "rb").read()).hexdigest() == sha, blob
    n += 1
print(f"media: all {n} segments are on the server, each blob's SHA-256 equal to its signed hash")
PY

echo
echo "== 6. The server verifies its archive: every signature, link, blob hash and receipt"
"$server" verify --data "$dir/server"
echo
echo "== 7. The server signs a checkpoint of its transparency log; an inclusion proof for the last entry"
"$server" log checkpoint --data "$dir/server"
last=$(( $(python3 -c "import json,sys; print(json.load(sys.stdin)['next_seq'])" < <("$agent" status --json --data "$dir/device")) - 1 ))
"$server" log prove --data "$dir/server" --device "$id" --seq "$last" > "$dir/inclusion-proof.json"
echo "inclusion proof of entry $last: $dir/inclusion-proof.json"

echo
echo "== 8. The offline verifier (fieldseal-proto + std only) checks the device folder as a package"
"$bin/fieldseal-verify" "$dir/device"

echo
echo "== 9. Damage a copy: flip one byte of the first segment, delete the recording-started entry (seq 1)"
cp -r "$dir/device" "$dir/damaged"
first=$(ls "$dir/damaged/media"/*.ts | sed -n 1p)
printf '\x00' | dd of="$first" bs=1 seek=5000 conv=notrunc status=none
python3 - "$dir/damaged/chain.log" <<'PY'
import struct, sys
path = sys.argv[1]
data = open(path, "rb").read()
recs, pos = [], 0
while pos < len(data):
    (n,) = struct.unpack(">H", data[pos:pos + 2])
    recs.append(data[pos:pos + 2 + n])
    pos += 2 + n
del recs[1]
open(path, "wb").write(b"".join(recs))
PY
if "$bin/fieldseal-verify" "$dir/damaged"; then
  echo "demo: the damaged copy verified; that is a bug" >&2
  exit 1
fi
"$bin/fieldseal-verify" --json "$dir/damaged" > "$dir/damaged-report.json" || true

echo
echo "== 10. The HTTP API: the recording catalogue is published without login; the admin logs in"
python3 - "$http_port" "${FIELDSEAL_ADMIN_PASSWORD:-demo-password}" <<'PY'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
cat = json.load(urllib.request.urlopen(base + "/api/catalogue"))
for a in cat["activity"][:5]:
    print(f"  {a['id']:22} {a['requirement']:14} {a['name_zh']} / {a['name_en']}")
print(f"  … {len(cat['activity'])} activity types in all")
req = urllib.request.Request(base + "/api/login", method="POST",
    data=json.dumps({"user": "admin", "password": sys.argv[2]}).encode(),
    headers={"Content-Type": "application/json"})
me = json.load(urllib.request.urlopen(req))
print(f"  logged in as {me['user']} ({me['role']}); the API is described at {base}/api/openapi.json")
PY

echo
echo "== 11. A case: officer CJ-001 carried the camera; the seizure's Article 27 compliance, judged by the server"
python3 - "$http_port" "${FIELDSEAL_ADMIN_PASSWORD:-demo-password}" "$id" "$started_us" "$stopped_us" <<'PY'
import json, sys, time, urllib.request
base, password, device = f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2], sys.argv[3]
started, stopped = int(sys.argv[4]), int(sys.argv[5])
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req) as r:
        raw = r.read()
        return json.loads(raw) if raw else None
token = call("POST", "/api/login", {"user": "admin", "password": password})["token"]
call("POST", "/api/officers", {"certificate": "CJ-001", "name": "Li Ming", "valid_from": "2024-01-01",
     "valid_until": "2030-12-31"}, token)
call("POST", "/api/custody", {"device": device, "officer": "CJ-001",
     "from_us": int(time.time() * 1e6) - 3600 * 10**6}, token)
call("POST", "/api/cases", {"number": "CJ-2026-0001", "body": "Demo District Urban Management Bureau",
     "officers": ["CJ-001"]}, token)
# The seizure as the officer's paperwork has it: from just after the camera
# started to just before it stopped.
call("POST", "/api/cases/CJ-2026-0001/activities", {"id": "seizure-1", "kind": "seizure",
     "place": "18 Demo Road", "start_us": started + 2 * 10**6, "end_us": stopped - 10**6,
     "officers": ["CJ-001"]}, token)
c = call("GET", "/api/cases/CJ-2026-0001/compliance", None, token)
for a in c["activities"]:
    v = a["verdict"]
    how = ", ".join(sorted({r["by"] for r in a.get("recordings", [])}))
    print(f"  activity {a['id']} ({a['kind']}, {v['requirement']}): "
          f"{'COMPLIANT' if v['compliant'] else 'NOT COMPLIANT'}; "
          f"{v['best_run_seconds']:.1f} s in one unbroken run; recordings attached by {how}")
    for f in v["findings"]:
        print(f"    finding {f['kind']}: {f['detail']}")
print(f"  case {c['case']}: {'compliant' if c['compliant'] else 'not compliant'}"
      f" ({base}/api/cases/CJ-2026-0001/compliance)")
if not c["compliant"]:
    sys.exit("demo: the uninterrupted seizure was judged not compliant; that is a bug")
PY

echo
echo "== 12. A custodian's export for a court: one file that proves itself offline (docs/FORMAT.md §10)"
"$server" export --data "$dir/server" --case CJ-2026-0001 --out "$dir/CJ-2026-0001.fieldseal.tar"
"$bin/fieldseal-verify" "$dir/CJ-2026-0001.fieldseal.tar"
echo "-- a copy with its last segment cut off:"
python3 - "$dir/CJ-2026-0001.fieldseal.tar" "$dir/cut.fieldseal.tar" <<'PY'
import sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    members = t.getmembers()
    last = max(i for i, m in enumerate(members) if m.name.endswith(".ts"))
    print(f"   removed {members[last].name}")
    with tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as out:
        for i, m in enumerate(members):
            if i != last:
                out.addfile(m, t.extractfile(m))
PY
if "$bin/fieldseal-verify" "$dir/cut.fieldseal.tar" > "$dir/cut-report.txt" 2>&1; then
  cat "$dir/cut-report.txt"
  echo "demo: the cut package verified; that is a bug" >&2
  exit 1
fi
sed -n '1p' "$dir/cut-report.txt"
sed -n '/findings:/,$p' "$dir/cut-report.txt"

echo
echo "Done. Look at:"
echo "  $dir/device/chain.log            the device's signed hash chain (docs/FORMAT.md §3, §9)"
echo "  $dir/device/media/               the MPEG-TS segments (cat them into one file to play)"
echo "  $dir/device/receipts.log         the server's signed receipts"
echo "  $dir/server/devices/$id/   the server's copy of the chain; $dir/server/blobs/ the segments"
echo "  $dir/inclusion-proof.json        a Merkle inclusion proof of the last entry in a signed checkpoint"
echo "  $dir/damaged-report.json         what the verifier says about the damaged copy"
echo "  $dir/CJ-2026-0001.fieldseal.tar  the case's export package: target/release/fieldseal-verify accepts it"
echo "  $dir/cut-report.txt              what it says of the copy with its last segment cut off"
echo "  the demo case in a browser:      http://127.0.0.1:$http_port/#/cases/CJ-2026-0001"
echo "                                   log in as supervisor / demo-supervisor (or admin / ${FIELDSEAL_ADMIN_PASSWORD:-demo-password})"
if [ -t 0 ] && [ -t 1 ] && [ -z "${CI:-}" ]; then
  echo
  read -r -p "The server is still running for the web page; press Enter to stop it. " _ || true
else
  echo "  (the server stops now; to look again: $server run --data $dir/server --http 127.0.0.1:$http_port --quic 127.0.0.1:$port)"
fi
