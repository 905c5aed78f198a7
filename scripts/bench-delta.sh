#!/usr/bin/env bash
# Nightly delta benchmark: a 1% delta applied to indexes of growing size, against a full rerun
# of the same final data (same model, same previous index), measured in one run; writes the
# table into BENCHMARKS.md (between the delta markers). For each size it also measures the
# night that compacts the persistent index (a new base instead of a layer), and checks that
# the delta night's whole index (`yiku export`) is byte-identical to the full rerun's.
#   scripts/bench-delta.sh                           # 100k and 1M records (persons + 10% enterprises)
#   SIZES="38000 380000 3800000 3800000:0.001" scripts/bench-delta.sh
#                                 # and 10M, with a 1% and a 0.1% delta (PERSONS[:SHARE] each)
#   SIZES=38000 RUNS=1 scripts/bench-delta.sh        # ~100k records, quick
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"38000 380000"}
SHARE=${SHARE:-0.01}
RUNS=${RUNS:-3}
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
BIN=target/bench/yiku-delta
scripts/build-bench-binary.sh "$BIN"
rows=target/bench/delta-rows.jsonl
: > "$rows"
measure() { # label, persons, share, data, out, args...
  local label=$1 persons=$2 share=$3 data=$4 out=$5
  shift 5
  /usr/bin/time -v "$BIN" -q run "$@" --out "$out" > /dev/null 2> target/bench/time.txt
  local rss wall
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' target/bench/time.txt)
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' target/bench/time.txt)
  # F1 once per kind of run (evaluating 10M records takes minutes).
  [ "$r" = 1 ] && "$BIN" eval --truth "$data/final/truth_persons.parquet" --run "$out" --json target/bench/eval-$label.json > /dev/null
  python3 - "$label" "$persons" "$out" target/bench/eval-$label.json "$rss" "$wall" "$share" >> "$rows" <<'PY'
import json, sys
label, persons, out, ev, rss, wall, share = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.load(open(sys.argv[4])), int(sys.argv[5]), sys.argv[6], float(sys.argv[7])
run = json.load(open(f"{out}/run.json"))
m, s = (wall.split(":") + ["0"])[:2] if wall.count(":") == 1 else ("0", wall)
d = [k.get("delta") or {} for k in run["kinds"]]
manifest = json.load(open(f"{out}/store/manifest.json"))
layer = sum(seg["rows"] for e in manifest["kinds"].values() for seg in e["segments"][1:])
base = sum(e["segments"][0]["rows"] for e in manifest["kinds"].values())
print(json.dumps({"label": label, "persons": persons, "share": share, "records": run["records_in"],
    "total": run["total_seconds"], "wall": float(m) * 60 + float(s), "rss_mb": rss / 1024,
    "pairs": sum(k["candidate_pairs"] for k in run["kinds"]), "f1": ev["pairwise"]["f1"],
    "sent": sum(x.get("added", 0) + x.get("changed", 0) + x.get("deleted", 0) for x in d),
    "touched": sum(x.get("touched_records", 0) for x in d), "layer": layer, "base": base,
    "segments": max(len(e["segments"]) for e in manifest["kinds"].values())}))
PY
}
for size in $SIZES; do
  persons=${size%%:*}
  share=$SHARE
  [ "$size" != "$persons" ] && share=${size#*:}
  enterprises=$((persons / 10))
  data="data/nights-p$persons-e$enterprises-s$share"
  [ -f "$data/delta/deletions.csv" ] || "$BIN" generate --persons "$persons" --enterprises "$enterprises" \
    --seed 5 --out "$data" --delta "$share" | tail -1
  # The same night, compacting: a copy of the job that compacts after any layer.
  sed 's/^\[job\]$/[job]\ncompact_after = 1e-9/' "$data/night1/job.toml" > "$data/night1/job-compact.toml"
  grep -q compact_after "$data/night1/job-compact.toml"
  "$BIN" -q run "$data/night1/job.toml" --out "$data/night1/out" > /dev/null
  for r in $(seq "$RUNS"); do
    measure delta "$persons" "$share" "$data" "$data/night2-delta" "$data/night1/job.toml" \
      --previous "$data/night1/out" --delta "$data/delta"
    measure full "$persons" "$share" "$data" "$data/night2-full" "$data/final/job.toml" \
      --previous "$data/night1/out" --model "$data/night1/out/model.json"
    measure compacting "$persons" "$share" "$data" "$data/night2-compact" "$data/night1/job-compact.toml" \
      --previous "$data/night1/out" --delta "$data/delta"
  done
  # The delta night's whole index, written from its store, against the full rerun's files.
  /usr/bin/time -f "%e" "$BIN" -q export "$data/night1/job.toml" --run "$data/night2-delta" \
    --out "$data/night2-export" > /dev/null 2> target/bench/export-time.txt
  same=yes
  for f in master_index.parquet golden_persons.parquet golden_enterprises.parquet; do
    cmp -s "$data/night2-export/$f" "$data/night2-full/$f" || same=no
  done
  echo "{\"label\": \"export\", \"persons\": $persons, \"share\": $share, \"wall\": $(tail -1 target/bench/export-time.txt), \"same\": \"$same\"}" >> "$rows"
done
python3 - "$rows" "$SHARE" "$RUNS" "$SIZES" <<'PY'
import json, re, statistics, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
share, runs, sizes = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
med = lambda rs, f: statistics.median(f(r) for r in rs)
lines = ["| index records | delta share | delta records | records touched | layer rows | delta night s | peak RSS MB | full rerun s | full / delta | compacting night s | nights between compactions | export s | export = full rerun | F1 (delta, full) |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
for persons, sh in sorted({(r["persons"], r["share"]) for r in rows}, key=lambda x: (x[0], -x[1])):
    of = lambda label: [r for r in rows if r["persons"] == persons and r["share"] == sh and r["label"] == label]
    d, f, c, e = of("delta"), of("full"), of("compacting"), of("export")[0]
    dw, fw, cw = med(d, lambda r: r["wall"]), med(f, lambda r: r["wall"]), med(c, lambda r: r["wall"])
    # Nights until the layers pass the default compact_after (0.5 of the base).
    nights = max(1, int(0.5 * d[0]["base"] / max(1, d[0]["layer"])))
    lines.append(f"| {d[0]['records']:,} | {sh:.1%} | {d[0]['sent']:,} | {d[0]['touched']:,} | {d[0]['layer']:,} | **{dw:.2f}** | "
                 f"{med(d, lambda r: r['rss_mb']):.0f} | {fw:.2f} | **{fw / dw:.1f}×** | {cw:.2f} | ~{nights} | {e['wall']:.2f} | {e['same']} | "
                 f"{d[0]['f1']:.4f}, {f[0]['f1']:.4f} |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
section = f"""<!-- delta:begin -->
## Nightly delta (`scripts/bench-delta.sh`)

`yiku generate --persons P --enterprises P/10 --seed 5 --delta SHARE` splits the generated records
into night 1, tonight's delta (half new records, a quarter corrected names, a quarter deletions)
and the final data. Night 1 runs in full; then, on the same machine in one run, the delta night
(`--previous night1/out --delta delta`: it writes its changes and a layer of the persistent
index), a full rerun of the final data with the same model and previous index, and the same
delta night made to compact the index (`compact_after = 1e-9`: it writes a new base, as a night
does once its layers pass half of the base). Wall seconds are medians of {runs} runs each (release
`dist` build, 2 threads); peak RSS from `/usr/bin/time` (it counts the index's mapped pages the
night reads). *Export* is `yiku export` of the delta night (the whole index from its store),
compared byte for byte with the full rerun's `master_index.parquet` and golden records.

{chr(10).join(lines)}

Machine: {nproc} cores ({cpu}); load average at the end {' '.join(load)}. Commit {commit},
{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC. Command: `SIZES="{sizes}" RUNS={runs} scripts/bench-delta.sh`.
<!-- delta:end -->"""
text = open("BENCHMARKS.md").read()
if "<!-- delta:begin -->" in text:
    text = re.sub(r"<!-- delta:begin -->.*?<!-- delta:end -->", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open("BENCHMARKS.md", "w").write(text)
print(section)
PY
