# Part of the dm scenario (sourced by tests/guest/dm.sh after lib.sh; needs nothing else):
# volumes that `tazpod format` (and `add-key` / `change-key`) wrote, used through the real
# kernel by both tools. For each volume: data written through a cryptsetup mapping reads back
# through a tazpod mapping and the other way round, and both mappings load the same table
# (the key field aside: both name a logon key in the keyring).
# Cheap KDFs (pbkdf2 with 1000 iterations, or argon2 with 32 KiB): the guest is TCG-emulated.

wr_keyfield() { dmsetup table "$1" | awk '{ print $5 }'; }

WR_BEFORE=$(t_state)
WR_DATA=2097152
CHEAP_PBKDF2="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
head -c "$WR_DATA" /dev/urandom >/tmp/wr-a.bin
head -c "$WR_DATA" /dev/urandom >/tmp/wr-b.bin
printf %s 'writer pass A' >/tmp/wr-a.key
printf %s 'writer pass B' >/tmp/wr-b.key
printf %s 'writer pass C' >/tmp/wr-c.key

# wr_roundtrip NAME IMG HEADER|- CRYPTSETUP-KEY TAZPOD-KEY
wr_roundtrip() {
    name=$1 img=$2 hdr=$3 kcs=$4 ktz=$5
    hopt=""
    [ "$hdr" != - ] && hopt="--header $hdr"
    # cryptsetup writes, tazpod reads.
    # shellcheck disable=SC2086
    t_check "$name/cs-open" t_cs open $hopt --key-file "$kcs" "$img" wcs || return
    cs_tab=$(t_table_nokey wcs)
    cs_key=$(wr_keyfield wcs)
    t_check "$name/cs-write" dd if=/tmp/wr-a.bin of=/dev/mapper/wcs bs=1048576 conv=fsync
    t_check "$name/cs-close" t_cs close wcs
    # shellcheck disable=SC2086
    t_check "$name/tazpod-open" tazpod open $hopt --key-file "$ktz" "$img" wtz || return
    tz_tab=$(t_table_nokey wtz)
    tz_key=$(wr_keyfield wtz)
    t_same_content "$name/cryptsetup-to-tazpod" /tmp/wr-a.bin /dev/mapper/wtz "$WR_DATA"
    [ -n "$tz_tab" ] && [ "$tz_tab" = "$cs_tab" ] && t_pass "$name/same-table" \
        || t_fail "$name/same-table" "tazpod: $tz_tab | cryptsetup: $cs_tab"
    case "$cs_key|$tz_key" in
        :*:logon:*"|":*:logon:*) t_pass "$name/both-keyring" ;;
        *) t_fail "$name/both-keyring" "cryptsetup $cs_key, tazpod $tz_key" ;;
    esac
    # tazpod writes, cryptsetup reads.
    t_check "$name/tazpod-write" dd if=/tmp/wr-b.bin of=/dev/mapper/wtz bs=1048576 conv=fsync
    t_check "$name/tazpod-close" tazpod close wtz
    # shellcheck disable=SC2086
    t_check "$name/cs-reopen" t_cs open $hopt --key-file "$kcs" "$img" wcs || return
    t_same_content "$name/tazpod-to-cryptsetup" /tmp/wr-b.bin /dev/mapper/wcs "$WR_DATA"
    t_check "$name/cs-close-again" t_cs close wcs
    t_settled "$WR_BEFORE" && t_pass "$name/nothing-left" || t_fail "$name/nothing-left" "$(t_state)"
}

# wr_volume NAME FORMAT-OPTIONS...: a 12 MiB image formatted by tazpod with key A, then the
# round trip with key A on both sides (2 MiB each way: AES is emulated, ~1 s per MiB here).
wr_volume() {
    name=$1
    shift
    img=/tmp/wr-$name.img
    rm -f "$img"
    truncate -s 12M "$img"
    t_check "$name/format" tazpod format -q --luks2-keyslots-size 1m "$@" \
        --key-file /tmp/wr-a.key "$img" || return
    wr_roundtrip "$name" "$img" - /tmp/wr-a.key /tmp/wr-a.key
    rm -f "$img"
}

# shellcheck disable=SC2086
{
wr_volume fmt-xts512-s4096 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 $CHEAP_PBKDF2
wr_volume fmt-xts512-s512 --cipher aes-xts-plain64 --key-size 512 --sector-size 512 $CHEAP_PBKDF2
wr_volume fmt-xts256-s4096 --cipher aes-xts-plain64 --key-size 256 --sector-size 4096 $CHEAP_PBKDF2
wr_volume fmt-xts256-s512 --cipher aes-xts-plain64 --key-size 256 --sector-size 512 $CHEAP_PBKDF2
wr_volume fmt-argon2id --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 32 \
    --pbkdf-parallel 1
wr_volume fmt-cbc-essiv --cipher aes-cbc-essiv:sha256 --key-size 256 --sector-size 512 \
    $CHEAP_PBKDF2
wr_volume fmt-meta64k-label --luks2-metadata-size 64k --label 'writer vault' $CHEAP_PBKDF2
}

# A detached header: the data starts at offset 0 of the image.
rm -f /tmp/wr-det.img /tmp/wr-det.hdr
truncate -s 8M /tmp/wr-det.img
# shellcheck disable=SC2086
if t_check fmt-detached/format tazpod format -q $CHEAP_PBKDF2 --header /tmp/wr-det.hdr \
    --key-file /tmp/wr-a.key /tmp/wr-det.img; then
    wr_roundtrip fmt-detached /tmp/wr-det.img /tmp/wr-det.hdr /tmp/wr-a.key /tmp/wr-a.key
fi
rm -f /tmp/wr-det.img /tmp/wr-det.hdr

# After add-key (B into slot 1) and change-key (A becomes C in slot 0): cryptsetup opens with
# C, tazpod with B, and A opens nothing.
img=/tmp/wr-keys.img
rm -f "$img"
truncate -s 12M "$img"
# shellcheck disable=SC2086
if t_check fmt-keys/format tazpod format -q --luks2-keyslots-size 1m $CHEAP_PBKDF2 \
    --key-file /tmp/wr-a.key "$img" &&
    t_check fmt-keys/add-key tazpod add-key $CHEAP_PBKDF2 --key-file /tmp/wr-a.key \
        --new-keyfile /tmp/wr-b.key "$img" &&
    t_check fmt-keys/change-key tazpod change-key $CHEAP_PBKDF2 --key-file /tmp/wr-a.key \
        --new-keyfile /tmp/wr-c.key "$img"; then
    t_cs open --test-passphrase --key-file /tmp/wr-a.key "$img" 2>/dev/null
    rc=$?
    [ "$rc" = 2 ] && t_pass fmt-keys/old-key-refused-by-cryptsetup \
        || t_fail fmt-keys/old-key-refused-by-cryptsetup "exit $rc"
    wr_roundtrip fmt-keys "$img" - /tmp/wr-c.key /tmp/wr-b.key
fi
rm -f "$img" /tmp/wr-a.bin /tmp/wr-b.bin
