//! `yiku report --run OUT`: (re)writes a run's `report.html`, optionally with a truth file or
//! with personal data shown. A delta night's report describes the night's changes (see
//! [`yiku::html`]).

use std::path::PathBuf;

use yiku::html::{ReportOptions, write_report};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run's output folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Truth file (`source`, `record_id`, `entity_id`): adds precision and recall by threshold.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Show personal data unmasked (the report says so at the top); written to
    /// report-pii.html, leaving the masked report.html as it is.
    #[arg(long)]
    pub show_pii: bool,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let opts = ReportOptions {
        show_pii: args.show_pii,
        truth: args.truth.clone(),
    };
    write_report(&args.run, &opts)?;
    println!(
        "written: {} ({:.2} s)",
        args.run.join(yiku::html::report_file(&opts)).display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
