#!/usr/bin/env bash
# Install the Debian packages fieldseal needs to build and test, if missing;
# with the argument `bench`, also those the benchmarks need; with `test`, also
# Garage (built once per machine), which only the tests need.
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
  # gpsfake (gpsd-clients) replays an NMEA log through a real gpsd (gpsd) for
  # the agent's position test (tests/tests/gps_e2e.rs).
  gpsd gpsd-clients
  # strace: tests/tests/powerloss.rs audits what `init` leaves un-fsynced
  # (tests/src/fsync_audit.rs replays the trace against a power-cut model).
  strace
  # (tests/src/lazyfs, the power-cut filesystem, needs no package: the fuser crate
  # mounts /dev/fuse itself as root, without libfuse or fusermount.)
  # README's example of the HTTP API (`curl …/api/catalogue`).
  curl
  # The device key inside a PKCS#11 token: softhsm2 is the token of the tests
  # (agent/tests/token.rs, tests/tests/hwkey.rs) and of the signing benchmark,
  # each in a private SOFTHSM2_CONF and token folder, never the system's.
  softhsm2
  # The time zone database: `status`, `verify` and `device list` print local time in
  # the zone TZ names (TZ=Asia/Shanghai) or /etc/localtime points at. The tests use
  # POSIX rules (TZ=CST-8) and do not need it.
  tzdata
  # The browser test of the web page (tests/tests/web_browser.rs): Debian's
  # chromium driven by playwright-core from npm (no browser download), node to
  # run it (Node.js 20 or later: this machine kind's NodeSource build; Debian
  # 12's own nodejs is 18, too old for playwright-core 1.65); a CJK font so that the Chinese labels show in its screenshots.
  chromium nodejs fonts-wqy-microhei
)
# npm: Debian's package, unless node came with its own (NodeSource's nodejs
# bundles npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

# `scripts/install-deps.sh bench`: also what only `make bench` needs (not `make test`).
if [ "${1:-}" = bench ]; then
  PACKAGES+=(
    # The network benchmarks' baseline: HTTPS PUT with curl to Debian's nginx (dav module).
    nginx
    # The lossy-link benchmark runs both protocols through network namespaces (ip netns).
    iproute2
  )
fi

# The npm packages, as pinned by each folder's package-lock.json: hls.js, the
# player the server embeds at build time (server/build.rs), and playwright-core
# for the browser test. Done again only when the lock file changed (a copy of
# the lock it was installed from is kept in node_modules).
npm_folders() {
  for d in server/web tests/browser; do
    dir="$(dirname "$0")/../$d"
    if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-from-lock"; then
      echo "install-deps: npm ci in $d"
      (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null \
        && cp package-lock.json node_modules/.installed-from-lock)
    fi
  done
}

# Garage, the S3 object store of the tests with blobs on S3 (tests/src/garage.rs
# starts three nodes on loopback). Built from crates.io once per machine into a
# cached folder (8 to 25 minutes on two cores), skipped when already there.
GARAGE_VERSION=2.5.0
GARAGE_ROOT="${FIELDSEAL_GARAGE_ROOT:-$HOME/.cache/fieldseal/garage}"
garage_build() {
  local bin="$GARAGE_ROOT/bin/garage"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -Fq "$GARAGE_VERSION"; then
    return 0
  fi
  echo "install-deps: building garage $GARAGE_VERSION into $GARAGE_ROOT (once per machine; 8 to 25 minutes on two cores)"
  local target="${CARGO_TARGET_DIR:-$(mktemp -d)}"
  CARGO_TARGET_DIR="$target" cargo install garage --locked --quiet --version "$GARAGE_VERSION" --root "$GARAGE_ROOT"
  [ -n "${CARGO_TARGET_DIR:-}" ] || rm -rf "$target"
  echo "install-deps: garage $GARAGE_VERSION is $bin"
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Garage only for `make test` (and `make bench`'s s3 rows): `make demo` does not
# wait for it on a new machine.
want_garage() { [ "${1:-}" = test ] || [ "${1:-}" = bench ]; }
if [ ${#missing[@]} -eq 0 ]; then
  npm_folders
  if want_garage "${1:-}"; then garage_build; fi
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh Debian often runs unattended upgrades at first boot: wait for the
# dpkg/apt locks (up to 10 minutes) instead of failing at once.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
if command -v fuser >/dev/null && $SUDO fuser /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock >/dev/null 2>&1; then
  echo "install-deps: another apt or dpkg is running (unattended upgrades?); waiting up to 10 minutes for it" >&2
fi
$SUDO apt-get "${LOCK_WAIT[@]}" update -qq
$SUDO apt-get "${LOCK_WAIT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_folders
if want_garage "${1:-}"; then garage_build; fi
