"""Runs a yiku job on Apache Spark and writes the same master index as `yiku run`.

    spark-submit python/yiku_spark/job.py JOB.toml --out DIR [--model model.json]

The stages, per entity kind:

1. load: Spark reads every source (Parquet or CSV); `mapInArrow` turns its columns into
   text under canonical names; empty, undecodable and duplicate record ids go to quarantine.
2. standardise: `mapInArrow`, yiku's standardiser and blocking-key hashes per partition.
3. block: block sizes by a Spark aggregate; blocks above `max_block_size` are skipped and
   their keys zeroed, as the single-machine block stage does.
4. compare + score: the records are shuffled by (rule, bucket of the rule's key), and each
   block group is compared and scored in yiku's code (`groupBy(...).applyInArrow`); a pair
   belongs to the first rule that finds it. Term frequencies are whole-column counts (a Spark
   aggregate broadcast to the executors), so the scores equal the single-machine ones.
5. train (unless `--model`): level patterns summed by Spark, u from a sample of records on the
   driver (all of them up to `--train-sample`, which gives the single-machine model), EM on
   the driver.
6. cluster + master index: the edges at or above the match probability are collected to the
   driver and clustered with yiku's union-find and must-not-link rule.
7. write: master_index, pairs, review, quarantine (Parquet folders), model.json, run.json,
   into a temporary folder beside the output folder that replaces it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Callable, Iterator, Optional

import pyarrow as pa
from pyspark import Broadcast
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from yiku_spark import _native

SOURCE = "_source"
RID = "_rid"
RAW = "_raw"
REJECT = "_reject"
ROW = "_row"

# Per Python worker: parsed jobs and scorers, built once and reused by every batch.
_JOBS: dict[str, _native.Job] = {}
_SCORERS: dict[str, _native.Scorer] = {}


def worker_job(text: str, path: str) -> _native.Job:
    """The job parsed once per Python worker process."""
    key = f"{path}\0{text}"
    job = _JOBS.get(key)
    if job is None:
        job = _native.Job(text, path)
        _JOBS[key] = job
    return job


@dataclass(frozen=True)
class JobText:
    """What an executor needs to rebuild the job: the file's text and where it lives."""

    text: str
    path: str

    def job(self) -> _native.Job:
        return worker_job(self.text, self.path)


@dataclass
class Timer:
    """Seconds per (stage, kind), for run.json."""

    stages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, stage: str, kind: str, start: float, count: int) -> None:
        secs = time.perf_counter() - start
        self.stages.append({"stage": stage, "kind": kind, "seconds": secs, "count": count})
        print(f"yiku-spark: {kind:>10} {stage:<26} {secs:8.2f} s  {count:>12}", flush=True)


def key_column(rule: int) -> str:
    return f"_k{rule}"


def spark_schema(schema: pa.Schema) -> StructType:
    return from_arrow_schema(schema)


def quoted(name: str) -> Column:
    return F.col(f"`{name}`")


def empty_table(names: list[str], types: list[pa.DataType]) -> pa.Table:
    return pa.Table.from_arrays([pa.array([], type=t) for t in types], names=names)


# ---------------------------------------------------------------- stage 1: load + quarantine


def read_source(spark: SparkSession, src: dict[str, Any]) -> DataFrame:
    """A source's record-id and mapped columns, plus `_row` (1-based row in its file)."""
    path: str = src["path"]
    wanted = [src["record_id"], *src["columns"]]
    fmt: str = src["format"]
    if fmt == "parquet":
        df = spark.read.parquet(path)
        row: Column = F.col("_metadata.row_index") + F.lit(1)
    elif fmt == "csv":
        df = spark.read.option("header", True).option("encoding", "UTF-8").csv(path)
        row = F.lit(None).cast("long")
    else:
        raise SystemExit(
            f"source `{src['name']}`: format {fmt} is not readable on Spark; "
            "convert it to Parquet (or CSV)"
        )
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise SystemExit(
            f"source `{src['name']}` ({path}): column `{missing[0]}` not found; "
            f"columns are: {', '.join(df.columns)}"
        )
    return df.select(*[quoted(c) for c in dict.fromkeys(wanted)], row.alias(ROW))


def prepare_fn(
    jt: JobText, source: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def prepare(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        job = jt.job()
        for batch in batches:
            out = job.prepare_source(source, batch)
            yield pa.RecordBatch.from_arrays(
                [*out.columns, batch.column(ROW)], names=[*out.schema.names, ROW]
            )

    return prepare


def prepared_schema(job: _native.Job, src: dict[str, Any]) -> StructType:
    names = [src["record_id"], *src["columns"]]
    names = list(dict.fromkeys(names))
    empty = pa.RecordBatch.from_arrays([pa.array([], pa.string()) for _ in names], names=names)
    out = job.prepare_source(src["name"], empty)
    return spark_schema(out.schema.append(pa.field(ROW, pa.int64())))


def load_kind(
    spark: SparkSession, job: _native.Job, jt: JobText, kind: dict[str, Any], srcs: list[dict[str, Any]]
) -> tuple[DataFrame, DataFrame]:
    """The kind's usable records (`_source`, `_rid`, fields) and its quarantined rows."""
    prepared: list[DataFrame] = []
    quarantine: list[DataFrame] = []
    for src in srcs:
        df = read_source(spark, src)
        p = df.mapInArrow(prepare_fn(jt, src["name"]), prepared_schema(job, src))
        p = p.withColumn("_source_name", F.lit(src["name"]))
        empty_reason = f"empty record id (column `{src['record_id']}`)"
        p = p.withColumn(
            REJECT,
            F.when(F.col(REJECT).isNotNull(), F.col(REJECT)).when(
                F.col(RID).isNull(), F.lit(empty_reason)
            ),
        )
        prepared.append(p)
    allp = reduce(lambda a, b: a.unionByName(b), prepared)
    usable = allp.where(F.col(REJECT).isNull())
    # Among rows with one record id, the one with the smallest raw text is kept (load order).
    w = Window.partitionBy(SOURCE, RID).orderBy(RAW, ROW)
    ranked = usable.withColumn("_rank", F.row_number().over(w))
    quarantine.append(
        allp.where(F.col(REJECT).isNotNull()).select(
            F.col("_source_name").alias("source"),
            F.col(ROW).alias("row"),
            F.lit(None).cast("string").alias("record_id"),
            F.col(REJECT).alias("reason"),
            F.col(RAW).alias("raw"),
        )
    )
    quarantine.append(
        ranked.where(F.col("_rank") > 1).select(
            F.col("_source_name").alias("source"),
            F.col(ROW).alias("row"),
            F.col(RID).alias("record_id"),
            F.concat(F.lit("duplicate record id `"), F.col(RID), F.lit("` in this source")).alias(
                "reason"
            ),
            F.col(RAW).alias("raw"),
        )
    )
    records = ranked.where(F.col("_rank") == 1).select(
        SOURCE, RID, *[quoted(f) for f in kind["fields"]]
    )
    return records, reduce(lambda a, b: a.unionByName(b), quarantine)


# ------------------------------------------------------------------ stage 2: standardise


def standardise_fn(
    jt: JobText, kind: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def standardise(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        job = jt.job()
        for batch in batches:
            out, _stats = job.standardise(kind, batch)
            yield out

    return standardise


def standardised_schema(job: _native.Job, kind: dict[str, Any]) -> StructType:
    names = [SOURCE, RID, *kind["fields"]]
    types = [pa.int32()] + [pa.string()] * (len(names) - 1)
    empty = pa.RecordBatch.from_arrays([pa.array([], t) for t in types], names=names)
    out, _ = job.standardise(kind["kind"], empty)
    return spark_schema(out.schema)


# ------------------------------------------------------------------------ stage 3: block


@dataclass
class BlockStats:
    rule: str
    blocks: int
    largest_block: int
    skipped: list[dict[str, Any]]
    pairs: int = 0


def block_sizes(
    std: DataFrame, kind: dict[str, Any]
) -> tuple[DataFrame, list[BlockStats]]:
    """Counts blocks per rule, skips those above the cap (their keys become 0), as the block
    stage does: a pair of a skipped block is left to the later rules."""
    rules: list[list[str]] = kind["blocking"]
    cap: int = kind["max_block_size"]
    keyed = reduce(
        lambda a, b: a.unionByName(b),
        [
            std.where(F.col(key_column(r)) != 0).select(
                F.lit(r).alias("_rule"), F.col(key_column(r)).alias("_key")
            )
            for r in range(len(rules))
        ],
    )
    sizes = keyed.groupBy("_rule", "_key").count().persist()
    per_rule = {
        row["_rule"]: row
        for row in sizes.groupBy("_rule")
        .agg(
            F.sum(F.when((F.col("count") >= 2) & (F.col("count") <= cap), 1).otherwise(0)).alias(
                "blocks"
            ),
            F.max("count").alias("largest"),
        )
        .collect()
    }
    skipped = sizes.where(F.col("count") > cap).collect()
    sizes.unpersist()
    stats: list[BlockStats] = []
    for r, rule in enumerate(rules):
        row = per_rule.get(r)
        mine = [s for s in skipped if s["_rule"] == r]
        masked: list[dict[str, Any]] = []
        for s in sorted(mine, key=lambda s: -s["count"]):
            first = std.where(F.col(key_column(r)) == s["_key"]).select(*[quoted(c) for c in rule]).first()
            key = "+".join(_native.mask(str(first[c])) for c in rule) if first else "?"
            n = int(s["count"])
            masked.append(
                {"rule": "+".join(rule), "key": key, "records": n, "pairs": n * (n - 1) // 2}
            )
        stats.append(
            BlockStats(
                rule="+".join(rule),
                blocks=int(row["blocks"] or 0) if row else 0,
                largest_block=int(row["largest"] or 0) if row else 0,
                skipped=masked,
            )
        )
        if mine:
            keys = [s["_key"] for s in mine]
            k = key_column(r)
            std = std.withColumn(k, F.when(F.col(k).isin(keys), F.lit(0).cast("long")).otherwise(F.col(k)))
    return std, stats


# ------------------------------------------------------- stages 4-5: compare, score, train


def pair_groups(
    records: DataFrame,
    kind: dict[str, Any],
    buckets: int,
    fn: Callable[[tuple[Any, ...], pa.Table], pa.Table],
    schema: StructType,
) -> DataFrame:
    """Shuffles each record to one block group per rule whose key it has (the bucket of the
    key), and applies `fn` to every group."""
    parts = [
        records.where(F.col(key_column(r)) != 0).select(
            F.lit(r).alias("_rule"),
            F.pmod(F.col(key_column(r)), F.lit(buckets)).alias("_bucket"),
            *records.columns,
        )
        for r in range(len(kind["blocking"]))
    ]
    exploded = reduce(lambda a, b: a.unionByName(b), parts)
    return exploded.groupBy("_rule", "_bucket").applyInArrow(fn, schema)


def patterns_fn(jt: JobText, kind: str) -> Callable[[tuple[Any, ...], pa.Table], pa.Table]:
    def patterns(key: tuple[Any, ...], table: pa.Table) -> pa.Table:
        rule = int(key[0].as_py())
        out = jt.job().block_group(kind, rule, table, None)
        return pa.Table.from_batches([out])

    return patterns


def scored_fn(
    jt: JobText, kind: str, model_json: str, tfs: Broadcast[dict[str, pa.Table]]
) -> Callable[[tuple[Any, ...], pa.Table], pa.Table]:
    token = uuid.uuid4().hex

    def scored(key: tuple[Any, ...], table: pa.Table) -> pa.Table:
        job = jt.job()
        scorer = _SCORERS.get(token)
        if scorer is None:
            scorer = job.scorer(kind, model_json, tfs.value)
            _SCORERS[token] = scorer
        rule = int(key[0].as_py())
        out = job.block_group(kind, rule, table, scorer)
        return pa.Table.from_batches([out])

    return scored


def term_frequencies(std: DataFrame, fields: list[str]) -> dict[str, pa.Table]:
    """Whole-column value counts of the comparisons that use term frequencies."""
    out: dict[str, pa.Table] = {}
    for f in fields:
        t = (
            std.where(quoted(f).isNotNull())
            .groupBy(quoted(f).alias("value"))
            .agg(F.count("*").alias("count"))
            .toArrow()
        )
        out[f] = t.select(["value", "count"]).cast(
            pa.schema([pa.field("value", pa.string()), pa.field("count", pa.int64())])
        )
    return out


# -------------------------------------------------------------------------------- output


class Fs:
    """Files through Hadoop's FileSystem, so the output can be local, HDFS or S3."""

    def __init__(self, spark: SparkSession) -> None:
        self.jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _path(self, path: str) -> tuple[Any, Any]:
        p = self.jvm.org.apache.hadoop.fs.Path(path)
        return p, p.getFileSystem(self.conf)

    def read_text(self, path: str) -> str:
        p, fs = self._path(path)
        stream = fs.open(p)
        try:
            data = self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    def write_text(self, path: str, text: str) -> None:
        p, fs = self._path(path)
        stream = fs.create(p, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def exists(self, path: str) -> bool:
        p, fs = self._path(path)
        return bool(fs.exists(p))

    def delete(self, path: str) -> None:
        p, fs = self._path(path)
        if fs.exists(p):
            fs.delete(p, True)

    def rename(self, src: str, dst: str) -> None:
        s, fs = self._path(src)
        d, _ = self._path(dst)
        if not fs.rename(s, d):
            raise SystemExit(f"could not move {src} to {dst}")

    def qualify(self, path: str) -> str:
        p, fs = self._path(path)
        return str(fs.makeQualified(p).toString())


def names_of(values: list[str], index: Column) -> Column:
    """`values[index]` as a Spark column."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), index + F.lit(1))


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="job.py", description="Run a yiku job on Apache Spark (spark-submit job.py JOB.toml)"
    )
    ap.add_argument("job", help="the job file (the same as for `yiku run`)")
    ap.add_argument("--out", help="output folder (default: the job's output)")
    ap.add_argument("--model", help="reuse this model.json instead of training")
    ap.add_argument(
        "--block-groups",
        type=int,
        default=0,
        help="buckets per blocking rule for the compare shuffle (default: shuffle partitions)",
    )
    ap.add_argument(
        "--train-sample",
        type=int,
        default=2_000_000,
        help="records sampled to the driver for u when training (all if fewer)",
    )
    return ap.parse_args(argv)


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    timer = Timer()
    fs = Fs(spark)
    job_path = args.job if "://" in args.job else os.path.abspath(args.job)
    try:
        text = fs.read_text(job_path)
    except Exception as e:  # noqa: BLE001 - py4j raises its own types
        raise SystemExit(f"cannot read the job file {args.job}: {e}") from None
    try:
        job = _native.Job(text, job_path)
    except ValueError as e:
        raise SystemExit(f"{args.job}: {e}") from None
    jt = JobText(text, job_path)
    info: dict[str, Any] = json.loads(job.describe())
    out = args.out or info["output"]
    out = fs.qualify(out)
    tmp = f"{out}.spark-tmp-{uuid.uuid4().hex[:8]}"
    buckets = args.block_groups or int(spark.conf.get("spark.sql.shuffle.partitions") or "8")

    saved: dict[str, str] = {}
    if args.model:
        try:
            mf = json.loads(fs.read_text(args.model if "://" in args.model else os.path.abspath(args.model)))
            saved = {m["kind"]: json.dumps(m) for m in mf["models"]}
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{args.model} is not a yiku model.json: {e}") from None

    models: list[Any] = []
    kinds_summary: list[dict[str, Any]] = []
    sources_summary: list[dict[str, Any]] = []
    quarantines: list[DataFrame] = []
    pairs_out: list[DataFrame] = []
    masters: list[pa.Table] = []
    level_fields: list[str] = []
    for k in info["kinds"]:
        for f in k["comparisons"]:
            if f not in level_fields:
                level_fields.append(f)

    for kind in info["kinds"]:
        kname: str = kind["kind"]
        srcs = [s for s in info["sources"] if s["kind"] == kname]
        t0 = time.perf_counter()
        records, quarantine = load_kind(spark, job, jt, kind, srcs)
        quarantine = quarantine.persist()
        quarantines.append(quarantine)
        std = records.mapInArrow(standardise_fn(jt, kname), standardised_schema(job, kind))
        std = std.persist()
        n = std.count()
        q_by_source = {r["source"]: r["count"] for r in quarantine.groupBy("source").count().collect()}
        rec_by_source = {r[SOURCE]: r["count"] for r in std.groupBy(SOURCE).count().collect()}
        for i, s in enumerate(kind["sources"]):
            sources_summary.append(
                {
                    "source": s,
                    "kind": kname,
                    "records": rec_by_source.get(i, 0),
                    "quarantined": q_by_source.get(s, 0),
                }
            )
        timer.add("load + standardise", kname, t0, n)

        t0 = time.perf_counter()
        std, block_stats = block_sizes(std, kind)
        keys = [key_column(r) for r in range(len(kind["blocking"]))]
        narrow = std.select(SOURCE, RID, *keys, *[quoted(c) for c in kind["pair_columns"]])
        timer.add("block sizes", kname, t0, sum(b.blocks for b in block_stats))

        t0 = time.perf_counter()
        tfs = term_frequencies(std, kind["term_frequency"])
        timer.add("term frequencies", kname, t0, sum(t.num_rows for t in tfs.values()))

        model_json = saved.get(kname)
        if model_json is None:
            t0 = time.perf_counter()
            pats = (
                pair_groups(
                    narrow,
                    kind,
                    buckets,
                    patterns_fn(jt, kname),
                    StructType.fromJson(
                        {
                            "type": "struct",
                            "fields": [
                                {"name": c, "type": "long", "nullable": False, "metadata": {}}
                                for c in ("levels", "agree", "count")
                            ],
                        }
                    ),
                )
                .groupBy("levels", "agree")
                .agg(F.sum("count").alias("count"))
                .toArrow()
            )
            sample = std.select(SOURCE, RID, *[quoted(c) for c in kind["pair_columns"]])
            if n > args.train_sample:
                sample = sample.sample(fraction=args.train_sample / n, seed=int(info["seed"]) % (2**31))
            model_json = job.train(kname, sample.toArrow(), pats)
            timer.add("train (patterns + EM)", kname, t0, int(sum(pats.column("count").to_pylist())))
        model = json.loads(model_json)
        models.append(model)

        t0 = time.perf_counter()
        bc = spark.sparkContext.broadcast(tfs)
        scorer = job.scorer(kname, model_json, tfs)
        empty_group = pa.Table.from_batches(
            [
                pa.RecordBatch.from_arrays(
                    [pa.array([], pa.int32()), pa.array([], pa.string())]
                    + [pa.array([], pa.int64()) for _ in keys]
                    + [pa.array([], pa.string()) for _ in kind["pair_columns"]],
                    names=[SOURCE, RID, *keys, *kind["pair_columns"]],
                )
            ]
        )
        pair_schema = spark_schema(job.block_group(kname, 0, empty_group, scorer).schema)
        pairs = pair_groups(narrow, kind, buckets, scored_fn(jt, kname, model_json, bc), pair_schema)
        pairs = pairs.persist()
        by_rule = {r["rule"]: r["count"] for r in pairs.groupBy("rule").count().collect()}
        for r, b in enumerate(block_stats):
            b.pairs = int(by_rule.get(r, 0))
        candidate_pairs = sum(b.pairs for b in block_stats)
        timer.add("block + compare + score", kname, t0, candidate_pairs)

        t0 = time.perf_counter()
        thr = scorer.match_probability
        edges = (
            pairs.where(F.col("match_probability") >= F.lit(thr))
            .select("source_l", "rid_l", "source_r", "rid_r", "match_weight")
            .toArrow()
        )
        recs = std.select(SOURCE, RID, *[quoted(c) for c in kind["must_not_link"]]).toArrow()
        master, counts_json = job.cluster_master(kname, recs, edges)
        counts = json.loads(counts_json)
        masters.append(pa.Table.from_batches([master]))
        timer.add("cluster + master index (driver)", kname, t0, int(counts["edges"]))

        srcs_sorted: list[str] = kind["sources"]
        prob = F.col("match_probability")
        rows = pairs.select(
            F.lit(kname).alias("kind"),
            names_of(srcs_sorted, F.col("source_l")).alias("source_l"),
            F.col("rid_l").alias("record_id_l"),
            names_of(srcs_sorted, F.col("source_r")).alias("source_r"),
            F.col("rid_r").alias("record_id_r"),
            names_of(kind["rule_names"], F.col("rule")).alias("blocking_rule"),
            "match_weight",
            "match_probability",
            *[
                (F.col(f"level_{f}") if f in kind["comparisons"] else F.lit(None).cast("byte")).alias(
                    f"level_{f}"
                )
                for f in level_fields
            ],
        )
        review_n = pairs.where((prob >= F.lit(scorer.review_probability)) & (prob < F.lit(thr))).count()
        pairs_out.append(
            rows.withColumn(
                "_review",
                (prob >= F.lit(scorer.review_probability)) & (prob < F.lit(thr)),
            )
        )
        kinds_summary.append(
            {
                "kind": kname,
                "records": n,
                "candidate_pairs": candidate_pairs,
                "blocking": [b.__dict__ for b in block_stats],
                "matches": int(counts["edges"]),
                "review_pairs": review_n,
                "clusters": int(counts["clusters"]),
                "must_not_link_conflicts": int(counts["must_not_link_conflicts"]),
                "cut_edges": int(counts["cut_edges"]),
                "model_reused": kname in saved,
                "lambda": model.get("lambda"),
            }
        )

    t0 = time.perf_counter()
    master_all = pa.concat_tables(masters).cast(
        pa.schema(
            [
                ("kind", pa.string()),
                ("source", pa.string()),
                ("record_id", pa.string()),
                ("master_id", pa.string()),
                ("cluster_size", pa.int64()),
            ]
        )
    )
    spark.createDataFrame(master_all).coalesce(1).write.parquet(f"{tmp}/master_index.parquet")
    allpairs = reduce(lambda a, b: a.unionByName(b), pairs_out)
    allpairs.drop("_review").write.parquet(f"{tmp}/pairs.parquet")
    allpairs.where(F.col("_review")).drop("_review").withColumn(
        "decision", F.lit(None).cast("string")
    ).write.parquet(f"{tmp}/review.parquet")
    quarantine_all = reduce(lambda a, b: a.unionByName(b), quarantines)
    quarantined = quarantine_all.count()
    quarantine_all.orderBy("source", "row").coalesce(1).write.parquet(f"{tmp}/quarantine.parquet")
    fs.write_text(
        f"{tmp}/model.json",
        json.dumps(
            {"yiku_version": _native.version(), "run_id": "R000001", "models": models},
            ensure_ascii=False,
            indent=2,
        ),
    )
    records_in = sum(k["records"] for k in kinds_summary)
    in_master = master_all.num_rows
    timer.add("write outputs", "all", t0, in_master)
    summary: dict[str, Any] = {
        "yiku_version": _native.version(),
        "engine": f"spark {spark.version} ({spark.sparkContext.master})",
        "job": info["name"],
        "run": 1,
        "run_id": "R000001",
        "model": args.model or "trained in this run (model.json)",
        "block_groups": buckets,
        "sources": sources_summary,
        "kinds": kinds_summary,
        "stages": timer.stages,
        "quarantined": quarantined,
        "records_in": records_in,
        "records_in_master_index": in_master,
        "conservation_ok": records_in == in_master,
        "total_seconds": time.perf_counter() - started,
    }
    fs.write_text(f"{tmp}/run.json", json.dumps(summary, ensure_ascii=False, indent=2))
    if not summary["conservation_ok"]:
        raise SystemExit(f"{records_in} records in but {in_master} in the master index; output left in {tmp}")
    fs.delete(out)
    fs.rename(tmp, out)
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = SparkSession.builder.appName(f"yiku {os.path.basename(args.job)}").getOrCreate()
    try:
        s = run(spark, args)
    finally:
        spark.stop()
    print(
        f"yiku-spark: {s['records_in']} records -> {sum(k['clusters'] for k in s['kinds'])} "
        f"master ids in {s['total_seconds']:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
