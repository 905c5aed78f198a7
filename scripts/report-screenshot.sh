#!/usr/bin/env bash
# Renders the demo's report (out/demo/report.html) in headless Chromium and saves
# docs/report.png. Runs the demo first if its output is missing. Needs Debian's `chromium`
# package (installed here if missing) and a CJK font for the Chinese text.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
fi
if [ ! -f out/demo/report.html ]; then
    cargo run --release --quiet -- -q demo >/dev/null
fi
mkdir -p docs
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars \
    --screenshot=docs/report.png --window-size=1280,2400 \
    "file://$PWD/out/demo/report.html" 2>/dev/null
echo "written: docs/report.png"
