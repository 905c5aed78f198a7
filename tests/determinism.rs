//! The same input gives byte-identical outputs with 1 thread or 2, and in any row order.

use std::path::Path;

use crate::common::*;

const OUTPUTS: [&str; 5] = [
    "master_index.parquet",
    "pairs.parquet",
    "review.parquet",
    "quarantine.parquet",
    "model.json",
];

fn assert_same_outputs(a: &Path, b: &Path) {
    for f in OUTPUTS {
        let (x, y) = (
            std::fs::read(a.join(f)).expect(f),
            std::fs::read(b.join(f)).expect(f),
        );
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A job over one CSV file at an absolute path.
fn febrl1_job(dir: &Path, csv: &Path) -> std::path::PathBuf {
    let template = std::fs::read_to_string(root().join("datasets/febrl/febrl1.toml")).expect("job");
    let job = template.replace(
        "path = \"febrl1.csv\"",
        &format!("path = {:?}", csv.display().to_string()),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).expect("write job");
    path
}

#[test]
fn one_thread_and_two_give_the_same_bytes() {
    let job = root().join("datasets/febrl/febrl2.toml");
    let (a, b) = (scratch("det-1t"), scratch("det-2t"));
    run_job(&job, &a, 1);
    run_job(&job, &b, 2);
    assert_same_outputs(&a, &b);
}

#[test]
fn shuffled_rows_give_the_same_bytes() {
    let text = std::fs::read_to_string(root().join("datasets/febrl/febrl1.csv")).expect("csv");
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    // A fixed permutation: interleave from both ends.
    let mut shuffled = vec![header];
    let (mut i, mut j) = (0usize, lines.len());
    while i < j {
        j -= 1;
        shuffled.push(lines[j]);
        if i < j {
            shuffled.push(lines[i]);
            i += 1;
        }
    }
    let dir = scratch("det-shuffle");
    let csv = dir.join("shuffled.csv");
    std::fs::write(&csv, shuffled.join("\n") + "\n").expect("write");
    let orig_dir = scratch("det-orig");
    let (a, b) = (dir.join("out"), orig_dir.join("out"));
    run_job(&febrl1_job(&dir, &csv), &a, 2);
    run_job(
        &febrl1_job(&orig_dir, &root().join("datasets/febrl/febrl1.csv")),
        &b,
        1,
    );
    assert_same_outputs(&a, &b);
}

#[test]
fn records_mapped_under_a_tight_memory_limit_give_the_same_bytes() {
    use yiku::load::{MemoryMode, estimated_peak_bytes};
    let job = root().join("datasets/febrl/febrl2.toml");
    let a = scratch("det-held");
    let held = run_job(&job, &a, 2);
    assert_eq!(held.memory, MemoryMode::InMemory);
    let plan = yiku::Plan::from_file(&job).expect("valid job");
    let records = yiku::load::count_records(&plan).expect("count records");
    // A limit between two estimates: too little for the faster way, enough for the next.
    let modes = [
        MemoryMode::InMemory,
        MemoryMode::Mapped,
        MemoryMode::Spilled,
    ];
    let mut limits: Vec<(u64, MemoryMode, &str)> = modes
        .windows(2)
        .map(|pair| {
            let between = estimated_peak_bytes(records, pair[0]) / 2
                + estimated_peak_bytes(records, pair[1]) / 2;
            (between, pair[1], "")
        })
        .collect();
    // Just above the spilled estimate: the page cache the limit leaves cannot hold the
    // records' file, so compare, the u sample, the review rows and golden records read the
    // records front to back in sweeps of their own.
    let tight = estimated_peak_bytes(records, MemoryMode::Spilled) + 1;
    limits.push((tight, MemoryMode::Spilled, "-sweeps"));
    for (limit, mode, name) in limits {
        let mut plan = plan.clone();
        plan.memory_limit = Some(limit);
        let b = scratch(&format!("det-{mode:?}{name}"));
        let opts = yiku::RunOptions {
            output: Some(b.clone()),
            threads: Some(2),
            quiet: true,
            ..Default::default()
        };
        let mapped = yiku::run(&plan, &opts).expect("mapped run succeeds");
        assert_eq!(mapped.memory, mode);
        if !name.is_empty() {
            let file = std::fs::metadata(b.join("standardised_generic.arrow")).expect("state file");
            assert!(yiku::load::reads_in_sweeps(
                limit,
                records,
                mode,
                file.len()
            ));
        }
        assert_same_outputs(&a, &b);
        let names: Vec<_> = std::fs::read_dir(&b)
            .expect("output folder")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        let spilled: Vec<_> = names
            .iter()
            .filter(|n| n.to_string_lossy().starts_with(".spill"))
            .collect();
        assert!(spilled.is_empty(), "spill files left behind: {spilled:?}");
        let golden: Vec<_> = names
            .iter()
            .filter(|n| n.to_string_lossy().starts_with("golden_"))
            .collect();
        assert!(!golden.is_empty(), "golden records written");
        for f in golden {
            let (x, y) = (std::fs::read(a.join(f)), std::fs::read(b.join(f)));
            assert!(x.is_ok() && x.ok() == y.ok(), "{f:?} differs");
        }
    }
}
