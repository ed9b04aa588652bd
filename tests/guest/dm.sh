#!/bin/sh
# Scenario: tazpod open / close / status against the real kernel, per fixture, with cryptsetup
# in the same guest as the oracle for the table it loads. Cases come from /cases/cases.tsv
# (made by tests/guest/dm-tests.sh from fixtures/manifest.json).
. "${GUEST_LIB:-/lib.sh}"

cs() { cryptsetup --disable-locks "$@"; }
BEFORE=$(t_state)
t_log "state before: $BEFORE"

# The table with the data device's major:minor replaced (loop numbers differ between opens).
norm_table() { dmsetup table --showkeys "$1" | awk '{ $6 = "DEV"; print }'; }

# Whether the state is back to $1 within 5 s: an unlinked, revoked key leaves /proc/keys when
# the kernel's key garbage collector runs, shortly after (asynchronously).
settled() {
    n=0
    while [ "$(t_state)" != "$1" ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    [ "$(t_state)" = "$1" ]
}

# sha256 of the first N bytes of a device.
dev_sha() { head -c "$2" "$1" | sha256sum | cut -d' ' -f1; }

TAB=$(printf '\t')
while IFS="$TAB" read -r name img hdr key slot expect sha size version cipher verified; do
    hopt=""; [ "$hdr" != "-" ] && hopt="--header $hdr"
    sopt=""; [ "$slot" != "-" ] && sopt="--key-slot $slot"
    mapname="tz-$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-40)"
    case "$expect" in
    ok)
        case "$cipher" in aes-*) ;; *) continue ;; esac
        # shellcheck disable=SC2086
        if tazpod open $hopt $sopt --key-file "$key" "$img" "$mapname"; then
            t_pass "$name/open"
        else
            t_fail "$name/open" "exit $?"; continue
        fi
        t_check "$name/node" test -b "/dev/mapper/$mapname"
        if [ "$sha" != "-" ]; then
            got=$(dev_sha "/dev/mapper/$mapname" "$size")
            [ "$got" = "$sha" ] && t_pass "$name/plaintext" || t_fail "$name/plaintext" "got $got want $sha"
        fi
        uuid=$(dmsetup info -c --noheadings -o uuid "$mapname")
        case "$uuid" in CRYPT-LUKS"$version"-*-"$mapname") t_pass "$name/dm-uuid" ;;
            *) t_fail "$name/dm-uuid" "$uuid" ;; esac
        tz_table=$(norm_table "$mapname")
        case "$tz_table" in *" :"*":logon:cryptsetup:"*) t_pass "$name/keyring-table" ;;
            *) t_fail "$name/keyring-table" "$tz_table" ;; esac
        t_check "$name/status" sh -c "tazpod status $mapname | grep -q 'key location: keyring'"
        t_check "$name/close" tazpod close "$mapname"
        t_check_fails "$name/node-gone" test -e "/dev/mapper/$mapname"
        # cryptsetup's table for the same volume must be the same (but for the loop number).
        # shellcheck disable=SC2086
        if cs open $hopt $sopt --key-file "$key" "$img" "cs-$mapname" 2>/tmp/cs.err; then
            cs_table=$(norm_table "cs-$mapname")
            if [ "$version" = 1 ]; then
                # cryptsetup puts LUKS1 keys into the table as hex; compare all but the key.
                a=$(echo "$tz_table" | awk '{ $5 = "KEY"; print }'); b=$(echo "$cs_table" | awk '{ $5 = "KEY"; print }')
            else
                a=$tz_table; b=$cs_table
            fi
            [ "$a" = "$b" ] && t_pass "$name/same-table-as-cryptsetup" \
                || t_fail "$name/same-table-as-cryptsetup" "tazpod: $a | cryptsetup: $b"
            cs close "cs-$mapname"
        else
            t_fail "$name/cryptsetup-open" "$(cat /tmp/cs.err)"
        fi
        ;;
    wrong_passphrase|keyslot_inactive|requirement|invalid_header|unsupported_cipher)
        # shellcheck disable=SC2086
        tazpod open $hopt $sopt --key-file "$key" "$img" "$mapname" 2>/tmp/tz.err
        rc=$?
        case "$expect" in
            wrong_passphrase) want=2 ;;
            *) want=1 ;;
        esac
        [ "$rc" = "$want" ] && t_pass "$name/refused-exit-$want" || t_fail "$name/refused-exit-$want" "exit $rc: $(cat /tmp/tz.err)"
        t_check_fails "$name/nothing-mapped" test -e "/dev/mapper/$mapname"
        ;;
    esac
    settled "$BEFORE" && t_pass "$name/nothing-left" || t_fail "$name/nothing-left" "$(t_state)"
done </cases/cases.tsv

# --- data written through tazpod reads back through cryptsetup, and the other way ------------
cp /fixtures/images/sector-4096.img /tmp/rw.img
printf %s fixture >/tmp/rw.key
head -c 65536 /dev/urandom >/tmp/a.bin
head -c 65536 /dev/urandom >/tmp/b.bin
t_check rw/tazpod-open tazpod open --key-file /tmp/rw.key /tmp/rw.img rw
t_check rw/tazpod-write dd if=/tmp/a.bin of=/dev/mapper/rw bs=65536 conv=fsync
t_check rw/tazpod-close tazpod close rw
t_check rw/cs-open cs open --key-file /tmp/rw.key /tmp/rw.img rwcs
t_same_content rw/tazpod-to-cryptsetup /tmp/a.bin /dev/mapper/rwcs 65536
t_check rw/cs-write dd if=/tmp/b.bin of=/dev/mapper/rwcs bs=65536 conv=fsync
t_check rw/cs-close cs close rwcs
t_check rw/tazpod-reopen tazpod open --key-file /tmp/rw.key /tmp/rw.img rw
t_same_content rw/cryptsetup-to-tazpod /tmp/b.bin /dev/mapper/rw 65536

# --- busy name, busy device, missing device --------------------------------------------------
tazpod open --key-file /tmp/rw.key /fixtures/images/sector-512.img rw 2>/dev/null
rc=$?; [ "$rc" = 5 ] && t_pass busy-name-exit-5 || t_fail busy-name-exit-5 "exit $rc"
tazpod open --key-file /tmp/rw.key /tmp/rw.img rw2 2>/dev/null
rc=$?; [ "$rc" = 5 ] && t_pass busy-device-exit-5 || t_fail busy-device-exit-5 "exit $rc"
t_check_fails busy-device-no-rw2 test -e /dev/mapper/rw2
t_check rw/close tazpod close rw
tazpod open --key-file /tmp/rw.key /nonexistent.img nx 2>/dev/null
rc=$?; [ "$rc" = 4 ] && t_pass missing-device-exit-4 || t_fail missing-device-exit-4 "exit $rc"
tazpod close nosuchmapping 2>/dev/null
rc=$?; [ "$rc" = 4 ] && t_pass close-missing-exit-4 || t_fail close-missing-exit-4 "exit $rc"
tazpod status nosuchmapping >/dev/null 2>&1
rc=$?; [ "$rc" = 4 ] && t_pass status-missing-exit-4 || t_fail status-missing-exit-4 "exit $rc"

# --- read-only mapping rejects writes --------------------------------------------------------
t_check ro/open tazpod open --readonly --key-file /tmp/rw.key /tmp/rw.img ro
t_check ro/status-readonly sh -c 'tazpod status ro | grep -q "mode:    readonly"'
t_check_fails ro/write-refused dd if=/tmp/a.bin of=/dev/mapper/ro bs=4096 count=1 conv=fsync
t_check ro/close tazpod close ro

# --- hex fallback when asked -----------------------------------------------------------------
t_check hex/open tazpod open --disable-keyring --key-file /tmp/rw.key /tmp/rw.img hex
t_check hex/status sh -c 'tazpod status hex | grep -q "key location: dm-crypt"'
t_check hex/close tazpod close hex

# --- deferred close of a mounted mapping -----------------------------------------------------
# ext4 needs more room than a fixture's 64 KiB data area: a fresh 32 MiB volume.
truncate -s 32M /tmp/def.img
t_check def/format cs luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file /tmp/rw.key /tmp/def.img
t_check def/open tazpod open --key-file /tmp/rw.key /tmp/def.img def
t_check def/mkfs mkfs.ext4 -q -F -b 4096 /dev/mapper/def
mkdir -p /mnt/def
t_check def/mount mount -t ext4 /dev/mapper/def /mnt/def
tazpod close def 2>/dev/null
rc=$?; [ "$rc" = 5 ] && t_pass def/close-busy-exit-5 || t_fail def/close-busy-exit-5 "exit $rc"
t_check def/close-deferred tazpod close --deferred def
t_check def/still-there dmsetup info def
t_check def/umount umount /mnt/def
t_check_fails def/gone-after-umount dmsetup info def
rm -f /dev/mapper/def

# --- volumes tazpod formatted: data round trips between cryptsetup and tazpod mappings ------
. /dm-writer.sh

settled "$BEFORE" && t_pass final-nothing-left || t_fail final-nothing-left "$(t_state)"
t_done
