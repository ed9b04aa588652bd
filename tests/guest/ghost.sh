#!/bin/sh
# Scenario: ghost mode (`tazpod unlock`) against the real kernel, on a copy of the demo vault:
# the session's command sees the vault as the user and nobody else does; exit status; wrong
# passphrase; SIGKILL during the session and during setup leave nothing; two sessions share
# one vault; bind mounts and the secrets map; `tazpod env`; `tazpod lock`; no capabilities.
. "${GUEST_LIB:-/lib.sh}"

chmod 1777 /tmp
cp /fixtures/demo/vault.img /tmp/vault.img
printf %s tazpod-demo >/tmp/pass
printf %s wrong-passphrase >/tmp/bad
chmod 600 /tmp/pass /tmp/bad
mkdir -p /home/tester/secrets /home/tester/.aws
chown 1000:1000 /home/tester/secrets /home/tester/.aws
MNT=/home/tester/secrets
BEFORE=$(t_state)
t_log "state before: $BEFORE"

unlock() { tazpod unlock --vault /tmp/vault.img --mount "$MNT" --user tester --key-file /tmp/pass "$@"; }
# In the background, as the tazpod process itself (so that $! is tazpod's pid, to kill it).
unlock_bg() { (exec tazpod unlock --vault /tmp/vault.img --mount "$MNT" --user tester --key-file /tmp/pass "$@") & }
# Whether a process with exactly this command line runs.
running() {
    for f in /proc/[0-9]*/cmdline; do
        [ "$(tr '\0' ' ' <"$f" 2>/dev/null)" = "$* " ] && return 0
    done
    return 1
}

# Nothing of a session is left: no dm device, loop device or key, no mount, no lock file.
leftovers() {
    s=$(t_state)
    [ "$s" = "$BEFORE" ] || { echo "state: $s"; return 1; }
    if grep -q " $MNT " /proc/self/mountinfo; then echo "mounted"; return 1; fi
    # A lock file whose holder was SIGKILLed stays (nothing can remove it then), but its
    # flock is gone with the process: the next unlock takes it over as stale. A held one is
    # a leftover.
    for f in /run/tazpod/*.lock; do
        [ -e "$f" ] || continue
        flock -n "$f" true || { echo "lock held: $f"; return 1; }
    done
    return 0
}
# Polls (up to $1 seconds) until nothing is left.
settles() {
    n=0
    while [ "$n" -lt "$(($1 * 10))" ]; do
        leftovers >/dev/null && return 0
        sleep 0.1; n=$((n + 1))
    done
    leftovers
}
wait_file() {
    n=0
    while [ ! -e "$1" ] && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    [ -e "$1" ]
}

# --- a session reads a secret and writes one as the user --------------------------------------
out=$(unlock -- sh -c 'cat ~/secrets/README; id -u; echo written >~/secrets/new; stat -c %u ~/secrets/new; echo "$TAZPOD_GHOST_MODE $HOME $USER"' 2>/tmp/err)
rc=$?
want="hello from the tazpod demo vault
1000
1000
true /home/tester tester"
[ "$rc" = 0 ] && [ "$out" = "$want" ] && t_pass session-reads-and-writes-as-user \
    || t_fail session-reads-and-writes-as-user "rc=$rc out=[$out] err=[$(cat /tmp/err)]"
t_check session-said-vault-locked grep -q "vault locked" /tmp/err
t_check session-nothing-left settles 10
# The file written in the session is in the vault, owned by the user.
out=$(unlock -- sh -c 'cat ~/secrets/new; stat -c %u:%g ~/secrets/new' 2>/dev/null)
t_check_output written-file-persists "written
1000:1000" echo "$out"

# --- exit status passes through; wrong passphrase creates nothing -----------------------------
unlock -- sh -c 'exit 7' 2>/dev/null
rc=$?; [ "$rc" = 7 ] && t_pass exit-status-7 || t_fail exit-status-7 "rc=$rc"
tazpod unlock --vault /tmp/vault.img --mount "$MNT" --user tester --key-file /tmp/bad -- true 2>/tmp/err
rc=$?; [ "$rc" = 2 ] && t_pass wrong-passphrase-exit-2 || t_fail wrong-passphrase-exit-2 "rc=$rc $(cat /tmp/err)"
t_check wrong-passphrase-nothing-created leftovers

# --- no capabilities in the session ------------------------------------------------------------
caps=$(unlock -- sh -c 'grep -E "^Cap(Inh|Prm|Eff|Bnd|Amb)" /proc/self/status' 2>/dev/null)
echo "$caps" | grep -qv ':	0000000000000000$' && t_fail no-capabilities "$caps" || t_pass no-capabilities
[ "$(echo "$caps" | grep -c .)" = 5 ] && t_pass capabilities-read || t_fail capabilities-read "$caps"

# --- invisible from outside during the session; the key is in no table ---------------------------
rm -f /tmp/ready /tmp/go
unlock_bg -- sh -c 'touch /tmp/ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; ls ~/secrets' >/tmp/inside 2>/dev/null
T=$!
if wait_file /tmp/ready; then
    t_check outside-mountpoint-empty sh -c "[ -z \"\$(ls -A $MNT)\" ]"
    mine=$(readlink /proc/self/ns/mnt)
    seen=""
    for p in /proc/[0-9]*; do
        ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
        [ "$ns" = "$mine" ] || continue
        grep -q " $MNT " "$p/mountinfo" 2>/dev/null && seen="$seen ${p#/proc/}"
    done
    [ -z "$seen" ] && t_pass outside-no-mountinfo || t_fail outside-no-mountinfo "seen in:$seen"
    tbl=$(dmsetup table --showkeys 2>/dev/null)
    case "$tbl" in *" crypt aes-xts-plain64 :64:logon:cryptsetup:"*) t_pass table-keyring-reference ;;
        *) t_fail table-keyring-reference "$tbl" ;; esac
    t_check_output no-logon-key-left 0 t_key_count ' logon '
    inside_ns=$(readlink /proc/$T/ns/mnt)
    [ "$inside_ns" != "$mine" ] && t_pass session-has-own-namespace || t_fail session-has-own-namespace
else
    t_fail session-started "no ready file"
fi
touch /tmp/go
wait $T
t_check inside-saw-vault grep -q README /tmp/inside
t_check isolation-nothing-left settles 10

# --- SIGKILL of tazpod during the session -------------------------------------------------------
rm -f /tmp/ready
unlock_bg -- sh -c 'touch /tmp/ready; exec sleep 61' >/dev/null 2>&1
T=$!
if wait_file /tmp/ready; then
    kill -9 "$T"
    wait "$T" 2>/dev/null
    t_check kill-session-nothing-left settles 15
    gone() { n=0; while running sleep 61 && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done; ! running sleep 61; }
    t_check kill-session-inner-command-gone gone
else
    t_fail kill-session-started "no ready file"
fi

# --- SIGKILL at several points of the setup -----------------------------------------------------
for d in 0.2 0.5 1 1.5 2 3 4 6; do
    unlock_bg -- sh -c 'exec sleep 62' >/dev/null 2>&1
    T=$!
    sleep "$d"
    kill -9 "$T" 2>/dev/null
    wait "$T" 2>/dev/null
    t_check "kill-setup-after-${d}s-nothing-left" settles 15
    gone62() { n=0; while running sleep 62 && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done; ! running sleep 62; }
    t_check "kill-setup-after-${d}s-no-inner-command" gone62
    # A mapping a kill caught between DEV_CREATE and the deferred removal: say so, then clean.
    for n in $(t_dm_names); do t_log "left by kill at ${d}s: $n"; tazpod close "$n" 2>/dev/null; done
done

# --- two sessions share one vault; teardown after the last -------------------------------------
rm -f /tmp/a-ready /tmp/a-go
unlock_bg -- sh -c 'touch /tmp/a-ready; while [ ! -e /tmp/a-go ]; do sleep 0.1; done; cat ~/secrets/from-b' >/tmp/a.out 2>/tmp/a.err
A=$!
if wait_file /tmp/a-ready; then
    out=$(unlock -- sh -c 'echo hello-b >~/secrets/from-b; cat ~/secrets/README' 2>/tmp/b.err)
    rc=$?
    [ "$rc" = 0 ] && [ "$out" = "hello from the tazpod demo vault" ] && t_pass second-session-joins \
        || t_fail second-session-joins "rc=$rc out=[$out] $(cat /tmp/b.err)"
    t_check_output first-session-still-mapped 1 t_dm_count
    touch /tmp/a-go
    wait "$A"; rc=$?
    [ "$rc" = 0 ] && t_pass first-session-sees-second-write || t_fail first-session-sees-second-write "rc=$rc $(cat /tmp/a.err)"
    t_check_output first-session-output hello-b cat /tmp/a.out
else
    t_fail first-session-started "$(cat /tmp/a.err)"
    touch /tmp/a-go
fi
t_check two-sessions-nothing-left settles 15

# --- bind mounts, the secrets map, `tazpod env` --------------------------------------------------
cat >/tmp/ghost.toml <<'TOML'
[[bind]]
source = "aws"
target = "~/.aws"

[[secret]]
env = "AWS_ACCESS_KEY_ID"
file = "aws/access_key_id"
as = "value"

[[secret]]
env = "KUBECONFIG"
file = ".kube/config"
as = "path"
TOML
chmod 644 /tmp/ghost.toml
out=$(unlock --config /tmp/ghost.toml -- sh -c 'cat ~/.aws/access_key_id; echo "$AWS_ACCESS_KEY_ID"; head -n 1 "$KUBECONFIG"; unset AWS_ACCESS_KEY_ID; eval "$(tazpod env)"; echo "env:$AWS_ACCESS_KEY_ID"' 2>/tmp/err)
want="AKIADEMODEMODEMO
AKIADEMODEMODEMO
apiVersion: v1
env:AKIADEMODEMODEMO"
[ "$out" = "$want" ] && t_pass bind-and-secrets-map || t_fail bind-and-secrets-map "out=[$out] err=[$(cat /tmp/err)]"
t_check_fails bind-invisible-outside test -e /home/tester/.aws/access_key_id
t_check bind-nothing-left settles 10

# --- `tazpod lock` ends the session --------------------------------------------------------------
start=$(date +%s)
out=$(unlock -- sh -c 'tazpod lock; sleep 90; echo still-here' 2>/tmp/err)
rc=$?
took=$(($(date +%s) - start))
# A whole session (Argon2 64 MiB under emulation included) takes 15-30 s here: well under 90.
case "$out" in *still-here*) t_fail lock-ends-session "rc=$rc out=[$out]" ;;
    *) [ "$took" -lt 80 ] && [ "$rc" = 129 ] && t_pass lock-ends-session \
        || t_fail lock-ends-session "rc=$rc took ${took}s" ;; esac
t_log "lock: session with tazpod lock took ${took}s, exit $rc"
t_check lock-said-vault-locked grep -q "vault locked" /tmp/err
t_check lock-nothing-left settles 10
tazpod lock 2>/dev/null
rc=$?; [ "$rc" = 1 ] && t_pass lock-outside-session-exit-1 || t_fail lock-outside-session-exit-1 "rc=$rc"

AFTER=$(t_state)
[ "$AFTER" = "$BEFORE" ] && t_pass final-nothing-left || t_fail final-nothing-left "$AFTER"
t_done
