#!/usr/bin/env bash
# Nightly delta benchmark: a 1% delta applied to a ~1M-record index, against a full rerun of
# the same final data (same model, same previous index), measured in one run; writes the
# table into BENCHMARKS.md (between the delta markers) and checks that both give the same
# master index.
#   scripts/bench-delta.sh                       # 380k persons + 38k enterprises ≈ 1.07M records
#   PERSONS=38000 ENTERPRISES=3800 scripts/bench-delta.sh   # ~100k records, quick
set -euo pipefail
cd "$(dirname "$0")/.."
PERSONS=${PERSONS:-380000}
ENTERPRISES=${ENTERPRISES:-38000}
SHARE=${SHARE:-0.01}
RUNS=${RUNS:-3}
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
BIN=target/bench/yiku-delta
scripts/build-bench-binary.sh "$BIN"
data="data/nights-p$PERSONS-e$ENTERPRISES-s$SHARE"
[ -f "$data/delta/deletions.csv" ] || "$BIN" generate --persons "$PERSONS" --enterprises "$ENTERPRISES" \
  --seed 5 --out "$data" --delta "$SHARE" | tail -1
rows=target/bench/delta-rows.jsonl
: > "$rows"
measure() { # label, out, args...
  local label=$1 out=$2
  shift 2
  /usr/bin/time -v "$BIN" -q run "$@" --out "$out" > /dev/null 2> target/bench/time.txt
  local rss
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' target/bench/time.txt)
  local wall
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' target/bench/time.txt)
  "$BIN" eval --truth "$data/final/truth_persons.parquet" --run "$out" --json target/bench/eval.json > /dev/null
  python3 - "$label" "$out/run.json" target/bench/eval.json "$rss" "$wall" >> "$rows" <<'PY'
import json, sys
label, run, ev, rss, wall = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4]), sys.argv[5]
m, s = (wall.split(":") + ["0"])[:2] if wall.count(":") == 1 else ("0", wall)
stages = {}
for st in run["stages"]:
    stages[st["stage"]] = stages.get(st["stage"], 0) + st["seconds"]
print(json.dumps({"label": label, "records": run["records_in"], "total": run["total_seconds"],
    "wall": float(m) * 60 + float(s), "rss_mb": rss / 1024, "stages": stages,
    "pairs": sum(k["candidate_pairs"] for k in run["kinds"]), "f1": ev["pairwise"]["f1"]}))
PY
}
"$BIN" -q run "$data/night1/job.toml" --out "$data/night1/out" > /dev/null
for r in $(seq "$RUNS"); do
  measure delta "$data/night2-delta" "$data/night1/job.toml" --previous "$data/night1/out" --delta "$data/delta"
  measure full "$data/night2-full" "$data/final/job.toml" --previous "$data/night1/out" \
    --model "$data/night1/out/model.json"
done
# Same master index (ids included) from both.
same=$(python3 - "$data" <<'PY'
import sys
d = sys.argv[1]
print("yes" if open(f"{d}/night2-delta/master_index.parquet", "rb").read() == open(f"{d}/night2-full/master_index.parquet", "rb").read() else "no")
PY
)
python3 - "$rows" "$data" "$same" "$PERSONS" "$ENTERPRISES" "$SHARE" <<'PY'
import json, re, statistics, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
data, same, persons, enterprises, share = sys.argv[2:7]
order = ["previous", "load", "standardise", "delta", "block", "compare", "train", "score", "cluster", "master", "golden", "write"]
lines = ["| run | records in index | candidate pairs | " + " | ".join(order) + " | total s (run.json) | wall s | peak RSS MB | person F1 |",
         "|---|" + "---:|" * (len(order) + 6)]
meds = {}
for label in ["full", "delta"]:
    rs = [r for r in rows if r["label"] == label]
    med = lambda f: statistics.median(f(r) for r in rs)
    st = {s: med(lambda r: r["stages"].get(s, 0.0)) for s in order}
    meds[label] = med(lambda r: r["wall"])
    name = "full rerun on the final data" if label == "full" else f"delta run ({float(share):.0%} of records)"
    lines.append(f"| {name} | {rs[0]['records']:,} | {rs[0]['pairs']:,} | " + " | ".join(f"{st[s]:.2f}" for s in order)
                 + f" | {med(lambda r: r['total']):.2f} | **{meds[label]:.2f}** | {med(lambda r: r['rss_mb']):.0f} | {rs[0]['f1']:.4f} |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
delta_info = open(f"{data}/delta/deletions.csv").read().count("\n") - 1
section = f"""<!-- delta:begin -->
## Nightly delta (`scripts/bench-delta.sh`)

`yiku generate --persons {persons} --enterprises {enterprises} --seed 5 --delta {share}` splits the generated
records into night 1, tonight's delta (half new records, a quarter corrected names, a quarter
deletions: {delta_info:,} deleted) and the final data. Night 1 runs in full; then, on the same machine in one
run, the delta run (`--previous night1/out --delta delta`) and a full rerun of the final data
with the same model and previous index. Medians of {len(rows) // 2} runs each.

{chr(10).join(lines)}

Delta run vs full rerun: **{meds['full'] / meds['delta']:.1f}×** faster wall time. Same master index (byte-identical
`master_index.parquet`): **{same}**. Machine: {nproc} cores ({cpu}); load average at the end
{' '.join(load)}. Commit {commit}, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.
Command: `PERSONS={persons} ENTERPRISES={enterprises} SHARE={share} scripts/bench-delta.sh`.
<!-- delta:end -->"""
text = open("BENCHMARKS.md").read()
if "<!-- delta:begin -->" in text:
    text = re.sub(r"<!-- delta:begin -->.*?<!-- delta:end -->", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open("BENCHMARKS.md", "w").write(text)
print(section)
PY
