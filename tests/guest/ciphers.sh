#!/bin/sh
# Scenario: every block cipher, chain mode and IV generator tazpod implements, through the real
# kernel with cryptsetup in the same guest as the oracle (tests/guest/dm-tests.sh runs it with
# the cipher modules loaded: serpent, twofish, camellia, lrw, ecb, wp512, sha512).
#
# For each cipher specification:
#   - tazpod formats a volume; cryptsetup writes data through its mapping, tazpod's mapping of
#     the same volume reads it back, and the other way round; both load the same table;
#   - tazpod's userspace decryption (`tazpod decrypt`) of the image equals what the kernel's
#     mapping shows (the library's cipher against the kernel's);
#   - cryptsetup formats a volume with the same specification and tazpod opens it the same way.
# Then cryptsetup's own LUKS1 test images (serpent, twofish, aes-lrw, aes-xts-essiv:wp256, ...,
# unpacked by dm-tests.sh into /luks1): both tools map each with the same table (the key
# aside: cryptsetup puts LUKS1 keys into the table as hex) and the same plaintext, which is
# also what `tazpod decrypt` gives.
# Finally a cipher the kernel lacks (the module not loaded) is refused, naming the cipher and
# its modules, with nothing left behind.
. "${GUEST_LIB:-/lib.sh}"


BEFORE=$(t_state)
DATA=131072
CHEAP="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
head -c "$DATA" /dev/urandom >/tmp/ci-a.bin
head -c "$DATA" /dev/urandom >/tmp/ci-b.bin
printf %s 'cipher pass' >/tmp/ci.key

# ci_roundtrip NAME IMG: data both ways between a cryptsetup and a tazpod mapping of IMG, the
# same table, and tazpod's userspace decryption equal to the kernel's plaintext.
ci_roundtrip() {
    name=$1 img=$2
    t_check "$name/cs-open" t_cs open --key-file /tmp/ci.key "$img" cics || return
    cs_tab=$(t_table_nokey cics)
    t_check "$name/cs-write" dd if=/tmp/ci-a.bin of=/dev/mapper/cics bs=65536 conv=fsync
    t_check "$name/cs-close" t_cs close cics
    t_check "$name/tazpod-open" tazpod open --key-file /tmp/ci.key "$img" citz || return
    tz_tab=$(t_table_nokey citz)
    t_same_content "$name/cryptsetup-to-tazpod" /tmp/ci-a.bin /dev/mapper/citz "$DATA"
    [ -n "$tz_tab" ] && [ "$tz_tab" = "$cs_tab" ] && t_pass "$name/same-table" "$tz_tab" \
        || t_fail "$name/same-table" "tazpod: $tz_tab | cryptsetup: $cs_tab"
    t_check "$name/tazpod-write" dd if=/tmp/ci-b.bin of=/dev/mapper/citz bs=65536 conv=fsync
    t_check "$name/tazpod-close" tazpod close citz
    t_check "$name/cs-reopen" t_cs open --key-file /tmp/ci.key "$img" cics || return
    t_same_content "$name/tazpod-to-cryptsetup" /tmp/ci-b.bin /dev/mapper/cics "$DATA"
    t_check "$name/cs-close-again" t_cs close cics
    rm -f /tmp/ci.out
    t_check "$name/userspace-decrypt" tazpod decrypt --key-file /tmp/ci.key "$img" /tmp/ci.out
    t_same_content "$name/userspace-equals-kernel" /tmp/ci-b.bin /tmp/ci.out "$DATA"
    rm -f /tmp/ci.out
    t_settled "$BEFORE" && t_pass "$name/nothing-left" || t_fail "$name/nothing-left" "$(t_state)"
}

# ci_case CIPHER KEY-BITS [SECTOR-SIZE]
ci_case() {
    c=$1 bits=$2 ss=${3:-512}
    n=$(echo "$c-$bits-$ss" | tr ':' '_')
    img=/tmp/ci.img
    rm -f "$img"
    truncate -s 8M "$img"
    # shellcheck disable=SC2086
    t_check "$n/tazpod-format" tazpod format -q --luks2-keyslots-size 1m --cipher "$c" \
        --key-size "$bits" --sector-size "$ss" $CHEAP --key-file /tmp/ci.key "$img" &&
        ci_roundtrip "$n/tazpod-made" "$img"
    rm -f "$img"
    truncate -s 8M "$img"
    # shellcheck disable=SC2086
    t_check "$n/cryptsetup-format" t_cs luksFormat -q --type luks2 --luks2-keyslots-size 1m \
        --cipher "$c" --key-size "$bits" --sector-size "$ss" $CHEAP --key-file /tmp/ci.key "$img" &&
        ci_roundtrip "$n/cryptsetup-made" "$img"
    rm -f "$img"
}

# Every block cipher in every chain mode, and every IV generator at least once.
for b in aes serpent twofish camellia; do
    ci_case "$b-xts-plain64" 512 4096
    ci_case "$b-lrw-benbi" 384
    ci_case "$b-cbc-essiv:sha256" 256
    ci_case "$b-ecb" 256
done
ci_case aes-xts-plain64 256
ci_case aes-cbc-plain 128
ci_case serpent-xts-plain64be 256
ci_case twofish-cbc-null 192
ci_case camellia-lrw-plain64 256
ci_case serpent-cbc-essiv:sha1 256
ci_case aes-xts-essiv:sha256 512
ci_case twofish-xts-essiv:sha256 256 4096
ci_case camellia-cbc-benbi 256

# --- cryptsetup's LUKS1 test images ------------------------------------------------------------
for img in /luks1/luks1_*.img; do
    n=$(basename "$img" .img)
    cp "$img" /tmp/l1.img
    t_check "$n/cs-open" t_cs open --readonly --key-file /luks1/keyfile1 /tmp/l1.img l1cs || continue
    cs_tab=$(t_table_nokey l1cs)
    cs_sha=$(t_sha256 /dev/mapper/l1cs)
    t_check "$n/cs-close" t_cs close l1cs
    t_check "$n/tazpod-open" tazpod open --readonly --key-file /luks1/keyfile1 /tmp/l1.img l1tz \
        || continue
    tz_tab=$(t_table_nokey l1tz)
    tz_sha=$(t_sha256 /dev/mapper/l1tz)
    t_check "$n/tazpod-close" tazpod close l1tz
    [ -n "$tz_tab" ] && [ "$tz_tab" = "$cs_tab" ] && t_pass "$n/same-table" "$tz_tab" \
        || t_fail "$n/same-table" "tazpod: $tz_tab | cryptsetup: $cs_tab"
    [ -n "$cs_sha" ] && [ "$tz_sha" = "$cs_sha" ] && t_pass "$n/same-plaintext" \
        || t_fail "$n/same-plaintext" "tazpod $tz_sha, cryptsetup $cs_sha"
    rm -f /tmp/l1.out
    tazpod decrypt --key-file /luks1/keyfile1 /tmp/l1.img /tmp/l1.out 2>/tmp/l1.err
    [ "$(t_sha256 /tmp/l1.out)" = "$cs_sha" ] && t_pass "$n/userspace-decrypt" \
        || t_fail "$n/userspace-decrypt" "$(cat /tmp/l1.err)"
    cmp -s "$img" /tmp/l1.img && t_pass "$n/image-unchanged" || t_fail "$n/image-unchanged"
    rm -f /tmp/l1.img /tmp/l1.out
    t_settled "$BEFORE" && t_pass "$n/nothing-left" || t_fail "$n/nothing-left" "$(t_state)"
done

# --- a cipher the kernel lacks: refused, naming it and its modules ----------------------------
# A cipher tazpod implements and the kernel then lacks: serpent_generic is unloaded (and module
# autoloading turned off) for the row; skipped when the module cannot be unloaded.
rm -f /tmp/ci.img
truncate -s 8M /tmp/ci.img
# shellcheck disable=SC2086
if t_check lacking/format tazpod format -q --luks2-keyslots-size 1m --cipher serpent-cbc-plain64 \
    --key-size 256 $CHEAP --key-file /tmp/ci.key /tmp/ci.img; then
    modprobe_path=$(cat /proc/sys/kernel/modprobe)
    echo /nonexistent >/proc/sys/kernel/modprobe
    if rmmod serpent_generic 2>/dev/null; then
        tazpod open --key-file /tmp/ci.key /tmp/ci.img cino 2>/tmp/ci.err
        rc=$?
        t_log "$(cat /tmp/ci.err)"
        [ "$rc" = 1 ] && t_pass lacking/exit-1 || t_fail lacking/exit-1 "exit $rc"
        grep -q "serpent-cbc-plain64" /tmp/ci.err && grep -q "modprobe -a serpent_generic" /tmp/ci.err \
            && t_pass lacking/names-cipher-and-modules || t_fail lacking/names-cipher-and-modules
        t_check_fails lacking/nothing-mapped dmsetup info cino
        t_settled "$BEFORE" && t_pass lacking/nothing-left || t_fail lacking/nothing-left "$(t_state)"
        insmod "$(find /lib/modules -name 'serpent_generic.ko' | head -1)"
    else
        t_log "serpent_generic cannot be unloaded here: kernel-refusal row skipped"
    fi
    echo "$modprobe_path" >/proc/sys/kernel/modprobe
fi
# A cipher neither tazpod nor the guest has: format refuses it before writing.
rm -f /tmp/ci.img
truncate -s 8M /tmp/ci.img
# shellcheck disable=SC2086
tazpod format -q --cipher anubis-cbc-plain64 --key-size 256 $CHEAP --key-file /tmp/ci.key \
    /tmp/ci.img 2>/tmp/ci.err
rc=$?
[ "$rc" = 1 ] && grep -q anubis /tmp/ci.err && t_pass unimplemented/format-refused \
    || t_fail unimplemented/format-refused "exit $rc: $(cat /tmp/ci.err)"
t_check_fails unimplemented/nothing-written sh -c 'head -c 4096 /tmp/ci.img | grep -q LUKS'
rm -f /tmp/ci.img
# essiv:wp256 (cryptsetup's LUKS1 image above opens): a LUKS2 format is refused by both tools,
# whose keyslots would use it (cryptsetup's keyslot code has no truncated Whirlpool).
truncate -s 8M /tmp/ci.img
# shellcheck disable=SC2086
tazpod format -q --cipher aes-xts-essiv:wp256 $CHEAP --key-file /tmp/ci.key /tmp/ci.img 2>/tmp/ci.err
rc=$?
[ "$rc" = 1 ] && grep -q wp256 /tmp/ci.err && t_pass wp256/tazpod-format-refused \
    || t_fail wp256/tazpod-format-refused "exit $rc: $(cat /tmp/ci.err)"
# shellcheck disable=SC2086
t_cs luksFormat -q --type luks2 --cipher aes-xts-essiv:wp256 $CHEAP --key-file /tmp/ci.key \
    /tmp/ci.img 2>/dev/null
rc=$?
[ "$rc" = 1 ] && t_pass wp256/cryptsetup-format-refused-too || t_fail wp256/cryptsetup-format-refused-too "exit $rc"
rm -f /tmp/ci.img

rm -f /tmp/ci-a.bin /tmp/ci-b.bin /tmp/ci.key
t_settled "$BEFORE" && t_pass final-nothing-left || t_fail final-nothing-left "$(t_state)"
t_done
