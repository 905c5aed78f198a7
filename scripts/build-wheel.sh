#!/usr/bin/env bash
# Builds the yiku_spark wheel (abi3: one wheel for every CPython >= 3.9) into target/wheels.
# maturin comes from PyPI into a virtual environment under target/ (override: YIKU_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${YIKU_VENV:-target/spark-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import maturin' 2>/dev/null; then
    "$venv/bin/pip" install --quiet "maturin>=1.8,<2"
fi
"$venv/bin/maturin" build --release --locked --manifest-path python/Cargo.toml --strip --out target/wheels "$@"
ls -1 target/wheels/yiku_spark-*.whl
