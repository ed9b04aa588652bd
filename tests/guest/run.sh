#!/usr/bin/env bash
# Boot a Debian kernel with device-mapper in QEMU (TCG) and run a scenario script in it.
# See tests/guest/README.md. Run with --help for the options.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<'EOF'
Usage: tests/guest/run.sh [OPTIONS] SCENARIO.sh

Boots a Debian linux-image kernel in QEMU (TCG, no KVM) with a busybox initramfs,
loads device-mapper, dm-crypt, loop, ext4, virtio-blk and crypto modules, and runs
SCENARIO.sh as /scenario.sh. The scenario prints "TEST <name> PASS|FAIL [detail]"
lines (tests/guest/lib.sh helps). Exits 0 only if the guest finished (GUEST-DONE
marker), the scenario exited 0, reported at least one test and no FAIL.

Options:
  --bin PATH          copy PATH into the guest as /usr/local/bin/<basename> (with the
                      shared libraries ldd lists); repeatable
  --drive FILE        attach FILE as a raw virtio disk (/dev/vda, vdb... in order);
                      guest writes are discarded (QEMU snapshot); repeatable
  --drive-rw FILE     same, but guest writes go to FILE; repeatable
  --file SRC:DEST     copy SRC (file or directory) into the guest at DEST, read-only;
                      repeatable
  --host-bin NAME     copy a host program (and its libraries) into the guest at its host
                      path; repeatable. Default set: cryptsetup dmsetup mkfs.ext4 setpriv
                      keyctl losetup flock
  --no-host-bins      drop the default host program set
  --module NAME       load this extra kernel module (dependencies resolved); repeatable
  --timeout SEC       kill QEMU after SEC seconds (default 600)
  --mem MB            guest memory (default 2048)
  --smp N             guest CPUs (default 2)
  --cpu MODEL         QEMU CPU model (default max: AES-NI etc. emulated by TCG)
  --append ARGS       extra kernel command line
  --log-dir DIR       where console.log and qemu.log go (default: a new temp dir)
  -v, --verbose       stream the whole console (kernel + scenario) while it runs
  --fetch-only        only install packages and fetch the kernel into the cache
  --keep              keep the temp dir with the initramfs tree and initrd.cpio
  -h, --help          this text

Environment:
  TAZPOD_GUEST_CACHE       kernel cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/tazpod-guest)
  TAZPOD_GUEST_KERNEL_PKG  kernel package to use (default: what linux-image-amd64 depends on)
  TAZPOD_GUEST_NO_INSTALL  if 1, never run apt-get install (fail if something is missing)
EOF
}

set -E
trap '[[ $- != *e* ]] || printf "[guest] ERROR: %s line %s: command failed: %s\n" "$0" "$LINENO" "$BASH_COMMAND" >&2' ERR
say() { printf '[guest] %s\n' "$*" >&2; }
die() {
    printf '[guest] ERROR: %s\n' "$*" >&2
    exit 2
}

# ---------------------------------------------------------------- arguments
BINS=()
DRIVES=()      # entries "ro:FILE" or "rw:FILE"
FILES=()
HOST_BINS=(cryptsetup dmsetup mkfs.ext4 setpriv keyctl losetup flock)
EXTRA_HOST_BINS=()
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
    dm-mod dm-crypt cryptd crypto_simd aesni-intel xts authenc essiv
    af_alg algif_skcipher algif_hash
    loop crc16 mbcache jbd2 crc32c_generic crc32c-intel libcrc32c ext4)
TIMEOUT=600
MEM=2048
SMP=2
CPU=max
APPEND=
LOG_DIR=
VERBOSE=0
FETCH_ONLY=0
KEEP=0
SCENARIO=

need_arg() { [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
    case "$1" in
    --bin) need_arg "$@"; BINS+=("$2"); shift 2 ;;
    --drive) need_arg "$@"; DRIVES+=("ro:$2"); shift 2 ;;
    --drive-rw) need_arg "$@"; DRIVES+=("rw:$2"); shift 2 ;;
    --file) need_arg "$@"; FILES+=("$2"); shift 2 ;;
    --host-bin) need_arg "$@"; EXTRA_HOST_BINS+=("$2"); shift 2 ;;
    --no-host-bins) HOST_BINS=(); shift ;;
    --module) need_arg "$@"; MODULES+=("$2"); shift 2 ;;
    --timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
    --mem) need_arg "$@"; MEM=$2; shift 2 ;;
    --smp) need_arg "$@"; SMP=$2; shift 2 ;;
    --cpu) need_arg "$@"; CPU=$2; shift 2 ;;
    --append) need_arg "$@"; APPEND=$2; shift 2 ;;
    --log-dir) need_arg "$@"; LOG_DIR=$2; shift 2 ;;
    -v | --verbose) VERBOSE=1; shift ;;
    --fetch-only) FETCH_ONLY=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; SCENARIO=${1:-}; shift || true; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$SCENARIO" ] || die "only one scenario may be given"; SCENARIO=$1; shift ;;
    esac
done
[ "$#" -eq 0 ] || die "unexpected arguments: $*"
if [ "$FETCH_ONLY" = 0 ]; then
    [ -n "$SCENARIO" ] || { usage >&2; exit 2; }
    [ -f "$SCENARIO" ] || die "scenario $SCENARIO not found"
fi
case "$TIMEOUT" in '' | *[!0-9]*) die "--timeout wants seconds" ;; esac
HOST_BINS+=("${EXTRA_HOST_BINS[@]+"${EXTRA_HOST_BINS[@]}"}")

T0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- packages
export PATH="$PATH:/usr/sbin:/sbin"
SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=(sudo); fi
fi
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        if ! "${SUDO[@]+"${SUDO[@]}"}" apt-get update -qq >&2; then
            say "warning: apt-get update failed"
            return 1
        fi
        APT_UPDATED=1
    fi
}
PACKAGES=(qemu-system-x86 busybox-static cpio dmsetup cryptsetup-bin e2fsprogs keyutils util-linux dash xz-utils)
ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "${TAZPOD_GUEST_NO_INSTALL:-0}" != 1 ] ||
        die "missing packages: ${missing[*]} (TAZPOD_GUEST_NO_INSTALL=1 forbids installing them)"
    if [ "$(id -u)" != 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
        die "missing packages: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}"
    fi
    apt_update || die "apt-get update failed; cannot install ${missing[*]}"
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]+"${SUDO[@]}"}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}
ensure_packages

# ---------------------------------------------------------------- kernel cache
CACHE=${TAZPOD_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tazpod-guest}
mkdir -p "$CACHE"

# Name of the linux-image-<kver>-amd64 package the metapackage points at.
kernel_pkg() {
    if [ -n "${TAZPOD_GUEST_KERNEL_PKG:-}" ]; then
        echo "$TAZPOD_GUEST_KERNEL_PKG"
        return
    fi
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ && !f { print $2; f = 1 }'
}

# Newest complete kernel in the cache (fallback when apt knows nothing).
newest_cached() {
    local d best=
    for d in "$CACHE"/*/.complete; do
        [ -e "$d" ] || continue
        best=$(dirname "$d")
    done
    [ -n "$best" ] && basename "$best"
}

# Unpack the ELF vmlinux from the bzImage into $1/vmlinux. QEMU boots an ELF kernel
# with a PVH entry point directly, which skips the in-guest decompression: that
# takes ~8 s under TCG. Leaves no vmlinux (boot uses vmlinuz) if that cannot work.
extract_vmlinux() {
    local dir=$1 magic tool pos
    grep -q '^CONFIG_PVH=y' "$dir/config" 2>/dev/null || return 0
    for magic in xz zstd gzip; do
        case $magic in
        xz) pos=$(grep -abo $'\xfd7zXZ\x00' "$dir/vmlinuz" | head -n 1 | cut -d: -f1 || true); tool="xz -dc --single-stream" ;;
        zstd) pos=$(grep -abo $'\x28\xb5\x2f\xfd' "$dir/vmlinuz" | head -n 1 | cut -d: -f1 || true); tool="zstd -dc" ;;
        gzip) pos=$(grep -abo $'\x1f\x8b\x08' "$dir/vmlinuz" | head -n 1 | cut -d: -f1 || true); tool="gzip -dc" ;;
        esac
        [ -n "$pos" ] || continue
        command -v "${tool%% *}" >/dev/null || continue
        tail -c +$((pos + 1)) "$dir/vmlinuz" | $tool >"$dir/vmlinux.new" 2>/dev/null || true
        if [ "$(head -c 4 "$dir/vmlinux.new" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
            mv "$dir/vmlinux.new" "$dir/vmlinux"
            return 0
        fi
    done
    rm -f "$dir/vmlinux.new"
    say "warning: could not unpack an ELF vmlinux; booting the compressed kernel (slower)"
}

fetch_kernel() { # $1 = kver, $2 = package
    local kver=$1 pkg=$2 dir=$CACHE/$1 tmp
    tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    say "downloading kernel package $pkg"
    if ! (cd "$tmp" && apt-get download "$pkg" >&2 2>"$tmp/apt.err"); then
        # The signed image may be missing from a mirror: the unsigned one has the same kernel.
        if ! (cd "$tmp" && apt-get download "$pkg-unsigned" >&2 2>>"$tmp/apt.err"); then
            cat "$tmp/apt.err" >&2
            rm -rf "$tmp"
            return 1
        fi
    fi
    say "extracting $(basename "$tmp"/*.deb)"
    mkdir "$tmp/x"
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    local mdir=$tmp/x/lib/modules/$kver
    [ -d "$mdir" ] || mdir=$tmp/x/usr/lib/modules/$kver
    if [ ! -f "$tmp/x/boot/vmlinuz-$kver" ] || [ ! -d "$mdir" ]; then
        say "package $pkg has no boot/vmlinuz-$kver or modules"
        rm -rf "$tmp"
        return 1
    fi
    # Compressed modules (.ko.xz / .ko.zst / .ko.gz) become plain .ko for busybox insmod.
    local f n=0
    while IFS= read -r -d '' f; do
        case "$f" in
        *.ko.xz) xz -d "$f" ;;
        *.ko.zst) zstd -q -d --rm "$f" ;;
        *.ko.gz) gzip -d "$f" ;;
        esac
        n=$((n + 1))
    done < <(find "$mdir" \( -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)
    [ "$n" = 0 ] || say "decompressed $n modules"
    rm -rf "$dir.new"
    mkdir -p "$dir.new/lib/modules"
    mv "$tmp/x/boot/vmlinuz-$kver" "$dir.new/vmlinuz"
    mv "$tmp/x/boot/config-$kver" "$dir.new/config" 2>/dev/null || true
    mv "$mdir" "$dir.new/lib/modules/$kver"
    busybox depmod -b "$dir.new" "$kver"
    extract_vmlinux "$dir.new"
    echo "$pkg" >"$dir.new/package"
    rm -rf "$tmp" "$dir"
    mv "$dir.new" "$dir"
    : >"$dir/.complete"
    # Keep only this kernel: each cached tree is ~400 MB.
    local old
    for old in "$CACHE"/*/; do
        old=${old%/}
        [ "$old" = "$dir" ] || { say "removing old cached kernel $(basename "$old")"; rm -rf "$old"; }
    done
}

ensure_kernel() {
    local pkg kver
    pkg=$(kernel_pkg)
    if [ -z "$pkg" ]; then
        # Fresh machine: no package lists yet.
        if apt_update; then pkg=$(kernel_pkg); fi
    fi
    if [ -z "$pkg" ]; then
        kver=$(newest_cached) || die "cannot tell which kernel package to use (apt-cache depends linux-image-amd64 found nothing) and the cache $CACHE is empty"
        say "apt knows no kernel package; using cached kernel $kver"
        KVER=$kver
        return
    fi
    kver=${pkg#linux-image-}
    kver=${kver%-unsigned}
    KVER=$kver
    if [ -e "$CACHE/$kver/.complete" ]; then
        [ -e "$CACHE/$kver/vmlinux" ] || extract_vmlinux "$CACHE/$kver"
        return
    fi
    local t
    t=$(date +%s.%N)
    fetch_kernel "$kver" "$pkg" || {
        kver=$(newest_cached) || die "could not download kernel package $pkg and the cache is empty"
        say "download of $pkg failed; using cached kernel $kver"
        KVER=$kver
        return
    }
    say "kernel $kver cached in $CACHE/$kver ($(elapsed "$t") s)"
}

KVER=
exec 9>"$CACHE/.lock"
flock 9
ensure_kernel
flock -u 9
exec 9>&-
KDIR=$CACHE/$KVER
MODDIR=$KDIR/lib/modules/$KVER
say "kernel $KVER ($(cat "$KDIR/package" 2>/dev/null || echo '?'))"
if [ "$FETCH_ONLY" = 1 ]; then
    say "fetch only: done in $(elapsed "$T0") s"
    exit 0
fi

# ---------------------------------------------------------------- initramfs
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tazpod-guest.XXXXXX")
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"
chmod 755 "$ROOT"
if [ -z "$LOG_DIR" ]; then
    LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tazpod-guest-log.XXXXXX")
fi
mkdir -p "$LOG_DIR"
CONSOLE=$LOG_DIR/console.log
QEMU_LOG=$LOG_DIR/qemu.log
: >"$CONSOLE"
: >"$QEMU_LOG"

T1=$(date +%s.%N)
(cd "$ROOT" && mkdir -p bin sbin dev proc sys tmp run mnt newroot root home/tester \
    etc/tazpod-guest usr/bin usr/sbin usr/local/bin usr/lib/tazpod-guest "lib/modules/$KVER")
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$ROOT/dev/null" c 1 3 2>/dev/null || true

# busybox and its applets
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked; install busybox-static"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$ROOT/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"
done
ln -s ../bin/busybox "$ROOT/sbin/modprobe"
ln -s ../../bin/busybox "$ROOT/usr/bin/env"

# Copy $1 to $ROOT$2 (mode preserved, symlinks followed) plus every library ldd lists.
declare -A COPIED=()
copy_libs() {
    local bin=$1 line lib
    local out
    out=$(ldd "$bin" 2>&1) || return 0 # static binaries: "not a dynamic executable"
    if grep -q 'not found' <<<"$out"; then
        die "ldd $bin: missing libraries:
$out"
    fi
    while read -r line; do
        case "$line" in
        *'=> /'*) lib=${line#*=> }; lib=${lib%% (*} ;;
        /*) lib=${line%% (*} ;;
        *) continue ;;
        esac
        [ -n "${COPIED[$lib]:-}" ] && continue
        COPIED[$lib]=1
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done <<<"$out"
}
install_bin() { # host path, guest path
    mkdir -p "$ROOT$(dirname "$2")"
    cp -L "$1" "$ROOT$2"
    chmod 755 "$ROOT$2"
    copy_libs "$1"
}

# libgcc_s is dlopen()ed by glibc (pthread_cancel, backtraces), ldd does not list it.
LIBGCC=$(ldconfig -p 2>/dev/null | awk '/libgcc_s\.so\.1 .*x86-64/ && !f { print $NF; f = 1 }' || true)
if [ -n "$LIBGCC" ]; then
    mkdir -p "$ROOT$(dirname "$LIBGCC")"
    cp -L "$LIBGCC" "$ROOT$LIBGCC"
else
    say "warning: libgcc_s.so.1 not found on the host"
fi

declare -A SEEN_BIN=()
for b in "${BINS[@]+"${BINS[@]}"}"; do
    if [ ! -f "$b" ] || [ ! -x "$b" ]; then die "--bin $b: not an executable file"; fi
    name=$(basename "$b")
    [ -z "${SEEN_BIN[$name]:-}" ] || die "--bin: two binaries named $name"
    SEEN_BIN[$name]=1
    install_bin "$b" "/usr/local/bin/$name"
done
for h in "${HOST_BINS[@]+"${HOST_BINS[@]}"}"; do
    if [[ "$h" == /* ]]; then p=$h; else p=$(command -v "$h" || true); fi
    if [ -z "$p" ] || [ ! -x "$p" ]; then
        say "warning: host program $h not found; not copied into the guest"
        continue
    fi
    # Debian merges /bin into /usr/bin: give the guest the /usr path so busybox's /bin stays.
    case "$p" in /bin/* | /sbin/*) p2=/usr$p ;; *) p2=$p ;; esac
    install_bin "$p" "$p2"
done
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$ROOT/etc/"
# Debian's busybox-static shell runs its own applets before anything on PATH
# (FEATURE_SH_STANDALONE), which would hide the host's losetup, setpriv...: the
# guest's /bin/sh is the host's dash instead, so PATH decides.
DASH=$(command -v dash || true)
if [ -n "$DASH" ]; then
    rm -f "$ROOT/bin/sh"
    install_bin "$DASH" /bin/sh
else
    say "warning: no dash on the host; /bin/sh is busybox ash, whose applets shadow host programs"
fi

# kernel modules: dependencies first, from modules.dep; built-ins are skipped
declare -A MOD_DEPS=() MOD_DONE=()
while IFS= read -r line; do
    mod=${line%%:*}
    MOD_DEPS[$mod]=${line#*:}
done <"$MODDIR/modules.dep"
declare -A MOD_BY_NAME=()
for path in "${!MOD_DEPS[@]}"; do
    n=${path##*/}
    n=${n%.ko}
    MOD_BY_NAME[${n//-/_}]=$path
done
LOAD_ORDER=()
add_module() { # module path relative to MODDIR
    local path=$1 dep
    [ -n "${MOD_DONE[$path]:-}" ] && return
    MOD_DONE[$path]=1
    for dep in ${MOD_DEPS[$path]}; do add_module "$dep"; done
    LOAD_ORDER+=("$path")
}
for m in "${MODULES[@]}"; do
    key=${m//-/_}
    if [ -n "${MOD_BY_NAME[$key]:-}" ]; then
        add_module "${MOD_BY_NAME[$key]}"
    elif grep -Eq "/(${m}|${key})\.ko" "$MODDIR/modules.builtin"; then
        : # built into the kernel
    else
        die "kernel module $m not found in $MODDIR"
    fi
done
for path in "${LOAD_ORDER[@]}"; do
    mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$path")"
    cp "$MODDIR/$path" "$ROOT/lib/modules/$KVER/$path"
    echo "$path"
done >"$ROOT/etc/tazpod-guest/modules.load"
for f in modules.builtin modules.order; do
    [ -f "$MODDIR/$f" ] && cp "$MODDIR/$f" "$ROOT/lib/modules/$KVER/"
done
# modules.dep restricted to what is in the guest, so busybox modprobe works there.
for path in "${LOAD_ORDER[@]}"; do
    echo "$path:${MOD_DEPS[$path]}"
done >"$ROOT/lib/modules/$KVER/modules.dep"

# scenario, library, init, users
cp "$HERE/guest-init.sh" "$ROOT/init"
cp "$HERE/lib.sh" "$ROOT/usr/lib/tazpod-guest/lib.sh"
ln -s usr/lib/tazpod-guest/lib.sh "$ROOT/lib.sh"
cp "$SCENARIO" "$ROOT/scenario.sh"
chmod 755 "$ROOT/init" "$ROOT/scenario.sh"
chmod 644 "$ROOT/usr/lib/tazpod-guest/lib.sh"
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000:tester:/home/tester:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
tester:x:1000:
nogroup:x:65534:
EOF
chmod 700 "$ROOT/root"
echo tazpod-guest >"$ROOT/etc/hostname"
echo "$KVER" >"$ROOT/etc/tazpod-guest/kver"

for spec in "${FILES[@]+"${FILES[@]}"}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    if [ "$src" = "$spec" ] || [[ "$dest" != /* ]]; then die "--file wants SRC:/ABSOLUTE/DEST, got $spec"; fi
    [ -e "$src" ] || die "--file $src: not found"
    mkdir -p "$ROOT$(dirname "$dest")"
    cp -a "$src" "$ROOT$dest"
    chmod -R a-w "$ROOT$dest"
done

# drives: manifest "vdX <mode> <size> <sha256|-> <basename>" for lib.sh's t_drive
QEMU_DRIVES=()
letters=abcdefghijklmnopqrstuvwxyz
i=0
for d in "${DRIVES[@]+"${DRIVES[@]}"}"; do
    mode=${d%%:*}
    file=${d#*:}
    [ -f "$file" ] || die "--drive $file: not a file"
    [ "$i" -lt 26 ] || die "too many drives"
    case "$file" in *,*) die "--drive $file: QEMU cannot take commas in file names" ;; esac
    size=$(stat -c %s "$file")
    sum=-
    [ "$size" -le $((256 * 1024 * 1024)) ] && sum=$(sha256sum <"$file" | cut -d' ' -f1)
    [ $((size % 512)) = 0 ] || say "warning: --drive $file is not a multiple of 512 bytes; the guest sees it truncated"
    echo "vd${letters:i:1} $mode $size $sum $(basename "$file")" >>"$ROOT/etc/tazpod-guest/drives"
    opt="file=$file,format=raw,if=virtio,cache=unsafe"
    [ "$mode" = ro ] && opt="$opt,snapshot=on"
    QEMU_DRIVES+=(-drive "$opt")
    i=$((i + 1))
done
touch "$ROOT/etc/tazpod-guest/drives"

INITRD=$WORK/initrd.cpio
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$INITRD"
say "initramfs: $(du -m "$INITRD" | cut -f1) MiB, ${#LOAD_ORDER[@]} modules, built in $(elapsed "$T1") s"

# ---------------------------------------------------------------- boot
KERNEL=$KDIR/vmlinux
[ -f "$KERNEL" ] || KERNEL=$KDIR/vmlinuz
say "booting $(basename "$SCENARIO") (timeout ${TIMEOUT}s, logs in $LOG_DIR)"
T2=$(date +%s.%N)
set +e
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -machine q35 -cpu "$CPU" -m "$MEM" -smp "$SMP" \
    -nodefaults -no-reboot -display none -monitor none \
    -serial "file:$CONSOLE" \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 quiet $APPEND" \
    "${QEMU_DRIVES[@]+"${QEMU_DRIVES[@]}"}" \
    </dev/null >"$QEMU_LOG" 2>&1 &
QPID=$!
# Stream the console while QEMU runs: everything with -v, else protocol lines only.
if [ "$VERBOSE" = 1 ]; then
    tail -n +1 -f --pid="$QPID" "$CONSOLE" | sed -u 's/\r$//' &
else
    tail -n +1 -f --pid="$QPID" "$CONSOLE" | sed -u 's/\r$//' |
        grep --line-buffered -E '^(TEST |GUEST-)' &
fi
TAILPID=$!
wait "$QPID"
QRC=$?
wait "$TAILPID" 2>/dev/null
set -e
QEMU_SECS=$(elapsed "$T2")

# ---------------------------------------------------------------- results
tr -d '\r' <"$CONSOLE" >"$WORK/console.txt"
PASSED=$(grep -cE '^TEST [^ ]+ PASS( |$)' "$WORK/console.txt" || true)
FAILED=$(grep -cE '^TEST [^ ]+ FAIL( |$)' "$WORK/console.txt" || true)
DONE_LINE=$(grep -E '^GUEST-DONE rc=[0-9]+' "$WORK/console.txt" | tail -n 1 || true)
BOOT_LINE=$(grep -E '^GUEST-BOOTED ' "$WORK/console.txt" | head -n 1 || true)
STATUS=0

loud_tail() {
    echo "================ guest console (last 60 lines of $CONSOLE) ================" >&2
    tail -n 60 "$WORK/console.txt" >&2
    echo "================ qemu output ($QEMU_LOG) ================" >&2
    tail -n 20 "$QEMU_LOG" >&2
    echo "=========================================================================" >&2
}

if [ -z "$DONE_LINE" ]; then
    case "$QRC" in
    124 | 137) why="timed out after ${TIMEOUT}s" ;;
    *) why="QEMU exited with status $QRC" ;;
    esac
    if [ -z "$BOOT_LINE" ]; then
        echo "TEST guest-boot FAIL the guest never finished booting ($why)"
    else
        echo "TEST guest-scenario FAIL no GUEST-DONE marker: the scenario did not finish ($why)"
    fi
    FAILED=$((FAILED + 1))
    loud_tail
    STATUS=1
else
    rc=${DONE_LINE#GUEST-DONE rc=}
    rc=${rc%% *}
    if [ "$rc" != 0 ] && [ "$FAILED" = 0 ]; then
        echo "TEST scenario-exit FAIL $(basename "$SCENARIO") exited with status $rc"
        FAILED=$((FAILED + 1))
        STATUS=1
    fi
    if [ "$PASSED" = 0 ] && [ "$FAILED" = 0 ]; then
        echo "TEST scenario-tests FAIL $(basename "$SCENARIO") reported no TEST line"
        FAILED=1
        STATUS=1
    fi
    [ "$FAILED" = 0 ] && [ "$rc" = 0 ] || STATUS=1
    if [ "$STATUS" != 0 ]; then
        grep -E '^TEST [^ ]+ FAIL' "$WORK/console.txt" | sed 's/^TEST /[guest] failed: /' >&2 || true
        say "console log: $CONSOLE"
    fi
fi
boot_up=$(sed -n 's/^GUEST-BOOTED uptime=\([0-9.]*\).*/\1/p' <<<"$BOOT_LINE")
say "guest boot ${boot_up:-?} s (guest uptime), qemu ${QEMU_SECS} s, total $(elapsed "$T0") s; console: $CONSOLE"
echo "$PASSED passed, $FAILED failed"
exit "$STATUS"
