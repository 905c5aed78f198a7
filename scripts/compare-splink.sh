#!/usr/bin/env bash
# Side-by-side benchmark of yiku against Splink (Python, DuckDB backend) on generated person data.
#
#   scripts/compare-splink.sh [N]        N true persons, default 1000000 (about 2 records each)
#   N=100000 scripts/compare-splink.sh   the same, for a quick run
#
# Steps, all re-runnable (what exists is reused, every measurement is taken afresh):
#   1. a venv at target/splink-venv with pinned Splink, DuckDB, pyarrow and pandas from PyPI;
#   2. yiku built with the `dist` profile and PGO (PROFILE=release for the development build) by
#      scripts/build-bench-binary.sh and copied to target/splink-bench/, so that a rebuild by
#      someone else during the run cannot change the binary under measurement;
#   3. data/bench-N from `yiku generate --persons N --enterprises 0 --seed 7` (only when missing);
#   4. `yiku run` once unmeasured (so that the inputs are in the page cache), then YIKU_RUNS
#      times (default 2) under /usr/bin/time -v: median wall and peak RSS;
#   5. `scripts/splink_compare.py` on yiku's standardised_person.arrow (read once beforehand,
#      so that it too comes from the page cache) under /usr/bin/time -v;
#   6. `yiku eval` on both tools' clusters against the same truth;
#   7. the results into BENCHMARKS.md, between <!-- splink:begin --> and <!-- splink:end -->.
# Work files go to target/splink-bench/N/.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-${N:-1000000}}"
YIKU_RUNS="${YIKU_RUNS:-2}"
THREADS="$(nproc)"
COMMAND="YIKU_RUNS=$YIKU_RUNS scripts/compare-splink.sh $N"
[[ "$N" =~ ^[0-9]+$ ]] || { echo "N must be a whole number, got '$N'" >&2; exit 2; }

# Pinned Python packages: the last Splink 4.x on PyPI (5.0 is a new major version, not used here);
# DuckDB stays on 1.x, which Splink 4.0 was made against (2.0 rejects the old lambda syntax).
PINS="splink==4.0.17 duckdb==1.5.6 pyarrow==26.0.1 pandas==2.3.3 sqlglot==30.30.0"
VENV=target/splink-venv
WORK="target/splink-bench/$N"
DATA="data/bench-$N"

log() { echo "== $*" >&2; }

# --- Tools -------------------------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (Debian package 'time')"
    apt-get update -qq && apt-get install -y -qq time
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if [[ "$(cat "$VENV/.pins" 2>/dev/null || true)" != "$PINS" ]]; then
    log "installing $PINS"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
    echo "$PINS" > "$VENV/.pins"
fi
PY="$VENV/bin/python"

log "building yiku (profile ${PROFILE:-dist})"
mkdir -p "$WORK"
YIKU="target/splink-bench/yiku"
scripts/build-bench-binary.sh "$YIKU"
YIKU_VERSION="$("$YIKU" --version)"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    GIT_REV="$GIT_REV (the working tree had uncommitted changes in src/)"
fi

# --- Data --------------------------------------------------------------------------------------
if [[ ! -f "$DATA/truth_persons.parquet" || ! -f "$DATA/job.toml" ]]; then
    log "generating $DATA"
    rm -rf "$DATA.tmp"
    "$YIKU" generate -q --persons "$N" --enterprises 0 --seed 7 --out "$DATA.tmp"
    rm -rf "$DATA" && mv "$DATA.tmp" "$DATA"
fi
TRUTH="$DATA/truth_persons.parquet"

# /usr/bin/time -v report -> "wall_seconds peak_rss_mb"
time_stats() {
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
        /Maximum resident set size/ { rss = $2 / 1024 }
        END { printf "%.2f %.0f\n", s, rss }' "$1"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- yiku --------------------------------------------------------------------------------------
YIKU_STATS=()
# One run first, not measured: both tools then read their input from the page cache (the first
# run after a build or after generating the data read it from disk).
log "yiku warm-up run (not measured)"
rm -rf "$WORK/yiku-warm-up"
"$YIKU" run "$DATA/job.toml" --out "$WORK/yiku-warm-up" -q --threads "$THREADS" > /dev/null
rm -rf "$WORK/yiku-warm-up"
for i in $(seq 1 "$YIKU_RUNS"); do
    out="$WORK/yiku-run$i"
    rm -rf "$out"
    log "yiku run $i/$YIKU_RUNS ($DATA)"
    /usr/bin/time -v -o "$WORK/yiku-run$i.time" \
        "$YIKU" run "$DATA/job.toml" --out "$out" -q --threads "$THREADS" \
        > "$WORK/yiku-run$i.log"
    YIKU_STATS+=("$(time_stats "$WORK/yiku-run$i.time")")
    log "yiku run $i: wall s, peak RSS MB = ${YIKU_STATS[-1]}"
    # Run 1's outputs are evaluated and handed to Splink; the others' (~1.3 GB each) are not kept.
    [ "$i" = 1 ] || rm -rf "$out"
done
"$YIKU" eval -q --truth "$TRUTH" --run "$WORK/yiku-run1" --json "$WORK/yiku-eval.json" > /dev/null

# --- Splink ------------------------------------------------------------------------------------
rm -rf "$WORK/splink"
# yiku writes its state file past the page cache: read it once so that Splink, too, starts warm.
cat "$WORK/yiku-run1/standardised_person.arrow" > /dev/null
log "splink on $WORK/yiku-run1/standardised_person.arrow"
/usr/bin/time -v -o "$WORK/splink.time" \
    "$PY" scripts/splink_compare.py --threads "$THREADS" \
    "$WORK/yiku-run1/standardised_person.arrow" "$WORK/splink" > "$WORK/splink-result.json"
SPLINK_STATS="$(time_stats "$WORK/splink.time")"
log "splink: process wall s, peak RSS MB = $SPLINK_STATS"
"$YIKU" eval -q --truth "$TRUTH" --run "$WORK/splink" --json "$WORK/splink-eval.json" > /dev/null

# --- Report ------------------------------------------------------------------------------------
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
PROFILE="${PROFILE:-dist}"
BUILD="$(cat "$YIKU.build" 2>/dev/null || echo "the \`$PROFILE\` profile")"
export N COMMAND WORK THREADS YIKU_VERSION GIT_REV LOAD_BEFORE CPU PROFILE BUILD
export YIKU_STATS_ALL="${YIKU_STATS[*]}" SPLINK_STATS
export NPROC="$(nproc)" MEM_GB="$(free -g | awk '/^Mem:/ { print $2 }')" DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
export LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - <<'EOF'
import json, os, statistics

env = os.environ
work = env["WORK"]
def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)

# yiku: median over the runs of wall time and of peak RSS, both from /usr/bin/time.
runs = env["YIKU_STATS_ALL"].split()
yiku_walls = [float(w) for w in runs[0::2]]
yiku_rss = [float(r) for r in runs[1::2]]
yiku_wall, yiku_peak = statistics.median(yiku_walls), statistics.median(yiku_rss)
yiku_run = load("yiku-run1/run.json")
# Splink: the script's own timing (input read to clusters written); RSS of the whole process.
splink = load("splink-result.json")
splink_process_wall, splink_peak = (float(x) for x in env["SPLINK_STATS"].split())
yiku_eval, splink_eval = load("yiku-eval.json"), load("splink-eval.json")
records = splink["records"]

def row(tool, wall, rss, ev, covers):
    p = ev["pairwise"]
    return (f"| {tool} | {records:,} | {wall:.1f} | {rss:,.0f} | {p['precision']:.4f} | "
            f"{p['recall']:.4f} | {p['f1']:.4f} | {covers} |")

stages = ", ".join(f"{k} {v:.1f}" for k, v in splink["stages"].items())
lines = [
    "<!-- splink:begin -->",
    "## yiku vs Splink",
    "",
    f"Generated persons (`yiku generate --persons {env['N']} --enterprises 0 --seed 7`), "
    "all departments deduplicated together; pairwise scores from `yiku eval` against the same truth.",
    "",
    "| tool | records | wall s | peak RSS MB | precision | recall | F1 | time covers |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    row(f"yiku {env['YIKU_VERSION'].split()[-1]}", yiku_wall, yiku_peak, yiku_eval,
        f"whole `yiku run`: read, standardise, train, score, cluster, write (median of {len(yiku_walls)})"),
    row(f"Splink {splink['splink_version']} (DuckDB {splink['duckdb_version']})", splink["seconds"], splink_peak,
        splink_eval, "read standardised table, train, predict, cluster, write; no standardisation"),
    "",
    f"**Splink wall / yiku wall = {splink['seconds'] / yiku_wall:.1f}×** "
    f"(Splink's whole process, with Python start-up and imports: {splink_process_wall:.1f} s, "
    f"{splink_process_wall / yiku_wall:.1f}×).",
    "",
    f"- yiku runs (wall s), after one unmeasured warm-up run: {', '.join(f'{w:.1f}' for w in yiku_walls)}; "
    f"yiku's own `total_seconds` in run 1: {yiku_run['total_seconds']:.1f}; "
    f"yiku at {env['GIT_REV']}, built with {env['BUILD']}.",
    f"- Splink stages (s): {stages}; {splink['matches']:,} pairs at match probability ≥ 0.9.",
    f"- Machine: {env['NPROC']} cores ({env['CPU'] or 'CPU model unknown'}), {env['MEM_GB']} GB memory "
    f"(`free -g`); both tools given {env['THREADS']} threads. Shared machine: load average "
    f"{env['LOAD_BEFORE']} before, {env['LOAD_AFTER']} after, so timings are noisy.",
    f"- Date: {env['DATE']}. Command: `{env['COMMAND']}` (peak RSS from `/usr/bin/time -v`).",
    "",
    "How the comparison is set up (`scripts/splink_compare.py`):",
    "",
    "- Splink reads yiku's `standardised_person.arrow` (which every `yiku run` writes: it is the state a delta run starts from; handed to DuckDB through pyarrow), "
    "so it gets yiku's Chinese standardisation (simplified names, pinyin keys, cleaned and upgraded ID "
    "numbers, dates, phones, addresses) for free: **Splink's time excludes standardisation, yiku's "
    "includes everything**, including writing that extra table.",
    "- The Splink model mirrors yiku's person model: the same four blocking rules (`id_number_valid`; "
    "`birth_date`+`name_pinyin`; `phone`; `name`+`address`), `dedupe_only` over all records, the same "
    "comparison levels (name: exact with term-frequency adjustment / same pinyin key / one edit; ID: "
    "exact / one edit / two adjacent digits transposed; birth date: exact / day-month swapped / one edit; gender; "
    "phone: exact / one edit; address: exact / bigram Dice ≥ 0.8 / ≥ 0.55), u from 1M random pairs, "
    "λ from the rule `id_number_valid` with an assumed recall of 0.7, m by EM on "
    "`birth_date`+`name_pinyin` and on `id_number`, links at match probability 0.9, "
    "connected components as clusters.",
    "- One difference remains by design: yiku's clustering never puts two different valid ID numbers "
    "in one cluster (must-not-link), Splink's connected components have no such constraint, so chains "
    "of links through records without an ID can join family members.",
    "<!-- splink:end -->",
]
section = "\n".join(lines)

path = "BENCHMARKS.md"
begin, end = "<!-- splink:begin -->", "<!-- splink:end -->"
text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    text = head + section + tail
else:
    text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
with open(path, "w", encoding="utf-8") as f:
    f.write(text)
print(section)
EOF
log "results written to BENCHMARKS.md"
