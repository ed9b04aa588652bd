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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (library + CLI on the fixtures)"
cargo test --workspace

if [ -x tests/guest/dm-tests.sh ] && [ "${TAZPOD_SKIP_GUEST:-0}" != 1 ]; then
  step "real-kernel tests in a QEMU guest"
  tests/guest/dm-tests.sh
fi
