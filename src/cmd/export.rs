//! `yiku export JOB --run DIR [--out DIR]`: the whole index of a run, from its store.

use std::path::PathBuf;

use yiku::Plan;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The job file the run was made with (golden records follow its rules).
    pub job: PathBuf,
    /// The run's output folder (a delta night's writes only its changes).
    #[arg(long)]
    pub run: PathBuf,
    /// Where to write master_index.parquet and golden_<kind>s.parquet (default: the run's
    /// folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let plan = Plan::from_file(&args.job)?;
    let out = args.out.clone().unwrap_or_else(|| args.run.clone());
    let e = yiku::export::export(&args.run, &plan, &out, plan.compression)?;
    println!(
        "{} records, {} master ids -> {}",
        e.records,
        e.master_ids,
        out.display()
    );
    Ok(())
}
