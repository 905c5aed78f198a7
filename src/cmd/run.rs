//! `yiku run JOB.toml`: runs a job and prints where its outputs are.

use std::path::PathBuf;

use anyhow::Context;

use yiku::{Plan, RunOptions};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Reuse a saved model (model.json of an earlier run) instead of training.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output folder (default: the job's `output`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads (default: the job's `threads`, else all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Clerks' decisions: a filled-in review.parquet, or the same columns as CSV
    /// (`decision` = match / non_match).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Output folder of the previous run: its master ids are kept (stable ids).
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Nightly delta: a folder with the new and changed records of some sources (each in a
    /// file with the same file name as the source's own file; any other file is an error) and
    /// `deletions.csv` (source, record_id). Applied to the
    /// `--previous` index: only these records are compared, with the previous model.
    #[arg(long, requires = "previous")]
    pub delta: Option<PathBuf>,
    /// With --delta: write the whole index too (master_index.parquet, golden records), not
    /// only tonight's changes; costs what the index costs (`yiku export` does it later).
    #[arg(long, requires = "delta")]
    pub snapshot: bool,
}

pub fn run(args: &RunArgs, quiet: bool) -> anyhow::Result<()> {
    let plan = Plan::from_file(&args.job)?;
    let opts = RunOptions {
        model: args.model.clone(),
        output: args.out.clone(),
        threads: args.threads,
        quiet,
        delta: args.delta.clone(),
        previous: args.previous.clone(),
        labels: args.labels.clone(),
        snapshot: args.snapshot,
    };
    let summary =
        yiku::run(&plan, &opts).with_context(|| format!("running {}", args.job.display()))?;
    let out = args.out.clone().unwrap_or(plan.output);
    print_summary(&summary, &out);
    Ok(())
}

/// The bytes of a job's source files (`None` when the job cannot be read: the run says why).
pub fn input_bytes(job: &std::path::Path) -> Option<u64> {
    let plan = Plan::from_file(job).ok()?;
    let sizes = plan
        .sources
        .iter()
        .filter_map(|s| std::fs::metadata(&s.path).ok().map(|m| m.len()));
    Some(sizes.sum())
}

/// One line per kind and where the outputs are.
pub fn print_summary(s: &yiku::report::RunSummary, out: &std::path::Path) {
    for k in &s.kinds {
        println!(
            "{:<10} {:>9} records  {:>10} candidate pairs  {:>9} matches  {:>8} for review  {:>9} master ids",
            k.kind, k.records, k.candidate_pairs, k.matches, k.review_pairs, k.clusters
        );
    }
    println!(
        "{} records in, {} in the master index, {} quarantined; {:.2} s, peak {:.0} MB",
        s.records_in, s.records_in_master_index, s.quarantined, s.total_seconds, s.peak_rss_mb
    );
    println!("outputs: {}", out.display());
}
