"""Figures for docs/spark-province-plan.md, measured on a generated job without Spark: bytes per
record that the compare shuffle moves, block-group sizes, pairs and edges per record, and the
driver's clustering time and memory per edge.

    target/spark-venv/bin/python scripts/spark_measure.py target/spark-test/100k/job.toml \
        target/spark-test/100k-local
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yiku_spark import _native


def main(job_path: str, local_out: str) -> None:
    path = str(Path(job_path).resolve())
    job = _native.Job(Path(path).read_text(), path)
    info = json.loads(job.describe())
    model = {m["kind"]: json.dumps(m) for m in json.loads((Path(local_out) / "model.json").read_text())["models"]}
    for kind in info["kinds"]:
        k = kind["kind"]
        batches = []
        for src in (s for s in info["sources"] if s["kind"] == k):
            cols = list(dict.fromkeys([src["record_id"], *src["columns"]]))
            t = pq.read_table(src["path"], columns=cols)
            for b in t.to_batches():
                p = job.prepare_source(src["name"], b)
                p = p.filter(pc.is_valid(p.column("_rid")))
                batches.append(p.select(["_source", "_rid", *kind["fields"]]))
        prepared = pa.Table.from_batches(batches).combine_chunks()
        t0 = time.perf_counter()
        std, _ = job.standardise(k, prepared.to_batches()[0])
        secs_std = time.perf_counter() - t0
        n = std.num_rows
        keys = [f"_k{r}" for r in range(len(kind["blocking"]))]
        narrow = pa.Table.from_batches([std]).select(["_source", "_rid", *keys, *kind["pair_columns"]])
        with_key = [int(pc.sum(pc.not_equal(narrow.column(c), 0)).as_py() or 0) for c in keys]
        bytes_per_row = narrow.nbytes / n
        full = pa.Table.from_batches([std])
        tfs = {}
        for f in kind["term_frequency"]:
            vc = pc.value_counts(pc.drop_null(full.column(f))).flatten()
            tfs[f] = pa.table({"value": vc[0].cast(pa.string()), "count": vc[1].cast(pa.int64())})
        scorer = job.scorer(k, model[k], tfs)
        t0 = time.perf_counter()
        pairs = pa.Table.from_batches([job.block_group(k, r, narrow, scorer) for r in range(len(keys))])
        secs_pairs = time.perf_counter() - t0
        edges = pairs.filter(pc.greater_equal(pairs.column("match_probability"), scorer.match_probability))
        edges = edges.select(["source_l", "rid_l", "source_r", "rid_r", "match_weight"])
        recs = full.select(["_source", "_rid", *kind["must_not_link"]])
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        _, counts = job.cluster_master(k, recs, edges)
        secs_cluster = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            json.dumps(
                {
                    "kind": k,
                    "records": n,
                    "rules": kind["rule_names"],
                    "records_with_key_per_rule": with_key,
                    "shuffled_rows": sum(with_key),
                    "shuffle_bytes_per_row_arrow": round(bytes_per_row, 1),
                    "shuffle_bytes_total_arrow": int(bytes_per_row * sum(with_key)),
                    "standardise_records_per_s_one_core": round(n / secs_std),
                    "candidate_pairs": pairs.num_rows,
                    "pair_bytes_per_row_arrow": round(pairs.nbytes / max(pairs.num_rows, 1), 1),
                    "compare_score_pairs_per_s_one_group": round(pairs.num_rows / secs_pairs),
                    "edges": edges.num_rows,
                    "edge_bytes_collected_per_edge": round(edges.nbytes / max(edges.num_rows, 1), 1),
                    "record_bytes_collected_per_record": round(recs.nbytes / n, 1),
                    "cluster_master_seconds": round(secs_cluster, 3),
                    "cluster_master_peak_rss_growth_mb": round((rss1 - rss0) / 1024, 1),
                    "counts": json.loads(counts),
                },
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
