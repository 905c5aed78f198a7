//! `yiku generate`: writes seeded synthetic departmental data, truth files and a job file.

use std::path::PathBuf;

use anyhow::{Context, ensure};

use yiku::synth::{SynthConfig, generate};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Number of true persons in the population.
    #[arg(long, default_value_t = 10_000)]
    pub persons: usize,
    /// Number of true enterprises.
    #[arg(long, default_value_t = 1_000)]
    pub enterprises: usize,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Noise scale: 1.0 = default rates, 0 = clean.
    #[arg(long, default_value_t = 1.0)]
    pub noise: f64,
    /// Also split the data into nights for a delta run: `night1/` (without the records that
    /// arrive later, some names mistyped), `delta/` (this share of the records: new, corrected,
    /// deleted) and `final/` (what a full rerun would load).
    #[arg(long)]
    pub delta: Option<f64>,
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    ensure!(
        args.noise.is_finite() && args.noise >= 0.0,
        "--noise must be a non-negative number, got {}",
        args.noise
    );
    let cfg = SynthConfig {
        persons: args.persons,
        enterprises: args.enterprises,
        seed: args.seed,
        noise_scale: args.noise,
        ..SynthConfig::default()
    };
    let summary = generate(&cfg, &args.out)
        .with_context(|| format!("generating data into {}", args.out.display()))?;
    for (dept, rows) in &summary.files {
        println!(
            "{}: {rows} rows",
            args.out.join(format!("{dept}.parquet")).display()
        );
    }
    println!(
        "{}: truth for {} persons, {} enterprises; job file {}",
        args.out.display(),
        summary.person_entities,
        summary.enterprise_entities,
        args.out.join("job.toml").display()
    );
    if let Some(f) = args.delta {
        ensure!(
            (0.0..=1.0).contains(&f),
            "--delta must be a share between 0 and 1, got {f}"
        );
        let n = yiku::synth::nights::split_nights(&args.out, f, args.seed)
            .with_context(|| format!("splitting {} into nights", args.out.display()))?;
        println!(
            "{}: night1 {} records; delta {} new, {} corrected, {} deleted (delta/, final/)",
            args.out.display(),
            n.night1,
            n.added,
            n.changed,
            n.deleted
        );
    }
    Ok(())
}
