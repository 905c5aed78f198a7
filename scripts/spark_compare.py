"""Compares two master indexes (a `yiku run` output and a Spark output) as partitions of
records: the same clusters, whatever the id strings. Exit 1 if they differ.

    python scripts/spark_compare.py SINGLE_MACHINE_OUT SPARK_OUT
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

Record = tuple[str, str, str]


def clusters(out: Path) -> tuple[set[frozenset[Record]], dict[Record, str]]:
    t = pq.read_table(out / "master_index.parquet", columns=["kind", "source", "record_id", "master_id"])
    members: dict[tuple[str, str], set[Record]] = defaultdict(set)
    ids: dict[Record, str] = {}
    for kind, source, rid, mid in zip(*(t.column(c).to_pylist() for c in t.column_names)):
        rec = (kind, source, rid)
        if rec in ids:
            raise SystemExit(f"{out}: record {rec} appears twice in the master index")
        ids[rec] = mid
        members[(kind, mid)].add(rec)
    return {frozenset(m) for m in members.values()}, ids


def main(a: str, b: str) -> int:
    (ca, ia), (cb, ib) = clusters(Path(a)), clusters(Path(b))
    print(f"  {a}: {len(ia)} records, {len(ca)} clusters")
    print(f"  {b}: {len(ib)} records, {len(cb)} clusters")
    ok = True
    if ia.keys() != ib.keys():
        only_a, only_b = ia.keys() - ib.keys(), ib.keys() - ia.keys()
        print(f"  records differ: {len(only_a)} only in the first, {len(only_b)} only in the second")
        ok = False
    if ca != cb:
        print(f"  clusters differ: {len(ca - cb)} only in the first, {len(cb - ca)} only in the second")
        for c in list(ca - cb)[:3]:
            print(f"    e.g. {sorted(c)[:4]}")
        ok = False
    same_ids = sum(1 for r, m in ia.items() if ib.get(r) == m)
    print(f"  master id strings equal for {same_ids} of {len(ia)} records")
    pa_, pb = (json.loads((Path(x) / "run.json").read_text()) for x in (a, b))
    for ka, kb in zip(pa_["kinds"], pb["kinds"]):
        print(
            f"  {ka['kind']}: candidate pairs {ka['candidate_pairs']} vs {kb['candidate_pairs']}, "
            f"matches {ka['matches']} vs {kb['matches']}, clusters {ka['clusters']} vs {kb['clusters']}"
        )
    print("  SAME master index (as partitions)" if ok else "  DIFFERENT master index")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
