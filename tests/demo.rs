//! The bundled demo: departmental persons and enterprises against their truth.

use crate::common::*;

#[test]
fn demo_reaches_f1_097_and_indexes_every_record_once() {
    let dir = root().join("datasets/demo");
    let out = scratch("demo");
    let s = run_job(&dir.join("job.toml"), &out, 2);
    assert!(s.conservation_ok);
    let mi = columns(&out.join("master_index.parquet"), &["source", "record_id"]);
    let mut keys: Vec<(String, String)> = mi[0]
        .iter()
        .zip(&mi[1])
        .map(|(a, b)| (a.clone().expect("source"), b.clone().expect("id")))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a record appears twice in the master index");
    let loaded: u64 = s.sources.iter().map(|x| x.records).sum();
    assert_eq!(n as u64, loaded);
    for kind in ["persons", "enterprises"] {
        let e = yiku::report::evaluate_run(&dir.join(format!("truth_{kind}.parquet")), &out)
            .expect("eval");
        assert_eq!(e.records_not_in_run, 0);
        assert!(
            e.pairwise.precision > 0.97,
            "{kind} precision {}",
            e.pairwise.precision
        );
        assert!(
            e.pairwise.recall > 0.97,
            "{kind} recall {}",
            e.pairwise.recall
        );
        assert!(e.pairwise.f1 > 0.97, "{kind} F1 {}", e.pairwise.f1);
    }
}

#[test]
fn demo_command_prints_where_outputs_are() {
    let out = scratch("demo-cmd");
    let (code, stdout, stderr) = yiku(&["-q", "demo", "--out", &out.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("outputs:") && stdout.contains("F1"),
        "{stdout}"
    );
    assert!(out.join("master_index.parquet").exists());
}

#[test]
fn a_saved_model_is_reused_and_gives_the_same_clusters() {
    let dir = root().join("datasets/demo");
    let (a, b) = (scratch("model-a"), scratch("model-b"));
    run_job(&dir.join("job.toml"), &a, 2);
    let plan = yiku::Plan::from_file(&dir.join("job.toml")).expect("plan");
    let opts = yiku::RunOptions {
        output: Some(b.clone()),
        model: Some(a.join("model.json")),
        quiet: true,
        ..Default::default()
    };
    let s = yiku::run(&plan, &opts).expect("run with saved model");
    assert!(s.kinds.iter().all(|k| k.model_reused));
    let x = std::fs::read(a.join("master_index.parquet")).expect("a");
    let y = std::fs::read(b.join("master_index.parquet")).expect("b");
    assert_eq!(x, y);
}

#[test]
fn a_rerun_with_previous_keeps_every_master_id() {
    let dir = root().join("datasets/demo");
    let (a, b) = (scratch("prev-a"), scratch("prev-b"));
    run_job(&dir.join("job.toml"), &a, 2);
    let plan = yiku::Plan::from_file(&dir.join("job.toml")).expect("plan");
    let opts = yiku::RunOptions {
        output: Some(b.clone()),
        previous: Some(a.clone()),
        quiet: true,
        ..Default::default()
    };
    let s = yiku::run(&plan, &opts).expect("second night");
    assert_eq!(s.run, 2);
    let x = columns(&a.join("master_index.parquet"), &["record_id", "master_id"]);
    let y = columns(&b.join("master_index.parquet"), &["record_id", "master_id"]);
    assert_eq!(x, y);
    let ev = columns(&b.join("events.parquet"), &["event"]);
    assert!(
        ev[0].is_empty(),
        "no changes expected: {:?}",
        &ev[0][..ev[0].len().min(5)]
    );
}

#[test]
fn golden_records_have_one_row_per_master_id_with_valid_ids() {
    let out = scratch("golden");
    run_job(&root().join("datasets/demo/job.toml"), &out, 2);
    let mi = columns(&out.join("master_index.parquet"), &["kind", "master_id"]);
    let mut persons: Vec<&String> = mi[0]
        .iter()
        .zip(&mi[1])
        .filter(|(k, _)| k.as_deref() == Some("person"))
        .filter_map(|(_, m)| m.as_ref())
        .collect();
    persons.sort();
    persons.dedup();
    let g = columns(
        &out.join("golden_persons.parquet"),
        &["master_id", "id_number", "id_number_source"],
    );
    assert_eq!(g[0].len(), persons.len());
    for (id, src) in g[1].iter().zip(&g[2]) {
        if let Some(id) = id {
            assert!(yiku::standardise::ident::id_is_valid(id), "{id}");
            assert!(src.is_some());
        }
    }
}

/// Writes a labels file: (source_l, record_id_l, source_r, record_id_r, decision).
/// Two pairs of a run's `pairs.parquet` for a clerk to decide: one the run merged (to split)
/// and one it sent for review (to join), each as (source_l, record_id_l, source_r, record_id_r).
pub fn pairs_to_decide(run: &std::path::Path) -> ([String; 4], [String; 4]) {
    let p = columns(
        &run.join("pairs.parquet"),
        &[
            "source_l",
            "record_id_l",
            "source_r",
            "record_id_r",
            "match_probability",
        ],
    );
    let prob = |i: usize| {
        p[4][i]
            .as_deref()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let pair =
        |i: usize| -> [String; 4] { std::array::from_fn(|c| p[c][i].clone().expect("cell")) };
    let merged = (0..p[0].len())
        .find(|&i| prob(i) > 0.99)
        .expect("a merged pair");
    let review = (0..p[0].len())
        .find(|&i| prob(i) < 0.5 && prob(i) > 0.01)
        .expect("a review pair");
    (pair(merged), pair(review))
}

pub fn write_labels(path: &std::path::Path, rows: &[[&str; 5]]) {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use std::sync::Arc;
    let col =
        |k: usize| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[k]))) as ArrayRef;
    let names = [
        "source_l",
        "record_id_l",
        "source_r",
        "record_id_r",
        "decision",
    ];
    let batch = RecordBatch::try_from_iter((0..5).map(|k| (names[k], col(k)))).expect("batch");
    let f = std::fs::File::create(path).expect("labels file");
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn clerks_decisions_change_the_clusters_they_should() {
    let dir = root().join("datasets/demo");
    let a = scratch("labels-a");
    run_job(&dir.join("job.toml"), &a, 2);
    let (m, r) = pairs_to_decide(&a);
    let labels = a.join("decisions.parquet");
    write_labels(
        &labels,
        &[
            [&m[0], &m[1], &m[2], &m[3], "non_match"],
            [&r[0], &r[1], &r[2], &r[3], "match"],
        ],
    );
    let b = scratch("labels-b");
    let plan = yiku::Plan::from_file(&dir.join("job.toml")).expect("plan");
    let opts = yiku::RunOptions {
        output: Some(b.clone()),
        labels: Some(labels),
        quiet: true,
        ..Default::default()
    };
    let s = yiku::run(&plan, &opts).expect("run with labels");
    assert_eq!(s.kinds.iter().map(|k| k.decisions_applied).sum::<u64>(), 2);
    let mi = columns(
        &b.join("master_index.parquet"),
        &["source", "record_id", "master_id"],
    );
    let id_of = |src: &str, rid: &str| {
        (0..mi[0].len())
            .find(|&i| mi[0][i].as_deref() == Some(src) && mi[1][i].as_deref() == Some(rid))
            .and_then(|i| mi[2][i].clone())
            .expect("record in master index")
    };
    assert_ne!(
        id_of(&m[0], &m[1]),
        id_of(&m[2], &m[3]),
        "non_match decision must split"
    );
    assert_eq!(
        id_of(&r[0], &r[1]),
        id_of(&r[2], &r[3]),
        "match decision must join"
    );
    // The decisions stay in effect: written to decisions.parquet, applied again by the next
    // run with --previous, and out of its review queue.
    let ledger = columns(&b.join("decisions.parquet"), &["decision", "decided_in"]);
    assert_eq!(ledger[0].len(), 2, "{ledger:?}");
    assert!(
        ledger[1].iter().all(|d| d.as_deref() == Some("R000001")),
        "{ledger:?}"
    );
    let c = scratch("labels-c");
    let opts = yiku::RunOptions {
        output: Some(c.clone()),
        previous: Some(b.clone()),
        quiet: true,
        ..Default::default()
    };
    let s = yiku::run(&plan, &opts).expect("run after the labelled one");
    assert_eq!(s.kinds.iter().map(|k| k.decisions_applied).sum::<u64>(), 2);
    let queue = columns(
        &c.join("review.parquet"),
        &["source_l", "record_id_l", "source_r", "record_id_r"],
    );
    let queued = |p: &[String; 4]| {
        (0..queue[0].len()).any(|i| {
            let row: Vec<&str> = queue
                .iter()
                .map(|q| q[i].as_deref().unwrap_or(""))
                .collect();
            row == [&p[0], &p[1], &p[2], &p[3]] || row == [&p[2], &p[3], &p[0], &p[1]]
        })
    };
    assert!(!queued(&r), "a decided pair left the review queue");
    // The queue shows what to decide from: the compared values of both records.
    let values = columns(&c.join("review.parquet"), &["name_l", "name_r"]);
    assert!(
        values[0]
            .iter()
            .zip(&values[1])
            .any(|(a, b)| a.is_some() && b.is_some()),
        "review rows carry both records' names"
    );
    assert_eq!(
        columns(&c.join("decisions.parquet"), &["decision"])[0].len(),
        2
    );
}
