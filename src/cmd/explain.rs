//! `yiku explain --run OUT SOURCE:ID SOURCE:ID`: why two records were (or were not) merged,
//! as a waterfall of match-weight contributions. Any run's folder: a delta night's (which has
//! no `master_index.parquet`) is searched in its persistent index (`store/`).

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use yiku::mask::mask;
use yiku::score::explain::{Explanation, explain};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The run's output folder.
    #[arg(long)]
    pub run: PathBuf,
    /// The first record, as SOURCE:RECORD_ID.
    pub a: String,
    /// The second record, as SOURCE:RECORD_ID.
    pub b: String,
    /// Show personal data unmasked.
    #[arg(long)]
    pub show_pii: bool,
}

fn record(s: &str) -> anyhow::Result<(&str, &str)> {
    s.split_once(':')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("`{s}`: give a record as SOURCE:RECORD_ID, e.g. health:BA00000012"))
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    let (a, b) = (record(&args.a)?, record(&args.b)?);
    let e =
        explain(&args.run, a, b).with_context(|| format!("explaining {} ~ {}", args.a, args.b))?;
    print!("{}", render(&e, args.show_pii));
    Ok(())
}

/// The explanation as text.
pub fn render(e: &Explanation, show_pii: bool) -> String {
    use std::fmt::Write as _;
    let shown = |v: &Option<String>| match v {
        None => "null".to_string(),
        Some(s) if show_pii => s.clone(),
        Some(s) => mask(s),
    };
    let m = &e.model;
    let wf = &e.waterfall;
    let mut o = String::new();
    if show_pii {
        o.push_str("!! personal data shown unmasked (--show-pii)\n");
    }
    let _ = writeln!(
        o,
        "{} {}:{} ~ {}:{}",
        e.kind.as_str(),
        e.left.0,
        e.left.1,
        e.right.0,
        e.right.1
    );
    let same = if e.master_ids.0 == e.master_ids.1 {
        "same master entity"
    } else {
        "different master entities"
    };
    let _ = writeln!(
        o,
        "master ids: {} / {} ({same})",
        e.master_ids.0, e.master_ids.1
    );
    match &e.stored {
        Some(p) => {
            let _ = writeln!(
                o,
                "candidate pair: found by blocking rule `{}`; pairs.parquet weight {:.6}, probability {:.6}",
                p.blocking_rule, p.match_weight, p.match_probability
            );
        }
        None => {
            let _ = writeln!(
                o,
                "NOT COMPARED: the pair is not a candidate pair of this run."
            );
            for r in &e.rules {
                if r.joins {
                    let skipped = e
                        .skipped_blocks
                        .iter()
                        .any(|(rule, n)| *rule == r.rule && Some(*n) == r.block_size);
                    let why = if skipped {
                        format!(
                            "their block of {} records was larger than max_block_size and skipped",
                            r.block_size.unwrap_or(0)
                        )
                    } else if e.delta_run {
                        "this delta run compared only pairs with a record new or changed tonight; \
                         the pair was scored on an earlier night (its pairs.parquet), and a link \
                         found then is kept"
                            .into()
                    } else {
                        "the job's mode (dedupe within / link across departments) excludes the pair"
                            .into()
                    };
                    let _ = writeln!(o, "  rule `{}`: keys agree, but {why}", r.rule);
                } else {
                    let cols: Vec<String> = r
                        .columns
                        .iter()
                        .map(|(c, x, y)| {
                            let state = match (x, y) {
                                (None, _) | (_, None) => "null",
                                (Some(x), Some(y)) if x == y => "equal",
                                _ => "differ",
                            };
                            format!("{c} {} | {} ({state})", shown(x), shown(y))
                        })
                        .collect();
                    let _ = writeln!(o, "  missed rule `{}`: {}", r.rule, cols.join("; "));
                }
            }
            let _ = writeln!(
                o,
                "hypothetical score: prior = the overall λ, every comparison counted"
            );
        }
    }
    let _ = writeln!(
        o,
        "\n{:<14} {:<22} {:<22} {:<26} {:>9}  {:>9}",
        "term", "left", "right", "level", "adds", "total"
    );
    let mut total = wf.prior;
    let prior_label = match wf.rule {
        Some(_) => format!("λ {:.4} ({})", wf.lambda, wf.rule_name(m)),
        None => format!("λ {:.4} (overall)", wf.lambda),
    };
    let _ = writeln!(
        o,
        "{:<14} {:<45} {:<26} {:>+9.3}  {:>+9.3}",
        "prior", prior_label, "", wf.prior, total
    );
    for s in &wf.steps {
        let (l, r) = match &s.values {
            Some((x, y)) => (shown(x), shown(y)),
            None => ("…".into(), "…".into()),
        };
        let mut level = format!("{} ({})", s.level_name, s.level);
        if let Some(u) = s.tf_u {
            let _ = write!(level, " tf u={u:.2e}");
        } else if s.tf_inferred {
            level.push_str(" tf");
        }
        if s.counted {
            total += s.weight;
            let _ = writeln!(
                o,
                "{:<14} {:<22} {:<22} {:<26} {:>+9.3}  {:>+9.3}",
                s.field, l, r, level, s.weight, total
            );
            if let Some(u) = s.tf_u {
                let _ = writeln!(
                    o,
                    "{:<14} term frequency: the agreed value has u = {u:.3e}, adjusting the exact level's {:+.3} by {:+.3}",
                    "",
                    s.level_weight,
                    s.weight - s.level_weight
                );
            }
        } else {
            let _ = writeln!(
                o,
                "{:<14} {:<22} {:<22} {:<26} {:>9}  {:>+9.3}   not counted: rule `{}` covers it ({:+.3})",
                s.field,
                l,
                r,
                level,
                "·",
                total,
                wf.rule_name(m),
                s.level_weight
            );
        }
    }
    let _ = writeln!(
        o,
        "{:<14} {:<72} {:>+9.3}\nprobability    {:.6}  (merged at ≥ {}, reviewed at ≥ {})",
        "total", "", wf.total, wf.probability, m.match_probability, m.review_probability
    );
    if wf.steps.iter().all(|s| s.values.is_none()) {
        o.push_str("(values unavailable: the output folder has neither standardised_<kind>.arrow nor a store/; rerun the job to write them)\n");
    }
    o
}
