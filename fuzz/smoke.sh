#!/usr/bin/env bash
# Fuzz smoke run for CI: builds every fuzz target and runs each for SECONDS (default 20).
#
#   fuzz/smoke.sh [SECONDS]          e.g. fuzz/smoke.sh 60
#   FUZZ_TARGETS="image unlock" fuzz/smoke.sh 600     (a subset, longer)
#
# Installs cargo-fuzz if missing. Uses the nightly toolchain when rustup has it, else the
# pinned stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags). Seeds come from
# the fixtures (make-seeds.py); the corpus grown during the run is thrown away unless
# FUZZ_CORPUS_DIR names a directory to keep it in. Exits non-zero if any target found a crash,
# a leak, a timeout (an input taking over 10 s) or an allocation over 512 MiB; the reproducer
# is left in fuzz/artifacts/<target>/.
set -euo pipefail

secs=${1:-${FUZZ_SECONDS:-20}}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
targets=${FUZZ_TARGETS:-"header metadata image luks1 unlock dm ext4 ext4fmt format"}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    tc=(+nightly)
else
    echo "smoke: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    tc=()
    export RUSTC_BOOTSTRAP=1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 make-seeds.py "$work/seeds"
corpus_root=${FUZZ_CORPUS_DIR:-$work/corpus}

cargo "${tc[@]}" fuzz build -O

max_len() {
    case $1 in
        luks1) echo 4096 ;;
        dm) echo 8192 ;;
        format) echo 1024 ;;
        unlock) echo 614400 ;;
        ext4) echo 327680 ;;
        ext4fmt) echo 4096 ;;
        *) echo 65536 ;;
    esac
}

failed=()
summary=()
for t in $targets; do
    # (A target may have no seeds: ext4's need e2fsprogs.)
    mkdir -p "$corpus_root/$t" "artifacts/$t" "$work/seeds/$t"
    case $t in
        dm | format | ext4fmt) dict=() ;;
        ext4) dict=(-dict="$here/ext4.dict") ;;
        *) dict=(-dict="$here/luks2.dict") ;;
    esac
    log=$work/$t.log
    echo "smoke: $t for ${secs}s" >&2
    if cargo "${tc[@]}" fuzz run -O "$t" "$corpus_root/$t" "$work/seeds/$t" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" "${dict[@]}" \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        tail -40 "$log" >&2
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' || true)
    summary+=("$(printf '%-9s %-6s %10s execs  %s' "$t" "$status" "$runs" "$last")")
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "smoke: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
    exit 1
fi
