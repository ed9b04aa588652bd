#!/usr/bin/env bash
# Real-kernel tests of ghost mode (`tazpod unlock / lock / env`) in a QEMU guest, on a copy of
# the demo vault. Builds the release binary, runs tests/guest/ghost.sh, then security.sh (what
# a sudo rule grants) caps.sh (the capabilities a
# container needs) and memlimit.sh (a container memory limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod" --file fixtures/demo:/fixtures/demo --host-bin flock \
    --host-bin e2fsck --host-bin dumpe2fs "$@" tests/guest/ghost.sh
# What a sudo rule for tazpod grants (users 1000 and 1001, SUDO_UID set as sudo sets it).
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod" --file fixtures/demo:/fixtures/demo --host-bin flock \
    "$@" tests/guest/security.sh
# The capabilities a container must grant (docs/containers.md), every other one dropped.
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod" "$@" tests/guest/caps.sh
# Under a container memory limit (cgroup v2 memory.max): the 512 MiB Argon2 keyslot is made
# and checked here on the host, natively, where it is fast.
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod"
mem=$(mktemp -d /tmp/tazpod-mem.XXXXXX)
trap 'rm -rf "$mem"' EXIT
printf 'a big keyslot' > "$mem/big.key"
truncate -s 20M "$mem/big.img"
"$bin" format -q --key-file "$mem/big.key" --pbkdf argon2id --pbkdf-memory 524288 \
    --pbkdf-force-iterations 4 "$mem/big.img"
"$bin" open --test-passphrase --max-kdf-memory 1048576 --key-file "$mem/big.key" "$mem/big.img"
tests/guest/run.sh --bin "$bin" --file "$mem:/fixtures" "$@" tests/guest/memlimit.sh
