#!/bin/sh
# Scenario: the capabilities a container must grant for ghost mode. `tazpod init` and
# `tazpod unlock` run as root with every capability dropped from the bounding set except the
# documented list (docs/containers.md), as `docker run --cap-drop ALL --cap-add ...` gives
# them; they must work. Then each capability of the list is dropped in turn, and what happens
# is logged (which are needed for what), with one check that dropping SYS_ADMIN gives the
# up-front message. Files here belong to the session user (the key file, the vault's
# directory), as in a container whose root serves a non-root user: that is what needs
# DAC_OVERRIDE.
. "${GUEST_LIB:-/lib.sh}"

CAPS=sys_admin,setuid,setgid,setpcap,chown,dac_override,mknod,kill
CHEAP="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
chmod 1777 /tmp
printf %s caps-test >/tmp/k
chmod 600 /tmp/k
chown 1000:1000 /tmp/k
mkdir -p /home/tester/secrets /home/tester/vaults
chown 1000:1000 /home/tester/secrets /home/tester/vaults
V=/home/tester/vaults/v.img
MNT=/home/tester/secrets

# Runs tazpod as root with only the capabilities "$1" (comma-separated) in the bounding set.
with_caps() {
    caps=$1
    shift
    b=-all
    for cap in $(echo "$caps" | tr ',' ' '); do b="$b,+$cap"; done
    setpriv --inh-caps=-all --bounding-set="$b" tazpod "$@"
}

t_check init-with-the-list with_caps "$CAPS" init --vault "$V" --key-file /tmp/k --size 32M $CHEAP
t_check unlock-with-the-list with_caps "$CAPS" unlock --vault "$V" --mount "$MNT" --user tester \
    --key-file /tmp/k -- sh -c 'echo kept > ~/secrets/f && cat ~/secrets/f'
t_check unlock-again-reads-it with_caps "$CAPS" unlock --vault "$V" --mount "$MNT" --user tester \
    --key-file /tmp/k -- grep -q kept /home/tester/secrets/f

# Each of the list but kill is needed by every unlock (kill only ends processes a session
# leaves behind): without it, unlock fails, and says why.
for c in $(echo "$CAPS" | tr ',' ' '); do
    rest=$(echo ",$CAPS," | sed "s/,$c,/,/; s/^,//; s/,\$//")
    if with_caps "$rest" unlock --vault "$V" --mount "$MNT" --user tester --key-file /tmp/k \
        -- true >/tmp/out 2>&1; then
        t_log "without $c: unlock works"
        [ "$c" = kill ] && t_pass "kill-only-for-stragglers" || t_fail "needs-$c" "unlock worked without it"
    else
        t_log "without $c: unlock fails: $(head -c 300 /tmp/out | tr '\n' ' ')"
        [ "$c" = kill ] && t_fail "kill-only-for-stragglers" || t_pass "needs-$c"
    fi
done
rest=$(echo ",$CAPS," | sed "s/,sys_admin,/,/; s/^,//; s/,\$//")
with_caps "$rest" unlock --vault "$V" --mount "$MNT" --user tester --key-file /tmp/k -- true >/tmp/out 2>&1
rc=$?
t_log "$(cat /tmp/out)"
[ "$rc" = 1 ] && grep -q "needs CAP_SYS_ADMIN" /tmp/out && t_pass no-sys-admin-said-up-front || t_fail no-sys-admin-said-up-front "exit $rc"
t_done
