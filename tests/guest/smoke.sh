#!/bin/sh
# Smoke scenario: proves the guest kernel and tools can do what the dm-crypt and
# ghost-mode scenarios need. Run: tests/guest/run.sh tests/guest/smoke.sh
. "${GUEST_LIB:-/lib.sh}"

# No lock directory daemon and no udev in the guest.
cs() { cryptsetup --disable-locks "$@"; }
KEY=/tmp/smoke.key
IMG=/tmp/smoke-luks.img
PLAIN=/tmp/smoke-plain.bin

t_log "kernel $(uname -r), $(nproc) cpus, $(grep -c . /proc/modules) modules loaded"
t_log "state before: $(t_state)"
BEFORE=$(t_state)

# --- device-mapper -------------------------------------------------------------
t_check dm-module-loaded grep -q '^dm_mod ' /proc/modules
t_check dm-control t_dm_control
t_check dm-control-chardev test -c /dev/mapper/control
t_check dmsetup-version dmsetup version
t_check dm-crypt-target sh -c 'dmsetup targets | grep -q "^crypt "'

# --- loop ---------------------------------------------------------------------
loop_roundtrip() {
    truncate -s 16M /tmp/smoke-loop.img || return 1
    dev=$(losetup -f --show /tmp/smoke-loop.img) || return 1
    echo "attached $dev"
    t_loops
    t_loops | grep -q "^${dev#/dev/} /tmp/smoke-loop.img$" || { losetup -d "$dev"; return 1; }
    head -c 4096 /dev/urandom >/tmp/smoke-4k
    dd if=/tmp/smoke-4k of="$dev" bs=4096 seek=3 conv=notrunc,fsync 2>/dev/null
    losetup -d "$dev" || return 1
    [ "$(dd if=/tmp/smoke-loop.img bs=4096 skip=3 count=1 2>/dev/null | sha256sum)" = \
        "$(sha256sum </tmp/smoke-4k)" ]
}
t_check loop-roundtrip loop_roundtrip
rm -f /tmp/smoke-loop.img /tmp/smoke-4k

# --- cryptsetup LUKS2 round trip ------------------------------------------------
head -c 32 /dev/urandom >"$KEY"
truncate -s 64M "$IMG"
t_check luks-format cs luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file "$KEY" "$IMG"
t_check luks-open cs open --key-file "$KEY" "$IMG" smoke
t_check luks-mapper-node test -b /dev/mapper/smoke
t_check_output luks-dm-name smoke t_dm_names
status_cipher() { cs status smoke | grep -q 'cipher:  aes-xts-plain64'; }
t_check luks-status status_cipher
t_check luks-keyring-table sh -c 'dmsetup table --showkeys smoke | grep -Eq " crypt aes-xts-plain64 :64:logon:cryptsetup:"'
img_on_loop() { t_loops | grep " $IMG\$"; }
t_check luks-loop-attached img_on_loop
t_log "xts(aes) drivers: $(awk '/^name/ { n = $3 } /^driver/ && n == "xts(aes)" { printf "%s ", $3 }' /proc/crypto)"
t_check aes-xts-in-kernel grep -q 'xts(aes)' /proc/crypto

head -c 1048576 /dev/urandom >"$PLAIN"
t_check luks-write dd if="$PLAIN" of=/dev/mapper/smoke bs=65536 conv=fsync
# Drop cached pages so the read goes through dm-crypt again.
sync
echo 3 >/proc/sys/vm/drop_caches
t_same_content luks-read-back "$PLAIN" /dev/mapper/smoke 1048576
OFFSET=$(cs luksDump "$IMG" | awk '/offset:/ { print $2; exit }')
cipher_differs() {
    [ "$(dd if="$IMG" bs=1048576 skip=$((OFFSET / 1048576)) count=1 2>/dev/null | sha256sum)" != \
        "$(sha256sum <"$PLAIN")" ]
}
t_check luks-ciphertext-differs cipher_differs

# --- ext4 on the mapping ----------------------------------------------------------
t_check mkfs-ext4 mkfs.ext4 -q -F -b 4096 /dev/mapper/smoke
mkdir -p /mnt/smoke
t_check ext4-mount mount -t ext4 /dev/mapper/smoke /mnt/smoke
t_check ext4-write sh -c 'echo hello-from-guest >/mnt/smoke/hello && sync'
t_check ext4-umount umount /mnt/smoke
t_check ext4-remount mount -t ext4 -o ro /dev/mapper/smoke /mnt/smoke
t_check_output ext4-read-back hello-from-guest cat /mnt/smoke/hello
t_check ext4-umount-again umount /mnt/smoke

t_check luks-close cs close smoke
t_check_fails luks-gone test -e /dev/mapper/smoke
t_check_output luks-no-dm-left "" t_dm_names
t_check_fails luks-loop-detached img_on_loop
rm -f "$IMG" "$PLAIN"

# --- dmsetup crypt table by hand (what tazpod will do: key in the keyring) ---------
dm_by_hand() {
    truncate -s 8M /tmp/smoke-raw.img
    dev=$(losetup -f --show /tmp/smoke-raw.img) || return 1
    head -c 64 /dev/urandom >/tmp/smoke-hand.key
    kid=$(keyctl padd logon tazpod:smoke-hand @u </tmp/smoke-hand.key) || return 1
    rm -f /tmp/smoke-hand.key
    echo "key id $kid"
    sectors=$(blockdev --getsz "$dev")
    echo "0 $sectors crypt aes-xts-plain64 :64:logon:tazpod:smoke-hand 0 $dev 0 1 sector_size:4096" |
        dmsetup create smoke-hand || { keyctl unlink "$kid" @u; losetup -d "$dev"; return 1; }
    dmsetup table smoke-hand
    ok=0
    dmsetup table smoke-hand | grep -q 'sector_size:4096' || ok=1
    dmsetup remove smoke-hand || ok=1
    keyctl unlink "$kid" @u >/dev/null || ok=1
    losetup -d "$dev" || ok=1
    rm -f /tmp/smoke-raw.img
    return $ok
}
t_check dmsetup-crypt-logon-key dm_by_hand

# --- keyring ------------------------------------------------------------------------
keyring_logon() {
    kid=$(keyctl add logon tazpod:smoke "0123456789abcdef0123456789abcdef" @u) || return 1
    grep -q " logon .*tazpod:smoke" /proc/keys || return 1
    # logon keys are not readable from userspace
    if keyctl read "$kid" >/dev/null 2>&1; then return 1; fi
    keyctl unlink "$kid" @u >/dev/null || return 1
    sleep 1 # key garbage collection is asynchronous
    ! grep -q "tazpod:smoke: " /proc/keys
}
t_check keyctl-logon-key keyring_logon

# --- namespaces and privileges ----------------------------------------------------------
mkdir -p /mnt/ns
t_check mount-namespace busybox unshare -m sh -c \
    'mount --make-rprivate / && mount -t tmpfs ns /mnt/ns && touch /mnt/ns/inside && test -e /mnt/ns/inside'
t_check_fails mount-namespace-isolated test -e /mnt/ns/inside
# pivot_root works because / is a real tmpfs mount, not the initramfs rootfs.
mkdir -p /mnt/pr /mnt/pr-old
# shellcheck disable=SC2016 # expanded by the inner shell
t_check pivot-root busybox unshare -m sh -c \
    'mount --make-rprivate / && mount --bind / /mnt/pr && cd /mnt/pr && pivot_root . mnt/pr-old &&
     test -e /mnt/pr-old/init && umount -l /mnt/pr-old && ! test -e /mnt/pr-old/init'
# shellcheck disable=SC2016 # expanded by the inner shell
t_check_output setpriv-drop 1000:1000 setpriv --reuid 1000 --regid 1000 --clear-groups sh -c 'echo "$(id -u):$(id -g)"'
t_check_output tester-home 1000 stat -c %u /home/tester
t_check root-is-tmpfs-mount grep -q '^tg-root / tmpfs ' /proc/mounts

# --- project binaries and drives handed in by run.sh ---------------------------------------
for b in /usr/local/bin/*; do
    [ -x "$b" ] || continue
    runs() { "$1" --help >/dev/null 2>&1; [ $? -lt 126 ]; }
    t_check "bin-runs:${b##*/}" runs "$b"
done
while read -r dev _mode size sum base; do
    [ -n "$dev" ] || continue
    t_check_output "drive-size:$base" "$size" blockdev --getsize64 "/dev/$dev"
    if [ "$sum" != - ]; then
        t_check_output "drive-sha256:$base" "$sum" t_sha256 "/dev/$dev"
    fi
done </etc/tazpod-guest/drives

t_log "state after: $(t_state)"
t_check_output nothing-leaked "$BEFORE" t_state
t_done
