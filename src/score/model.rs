//! The Fellegi-Sunter model: λ, and m and u per level of every comparison. Saved as JSON with
//! the settings that produced it, and reusable by later runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ComparisonSpec, EntityKind};
use crate::error::{Error, Result};

/// Smallest probability used in a weight, so that no level weighs infinitely.
pub const FLOOR: f64 = 1e-9;

/// m and u of one comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComparisonModel {
    pub spec: ComparisonSpec,
    pub levels: Vec<String>,
    /// P(level | match), index = level; index 0 (null) is unused.
    pub m: Vec<f64>,
    /// P(level | non-match).
    pub u: Vec<f64>,
}

impl ComparisonModel {
    /// log2(m/u) of a level; 0 for null.
    pub fn weight(&self, level: u8) -> f64 {
        let l = level as usize;
        if l == 0 || l >= self.m.len() {
            return 0.0;
        }
        (self.m[l].max(FLOOR) / self.u[l].max(FLOOR)).log2()
    }

    /// Weight of exact agreement on a value whose own u (its frequency) is `u_value`.
    pub fn tf_weight(&self, u_value: Option<f64>) -> f64 {
        let top = self.m.len() - 1;
        match u_value {
            Some(u) => (self.m[top].max(FLOOR) / u.max(FLOOR)).log2(),
            None => self.weight(top as u8),
        }
    }
}

/// A trained model of one entity kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub kind: EntityKind,
    /// Share of candidate pairs that are matches (for information).
    pub lambda: f64,
    /// Prior probability that a pair found by blocking rule `r` is a match. A pair is scored
    /// with the prior of the rule that found it, and without the comparisons of that rule's
    /// own fields, on which such pairs agree by construction.
    pub lambda_by_rule: Vec<f64>,
    pub comparisons: Vec<ComparisonModel>,
    /// Blocking rules the model was trained with.
    pub blocking: Vec<Vec<String>>,
    pub match_probability: f64,
    pub review_probability: f64,
    pub trained_on_pairs: u64,
    pub u_sample_pairs: u64,
    pub em_iterations: usize,
    pub seed: u64,
}

/// True when a blocking rule's column is (or is derived from) a comparison's field, so that
/// the pairs the rule finds agree on the comparison by construction.
pub fn rule_covers(rule: &[String], field: &str) -> bool {
    rule.iter().any(|c| {
        c == field || c.starts_with(&format!("{field}_")) || field.starts_with(&format!("{c}_"))
    })
}

impl Model {
    /// log2 of the prior odds of a pair found by rule `rule`.
    pub fn prior_weight(&self, rule: usize) -> f64 {
        let l = self
            .lambda_by_rule
            .get(rule)
            .copied()
            .unwrap_or(self.lambda);
        (l.max(FLOOR) / (1.0 - l).max(FLOOR)).log2()
    }

    /// `counted[r][k]`: whether comparison `k` counts for pairs found by rule `r`.
    pub fn counted(&self) -> Vec<Vec<bool>> {
        self.blocking
            .iter()
            .map(|rule| {
                self.comparisons
                    .iter()
                    .map(|c| !rule_covers(rule, &c.spec.field))
                    .collect()
            })
            .collect()
    }

    /// Takes a saved model for a job: its comparisons and blocking rules must be the job's
    /// (the priors are kept per rule, in the rules' order); the thresholds are the job's, not
    /// those the model was saved with.
    pub fn adopt(mut self, plan: &crate::config::KindPlan) -> Result<Model> {
        self.check_fits(&plan.comparisons)?;
        if self.blocking != plan.blocking {
            let show = |rules: &[Vec<String>]| {
                rules
                    .iter()
                    .map(|r| r.join("+"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::Data {
                stage: "score",
                message: format!(
                    "the saved {} model was trained with the blocking rules [{}], this job has [{}]: its priors are per rule; retrain (a full run without --model) or align the job",
                    self.kind.as_str(),
                    show(&self.blocking),
                    show(&plan.blocking)
                ),
            });
        }
        self.match_probability = plan.match_probability;
        self.review_probability = plan.review_probability;
        Ok(self)
    }

    /// Checks that a saved model fits the comparisons of a job.
    pub fn check_fits(&self, specs: &[ComparisonSpec]) -> Result<()> {
        let have: Vec<&ComparisonSpec> = self.comparisons.iter().map(|c| &c.spec).collect();
        if have.len() != specs.len() || have.iter().zip(specs).any(|(a, b)| *a != b) {
            return Err(Error::Data {
                stage: "score",
                message: format!(
                    "the saved {} model was trained with other comparisons than this job's; retrain without --model or align the job",
                    self.kind.as_str()
                ),
            });
        }
        Ok(())
    }
}

/// The models of every kind of a run, as saved in `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelFile {
    pub yiku_version: String,
    /// The run that trained (or reused) the models.
    #[serde(default)]
    pub run_id: String,
    pub models: Vec<Model>,
}

impl ModelFile {
    pub fn load(path: &Path) -> Result<ModelFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: format!("not a yiku model file: {e}"),
        })
    }

    pub fn model(&self, kind: EntityKind) -> Option<&Model> {
        self.models.iter().find(|m| m.kind == kind)
    }
}
