#!/usr/bin/env bash
# Side-by-side unlock timing: `tazpod open --test-passphrase` vs `cryptsetup open
# --test-passphrase` on the same LUKS2 headers, made here by cryptsetup.
#
#   benches/compare.sh [-n RUNS] [-w WORKDIR] [-t TAZPOD] [-o ROWS]
#
#   -n RUNS     runs per tool and header, alternating tazpod and cryptsetup (default 7)
#   -w WORKDIR  where the header images live; reused between calls (default ./target/compare)
#   -t TAZPOD   the tazpod binary (default ./target/x86_64-unknown-linux-gnu/release/tazpod, or $CARGO_TARGET_DIR's)
#   -o ROWS     only these rows, comma-separated: t1000,sha256,sha512,argon2id (default all)
#
# Headers (all aes-xts-plain64 with a 512-bit key, as cryptsetup's default LUKS2 format):
#   t1000     PBKDF2-SHA256, 1000 iterations (the fixed cost: start, read, parse, AF, digest)
#   sha256    PBKDF2-SHA256, 2 000 000 iterations
#   sha512    PBKDF2-SHA512, 1 000 000 iterations
#   argon2id  Argon2id, 1 GiB, t = 4, p = 2
# `--pbkdf-force-iterations` also makes cryptsetup give the digest 1000 iterations, so the
# digest check is the same small cost in every row.
#
# For each row it prints the median wall time of each tool, the ratio tazpod/cryptsetup, the
# median CPU time (user + system, from /usr/bin/time), the largest peak RSS, and the load average
# before and after. Needs cryptsetup, GNU time (/usr/bin/time) and jq; no root, no device mapper.
set -euo pipefail

runs=7
work=./target/compare
tazpod=
only=t1000,sha256,sha512,argon2id
while getopts "n:w:t:o:h" opt; do
	case $opt in
	n) runs=$OPTARG ;;
	w) work=$OPTARG ;;
	t) tazpod=$OPTARG ;;
	o) only=$OPTARG ;;
	*) sed -n '2,21p' "$0"; exit 2 ;;
	esac
done
if [[ -z $tazpod ]]; then
	tazpod=${CARGO_TARGET_DIR:-./target}/x86_64-unknown-linux-gnu/release/tazpod
fi
for tool in cryptsetup /usr/bin/time jq "$tazpod"; do
	command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found (apt install cryptsetup-bin time jq; cargo build --release)" >&2; exit 1; }
done

mkdir -p "$work"
pass=$work/passphrase
printf 'tazpod benchmark passphrase' >"$pass"

# make NAME cryptsetup-options...: formats $work/NAME.img once.
make() {
	local name=$1; shift
	local img=$work/$name.img
	[[ -s $img && -f $img.ok ]] && return 0
	rm -f "$img" "$img.ok"
	truncate -s 20M "$img"
	echo "compare.sh: formatting $name ($*)" >&2
	cryptsetup luksFormat --type luks2 --batch-mode --key-file "$pass" \
		--cipher aes-xts-plain64 --key-size 512 "$@" "$img"
	touch "$img.ok"
}

declare -A kdf_kib=([t1000]=0 [sha256]=0 [sha512]=0 [argon2id]=1048576)
declare -A what=(
	[t1000]="PBKDF2-SHA256, 1000 it. (fixed cost)"
	[sha256]="PBKDF2-SHA256, 2M it., 512-bit key"
	[sha512]="PBKDF2-SHA512, 1M it., 512-bit key"
	[argon2id]="argon2id 1 GiB, t=4, p=2"
)
IFS=, read -r -a rows <<<"$only"
for r in "${rows[@]}"; do
	case $r in
	t1000) make t1000 --pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 1000 ;;
	sha256) make sha256 --pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 2000000 ;;
	sha512) make sha512 --pbkdf pbkdf2 --hash sha512 --pbkdf-force-iterations 1000000 ;;
	argon2id) make argon2id --pbkdf argon2id --pbkdf-memory 1048576 --pbkdf-parallel 2 \
		--pbkdf-force-iterations 4 ;;
	*) echo "compare.sh: unknown row $r" >&2; exit 2 ;;
	esac
done

# one TOOL IMG: runs one unlock, appends "wall cpu rss" to $work/TOOL.times.
one() {
	local tool=$1 img=$2 out t0 t1
	out=$(mktemp)
	t0=$EPOCHREALTIME
	if [[ $tool == cryptsetup ]]; then
		/usr/bin/time -f '%U %S %M' -o "$out" cryptsetup open --test-passphrase --key-file "$pass" "$img"
	else
		/usr/bin/time -f '%U %S %M' -o "$out" "$tazpod" open --test-passphrase --key-file "$pass" "$img"
	fi
	t1=$EPOCHREALTIME
	# wall from the shell's microsecond clock (GNU time's %e has 10 ms steps)
	awk -v a="$t0" -v b="$t1" '{ printf "%.4f %.2f %s\n", b - a, $1 + $2, $3 }' "$out" >>"$work/$tool.times"
	rm -f "$out"
}

# median of column $1 of file $2
median() { awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'; }
maxcol() { awk -v c="$1" 'BEGIN { m = 0 } { if ($c > m) m = $c } END { print m }' "$2"; }

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, $(cryptsetup --version), tazpod $("$tazpod" --version | cut -d' ' -f2)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); $runs alternating runs per tool"
printf '%-38s %9s %9s %6s %8s %8s %9s %9s\n' "row" "cs wall" "tz wall" "ratio" "cs cpu" "tz cpu" "cs RSS" "tz RSS"
for r in "${rows[@]}"; do
	img=$work/$r.img
	rm -f "$work/cryptsetup.times" "$work/tazpod.times"
	one tazpod "$img" # warm the page cache and the binary
	rm -f "$work/tazpod.times"
	for ((i = 0; i < runs; i++)); do
		if ((i % 2)); then one tazpod "$img"; one cryptsetup "$img"; else one cryptsetup "$img"; one tazpod "$img"; fi
	done
	cw=$(median 1 "$work/cryptsetup.times"); tw=$(median 1 "$work/tazpod.times")
	cc=$(median 2 "$work/cryptsetup.times"); tc=$(median 2 "$work/tazpod.times")
	cm=$(maxcol 3 "$work/cryptsetup.times"); tm=$(maxcol 3 "$work/tazpod.times")
	kib=${kdf_kib[$r]}
	ratio=$(awk -v a="$tw" -v b="$cw" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
	printf '%-38s %8.3fs %8.3fs %6s %7.2fs %7.2fs %5d MiB %5d MiB\n' "${what[$r]}" "$cw" "$tw" "$ratio" "$cc" "$tc" \
		$(((cm - kib) / 1024)) $(((tm - kib) / 1024))
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# RSS columns: peak RSS minus the KDF memory; times are medians, ratio = tazpod / cryptsetup wall"
