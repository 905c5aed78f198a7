#!/usr/bin/env python3
"""Where a run's memory goes, stage by stage.

    scripts/memory-timeline.py OUT.txt target/dist/yiku run data/bench-p5000000/job.toml --out /tmp/o

Runs the command, samples its anonymous resident memory (RssAnon: what the process holds of
its own, not mapped file pages) every 0.2 s, and writes to OUT.txt every sample and every line
the command printed on stderr (yiku's stage lines: name, seconds, CPU seconds), each with the
seconds since the start. On stdout: one line per stage with the highest RssAnon seen while it
ran, then the wall time and the overall peak. Compare two binaries by interleaving their runs
(A B A B A B) and quoting medians: the machine is shared and noisy.
"""

import subprocess
import sys
import threading
import time


def rss_anon_mb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_path, cmd = sys.argv[1], sys.argv[2:]
    start = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    events: list[tuple[float, str, str]] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            events.append((time.time() - start, "LOG", line.rstrip()))

    reader = threading.Thread(target=read_stderr)
    reader.start()
    while proc.poll() is None:
        mb = rss_anon_mb(proc.pid)
        if mb is not None:
            events.append((time.time() - start, "RSS", str(mb)))
        time.sleep(0.2)
    reader.join()
    wall = time.time() - start
    events.sort(key=lambda e: e[0])
    peak, since_last = 0, 0
    with open(out_path, "w") as out:
        for t, what, value in events:
            out.write(f"{t:8.2f} {what} {value}\n")
            if what == "RSS":
                peak = max(peak, int(value))
                since_last = max(since_last, int(value))
            elif "pairs from rule" not in value:
                print(f"{t:8.2f} s {since_last:6d} MB | {value.strip()}")
                since_last = 0
        out.write(f"wall {wall:.2f} peak_anon_mb {peak} rc {proc.returncode}\n")
    print(f"wall {wall:.2f} s, peak RssAnon {peak} MB, exit code {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
