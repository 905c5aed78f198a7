#!/usr/bin/env bash
# Whole-run benchmarks: generates person data, runs `yiku run` (the `dist` build) with 1 and 2 threads,
# evaluates it, and writes the table into BENCHMARKS.md (between the bench markers).
#   scripts/bench.sh                 # 50k and 500k persons (about 100k and 1M records)
#   SIZES="50000 500000 5000000" scripts/bench.sh   # add ~10M records
# Sizes of BIG persons or more (default 2M) run once, with the largest thread count only.
# Timings come from the run's own run.json (median of RUNS runs); peak RSS from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"50000 500000"}
THREADS=${THREADS:-"1 2"}
RUNS=${RUNS:-3}
BIG=${BIG:-2000000}
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
BIN=target/bench/yiku
scripts/build-bench-binary.sh "$BIN"
rows=target/bench/rows.jsonl
: > "$rows"
for p in $SIZES; do
  data="data/bench-p$p"
  [ -f "$data/job.toml" ] || "$BIN" generate --persons "$p" --enterprises 0 --seed 7 --out "$data" >/dev/null
  threads=$THREADS runs=$RUNS
  if [ "$p" -ge "$BIG" ]; then threads=${THREADS##* } runs=1; fi
  for t in $threads; do
    for r in $(seq "$runs"); do
      out="target/bench/out-p$p-t$t"
      /usr/bin/time -v "$BIN" -q run "$data/job.toml" --out "$out" --threads "$t" \
        >/dev/null 2> target/bench/time.txt
      rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' target/bench/time.txt)
      "$BIN" eval --truth "$data/truth_persons.parquet" --run "$out" --json target/bench/eval.json >/dev/null
      python3 - "$out/run.json" target/bench/eval.json "$p" "$t" "$rss" >> "$rows" <<'PY'
import json, sys
run, ev = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
stages = {}
for s in run["stages"]:
    if s["kind"] in ("person", "all"):
        stages[s["stage"]] = stages.get(s["stage"], 0) + s["seconds"]
person = [k for k in run["kinds"] if k["kind"] == "person"][0]
print(json.dumps({"persons": int(sys.argv[3]), "threads": int(sys.argv[4]), "rss_mb": int(sys.argv[5]) / 1024,
    "records": run["records_in"], "pairs": person["candidate_pairs"], "total": run["total_seconds"],
    "stages": stages, "f1": ev["pairwise"]["f1"], "precision": ev["pairwise"]["precision"],
    "recall": ev["pairwise"]["recall"]}))
PY
      # Measured and evaluated: the outputs (~3.5 GB at 10M records) are not kept.
      rm -rf "$out"
    done
  done
done
BUILD="$(cat "$BIN.build" 2>/dev/null || echo "the \`${PROFILE:-dist}\` profile")" \
  python3 - "$rows" <<'PY'
import json, os, re, statistics, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["persons"], r["threads"]), []).append(r)
order = ["load", "standardise", "block", "compare", "train", "score", "cluster", "master", "golden", "write"]
lines = ["| records | threads | candidate pairs | " + " | ".join(order) + " | total s | peak RSS MB | compare+score pairs/s/core | precision | recall | F1 |",
         "|" + "---:|" * (len(order) + 9)]
for (p, t), rs in sorted(groups.items()):
    med = lambda f: statistics.median(f(r) for r in rs)
    st = {s: med(lambda r: r["stages"].get(s, 0.0)) for s in order}
    cs = st["compare"] + st["score"]
    pps = rs[0]["pairs"] / cs / t if cs > 0 else 0
    lines.append(f"| {rs[0]['records']:,} | {t} | {rs[0]['pairs']:,} | " + " | ".join(f"{st[s]:.2f}" for s in order)
                 + f" | **{med(lambda r: r['total']):.2f}** | {med(lambda r: r['rss_mb']):.0f} | {pps/1e6:.2f} M | {rs[0]['precision']:.4f} | {rs[0]['recall']:.4f} | {rs[0]['f1']:.4f} |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
section = f"""<!-- bench:begin -->
## Whole runs (`scripts/bench.sh`)

Generated persons (`yiku generate --persons N --enterprises 0 --seed 7`, about two records per
person across departments), the person preset, `yiku run` built with {os.environ['BUILD']}. Seconds per stage
are medians of {max(len(g) for g in groups.values())} runs (one run for the largest sizes) from each run's `run.json`; peak RSS from `/usr/bin/time -v`; F1 from
`yiku eval` against the generated truth. In memory, the pairs' outputs run beside master ids and golden
records, so the stages' seconds add up to more than the total.

{chr(10).join(lines)}

Machine: {nproc} cores ({cpu}), {mem} GB memory; load average at the end {' '.join(load)} (shared machine:
compare ratios within one run). Commit {commit}, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.
Command: `SIZES="{' '.join(str(p) for p in sorted({p for p, _ in groups}))}" scripts/bench.sh`.
<!-- bench:end -->"""
try:
    text = open("BENCHMARKS.md").read()
except FileNotFoundError:
    text = "# Benchmarks\n"
if "<!-- bench:begin -->" in text:
    text = re.sub(r"<!-- bench:begin -->.*?<!-- bench:end -->", lambda _: section, text, flags=re.S)
else:
    text = text.replace("# Benchmarks\n", "# Benchmarks\n\n" + section + "\n", 1) if text.startswith("# Benchmarks") else "# Benchmarks\n\n" + section + "\n\n" + text
open("BENCHMARKS.md", "w").write(text)
print(section)
PY
