# Helpers for guest scenarios (POSIX sh / busybox ash). Source it first thing:
#     . "${GUEST_LIB:-/lib.sh}"
# Results are lines "TEST <name> PASS|FAIL [detail]" on stdout; run.sh counts them.
# Names are one word: spaces in a name become '_'. End the scenario with `t_done`
# (exits 1 if anything failed).

T_PASSED=0
T_FAILED=0
T_OUT=${TMPDIR:-/tmp}/t-out.$$

_t_name() { printf '%s' "$1" | tr ' \t' '__'; }

# t_pass NAME [DETAIL...]: report NAME as passed.
t_pass() {
    _n=$(_t_name "$1")
    shift
    T_PASSED=$((T_PASSED + 1))
    echo "TEST $_n PASS${*:+ $*}"
}

# t_fail NAME [DETAIL...]: report NAME as failed.
t_fail() {
    _n=$(_t_name "$1")
    shift
    T_FAILED=$((T_FAILED + 1))
    echo "TEST $_n FAIL${*:+ $*}"
}

# t_log MSG...: a free-form line in the console log.
t_log() { echo "# $*"; }

# _t_show FILE: print a command's captured output, indented (last 40 lines).
_t_show() { tail -n 40 "$1" | sed 's/^/    | /'; }

# t_check NAME CMD...: run CMD (a command or shell function) in a subshell;
# PASS if it exits 0, else FAIL with its status and its output shown above.
# With T_VERBOSE=1 the output is shown on success too.
t_check() {
    _name=$1
    shift
    ("$@") >"$T_OUT" 2>&1
    _rc=$?
    if [ "$_rc" = 0 ]; then
        [ "${T_VERBOSE:-0}" = 1 ] && _t_show "$T_OUT"
        t_pass "$_name"
    else
        echo "# $_name: '$*' exited with status $_rc"
        _t_show "$T_OUT"
        t_fail "$_name" "exit status $_rc: $*"
    fi
    return "$_rc"
}

# t_check_fails NAME CMD...: PASS if CMD exits non-zero (an expected refusal).
t_check_fails() {
    _name=$1
    shift
    ("$@") >"$T_OUT" 2>&1
    _rc=$?
    if [ "$_rc" != 0 ]; then
        [ "${T_VERBOSE:-0}" = 1 ] && _t_show "$T_OUT"
        t_pass "$_name" "exit status $_rc as expected"
        return 0
    fi
    echo "# $_name: '$*' succeeded but should have failed"
    _t_show "$T_OUT"
    t_fail "$_name" "unexpected success: $*"
    return 1
}

# t_check_output NAME EXPECTED CMD...: PASS if CMD exits 0 and its stdout is EXPECTED
# (trailing newlines ignored, as with $(...)).
t_check_output() {
    _name=$1
    _want=$2
    shift 2
    _got=$( ("$@") 2>"$T_OUT")
    _rc=$?
    if [ "$_rc" = 0 ] && [ "$_got" = "$_want" ]; then
        t_pass "$_name"
        return 0
    fi
    echo "# $_name: '$*' -> status $_rc, output '$_got', expected '$_want'"
    _t_show "$T_OUT"
    t_fail "$_name" "got '$_got' (status $_rc), want '$_want'"
    return 1
}

# t_sha256 FILE [BYTES]: sha256 of FILE (of its first BYTES bytes if given).
t_sha256() {
    if [ -n "${2:-}" ]; then
        head -c "$2" "$1" | sha256sum | cut -d' ' -f1
    else
        sha256sum <"$1" | cut -d' ' -f1
    fi
}

# t_same_content NAME A B [BYTES]: PASS if A and B (files or block devices) have the
# same sha256 (over their first BYTES bytes if given).
t_same_content() {
    _a=$(t_sha256 "$2" "${4:-}") && _b=$(t_sha256 "$3" "${4:-}")
    if [ -n "$_a" ] && [ "$_a" = "$_b" ]; then
        t_pass "$1" "sha256 $_a"
        return 0
    fi
    t_fail "$1" "$2 sha256 $_a != $3 sha256 $_b"
    return 1
}

# t_dm_control: make sure /dev/mapper/control exists (devtmpfs normally makes it).
t_dm_control() {
    [ -c /dev/mapper/control ] && return 0
    _dev=$(cat /sys/class/misc/device-mapper/dev 2>/dev/null) || return 1
    mkdir -p /dev/mapper
    mknod /dev/mapper/control c "${_dev%%:*}" "${_dev##*:}"
}

# t_dm_names: the names of the device-mapper devices, one per line (from sysfs,
# needs no dmsetup).
t_dm_names() {
    for _d in /sys/block/dm-*/dm/name; do
        [ -r "$_d" ] && cat "$_d"
    done
    return 0
}

# t_dm_count: how many device-mapper devices exist.
t_dm_count() { t_dm_names | grep -c . || true; }

# t_dm_all_names: every device-mapper device's name, also those sysfs does not show (a
# device created but never given a table has no block device yet). Needs dmsetup.
t_dm_all_names() { dmsetup ls 2>/dev/null | awk 'NF == 2 { print $1 }'; }

# t_dm_dev NAME: print /dev/dm-N for the mapping NAME (exit 1 if none).
t_dm_dev() {
    for _d in /sys/block/dm-*; do
        [ "$(cat "$_d/dm/name" 2>/dev/null)" = "$1" ] && echo "/dev/${_d##*/}" && return 0
    done
    return 1
}

# t_mapper_link NAME: create /dev/mapper/NAME -> /dev/dm-N (nothing does without udev,
# unless the tool that made the mapping created the node itself).
t_mapper_link() {
    _dm=$(t_dm_dev "$1") || return 1
    mkdir -p /dev/mapper
    [ -e "/dev/mapper/$1" ] || ln -s "$_dm" "/dev/mapper/$1"
}

# t_loops: attached loop devices, "loopN BACKING_FILE" per line (from sysfs).
t_loops() {
    for _l in /sys/block/loop*; do
        [ -r "$_l/loop/backing_file" ] && echo "${_l##*/} $(cat "$_l/loop/backing_file")"
    done
    return 0
}

# t_loop_count: how many loop devices are attached.
t_loop_count() { t_loops | grep -c . || true; }

# t_keys: the keys this process can see, from /proc/keys.
t_keys() { cat /proc/keys; }

# t_key_count PATTERN: how many /proc/keys lines match the grep -E PATTERN
# (e.g. a key description such as 'logon +cryptsetup:').
t_key_count() { grep -cE -- "$1" /proc/keys || true; }

# t_state: one line summarising dm devices, loop devices and logon keys (for
# "nothing leaked" checks: compare the value before and after).
t_state() {
    echo "dm=$(t_dm_names | sort | tr '\n' ',') loop=$(t_loops | sort | tr '\n' ',') logon=$(t_key_count ' logon ')"
}

# t_drive BASENAME: print /dev/vdX of the drive run.sh attached from a host file of
# that basename (exit 1 if none). Drive manifest lines:
# "vdX ro|rw SIZE SHA256|- BASENAME" in /etc/tazpod-guest/drives.
t_drive() {
    while read -r _dev _mode _size _sum _base; do
        [ "$_base" = "$1" ] && echo "/dev/$_dev" && return 0
    done </etc/tazpod-guest/drives
    return 1
}

# t_drives: the drive manifest (see t_drive).
t_drives() { cat /etc/tazpod-guest/drives; }

# t_done: print the tally and exit 1 if any test failed, else 0.
t_done() {
    rm -f "$T_OUT"
    echo "# scenario tally: $T_PASSED passed, $T_FAILED failed"
    [ "$T_FAILED" = 0 ]
    exit $?
}

# t_cs ARGS...: cryptsetup without its locks (no /run/cryptsetup in the guest).
t_cs() { cryptsetup --disable-locks "$@"; }

# t_table_nokey NAME: the dm table of NAME without its key field (5) and data device (6: loop
# numbers differ between opens).
t_table_nokey() { dmsetup table "$1" | awk '{ $5 = "KEY"; $6 = "DEV"; print }'; }

# t_settled STATE: whether t_state is back to STATE within 5 s (a revoked key leaves
# /proc/keys when the kernel's key garbage collector runs, shortly after).
t_settled() {
    _ts=0
    while [ "$(t_state)" != "$1" ] && [ "$_ts" -lt 50 ]; do sleep 0.1; _ts=$((_ts + 1)); done
    [ "$(t_state)" = "$1" ]
}
