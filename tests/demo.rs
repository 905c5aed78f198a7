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
