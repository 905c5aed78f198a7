//! `yiku demo`: runs the bundled job `datasets/demo/job.toml` and evaluates it against the
//! bundled truth.

use std::path::PathBuf;

use anyhow::Context;

use yiku::{Plan, RunOptions};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The demo job file.
    #[arg(long, default_value = "datasets/demo/job.toml")]
    pub job: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
}

pub fn run(args: &DemoArgs, quiet: bool) -> anyhow::Result<()> {
    let plan = Plan::from_file(&args.job)
        .context("the demo needs the bundled datasets/ folder; run it from the repository root")?;
    let opts = RunOptions {
        output: Some(args.out.clone()),
        quiet,
        ..RunOptions::default()
    };
    let summary = yiku::run(&plan, &opts)?;
    super::run::print_summary(&summary, &args.out);
    let dir = args.job.parent().unwrap_or(std::path::Path::new("."));
    for kind in ["persons", "enterprises"] {
        let truth = dir.join(format!("truth_{kind}.parquet"));
        if truth.exists() {
            let e = yiku::report::evaluate_run(&truth, &args.out)?;
            println!(
                "{kind:<12} pairwise precision {:.4} recall {:.4} F1 {:.4} (truth: {})",
                e.pairwise.precision,
                e.pairwise.recall,
                e.pairwise.f1,
                truth.display()
            );
        }
    }
    Ok(())
}
