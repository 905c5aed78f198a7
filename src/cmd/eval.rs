//! `yiku eval --truth TRUTH --run OUT`: precision, recall and F1 of a run's master index.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Truth file: `source` (optional), `record_id`, `entity_id`.
    #[arg(long)]
    pub truth: PathBuf,
    /// The run's output folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Write the evaluation as JSON here (default: RUN/eval-<truth file name>.json, so that
    /// evaluations against several truth files, one per kind, do not overwrite each other).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let e = yiku::report::evaluate_run(&args.truth, &args.run)?;
    println!(
        "records {}  entities {}  clusters {}  (not in run: {})",
        e.records, e.entities, e.clusters, e.records_not_in_run
    );
    println!(
        "pairwise   precision {:.4}  recall {:.4}  F1 {:.4}   ({} true positive / {} predicted / {} true pairs)",
        e.pairwise.precision,
        e.pairwise.recall,
        e.pairwise.f1,
        e.true_positive_pairs,
        e.predicted_pairs,
        e.true_pairs
    );
    println!(
        "B-cubed    precision {:.4}  recall {:.4}  F1 {:.4}",
        e.bcubed.precision, e.bcubed.recall, e.bcubed.f1
    );
    println!(
        "over-merged clusters {}  split entities {}",
        e.over_merged_clusters, e.split_entities
    );
    if let (Some(pc), Some(rr)) = (e.pairs_completeness, e.reduction_ratio) {
        println!("blocking   pairs completeness {pc:.4}  reduction ratio {rr:.6}");
    }
    println!("by departments (pairwise P / R / F1, true pairs):");
    for (k, c) in &e.by_departments {
        if c.actual > 0 || c.predicted > 0 {
            println!(
                "  {k:<40} {:.4} / {:.4} / {:.4}  {:>8}",
                c.pairwise.precision, c.pairwise.recall, c.pairwise.f1, c.actual
            );
        }
    }
    let path = args.json.clone().unwrap_or_else(|| {
        let stem = args
            .truth
            .file_stem()
            .map_or_else(|| "truth".into(), |s| s.to_string_lossy().into_owned());
        args.run.join(format!("eval-{stem}.json"))
    });
    yiku::output::write_json(&path, &e)?;
    println!("written: {}", path.display());
    Ok(())
}
