#!/usr/bin/env bash
# Every test of the project, from a fresh machine: formatting, lints, unit/integration tests
# (library and CLI on the cryptsetup-made fixtures), and the real-kernel tests in a QEMU guest.
# Installs what it needs (apt packages for the guest, cargo components).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "oracle and tools used by the tests (cryptsetup, e2fsprogs, strace)"
missing=()
command -v cryptsetup >/dev/null || missing+=(cryptsetup-bin)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
# strace kills the writers at each write and fsync (tests/writer_kill.rs).
command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "WARNING: ${missing[*]} missing and not root: the cryptsetup round-trip tests will say SKIPPING" >&2
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (library + CLI on the fixtures)"
cargo test --workspace

step "the release binary is static (no shared library)"
cargo build -q --release
bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod
ldd "$bin" 2>&1 | grep -Eq "statically linked|not a dynamic executable" || { ldd "$bin"; exit 1; }
ls -l "$bin"

# Quick criterion run (about a minute after the build) so the benches keep compiling and running;
# its figures are not comparable between machines. docs/performance.md has the real ones.
step "benches, quick mode"
cargo bench -p tazpod --bench kdf --bench af --bench xts --bench header -- \
  --quick --warm-up-time 0.1 --measurement-time 0.3

# The real-kernel tests boot Debian's kernel in QEMU (installing qemu-system-x86, busybox-static
# and the rest on first use, caching the kernel). They never skip silently: only an explicit
# TAZPOD_SKIP_GUEST=1 (for quick local runs, never set in CI) leaves them out, loudly.
if [ "${TAZPOD_SKIP_GUEST:-0}" = 1 ]; then
  step "SKIPPED: real-kernel guest tests (TAZPOD_SKIP_GUEST=1)"
else
  step "real-kernel tests in a QEMU guest: open / close / status on every fixture"
  tests/guest/dm-tests.sh --log-dir "${TMPDIR:-/tmp}/tazpod-guest-dm"
  step "real-kernel tests in a QEMU guest: ghost mode"
  tests/guest/ghost-tests.sh --log-dir "${TMPDIR:-/tmp}/tazpod-guest-ghost"
fi

# Fuzz smoke: every fuzz target (fuzz/, cargo-fuzz; installs cargo-fuzz if missing) for 10 s.
step "fuzz smoke (10 s per target)"
fuzz/smoke.sh 10
