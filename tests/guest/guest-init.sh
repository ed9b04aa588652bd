#!/bin/sh
# PID 1 of the test guest (installed as /init in the initramfs by run.sh).
#
# 1. Moves the initramfs into a real tmpfs mount and switch_roots into it, so
#    that "/" is an ordinary mount (mount propagation, pivot_root and mount
#    namespaces behave as on a normal system; the initramfs rootfs does not).
# 2. Mounts proc, sysfs, devtmpfs, devpts, /tmp, /run; loads the kernel
#    modules listed in /etc/tazpod-guest/modules.load (dependencies first).
# 3. Runs /scenario.sh with stdin from /dev/null, its output on the console.
# 4. Prints "GUEST-DONE rc=<n>" (the scenario's exit status), dumps the
#    kernel log and powers off. Nothing here may exit: PID 1 exiting panics.

export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin

if [ ! -e /.tg-switched ]; then
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    exec </dev/console >/dev/console 2>&1
    if mount -t tmpfs -o mode=755 tg-root /newroot; then
        for f in /* /.[!.]*; do
            case "$f" in /newroot | /dev | '/.[!.]*') continue ;; esac
            cp -a "$f" /newroot/
        done
        mkdir -p /newroot/dev
        : >/newroot/.tg-switched
        mount --move /dev /newroot/dev
        exec switch_root /newroot /init
    fi
    echo "GUEST-WARN could not move the root to tmpfs; staying on the initramfs"
    umount /dev 2>/dev/null
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
read -r up _ </proc/uptime
echo "# init: root on tmpfs at uptime $up"
grep -q '^devtmpfs /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/cryptsetup /run/lock
chown 1000:1000 /home/tester
hostname tazpod-guest
ip link set lo up 2>/dev/null

KVER=$(uname -r)
if [ -r /etc/tazpod-guest/modules.load ]; then
    while read -r m; do
        [ -n "$m" ] || continue
        if ! out=$(insmod "/lib/modules/$KVER/$m" 2>&1); then
            case "$out" in
            *'File exists'*) ;;
            *) echo "GUEST-WARN insmod $m failed: $out" ;;
            esac
        fi
    done </etc/tazpod-guest/modules.load
fi
read -r up _ </proc/uptime
echo "# init: modules loaded at uptime $up"

# Kernel messages would interleave with the scenario's lines on the
# console: keep only emergencies there while it runs; dmesg is dumped at the end.
echo "1 4 1 7" >/proc/sys/kernel/printk

read -r up _ </proc/uptime
echo "GUEST-BOOTED uptime=$up kernel=$KVER"

export HOME=/root DM_DISABLE_UDEV=1 GUEST_LIB=/usr/lib/tazpod-guest/lib.sh
cd /tmp || cd /
sh /scenario.sh </dev/null
rc=$?
cd /
sync

read -r up _ </proc/uptime
echo "GUEST-DONE rc=$rc uptime=$up"
echo "----- guest dmesg -----"
dmesg
echo "----- end of guest dmesg -----"
sync
poweroff -f
# poweroff -f does not return; should it, sleep instead of letting PID 1 exit.
while :; do sleep 3600; done
