#!/usr/bin/env bash
# Memory-bound benchmark: `yiku run` under a hard memory cap (a cgroup, as systemd's MemoryMax or
# a container limit would set), with the job's `memory_limit` at the cap, so that yiku maps its
# standardised records from disk instead of holding them; and, for contrast, the same run
# without `memory_limit` under the same cap. Writes the result into BENCHMARKS.md (between the
# memory markers).
#   scripts/bench-memory.sh                          # 500k persons (~1M records), cap 700MB
#   PERSONS=5000000 CAP=6GB scripts/bench-memory.sh  # ~10M records
# Needs root for the cgroup (cgroup v1 memory controller or cgroup v2 with `memory`); without
# one the runs are not capped and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PERSONS=${PERSONS:-500000}
CAP=${CAP:-700MB}
CONTRAST=${CONTRAST:-1}
command -v python3 >/dev/null || { echo "python3 is needed for the report" >&2; exit 2; }
BIN=target/bench/yiku-memory
scripts/build-bench-binary.sh "$BIN"
data="data/bench-p$PERSONS"
[ -f "$data/job.toml" ] || "$BIN" generate --persons "$PERSONS" --enterprises 0 --seed 7 --out "$data" >/dev/null
cap_bytes=$(python3 -c "
import re, sys
m = re.fullmatch(r'\s*([0-9.]+)\s*([KMGT]?)B?\s*', sys.argv[1].upper())
if not m: sys.exit('CAP must be a size such as 6GB, got ' + sys.argv[1])
print(int(float(m[1]) * 1000 ** ' KMGT'.index(m[2] or ' ')))" "$CAP")
# The job with memory_limit at the cap, beside the generated one (paths are relative to it).
sed "s/^\[job\]$/[job]\nmemory_limit = \"$CAP\"/" "$data/job.toml" > "$data/job-limit.toml"

# A cgroup capping memory at CAP; "" when none can be made.
group=""
if [ -d /sys/fs/cgroup/memory ] && mkdir -p /sys/fs/cgroup/memory/yiku-bench 2>/dev/null; then
  group=/sys/fs/cgroup/memory/yiku-bench
  echo "$cap_bytes" > "$group/memory.limit_in_bytes"
  limit_file="$group/memory.limit_in_bytes" peak_file="$group/memory.max_usage_in_bytes"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers \
  && mkdir -p /sys/fs/cgroup/yiku-bench 2>/dev/null; then
  group=/sys/fs/cgroup/yiku-bench
  echo "$cap_bytes" > "$group/memory.max"
  limit_file="$group/memory.max" peak_file="$group/memory.peak"
fi
[ -n "$group" ] || echo "no memory cgroup available: the runs are not capped" >&2

# run NAME JOB: one capped run; appends a JSON line (exit code, wall s, peak anonymous and
# resident MB sampled every 50 ms, the cgroup's peak usage) to the rows file.
rows=target/bench/memory-rows.jsonl
: > "$rows"
run() {
  local name=$1 job=$2 out="target/bench/memory-$1"
  rm -rf "$out"
  [ -z "$group" ] || echo 0 > "$peak_file" 2>/dev/null || true
  local start; start=$(date +%s.%N)
  if [ -n "$group" ]; then
    sh -c "echo \$\$ > $group/cgroup.procs && exec $BIN -q run $job --out $out" >/dev/null 2>"$out.err" &
  else
    "$BIN" -q run "$job" --out "$out" >/dev/null 2>"$out.err" &
  fi
  local pid=$! anon=0 rss=0 a r
  while kill -0 "$pid" 2>/dev/null; do
    read -r a r < <(awk '/RssAnon/{a=$2} /VmRSS/{r=$2} END{print a+0, r+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
    [ "${a:-0}" -gt "$anon" ] && anon=$a
    [ "${r:-0}" -gt "$rss" ] && rss=$r
    sleep 0.05
  done
  local code=0
  wait "$pid" || code=$?
  local wall; wall=$(echo "$(date +%s.%N) - $start" | bc)
  local peak=0
  [ -z "$group" ] || peak=$(cat "$peak_file" 2>/dev/null || echo 0)
  python3 - "$name" "$code" "$wall" "$anon" "$rss" "$peak" "$out" >> "$rows" <<'PY'
import json, os, sys
name, code, wall, anon, rss, peak, out = sys.argv[1:]
run = {}
if os.path.exists(os.path.join(out, "run.json")):
    run = json.load(open(os.path.join(out, "run.json")))
print(json.dumps({"name": name, "code": int(code), "wall": float(wall), "anon_mb": int(anon) / 1024,
                  "rss_mb": int(rss) / 1024, "cgroup_peak_mb": int(peak) / 2**20,
                  "memory": run.get("memory"), "records": run.get("records_in")}))
PY
  # Measured: the outputs (several GB at 10M records) are not kept; the log is.
  rm -rf "$out"
}
run limit "$data/job-limit.toml"
[ "$CONTRAST" = 0 ] || run plain "$data/job.toml"
[ -z "$group" ] || rmdir "$group" 2>/dev/null || true

python3 - "$rows" "$CAP" "$PERSONS" "${group:+capped}" <<'PY'
import json, re, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
cap, persons, capped = sys.argv[2], sys.argv[3], sys.argv[4] == "capped"
def outcome(r):
    if r["code"] == 0:
        return "completed"
    if r["code"] in (137, 9):
        return "killed by the kernel (out of memory)"
    return f"failed (exit {r['code']})"
lines = ["| job | memory mode | outcome | wall s | peak anonymous MB | peak resident MB | cgroup peak MB |",
         "|---|---|---|---:|---:|---:|---:|"]
for r in rows:
    job = f"`memory_limit = \"{cap}\"`" if r["name"] == "limit" else "no `memory_limit`"
    lines.append(f"| {job} | {r['memory'] or '—'} | {outcome(r)} | {r['wall']:.1f} | {r['anon_mb']:,.0f} | "
                 f"{r['rss_mb']:,.0f} | {r['cgroup_peak_mb']:,.0f} |")
records = next((r["records"] for r in rows if r["records"]), None)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cap_note = (f"under a memory cgroup capped at {cap}" if capped
            else "**not capped** (no memory cgroup could be made on this machine)")
section = f"""<!-- memory:begin -->
## Runs under a memory cap (`scripts/bench-memory.sh`)

{f'{records:,}' if records else '?'} generated person records (`--persons {persons}`), 2 threads, {cap_note}.
With `memory_limit` at the cap, yiku estimates that holding the records would not fit and maps
them from its state file instead (`run.json`: `"memory": "mapped"`; `"spilled"` when even that
would not fit: every standardised column is then written to disk and mapped back as it is made):
the kernel can page those columns out and read them again, so what the process needs of its own
is the anonymous memory.
Resident memory counts mapped file pages too; the cgroup's peak also counts the page cache of
the files written. Sampled every 50 ms.

{chr(10).join(lines)}

Commit {commit}, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.
Command: `PERSONS={persons} CAP={cap} scripts/bench-memory.sh`.
<!-- memory:end -->"""
text = open("BENCHMARKS.md").read()
if "<!-- memory:begin -->" in text:
    text = re.sub(r"<!-- memory:begin -->.*?<!-- memory:end -->", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open("BENCHMARKS.md", "w").write(text)
print(section)
PY
