#!/usr/bin/env bash
# The main job, end to end, on the embedded defaults. At this stage of the
# project: make a device key, sign a sample chain with it, damage a copy,
# and verify both with the offline verifier.
set -euo pipefail
dir=${1:-demo-data}
cargo build -q --release -p fieldseal-proto --bin fieldseal-verify --example sample_package
bin=target/release
rm -rf "$dir"
mkdir -p "$dir"

echo "== 1. A device key signs a sample chain (two recordings) into $dir/package"
"$bin/examples/sample_package" "$dir/package"

echo
echo "== 2. Verify the intact package"
"$bin/fieldseal-verify" "$dir/package"

echo
echo "== 3. Damage a copy: flip one byte of segment 4's media, delete entry 9"
cp -r "$dir/package" "$dir/damaged"
printf '\x00' | dd of="$dir/damaged/media/000000000004.ts" bs=1 seek=1000 conv=notrunc status=none
python3 - "$dir/damaged/chain.log" <<'PY'
import struct, sys
path = sys.argv[1]
data = open(path, "rb").read()
out, pos, i = b"", 0, 0
while pos < len(data):
    (n,) = struct.unpack(">H", data[pos:pos + 2])
    if i != 9:
        out += data[pos:pos + 2 + n]
    pos += 2 + n
    i += 1
open(path, "wb").write(out)
PY

echo
echo "== 4. Verify the damaged copy (expected to fail, naming seq 4 and 9)"
if "$bin/fieldseal-verify" "$dir/damaged"; then
  echo "demo: the damaged package verified; that is a bug" >&2
  exit 1
fi

echo
echo "== 5. The same report as JSON: $dir/damaged-report.json"
"$bin/fieldseal-verify" --json "$dir/damaged" > "$dir/damaged-report.json" || true
echo "Done. Look at $dir/package (device.pub, chain.log, media/) and $dir/damaged-report.json."
