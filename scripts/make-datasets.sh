#!/usr/bin/env bash
# Regenerates the small bundled data in datasets/demo from fixed seeds (see datasets/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
rm -rf datasets/demo
./target/release/yiku generate --persons 3000 --enterprises 400 --seed 20261127 --out datasets/demo
# The demo writes to out/demo at the repository root.
sed -i 's|^output = "out" .*|output = "../../out/demo"   # relative to this file|' datasets/demo/job.toml
