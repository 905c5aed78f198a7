//! Bad input never crashes and never vanishes: a clear message and exit code 1, or a
//! quarantine row with its reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;

fn job(dir: &Path, source_block: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[job]\noutput = \"out\"\n{extra}\n[[sources]]\nname = \"civil\"\nkind = \"person\"\n{source_block}\n"
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).expect("write job");
    p
}

fn csv_source(path: &str) -> String {
    format!(
        "path = {path:?}\nrecord_id = \"编号\"\n[sources.columns]\n\"姓名\" = \"name\"\n\"身份证号\" = \"id_number\"\n"
    )
}

fn run_fails(job: &Path) -> String {
    let (code, _, err) = yiku(&["-q", "run", &job.display().to_string()]);
    assert_eq!(code, 1, "exit code; stderr: {err}");
    err
}

#[test]
fn missing_column_names_file_column_and_existing_columns() {
    let d = scratch("bad-col");
    std::fs::write(
        d.join("a.csv"),
        "编号,名字,身份证号\n1,张三,11010519491231002X\n",
    )
    .expect("csv");
    let err = run_fails(&job(&d, &csv_source("a.csv"), ""));
    assert!(
        err.contains("a.csv") && err.contains("姓名") && err.contains("名字"),
        "{err}"
    );
    // A mapped column twice in the header, a file separated by semicolons: each said so.
    std::fs::write(d.join("a.csv"), "编号,姓名,身份证号,姓名\n1,张三,,张叁\n").expect("csv");
    let err = run_fails(&job(&d, &csv_source("a.csv"), ""));
    assert!(
        err.contains("姓名") && err.contains("columns 2, 4"),
        "{err}"
    );
    std::fs::write(d.join("a.csv"), "编号;姓名;身份证号\n1;张三;\n").expect("csv");
    let err = run_fails(&job(&d, &csv_source("a.csv"), ""));
    assert!(err.contains("not separated by commas"), "{err}");
}

#[test]
fn empty_files_are_refused_clearly() {
    let d = scratch("bad-empty");
    std::fs::write(d.join("a.csv"), "").expect("csv");
    let err = run_fails(&job(&d, &csv_source("a.csv"), ""));
    assert!(err.contains("a.csv") && err.contains("empty"), "{err}");
    std::fs::write(d.join("b.parquet"), "").expect("parquet");
    let src = csv_source("b.parquet");
    let err = run_fails(&job(&d, &src, ""));
    assert!(
        err.contains("b.parquet") && err.contains("Parquet"),
        "{err}"
    );
}

#[test]
fn unreadable_path_is_named() {
    let d = scratch("bad-path");
    let err = run_fails(&job(&d, &csv_source("nowhere.csv"), ""));
    assert!(err.contains("nowhere.csv"), "{err}");
}

#[test]
fn unknown_or_misspelt_config_keys_are_named() {
    let d = scratch("bad-key");
    std::fs::write(
        d.join("a.csv"),
        "编号,姓名,身份证号\n1,张三,11010519491231002X\n",
    )
    .expect("csv");
    let err = run_fails(&job(&d, &csv_source("a.csv"), "outptu = \"x\""));
    assert!(err.contains("outptu"), "{err}");
    // A syntax error names its line and keeps toml's picture of it.
    let err = run_fails(&job(&d, &csv_source("a.csv"), "seed = = 3"));
    assert!(err.contains("line 3") && err.lines().count() > 2, "{err}");
    let err = run_fails(&job(
        &d,
        &csv_source("a.csv"),
        "[person]\nmatch_probability = 2.0",
    ));
    assert!(err.contains("person.match_probability"), "{err}");
    let err = run_fails(&job(
        &d,
        &csv_source("a.csv"),
        "[person]\nblocking = [[\"nmae\"]]",
    ));
    assert!(err.contains("nmae") && err.contains("name_pinyin"), "{err}");
}

#[test]
fn wrong_type_column_is_named() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let d = scratch("bad-type");
    let mut lb = ListBuilder::new(StringBuilder::new());
    lb.values().append_value("张三");
    lb.append(true);
    let batch = RecordBatch::try_from_iter(vec![
        ("编号", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
        ("姓名", Arc::new(lb.finish()) as ArrayRef),
        (
            "身份证号",
            Arc::new(StringArray::from(vec!["11010519491231002X"])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let f = std::fs::File::create(d.join("a.parquet")).expect("file");
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let err = run_fails(&job(&d, &csv_source("a.parquet"), ""));
    assert!(
        err.contains("姓名") && err.contains("cannot be read as text"),
        "{err}"
    );
}

/// A Parquet file whose ID numbers were exported as floats.
fn float_ids(d: &Path, ids: Vec<Option<f64>>) {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    let n = ids.len();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "编号",
            Arc::new(StringArray::from_iter_values(
                (1..=n).map(|i| i.to_string()),
            )) as ArrayRef,
        ),
        (
            "姓名",
            Arc::new(StringArray::from_iter_values((0..n).map(|_| "张三"))) as ArrayRef,
        ),
        ("身份证号", Arc::new(Float64Array::from(ids)) as ArrayRef),
    ])
    .expect("batch");
    let f = std::fs::File::create(d.join("a.parquet")).expect("file");
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn floats_past_two_to_the_53_quarantine_their_row_or_refuse_their_column() {
    let d = scratch("float-ids");
    // A few stray values: their rows are quarantined, whole floats read as integers.
    float_ids(&d, vec![Some(110105.0), Some(1.1e17), None, Some(12.5)]);
    let (code, _, err) = yiku(&[
        "-q",
        "run",
        &job(&d, &csv_source("a.parquet"), "").display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let q = columns(&d.join("out/quarantine.parquet"), &["record_id", "reason"]);
    assert_eq!(q[0], [Some("2".to_string())], "{q:?}");
    assert!(
        q[1][0]
            .as_deref()
            .is_some_and(|r| r.contains("身份证号") && r.contains("lost")),
        "{q:?}"
    );
    let mi = columns(&d.join("out/master_index.parquet"), &["record_id"]);
    assert_eq!(mi[0].len(), 3);
    // A column of them was exported wrongly: refused, naming it.
    float_ids(&d, vec![Some(1.1e17), Some(3.2e17), Some(5.0)]);
    let err = run_fails(&job(&d, &csv_source("a.parquet"), ""));
    assert!(
        err.contains("身份证号") && err.contains("export the column as text"),
        "{err}"
    );
}

#[test]
fn bad_rows_are_quarantined_and_every_other_record_is_indexed_once() {
    let d = scratch("bad-rows");
    let mut bytes =
        "编号,姓名,身份证号\n1,张三,11010519491231002X\n2,李四,\n,王五,\n2,李四四,\n3,赵六,1\n"
            .as_bytes()
            .to_vec();
    bytes.extend_from_slice(b"4,\xff\xfe,x\n5,a,b,c\n");
    std::fs::write(d.join("a.csv"), bytes).expect("csv");
    let (code, _, err) = yiku(&[
        "-q",
        "run",
        &job(&d, &csv_source("a.csv"), "").display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let q = columns(&d.join("out/quarantine.parquet"), &["reason"]);
    let reasons: Vec<String> = q[0].iter().flatten().cloned().collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for want in [
        "empty record id",
        "duplicate record id",
        "invalid UTF-8",
        "fields",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want} in {reasons:?}"
        );
    }
    let mi = columns(&d.join("out/master_index.parquet"), &["record_id"]);
    let mut ids: Vec<String> = mi[0].iter().flatten().cloned().collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(run["records_in"], run["records_in_master_index"]);
    assert_eq!(run["quarantined"], 4);
}

#[test]
fn a_failed_run_leaves_the_previous_output_untouched() {
    let d = scratch("bad-atomic");
    std::fs::write(
        d.join("a.csv"),
        "编号,姓名,身份证号\n1,张三,11010519491231002X\n",
    )
    .expect("csv");
    let j = job(&d, &csv_source("a.csv"), "");
    let (code, _, _) = yiku(&["-q", "run", &j.display().to_string()]);
    assert_eq!(code, 0);
    let before = std::fs::read(d.join("out/master_index.parquet")).expect("output");
    std::fs::write(d.join("a.csv"), "编号,名字\n1,张三\n").expect("csv");
    run_fails(&j);
    assert_eq!(
        std::fs::read(d.join("out/master_index.parquet")).expect("output"),
        before
    );
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn the_example_job_is_valid() {
    let plan =
        yiku::Plan::from_file(&root().join("jobs/persons.toml")).expect("example job parses");
    assert_eq!(plan.sources.len(), 2);
}

#[test]
fn a_bad_delta_is_named_and_bad_deletions_are_quarantined() {
    let d = scratch("bad-delta");
    std::fs::write(
        d.join("a.csv"),
        "编号,姓名,身份证号\n1,张三,11010519491231002X\n2,李四,\n",
    )
    .expect("csv");
    let j = job(&d, &csv_source("a.csv"), "").display().to_string();
    let prev = d.join("out").display().to_string();
    // Without --previous, clap refuses --delta.
    let (code, _, err) = yiku(&["-q", "run", &j, "--delta", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--previous"), "{err}");
    let (code, _, err) = yiku(&["-q", "run", &j]);
    assert_eq!(code, 0, "{err}");
    // A missing delta folder is named.
    let night2 = d.join("n2").display().to_string();
    let delta_run = |previous: &str, delta: &str| {
        yiku(&[
            "-q",
            "run",
            &j,
            "--previous",
            previous,
            "--delta",
            delta,
            "--out",
            &night2,
        ])
    };
    let (code, _, err) = delta_run(&prev, "no-such-dir");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    // A previous folder without its persistent index says what is missing.
    let bare = d.join("bare");
    std::fs::create_dir_all(&bare).expect("mkdir");
    for f in ["master_index.parquet", "run.json", "model.json"] {
        std::fs::copy(d.join("out").join(f), bare.join(f)).expect("copy");
    }
    let delta = d.join("delta");
    std::fs::create_dir_all(&delta).expect("mkdir");
    std::fs::write(
        delta.join("deletions.csv"),
        "source,record_id\ncivil,2\nnope,9\ncivil,\n",
    )
    .expect("deletions");
    let delta_dir = delta.display().to_string();
    let (code, _, err) = delta_run(&bare.display().to_string(), &delta_dir);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("store/"), "{err}");
    // Against the real previous folder: civil:2 goes, the two bad deletions are quarantined.
    let (code, _, err) = delta_run(&prev, &delta_dir);
    assert_eq!(code, 0, "{err}");
    let mi = columns(
        &d.join("n2/master_index_changes.parquet"),
        &["record_id", "change"],
    );
    assert_eq!(mi[0], [Some("2".to_string())]);
    assert_eq!(mi[1], [Some("removed".to_string())]);
    // The whole index after the night holds civil:1 only.
    let (code, _, err) = yiku(&["-q", "export", &j, "--run", &night2]);
    assert_eq!(code, 0, "{err}");
    let mi = columns(&d.join("n2/master_index.parquet"), &["record_id"]);
    assert_eq!(mi[0], [Some("1".to_string())]);
    let q = columns(&d.join("n2/quarantine.parquet"), &["source", "reason"]);
    assert_eq!(q[0].len(), 2, "{q:?}");
    assert!(q[1].iter().flatten().any(|r| r.contains("`nope`")), "{q:?}");
    let ev = columns(&d.join("n2/events.parquet"), &["event", "records"]);
    assert!(
        ev[0].iter().zip(&ev[1]).any(|(e, r)| e.as_deref() == Some("record_removed")
            && r.as_deref() == Some("civil:2")),
        "{ev:?}"
    );
    // A deletion that finds no record, and a record deleted the night it is sent, are named.
    std::fs::write(
        delta.join("deletions.csv"),
        "source,record_id\ncivil,404\ncivil,3\ncivil,1,extra\n",
    )
    .expect("deletions");
    std::fs::write(delta.join("a.csv"), "编号,姓名,身份证号\n3,王五,\n").expect("csv");
    let (code, _, err) = delta_run(&prev, &delta_dir);
    assert_eq!(code, 0, "{err}");
    let q = columns(&d.join("n2/quarantine.parquet"), &["record_id", "reason"]);
    let reasons: Vec<String> = q[1].iter().flatten().cloned().collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("`404`")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("same night")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("3 fields")),
        "{reasons:?}"
    );
    // An empty deletions file deletes nothing; a file no source is named after stops the run.
    std::fs::write(delta.join("deletions.csv"), "").expect("empty");
    let (code, _, err) = delta_run(&prev, &delta_dir);
    assert_eq!(code, 0, "{err}");
    std::fs::write(delta.join("b.csv"), "编号,姓名\n").expect("stray file");
    let (code, _, err) = delta_run(&prev, &delta_dir);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("b.csv") && err.contains("a.csv"), "{err}");
}

#[test]
fn previous_of_another_job_is_refused() {
    let a = scratch("prev-other-job");
    run_job(&root().join("datasets/febrl/febrl1.toml"), &a, 2);
    let job = root().join("datasets/demo/job.toml").display().to_string();
    let out = scratch("prev-other-job-b").display().to_string();
    let (code, _, err) = yiku(&[
        "-q",
        "run",
        &job,
        "--previous",
        &a.display().to_string(),
        "--out",
        &out,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("generic") && err.contains("same job"), "{err}");
}

/// `a.csv` in `d`: `n` people with a name and no ID number.
fn names_csv(d: &Path, n: usize) {
    let rows: String = (0..n).map(|i| format!("{i},张{i},\n")).collect();
    std::fs::write(d.join("a.csv"), format!("编号,姓名,身份证号\n{rows}")).expect("csv");
}

#[test]
fn compact_after_must_be_a_positive_share() {
    let d = scratch("compact-after");
    std::fs::write(d.join("a.csv"), "编号,姓名,身份证号\n1,张三,\n").expect("csv");
    for bad in ["0.0", "-1.0", "nan"] {
        let err = run_fails(&job(
            &d,
            &csv_source("a.csv"),
            &format!("compact_after = {bad}"),
        ));
        assert!(
            err.contains("job.compact_after") && err.contains("0.5"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn memory_limit_is_read_and_checked_before_the_run() {
    let d = scratch("bad-memory");
    names_csv(&d, 2000);
    let err = run_fails(&job(&d, &csv_source("a.csv"), "memory_limit = \"lots\""));
    assert!(
        err.contains("job.memory_limit") && err.contains("\"4GB\""),
        "{err}"
    );
    let err = run_fails(&job(&d, &csv_source("a.csv"), "memory_limit = \"1MB\""));
    assert!(
        err.contains("job.memory_limit") && err.contains("needs about"),
        "{err}"
    );
    let ok = job(&d, &csv_source("a.csv"), "memory_limit = \"8 GiB\"");
    let (code, _, err) = yiku(&["-q", "run", &ok.display().to_string()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn compression_names_the_codecs_it_takes_and_each_one_reads_back() {
    let d = scratch("bad-compression");
    names_csv(&d, 200);
    let err = run_fails(&job(&d, &csv_source("a.csv"), "compression = \"gzip\""));
    assert!(
        err.contains("compression") && err.contains("snappy") && err.contains("zstd"),
        "{err}"
    );
    for codec in ["snappy", "zstd", "lz4", "none"] {
        let ok = job(
            &d,
            &csv_source("a.csv"),
            &format!("compression = \"{codec}\""),
        );
        let (code, _, err) = yiku(&["-q", "run", &ok.display().to_string()]);
        assert_eq!(code, 0, "{codec}: {err}");
        let index = d.join("out/master_index.parquet");
        let rows: usize = yiku::state::read_parquet(&index, None)
            .expect("master index reads back")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 200, "{codec}");
    }
}
