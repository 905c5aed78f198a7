#!/usr/bin/env bash
# Builds the yiku binary the benchmark scripts measure and copies it to $1, so that a rebuild
# during a long benchmark cannot change what is being measured.
#
# PROFILE=dist (the default) builds with fat LTO, as production builds should be (about 3%
# faster than `release`; a clean build takes ~6 min instead of ~4 on 2 cores);
# PROFILE=release measures the development build.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$1"
profile="${PROFILE:-dist}"
cargo build --profile "$profile" --locked --bin yiku >&2
mkdir -p "$(dirname "$dest")"
cp "target/$profile/yiku" "$dest.tmp" && mv "$dest.tmp" "$dest"
