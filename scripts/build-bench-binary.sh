#!/usr/bin/env bash
# Builds the yiku binary the benchmark scripts measure and copies it to $1, so that a rebuild
# during a long benchmark cannot change what is being measured.
#
# PROFILE=dist (the default) builds with fat LTO, as production builds should be (about 3%
# faster than `release`; a clean build takes ~6 min instead of ~4 on 2 cores), and with
# profile-guided optimisation (PGO) unless PGO=0:
#   1. an instrumented dist build (target/pgo/gen) runs a training workload: a full run and a
#      run under `memory_limit` on generated data of its own (200k persons, 20k enterprises,
#      seed 11: not the data the benchmarks measure), then a delta night on top of it;
#   2. llvm-profdata (rustup's `llvm-tools`, installed here when missing) merges the counts;
#   3. the final dist build (target/pgo/use) is optimised with them.
# Measured on the 2M-record benchmark job (2 threads, 4 runs each): ~4% less wall and CPU time
# than the same build without PGO. Both builds are full builds of their own (~6 min each);
# later calls rebuild only what changed. Without llvm-profdata (rustup unavailable) the plain
# dist build is used, with a warning.
# PROFILE=release measures the development build (never with PGO). How the binary was built
# goes to "$1.build", which the benchmark scripts quote.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$1"
profile="${PROFILE:-dist}"
pgo="${PGO:-1}"
[ "$profile" = dist ] || pgo=0

log() { echo "== $*" >&2; }

profdata_tool() {
    local sysroot host tool
    sysroot="$(rustc --print sysroot)"
    host="$(rustc -vV | sed -n 's/^host: //p')"
    tool="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
    if [ ! -x "$tool" ] && command -v rustup > /dev/null; then
        log "installing rustup component llvm-tools (for llvm-profdata)"
        rustup component add llvm-tools >&2 || true
    fi
    [ -x "$tool" ] && echo "$tool"
}

built="target/$profile/yiku"
how="the \`$profile\` profile"
if [ "$pgo" = 1 ]; then
    if tool="$(profdata_tool)"; then
        work="$PWD/target/pgo"
        rm -rf "$work/raw" "$work/runs"
        mkdir -p "$work/raw" "$work/runs"
        log "PGO 1/3: instrumented build (target/pgo/gen)"
        RUSTFLAGS="-Cprofile-generate=$work/raw" CARGO_TARGET_DIR="$work/gen" \
            cargo build --profile dist --locked --bin yiku >&2
        gen="$work/gen/dist/yiku"
        train="$work/train"
        if [ ! -f "$train/delta/deletions.csv" ]; then
            rm -rf "$train"
            "$gen" generate --persons 200000 --enterprises 20000 --seed 11 --delta 0.01 \
                --out "$train" -q > /dev/null
        fi
        log "PGO 2/3: training runs"
        "$gen" run "$train/job.toml" --out "$work/runs/full" -q > /dev/null
        sed 's/^\[job\]$/[job]\nmemory_limit = "0.35GB"/' "$train/job.toml" \
            > "$train/job-limited.toml"
        grep -q memory_limit "$train/job-limited.toml"
        "$gen" run "$train/job-limited.toml" --out "$work/runs/limited" -q > /dev/null
        "$gen" run "$train/night1/job.toml" --out "$work/runs/night1" -q > /dev/null
        "$gen" run "$train/night1/job.toml" --previous "$work/runs/night1" \
            --delta "$train/delta" --out "$work/runs/night2" -q > /dev/null
        "$tool" merge -o "$work/merged.profdata" "$work/raw"
        log "PGO 3/3: optimised build (target/pgo/use)"
        RUSTFLAGS="-Cprofile-use=$work/merged.profdata" CARGO_TARGET_DIR="$work/use" \
            cargo build --profile dist --locked --bin yiku >&2
        built="$work/use/dist/yiku"
        how="the \`dist\` profile with PGO"
    else
        log "warning: llvm-profdata not found: building without PGO"
        how="the \`dist\` profile (no PGO: llvm-profdata not found)"
        cargo build --profile dist --locked --bin yiku >&2
    fi
else
    cargo build --profile "$profile" --locked --bin yiku >&2
fi
mkdir -p "$(dirname "$dest")"
cp "$built" "$dest.tmp" && mv "$dest.tmp" "$dest"
# How it was built, for the scripts' reports.
echo "$how" > "$dest.build"
