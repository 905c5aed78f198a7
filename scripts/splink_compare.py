#!/usr/bin/env python3
"""Deduplicate yiku's standardised person records with Splink (DuckDB backend).

This is the Splink half of the side-by-side benchmark driven by
`scripts/compare-splink.sh`. It reads the `standardised_person.arrow` that
every `yiku run` writes, builds a Splink model that mirrors
yiku's person model as closely as Splink's comparison library allows, and
writes the resulting clusters as `master_index.parquet` (columns `source,
record_id, master_id`) so that `yiku eval` can score them exactly as it
scores yiku's own output.

Fairness notes (also stated in BENCHMARKS.md):
  * Splink is given yiku's *standardised* columns (simplified Han names,
    pinyin keys, cleaned and upgraded ID numbers, normalised dates, phones
    and addresses). Splink has no Chinese standardisation of its own, so
    this keeps it from being penalised for that; it also means Splink's
    timing EXCLUDES standardisation, while yiku's includes everything from
    reading the departmental files to writing the master index.
  * The timing printed here covers Splink's own work only: reading the
    input Parquet, training, prediction, clustering and writing the
    clusters. Python start-up and imports are not included. Peak memory is
    measured from outside by the shell script with `/usr/bin/time -v`.
  * No parameter is tuned on the truth file. The recall given to the
    deterministic rule for the prior (lambda) is a stated guess, below.

Output: one line of JSON on stdout with the timings and counts.
"""

import argparse
import json
import os
import sys
import time

import duckdb
import pyarrow.ipc
import splink
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

# yiku's match threshold: pairs at or above this match probability are linked.
MATCH_THRESHOLD = 0.9

# Guessed recall of the deterministic rule "same valid ID number" used to
# estimate lambda, the probability that two random records match. About four
# in five records carry an ID number whose check digit passes, so roughly two
# thirds to three quarters of matching pairs should share one. This is a
# prior judgement, as a Splink user would make it, not a value read from the
# truth file.
ID_RULE_RECALL = 0.7


# yiku compares addresses by the Dice coefficient of their character bigrams.
# DuckDB has no such function, so each record's set of address bigrams is
# computed once at load time (column `address_bigrams`, NULL for addresses
# shorter than two characters), and a comparison level only intersects two
# lists. Addresses that are exact matches are caught by the level before.
ADDRESS_BIGRAMS_SQL = (
    "CASE WHEN length(address) >= 2 THEN"
    " list_distinct(list_transform(range(1, length(address)), lambda i: substr(address, i, 2)))"
    " END"
)


def address_dice_at_least(threshold: float) -> str:
    """SQL condition: bigram Dice of the two addresses >= threshold."""
    a, b = "address_bigrams_l", "address_bigrams_r"
    return f"2.0 * len(list_intersect({a}, {b})) >= {threshold} * (len({a}) + len({b}))"


def comparisons():
    """The six comparisons of yiku's person model, level by level.

    Every comparison starts with a null level (either side missing: no
    evidence either way) and ends with an else level, as in yiku.
    """
    name = cl.CustomComparison(
        output_column_name="name",
        comparison_description="exact / same pinyin key / within one edit / else",
        comparison_levels=[
            cll.NullLevel("name"),
            # Exact name, with a term-frequency adjustment: sharing a rare
            # name is stronger evidence than sharing 王伟.
            cll.ExactMatchLevel("name", term_frequency_adjustments=True),
            # Homophones and pinyin/Han spellings of one name share this key.
            cll.ExactMatchLevel("name_pinyin"),
            cll.LevenshteinLevel("name", 1),
            cll.ElseLevel(),
        ],
    )
    id_number = cl.CustomComparison(
        output_column_name="id_number",
        comparison_description="exact / one digit off / two digits transposed / else",
        comparison_levels=[
            cll.NullLevel("id_number"),
            cll.ExactMatchLevel("id_number"),
            # One substitution (or insertion/deletion) away.
            cll.LevenshteinLevel("id_number", 1),
            # Damerau-Levenshtein 1 but not Levenshtein 1: an adjacent
            # transposition, since the level above took every single edit.
            # Such a pair is always at Levenshtein distance 2; testing that
            # first spares DuckDB's slower damerau_levenshtein on most pairs.
            cll.CustomLevel(
                "levenshtein(id_number_l, id_number_r) = 2"
                " AND damerau_levenshtein(id_number_l, id_number_r) = 1",
                label_for_charts="Two adjacent digits transposed",
            ),
            cll.ElseLevel(),
        ],
    )
    # Dates are ISO strings YYYY-MM-DD: month is characters 6-7, day 9-10.
    day_month_swapped = (
        "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4)"
        " AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2)"
        " AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)"
    )
    birth_date = cl.CustomComparison(
        output_column_name="birth_date",
        comparison_description="exact / day-month swapped / one edit / else",
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.CustomLevel(day_month_swapped, label_for_charts="Day and month swapped"),
            cll.LevenshteinLevel("birth_date", 1),
            cll.ElseLevel(),
        ],
    )
    gender = cl.ExactMatch("gender")
    phone = cl.CustomComparison(
        output_column_name="phone",
        comparison_description="exact / one edit / else",
        comparison_levels=[
            cll.NullLevel("phone"),
            cll.ExactMatchLevel("phone"),
            cll.LevenshteinLevel("phone", 1),
            cll.ElseLevel(),
        ],
    )
    address = cl.CustomComparison(
        output_column_name="address",
        comparison_description="exact / bigram Dice >= 0.8 / >= 0.55 / else",
        comparison_levels=[
            cll.NullLevel("address"),
            cll.ExactMatchLevel("address"),
            cll.CustomLevel(address_dice_at_least(0.8), label_for_charts="Bigram Dice >= 0.8"),
            cll.CustomLevel(address_dice_at_least(0.55), label_for_charts="Bigram Dice >= 0.55"),
            cll.ElseLevel(),
        ],
    )
    return [name, id_number, birth_date, gender, phone, address]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("standardised", help="yiku's standardised_person.arrow")
    parser.add_argument("out_dir", help="folder for master_index.parquet (created if missing)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=7, help="seed for u sampling")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    out_file = os.path.join(args.out_dir, "master_index.parquet")

    timings = {}
    start = time.perf_counter()
    lap = start

    def stage(name):
        nonlocal lap
        now = time.perf_counter()
        timings[name] = round(now - lap, 3)
        lap = now
        print(f"[splink] {name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)

    # --- Load: one DuckDB table of every person record, from all departments.
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    # yiku keeps its standardised records as an Arrow IPC file holding one record batch: hand it
    # to DuckDB in slices of 64k rows (zero-copy), which DuckDB scans on all its threads (one
    # batch would be read by one thread only).
    table = pyarrow.ipc.open_file(args.standardised).read_all()
    table = pyarrow.Table.from_batches(table.to_batches(max_chunksize=65536), table.schema)
    con.register("standardised", table)
    con.execute(
        f"""
        CREATE TABLE persons AS
        SELECT CAST(source AS VARCHAR) || '|' || record_id AS unique_id,
               CAST(source AS VARCHAR) AS source, record_id,
               name, name_pinyin, id_number, id_number_valid,
               birth_date, gender, phone, address,
               {ADDRESS_BIGRAMS_SQL} AS address_bigrams
        FROM standardised
        """
    )
    con.unregister("standardised")
    del table
    records = con.execute("SELECT count(*) FROM persons").fetchone()[0]
    stage("load")

    # --- The model: yiku's blocking rules (their union gives the candidate
    # pairs) and comparisons, over all records at once (dedupe_only: records
    # of one department may match each other as well as other departments').
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[
            block_on("id_number_valid"),
            block_on("birth_date", "name_pinyin"),
            block_on("phone"),
            block_on("name", "address"),
        ],
        comparisons=comparisons(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker("persons", settings, db_api=DuckDBAPI(connection=con))

    # --- Training: lambda from a deterministic rule, u from random pairs,
    # then m by EM on blocking rules. An EM session cannot learn the
    # comparisons on its own blocking columns, so two sessions together cover
    # all six comparisons (yiku runs one session per blocking rule).
    linker.training.estimate_probability_two_random_records_match(
        [block_on("id_number_valid")], recall=ID_RULE_RECALL
    )
    stage("train_lambda")
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=args.seed)
    stage("train_u")
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date", "name_pinyin"))
    stage("train_m_birth_date_name")
    # Blocking on `id_number` rather than `id_number_valid`: Splink decides
    # which comparisons a session must leave alone by the column names in the
    # rule, and would otherwise "learn" the id_number comparison from pairs
    # that agree on it by construction.
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("id_number"))
    stage("train_m_id_number")

    # --- Score the candidate pairs; only pairs at or above the match threshold
    # matter for clustering, so keep only those.
    predictions = linker.inference.predict(threshold_match_probability=MATCH_THRESHOLD)
    matches = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchone()[0]
    stage("predict")

    # --- Connected components of the match graph; records without any match
    # come out as clusters of one.
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=MATCH_THRESHOLD
    )
    stage("cluster")

    # --- Write the clusters in the shape `yiku eval` reads.
    con.execute(
        f"""
        COPY (
            SELECT p.source, p.record_id, CAST(c.cluster_id AS VARCHAR) AS master_id
            FROM {clusters.physical_name} c JOIN persons p USING (unique_id)
            ORDER BY p.source, p.record_id
        ) TO '{out_file.replace("'", "''")}' (FORMAT parquet)
        """
    )
    n_clusters = con.execute(f"SELECT count(DISTINCT cluster_id) FROM {clusters.physical_name}").fetchone()[0]
    stage("write")
    seconds = round(time.perf_counter() - start, 3)

    # The trained model, for inspection (outside the timed work).
    linker.misc.save_model_to_json(os.path.join(args.out_dir, "splink_model.json"), overwrite=True)

    result = {
        "tool": "splink",
        "splink_version": splink.__version__,
        "duckdb_version": duckdb.__version__,
        "records": records,
        "matches": matches,
        "clusters": n_clusters,
        "seconds": seconds,
        "stages": timings,
        "output": out_file,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
