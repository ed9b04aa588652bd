#!/bin/sh
# Scenario: tazpod under a container's memory limit (a cgroup v2 group with memory.max), where
# /proc/meminfo still shows the whole machine's memory. A keyslot whose Argon2 memory is over
# the limit is refused before any allocation (exit 3, naming the container limit), not
# OOM-killed (137); a header `format` makes inside the limit opens inside the same limit.
# /fixtures/big.img (a 512 MiB Argon2id keyslot, passphrase in /fixtures/big.key) is made on
# the host by ghost-tests.sh, which checks there that it opens.
. "${GUEST_LIB:-/lib.sh}"

mkdir -p /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup || { t_fail cgroup2-mount; t_done; }
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/box
echo 200M > /sys/fs/cgroup/box/memory.max
echo 0 > /sys/fs/cgroup/box/memory.swap.max 2>/dev/null || true

# Runs "$@" inside the box.
boxed() { sh -c 'echo $$ > /sys/fs/cgroup/box/cgroup.procs && exec "$@"' boxed "$@"; }

cp /fixtures/big.img /tmp/big.img
boxed tazpod open --test-passphrase --key-file /fixtures/big.key /tmp/big.img >/tmp/big.out 2>&1
rc=$?
t_log "$(cat /tmp/big.out)"
[ "$rc" = 3 ] && t_pass big-keyslot-refused-exit-3 || { _t_show /tmp/big.out; t_fail big-keyslot-refused-exit-3 "exit $rc"; }
grep -q "keyslot 0" /tmp/big.out && t_pass big-keyslot-named || t_fail big-keyslot-named
grep -q "container memory limit 200 MiB" /tmp/big.out && t_pass limit-source-named || { _t_show /tmp/big.out; t_fail limit-source-named; }

# format inside the box picks a cost the box can hold, and it opens inside the box.
truncate -s 24M /tmp/small.img
printf 'inside the box' > /tmp/small.key
t_check format-inside-limit boxed tazpod format -q --iter-time 300 --key-file /tmp/small.key /tmp/small.img
mem=$(tazpod dump /tmp/small.img | awk '/Memory:/ { print $2; exit }')
t_log "argon2 memory chosen inside the box: $mem KiB"
[ -n "$mem" ] && [ "$mem" -lt 204800 ] && t_pass format-memory-under-limit "$mem KiB" || t_fail format-memory-under-limit "$mem"
t_check opens-inside-limit boxed tazpod open --test-passphrase --key-file /tmp/small.key /tmp/small.img
t_done
