#!/usr/bin/env bash
# Real-kernel tests of ghost mode (`tazpod unlock / lock / env`) in a QEMU guest, on a copy of
# the demo vault. Builds the release binary, runs tests/guest/ghost.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/release/tazpod" --file fixtures/demo:/fixtures/demo --host-bin flock \
    "$@" tests/guest/ghost.sh
# What a sudo rule for tazpod grants (users 1000 and 1001, SUDO_UID set as sudo sets it).
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/release/tazpod" --file fixtures/demo:/fixtures/demo --host-bin flock \
    "$@" tests/guest/security.sh
