//! The generic kind on the public Febrl files, without labels.

use crate::common::*;

fn f1(n: u32) -> f64 {
    let dir = root().join("datasets/febrl");
    let out = scratch(&format!("febrl{n}"));
    let s = run_job(&dir.join(format!("febrl{n}.toml")), &out, 2);
    assert!(s.conservation_ok);
    let e = yiku::report::evaluate_run(&dir.join(format!("febrl{n}_truth.parquet")), &out)
        .expect("eval");
    e.pairwise.f1
}

#[test]
fn febrl1_csv_reaches_f1_095() {
    let f = f1(1);
    assert!(f >= 0.95, "febrl1 pairwise F1 {f}");
}

#[test]
fn febrl2_parquet_reaches_f1_095() {
    let f = f1(2);
    assert!(f >= 0.95, "febrl2 pairwise F1 {f}");
}
