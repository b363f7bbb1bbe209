#!/usr/bin/env bash
# proto is sans-IO: its normal dependency tree must not contain an async
# runtime, a network stack or a database. See STYLE.md item 1.
set -euo pipefail
tree=$(cargo tree -p fieldseal-proto -e normal --prefix none --offline 2>/dev/null || cargo tree -p fieldseal-proto -e normal --prefix none)
bad=$(echo "$tree" | grep -E '^(tokio|quinn|quinn-proto|sled|mio|socket2|hyper|axum) ' || true)
if [ -n "$bad" ]; then
  echo "fieldseal-proto must not depend on I/O crates, but depends on:" >&2
  echo "$bad" | sort -u >&2
  exit 1
fi
echo "proto dependency check: no tokio, quinn or sled in fieldseal-proto"
