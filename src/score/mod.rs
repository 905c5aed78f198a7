//! Stage 5: score. Consumes: comparison levels of candidate pairs. Produces: a Fellegi-Sunter
//! [`Model`] (trained without labels: u from random record pairs, m and λ by EM) and, per pair,
//! a match weight and probability. Cost: EM runs over distinct level patterns, not pairs, so
//! training is O(pairs) once plus O(patterns × iterations).

pub mod em;
pub mod explain;
pub mod model;
pub mod tf;

pub use model::{ComparisonModel, Model};

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, UInt8Array};
use arrow_schema::{DataType, Field, Schema};

use crate::compare::Comparator;
use tf::TermFrequencies;

/// Trains a model on the compared candidate pairs of one kind: u from random record pairs,
/// m and λ by EM.
pub fn train(
    plan: &crate::config::KindPlan,
    comparators: &[Comparator],
    source: &[u16],
    compared: &crate::compare::Compared,
    agree: &[u32],
    mode: crate::config::Mode,
    seed: u64,
) -> Model {
    let (u, sampled) = em::estimate_u(comparators, source, mode, plan.u_sample_pairs, seed);
    let patterns = em::patterns(&compared.batches, comparators.len(), agree);
    em::train(plan, u, &patterns, seed, sampled)
}

/// Refines m with pairs that clerks decided are matches: each comparison's level counts among
/// them are added to the EM estimate, weighted as that many more matches.
pub fn refine_with_labels(model: &mut Model, comparators: &[Comparator], matches: &[(u32, u32)]) {
    if matches.is_empty() {
        return;
    }
    let weight = model.lambda * model.trained_on_pairs as f64;
    for (cm, cmp) in model.comparisons.iter_mut().zip(comparators) {
        let mut counts = vec![0.0; cm.m.len()];
        for &(a, b) in matches {
            counts[cmp.level(a as usize, b as usize) as usize] += 1.0;
        }
        let labelled: f64 = counts[1..].iter().sum();
        if labelled == 0.0 {
            continue;
        }
        for (m, c) in cm.m.iter_mut().zip(&counts).skip(1) {
            *m = (*m * weight + c) / (weight + labelled);
        }
    }
}

/// Term frequencies of the values of the records at `rows`, for the comparisons that ask for
/// them.
pub fn term_frequencies(
    model: &Model,
    comparators: &[Comparator],
    rows: &[usize],
) -> Vec<Option<TermFrequencies>> {
    use rayon::prelude::*;
    model
        .comparisons
        .par_iter()
        .zip(comparators)
        .map(|(c, cmp)| {
            c.spec
                .term_frequency
                .then(|| TermFrequencies::of(cmp.column(), rows))
        })
        .collect()
}

/// Scores every compared batch in parallel.
pub fn score(
    model: &Model,
    comparators: &[Comparator],
    compared: &crate::compare::Compared,
) -> Result<Vec<RecordBatch>, crate::error::Error> {
    score_with(model, comparators, compared, &Default::default())
}

/// [`score`], with the term frequencies of the fields in `counts` taken from there (a
/// delta run's, over the whole index) instead of from the table.
pub fn score_with(
    model: &Model,
    comparators: &[Comparator],
    compared: &crate::compare::Compared,
    counts: &std::collections::BTreeMap<String, tf::Counts>,
) -> Result<Vec<RecordBatch>, crate::error::Error> {
    let weights = Weights::of_in(model, comparators, counts, None)?;
    score_batches(
        &weights,
        &scored_schema(&compared.schema),
        &compared.batches,
    )
}

/// Compared batches scored in parallel, in order.
fn score_batches(
    weights: &Weights,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>, crate::error::Error> {
    use rayon::prelude::*;
    batches
        .par_iter()
        .map(|b| score_batch(weights, schema, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::error::Error::Data {
            stage: "score",
            message: e.to_string(),
        })
}

/// [`score_with`], consuming `compared` a few batches at a time: each scored batch is handed to
/// `sink` and the compared batches it was made from are let go (a scored batch shares their
/// columns), so that neither the compared nor the scored pairs are all held at once when the
/// sink writes them out (16 bytes a pair of weights and probabilities, ~135 MB at 10M records).
pub fn score_in_chunks(
    model: &Model,
    comparators: &[Comparator],
    compared: crate::compare::Compared,
    counts: &std::collections::BTreeMap<String, tf::Counts>,
    spill: Option<&crate::state::Spill>,
    sink: &mut dyn FnMut(&RecordBatch) -> Result<(), crate::error::Error>,
) -> Result<(), crate::error::Error> {
    // Enough batches to score in parallel (~65k pairs each).
    const CHUNK: usize = 8;
    let weights = Weights::of_in(model, comparators, counts, spill)?;
    let schema = scored_schema(&compared.schema);
    let mut rest = compared.batches;
    while !rest.is_empty() {
        let tail = rest.split_off(CHUNK.min(rest.len()));
        let scored = score_batches(&weights, &schema, &rest)?;
        drop(rest);
        for b in &scored {
            sink(b)?;
        }
        rest = tail;
    }
    Ok(())
}

/// Schema of a scored batch: the compared batch plus `match_weight` and `match_probability`.
pub fn scored_schema(levels: &Schema) -> Arc<Schema> {
    let mut fields: Vec<Field> = levels.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("match_weight", DataType::Float64, false));
    fields.push(Field::new("match_probability", DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

/// Levels per comparison in [`Weights`]' table (level codes are 4 bits).
const LEVEL_SLOTS: usize = 16;

/// A model's weights laid out for scoring: the prior of every blocking rule, the weight of
/// every (rule, comparison, level) — 0 where the rule does not count the comparison — and for
/// term-frequency comparisons the weight of exact agreement on each record's own value. The
/// sums are the same, term for term and in the same order, as [`pair_weight`]'s.
pub struct Weights {
    priors: Vec<f64>,
    counted: Vec<Vec<bool>>,
    table: Vec<f64>,
    tops: Vec<u8>,
    exact_by_record: Vec<Option<arrow_buffer::ScalarBuffer<f64>>>,
}

impl Weights {
    pub fn of(model: &Model, comparators: &[Comparator]) -> Result<Weights, crate::error::Error> {
        Weights::of_in(model, comparators, &Default::default(), None)
    }

    /// [`Weights::of`], term frequencies of the fields in `counts` taken from there, and each
    /// record's weights of exact agreement on a mapped file when `spill` is given.
    pub fn of_in(
        model: &Model,
        comparators: &[Comparator],
        counts: &std::collections::BTreeMap<String, tf::Counts>,
        spill: Option<&crate::state::Spill>,
    ) -> Result<Weights, crate::error::Error> {
        let k = model.comparisons.len();
        let rules = model.blocking.len();
        let mut table = vec![0.0; rules * k * LEVEL_SLOTS];
        for r in 0..rules {
            for (c, cm) in model.comparisons.iter().enumerate() {
                for l in 0..LEVEL_SLOTS {
                    table[(r * k + c) * LEVEL_SLOTS + l] = cm.weight(l as u8);
                }
            }
        }
        let exact_by_record = model
            .comparisons
            .iter()
            .zip(comparators.iter())
            .map(|(cm, cmp)| {
                cm.spec
                    .term_frequency
                    .then(|| {
                        tf::exact_weights_in(
                            cmp.column(),
                            |u| cm.tf_weight(Some(u)),
                            counts.get(&cm.spec.field),
                            spill,
                        )
                    })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        Ok(Weights {
            priors: (0..rules).map(|r| model.prior_weight(r)).collect(),
            counted: model.counted(),
            table,
            tops: model
                .comparisons
                .iter()
                .map(|cm| cm.m.len().saturating_sub(1) as u8)
                .collect(),
            exact_by_record,
        })
    }

    /// The match weight of a pair found by `rule` whose left record is `left`, with
    /// `level(k)` its level of comparison `k`.
    fn pair(&self, rule: usize, left: usize, level: impl Fn(usize) -> u8) -> Result<f64, String> {
        let (Some(prior), Some(counts)) = (self.priors.get(rule), self.counted.get(rule)) else {
            return Err(format!(
                "pair found by blocking rule {rule}, but the model has {} rules",
                self.priors.len()
            ));
        };
        let k = self.tops.len();
        let row = &self.table[rule * k * LEVEL_SLOTS..(rule + 1) * k * LEVEL_SLOTS];
        let mut total = *prior;
        for c in 0..k {
            if !counts[c] {
                continue;
            }
            let lv = level(c);
            total += match &self.exact_by_record[c] {
                Some(by_record) if lv == self.tops[c] => by_record[left],
                _ => row[c * LEVEL_SLOTS + (lv as usize & (LEVEL_SLOTS - 1))],
            };
        }
        Ok(total)
    }
}

/// Scores a compared batch (`left`, `right`, one level column per comparison in model order).
pub fn score_batch(
    weights: &Weights,
    schema: &Arc<Schema>,
    batch: &RecordBatch,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = batch.num_rows();
    let levels: Vec<&[u8]> = (0..weights.tops.len())
        .map(|k| {
            batch
                .column(crate::compare::FIRST_LEVEL + k)
                .as_any()
                .downcast_ref::<UInt8Array>()
                .map(|a| a.values().as_ref())
                .ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError("level columns must be UInt8".into())
                })
        })
        .collect::<Result<_, _>>()?;
    let l = batch
        .column_by_name("left")
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt32Array>())
        .ok_or_else(|| arrow_schema::ArrowError::SchemaError("missing `left`".into()))?;
    let rules = batch
        .column_by_name("rule")
        .and_then(|c| c.as_any().downcast_ref::<UInt8Array>())
        .ok_or_else(|| arrow_schema::ArrowError::SchemaError("missing `rule`".into()))?;
    let records = weights
        .exact_by_record
        .iter()
        .flatten()
        .map(|w| w.len())
        .min()
        .unwrap_or(usize::MAX);
    let mut w = Vec::with_capacity(n);
    for (row, &left) in l.values().iter().enumerate() {
        let i = left as usize;
        if i >= records {
            return Err(arrow_schema::ArrowError::SchemaError(format!(
                "record {i} is out of range"
            )));
        }
        w.push(
            weights
                .pair(rules.value(row) as usize, i, |k| levels[k][row])
                .map_err(arrow_schema::ArrowError::SchemaError)?,
        );
    }
    let p: Vec<f64> = w.iter().map(|&x| probability(x)).collect();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols.push(Arc::new(Float64Array::from(w)));
    cols.push(Arc::new(Float64Array::from(p)));
    RecordBatch::try_new(schema.clone(), cols)
}

/// Match weight of one pair found by blocking rule `rule`: the rule's prior, then every
/// comparison the rule counts, in model order, exact agreement on a term-frequency field
/// weighed by the value's own frequency. `level(k)` is the pair's level of comparison `k`,
/// `value(k)` the left record's value; `rules` holds [`Model::counted`] and the prior weight
/// of every rule.
pub fn pair_weight<'v>(
    model: &Model,
    tfs: &[Option<TermFrequencies>],
    (counted, priors): (&[Vec<bool>], &[f64]),
    rule: usize,
    level: impl Fn(usize) -> u8,
    value: impl Fn(usize) -> Option<&'v str>,
) -> Result<f64, String> {
    let (Some(prior), Some(counts)) = (priors.get(rule), counted.get(rule)) else {
        return Err(format!(
            "pair found by blocking rule {rule}, but the model has {} rules",
            priors.len()
        ));
    };
    let mut total = *prior;
    for (k, cm) in model.comparisons.iter().enumerate() {
        if !counts[k] {
            continue;
        }
        let lv = level(k);
        total += match (
            tfs.get(k).and_then(Option::as_ref),
            lv as usize + 1 == cm.m.len(),
        ) {
            (Some(tf), true) => cm.tf_weight(tf.u_of(value(k))),
            _ => cm.weight(lv),
        };
    }
    Ok(total)
}

/// Probability of a match weight (log2 Bayes factor including the prior).
pub fn probability(w: f64) -> f64 {
    let b = w.exp2();
    if b.is_infinite() { 1.0 } else { b / (1.0 + b) }
}

/// Match weight of a probability.
pub fn weight_of_probability(p: f64) -> f64 {
    (p / (1.0 - p)).log2()
}
