#!/usr/bin/env bash
# The project's test command: formatting, lints, tests, docs, benches compile, clean tree.
# `.ci/run` calls this; run it yourself before you push.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
echo "== cargo bench --no-run"
cargo bench --no-run --locked
echo "== the tests left the tree clean"
git diff --exit-code
test -z "$(git status --porcelain)" || { git status --porcelain; echo "tests left untracked files"; exit 1; }
echo "check.sh: all passed"
