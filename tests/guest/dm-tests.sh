#!/usr/bin/env bash
# Real-kernel tests of `tazpod open / close / status` (device-mapper, loop, keyring) in a QEMU
# guest, on every fixture of fixtures/manifest.json, cross-checked against cryptsetup in the
# same guest, and volumes `tazpod format` writes (tests/guest/dm-writer.sh, sourced by dm.sh).
# Builds the release binary, prepares the case list, runs tests/guest/dm.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release
cases=$(mktemp -d /tmp/tazpod-dm-cases.XXXXXX)
trap 'rm -rf "$cases"' EXIT
python3 - "$cases" <<'PY'
import json, os, sys
out = sys.argv[1]
m = json.load(open("fixtures/manifest.json"))
with open(os.path.join(out, "cases.tsv"), "w") as f:
    for i, c in enumerate(m):
        key = os.path.join(out, f"{i}.key")
        if c.get("key_file"):
            key = "/fixtures/" + c["key_file"]
        else:
            with open(key, "wb") as k:
                k.write(c["passphrase"].encode())
            key = f"/cases/{i}.key"
        row = [c["name"], "/fixtures/" + c["image"],
               "/fixtures/" + c["header"] if c.get("header") else "-",
               key, str(c["key_slot"]) if c.get("key_slot") is not None else "-",
               c["expect"], c.get("plaintext_sha256") or "-", str(c.get("data_size") or 0),
               str(c.get("version") or 2), c.get("cipher") or "-",
               "1" if c.get("data_verified") else "0"]
        f.write("\t".join(row) + "\n")
PY
# cryptsetup's OpenSSL backend loads the legacy provider for whirlpool and ripemd160.
ossl=$(dirname "$(find /usr/lib -name legacy.so -path '*ossl-modules*' 2>/dev/null | head -1)")
extra=()
[ -n "$ossl" ] && [ "$ossl" != . ] && extra+=(--file "$ossl:$ossl")
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod" --file fixtures:/fixtures \
    --file "$cases:/cases" --file tests/guest/dm-writer.sh:/dm-writer.sh \
    "${extra[@]}" \
    "$@" tests/guest/dm.sh

# Every cipher, chain mode and IV generator against the kernel and cryptsetup, and cryptsetup's
# own LUKS1 test images (tests/guest/ciphers.sh), with the cipher modules loaded.
l1=$(mktemp -d /tmp/tazpod-luks1.XXXXXX)
trap 'rm -rf "$cases" "$l1"' EXIT
tar -xJf fixtures/cryptsetup/luks1-images.tar.xz -C "$l1" --no-same-owner
cipher_modules=()
for m in serpent_generic twofish_common twofish_generic camellia_generic lrw ecb wp512 \
    sha512_generic; do
    cipher_modules+=(--module "$m")
done
log_args=()
prev=
for a in "$@"; do
    # A --log-dir given for the dm run gets a sibling for this one.
    if [ "$prev" = --log-dir ]; then log_args+=("$a-ciphers"); else log_args+=("$a"); fi
    prev=$a
done
tests/guest/run.sh --bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/tazpod" \
    --file "$l1/luks1-images:/luks1" "${cipher_modules[@]}" "${extra[@]}" \
    --timeout 900 "${log_args[@]}" tests/guest/ciphers.sh
