#!/usr/bin/env bash
# The main job, end to end, on the embedded defaults: a device records ~20 s
# from the synthetic camera into its hash-chained, signed spool; the chain is
# verified by the agent and by the offline verifier; a damaged copy is caught.
set -euo pipefail
dir=${1:-demo-data}
secs=${DEMO_SECONDS:-20}
echo "== building (release)"
cargo build -q --release -p fieldseal-agent -p fieldseal-proto --bins
bin=target/release
rm -rf "$dir"
mkdir -p "$dir"
agent="$bin/fieldseal-agent"

echo
echo "== 1. A new device: key and config in $dir/device"
"$agent" init --data "$dir/device"

echo
echo "== 2. Record ${secs} s from the synthetic camera (testsrc2 1280x720@30 + tone)"
RUST_LOG=${RUST_LOG:-fieldseal_agent=info} "$agent" record --data "$dir/device" --duration "$secs" \
  --case CJ-2026-0001 --activity seizure

echo
echo "== 3. The agent verifies its own chain and media"
"$agent" verify --data "$dir/device"
"$agent" status --data "$dir/device"

echo
echo "== 4. The offline verifier (fieldseal-proto + std only) checks the same folder as a package"
"$bin/fieldseal-verify" "$dir/device"

echo
echo "== 5. Damage a copy: flip one byte of the first segment, delete the recording-started entry (seq 1)"
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
echo "Done. Look at:"
echo "  $dir/device/chain.log     the signed hash chain (docs/FORMAT.md §3, §9)"
echo "  $dir/device/media/        the MPEG-TS segments (play: ffplay or cat them into one file)"
echo "  $dir/damaged-report.json  what the verifier says about the damaged copy"
