#!/usr/bin/env bash
# Install the Debian packages fieldseal needs to build and test, if missing;
# with the argument `bench`, also those the benchmarks need.
# Idempotent and quiet when everything is present. Run as root (CI and the
# development machines are root); otherwise it uses sudo when available.
set -euo pipefail

PACKAGES=(
  # ffmpeg-next links FFmpeg's libraries and generates bindings with bindgen (clang).
  libavcodec-dev libavformat-dev libavutil-dev libavdevice-dev libavfilter-dev
  libswscale-dev libswresample-dev clang libclang-dev pkg-config
  # ffprobe checks the recorded segments in tests; ffmpeg is the benchmark baseline.
  ffmpeg
  # openssl is the hashing baseline of the benchmarks.
  openssl
  # GNU time: `/usr/bin/time -v` gives the benchmarks' CPU time and peak RSS.
  time
  # tests/independent/fieldseal_verify.py and tests/second-verifier/ (stdlib only, own
  # Ed25519), run by `cargo test -p fieldseal-tests`.
  python3
  # libfaketime: the fault suite makes the agent's wall clock jump by hours.
  faketime
  # README's example of the HTTP API (`curl …/api/catalogue`).
  curl
)

# `scripts/install-deps.sh bench`: also what only `make bench` needs (not `make test`).
if [ "${1:-}" = bench ]; then
  PACKAGES+=(
    # The network benchmarks' baseline: HTTPS PUT with curl to Debian's nginx (dav module).
    nginx
    # The lossy-link benchmark runs both protocols through network namespaces (ip netns).
    iproute2
  )
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
