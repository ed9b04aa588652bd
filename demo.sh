#!/usr/bin/env bash
# The main job on the bundled demo vault (passphrase "tazpod-demo"), from a fresh clone:
# read a secret rootless, test the passphrase, show the header, decrypt the data area and check it.
set -euo pipefail
cd "$(dirname "$0")"
cargo build -q --release
tz=./target/x86_64-unknown-linux-gnu/release/tazpod
vault=fixtures/demo/vault.img
echo "== tazpod cat (rootless: no device-mapper, no mount)"
printf '%s' tazpod-demo | "$tz" cat --vault "$vault" --key-file - aws/access_key_id
echo "== tazpod open --test-passphrase"
printf '%s' tazpod-demo | "$tz" open --test-passphrase --key-file - -v "$vault"
echo "== tazpod dump"
"$tz" dump "$vault"
echo "== tazpod decrypt (sha256 of the plaintext ext4 image)"
sum=$(printf '%s' tazpod-demo | "$tz" decrypt --key-file - "$vault" - | sha256sum | cut -d' ' -f1)
echo "$sum"
if [ "$sum" = "$(cat fixtures/demo/plaintext.sha256)" ]; then
  echo "plaintext matches the ext4 image the vault was made from"
else
  echo "plaintext does NOT match" >&2; exit 1
fi
