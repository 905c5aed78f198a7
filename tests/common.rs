//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty folder under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join("target").join("test-scratch").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs a job file through the library, quietly, into `out`.
pub fn run_job(job: &Path, out: &Path, threads: usize) -> yiku::report::RunSummary {
    let plan = yiku::Plan::from_file(job).expect("valid job");
    let opts = yiku::RunOptions {
        output: Some(out.to_path_buf()),
        threads: Some(threads),
        quiet: true,
        ..Default::default()
    };
    yiku::run(&plan, &opts).expect("run succeeds")
}

/// Runs the `yiku` binary; returns (exit code, stdout, stderr).
pub fn yiku(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yiku"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("yiku runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Text columns of a Parquet file.
pub fn columns(path: &Path, names: &[&str]) -> Vec<Vec<Option<String>>> {
    yiku::load::read_text_columns(path, names)
        .expect("readable parquet")
        .into_iter()
        .map(|c| c.expect("column present"))
        .collect()
}
