//! Training without labels. u: level frequencies over record pairs drawn at random with a
//! seeded generator. m and λ: expectation-maximisation over the candidate pairs with u fixed.
//! The pairs are first reduced to their distinct level patterns with counts, so every EM
//! iteration costs O(patterns), and the sums are in a fixed order: the result does not depend
//! on the thread count.

use std::collections::HashMap;

use rayon::prelude::*;

use super::model::{ComparisonModel, FLOOR, Model, rule_covers};
use crate::compare::{Comparator, level_names};
use crate::config::{KindPlan, Mode};

/// A small seeded generator (SplitMix64): the same seed gives the same sample everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// How many of `pairs` fall at each level (0-15) of each comparison.
fn level_counts(comparators: &[Comparator], pairs: &[(u32, u32)]) -> Vec<Vec<u64>> {
    // Counts do not depend on the order pairs are compared in, nor on which comparison goes
    // first: one comparison at a time, the sampled records' values are read front to back
    // (the records lie anywhere; read at random they were read a page each, 21 s of a run of
    // 10M records under a 1.6 GB cap), and the pairs compared from what was read.
    let mut rows: Vec<u32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    rows.par_sort_unstable();
    rows.dedup();
    let local = |i: u32| rows.partition_point(|&r| r < i);
    let taken_pairs: Vec<(usize, usize)> = pairs
        .par_iter()
        .map(|&(a, b)| (local(a), local(b)))
        .collect();
    let count = |c: &crate::compare::Comparator, pairs: &[(usize, usize)]| {
        pairs
            .par_chunks(8192)
            .map(|part| {
                let mut k = vec![0u64; 16];
                for &(a, b) in part {
                    k[c.level(a, b) as usize & 15] += 1;
                }
                k
            })
            .reduce(
                || vec![0u64; 16],
                |mut x, y| {
                    x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
                    x
                },
            )
    };
    let counts: Vec<Vec<u64>> = comparators
        .iter()
        .map(|c| match c.take(&rows) {
            Ok(taken) => count(&c.over(&taken), &taken_pairs),
            // Not expected (the rows are the table's): compared where they lie instead.
            Err(_) => {
                let pairs: Vec<(usize, usize)> = pairs
                    .iter()
                    .map(|&(a, b)| (a as usize, b as usize))
                    .collect();
                count(c, &pairs)
            }
        })
        .collect();
    counts
}

/// Level counts per comparison over random record pairs allowed by the mode.
pub fn estimate_u(
    comparators: &[Comparator],
    source: &[u16],
    mode: Mode,
    sample: usize,
    seed: u64,
) -> (Vec<Vec<f64>>, u64) {
    let n = source.len() as u64;
    // Enough pairs for small inputs without paying for a million comparisons.
    let sample = sample.min((n as usize).saturating_mul(20).max(100_000));
    let mut rng = SplitMix(seed ^ 0x7531_u64);
    let mut pairs = Vec::with_capacity(sample);
    let multi_source = source.first() != source.last();
    let mut tries = 0usize;
    while n >= 2 && pairs.len() < sample && tries < sample * 20 {
        tries += 1;
        let (a, b) = (rng.below(n) as u32, rng.below(n) as u32);
        if a == b {
            continue;
        }
        let same = source[a as usize] == source[b as usize];
        let ok = match mode {
            Mode::Dedupe => same,
            Mode::Link => !same || !multi_source,
            Mode::Both => true,
        };
        if ok {
            pairs.push((a.min(b), a.max(b)));
        }
    }
    let counts = level_counts(comparators, &pairs);
    let u = counts
        .iter()
        .zip(comparators)
        .map(|(k, c)| {
            let levels = c.levels();
            let non_null: u64 = k[1..levels].iter().sum();
            // One pseudo-count spread over the agreeing levels keeps a level never seen in the
            // sample from weighing infinitely.
            let pseudo = 1.0 / (levels - 1) as f64;
            let mut u = vec![0.0; levels];
            for l in 1..levels {
                u[l] = (k[l] as f64 + pseudo) / (non_null as f64 + 1.0);
            }
            u
        })
        .collect();
    (u, pairs.len() as u64)
}

/// A distinct combination of levels (4 bits per comparison), the set of blocking rules whose
/// key the pairs share (bit per rule), and how many candidate pairs have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pattern {
    pub levels: u64,
    pub agree: u32,
    pub count: u64,
}

/// Distinct patterns of compared batches, sorted. `agree`
/// Patterns from ((packed levels, agree bits), count) totals, sorted.
pub fn sorted_patterns(counts: impl IntoIterator<Item = ((u64, u32), u64)>) -> Vec<Pattern> {
    let mut v: Vec<Pattern> = counts
        .into_iter()
        .map(|((levels, agree), count)| Pattern {
            levels,
            agree,
            count,
        })
        .collect();
    v.sort_unstable();
    v
}

/// holds each candidate pair's rule-agreement bits, in batch order.
pub fn patterns(
    batches: &[arrow_array::RecordBatch],
    comparisons: usize,
    agree: &[u32],
) -> Vec<Pattern> {
    use arrow_array::{Array, UInt8Array};
    let mut offsets = Vec::with_capacity(batches.len());
    let mut off = 0;
    for b in batches {
        offsets.push(off);
        off += b.num_rows();
    }
    let map = batches
        .par_iter()
        .zip(offsets)
        .map(|(b, off)| {
            let cols: Vec<&UInt8Array> = (0..comparisons)
                .filter_map(|k| {
                    b.column(crate::compare::FIRST_LEVEL + k)
                        .as_any()
                        .downcast_ref::<UInt8Array>()
                })
                .collect();
            let mut m: HashMap<(u64, u32), u64, foldhash::fast::FixedState> = HashMap::default();
            for i in 0..b.num_rows() {
                let key = cols.iter().enumerate().fold(0u64, |acc, (k, col)| {
                    acc | (u64::from(col.value(i)) << (4 * k))
                });
                let a = agree.get(off + i).copied().unwrap_or(0);
                *m.entry((key, a)).or_default() += 1;
            }
            m
        })
        .reduce(HashMap::default, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
            a
        });
    sorted_patterns(map)
}

/// Level of comparison `k` in a pattern.
fn level_of(levels: u64, k: usize) -> usize {
    ((levels >> (4 * k)) & 0xF) as usize
}

/// One EM run over `pats` with u fixed. Comparisons flagged in `masked` are ignored (their
/// agreement was forced by the blocking rule that selected these pairs). With `fit_m` false
/// only λ is estimated. Returns m, λ and the expected number of matches.
fn em(
    pats: &[&Pattern],
    u: &[Vec<f64>],
    mut m: Vec<Vec<f64>>,
    mut lambda: f64,
    masked: &[bool],
    iterations: usize,
    fit_m: bool,
) -> (Vec<Vec<f64>>, f64, f64) {
    let total: u64 = pats.iter().map(|p| p.count).sum();
    let mut matches = 0.0;
    for _ in 0..iterations {
        let mut acc: Vec<Vec<f64>> = m.iter().map(|v| vec![0.0; v.len()]).collect();
        matches = 0.0;
        for p in pats {
            let (mut pm, mut pu) = (lambda, 1.0 - lambda);
            for k in 0..m.len() {
                let l = level_of(p.levels, k);
                if l > 0 && !masked[k] {
                    pm *= m[k][l].max(FLOOR);
                    pu *= u[k][l].max(FLOOR);
                }
            }
            let w = pm / (pm + pu) * p.count as f64;
            matches += w;
            for (k, a) in acc.iter_mut().enumerate() {
                a[level_of(p.levels, k)] += w;
            }
        }
        let mut change: f64 = 0.0;
        if fit_m {
            for (k, a) in acc.iter().enumerate() {
                let non_null: f64 = a[1..].iter().sum();
                if masked[k] || non_null <= 0.0 {
                    continue;
                }
                for l in 1..a.len() {
                    let v = a[l] / non_null;
                    change = change.max((v - m[k][l]).abs());
                    m[k][l] = v;
                }
            }
        }
        let new_lambda = (matches / total.max(1) as f64).clamp(1e-9, 1.0 - 1e-9);
        change = change.max((new_lambda - lambda).abs());
        lambda = new_lambda;
        if change < 1e-7 {
            break;
        }
    }
    (m, lambda, matches)
}

/// Initial m: agreement likely for matches, most weight on the top level.
fn initial_m(u: &[Vec<f64>]) -> Vec<Vec<f64>> {
    u.iter()
        .map(|uk| {
            let mut v = vec![0.0; uk.len()];
            let mut rest = 1.0;
            for (lv, slot) in v.iter_mut().enumerate().skip(1).rev() {
                let share = if lv == 1 { rest } else { rest * 0.7 };
                *slot = share;
                rest -= share;
            }
            v
        })
        .collect()
}

/// Trains m and λ with u fixed, the way that survives blocking: one EM session per blocking
/// rule over the pairs that share the rule's key, with the rule's own comparisons left out;
/// each comparison's m is the average of the sessions that estimated it, weighted by their
/// expected matches. Then, with m and u fixed, one λ per rule over the pairs that rule found
/// first, again without the rule's own comparisons: this is the prior those pairs are scored
/// with.
pub fn train(
    plan: &KindPlan,
    u: Vec<Vec<f64>>,
    patterns: &[Pattern],
    seed: u64,
    u_pairs: u64,
) -> Model {
    let specs = &plan.comparisons;
    let kc = specs.len();
    let mut sum: Vec<Vec<f64>> = u.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut weight = vec![0.0; kc];
    for (r, rule) in plan.blocking.iter().enumerate() {
        let pats: Vec<&Pattern> = patterns
            .iter()
            .filter(|p| p.agree & (1 << r) != 0)
            .collect();
        let masked: Vec<bool> = specs.iter().map(|s| rule_covers(rule, &s.field)).collect();
        if pats.is_empty() || masked.iter().all(|&x| x) {
            continue;
        }
        let (m, _, matches) = em(
            &pats,
            &u,
            initial_m(&u),
            0.5,
            &masked,
            plan.em_iterations,
            true,
        );
        for k in 0..kc {
            if !masked[k] && matches > 0.0 {
                for (s, v) in sum[k].iter_mut().zip(&m[k]) {
                    *s += v * matches;
                }
                weight[k] += matches;
            }
        }
    }
    // Comparisons that no session could estimate: EM over all pairs.
    let all: Vec<&Pattern> = patterns.iter().collect();
    let fallback = if weight.iter().any(|&w| w <= 0.0) {
        Some(
            em(
                &all,
                &u,
                initial_m(&u),
                0.1,
                &vec![false; kc],
                plan.em_iterations,
                true,
            )
            .0,
        )
    } else {
        None
    };
    let m: Vec<Vec<f64>> = (0..kc)
        .map(|k| match (&fallback, weight[k] > 0.0) {
            (_, true) => sum[k].iter().map(|s| s / weight[k]).collect(),
            (Some(f), false) => f[k].clone(),
            (None, false) => initial_m(&u)[k].clone(),
        })
        .collect();
    let total: u64 = patterns.iter().map(|p| p.count).sum();
    let mut lambda_by_rule = Vec::with_capacity(plan.blocking.len());
    let mut expected = 0.0;
    for (r, rule) in plan.blocking.iter().enumerate() {
        let first: Vec<&Pattern> = patterns
            .iter()
            .filter(|p| p.agree.trailing_zeros() as usize == r)
            .collect();
        let masked: Vec<bool> = specs.iter().map(|s| rule_covers(rule, &s.field)).collect();
        let (l, matches) = if first.is_empty() {
            (0.5, 0.0)
        } else {
            let (_, l, matches) = em(
                &first,
                &u,
                m.clone(),
                0.5,
                &masked,
                plan.em_iterations.max(50),
                false,
            );
            (l, matches)
        };
        lambda_by_rule.push(l);
        expected += matches;
    }
    let lambda = (expected / total.max(1) as f64).clamp(1e-9, 1.0 - 1e-9);
    Model {
        kind: plan.kind,
        lambda,
        lambda_by_rule,
        comparisons: specs
            .iter()
            .zip(m)
            .zip(u)
            .map(|((spec, m), u)| ComparisonModel {
                spec: spec.clone(),
                levels: level_names(spec),
                m,
                u,
            })
            .collect(),
        blocking: plan.blocking.clone(),
        match_probability: plan.match_probability,
        review_probability: plan.review_probability,
        trained_on_pairs: total,
        u_sample_pairs: u_pairs,
        em_iterations: plan.em_iterations,
        seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_stable() {
        let mut r = SplitMix(1);
        let a: Vec<u64> = (0..3).map(|_| r.below(100)).collect();
        let mut r = SplitMix(1);
        let b: Vec<u64> = (0..3).map(|_| r.below(100)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| x < 100));
    }

    #[test]
    fn levels_counted_from_values_taken_are_the_levels_of_the_pairs() {
        use crate::standardise::StdTable;
        let names = ["王小明明", "王小明明明", "李四", "王小明"];
        let rows: Vec<(&str, String, &str)> = (0..50)
            .map(|i| ("s", i.to_string(), names[i % 4]))
            .collect();
        let rows: Vec<(&str, &str, &str)> =
            rows.iter().map(|(s, r, n)| (*s, r.as_str(), *n)).collect();
        let table = StdTable::of_names(&rows);
        let spec = crate::config::ComparisonSpec {
            field: "name".into(),
            method: crate::config::Method::JaroWinkler,
            thresholds: vec![],
            term_frequency: false,
        };
        let Ok(comparators) = crate::compare::comparators(&table, &[spec]) else {
            panic!("comparators");
        };
        let pairs: Vec<(u32, u32)> = (0..20u32)
            .flat_map(|a| (a + 1..20).map(move |b| (a, b)))
            .collect();
        let mut want = vec![0u64; 16];
        let mut row = [0u8];
        for &(a, b) in &pairs {
            comparators.levels(a as usize, b as usize, &mut row);
            want[row[0] as usize] += 1;
        }
        assert_eq!(level_counts(&comparators, &pairs), vec![want.clone()]);
        assert!(want.iter().filter(|&&k| k > 0).count() >= 3, "{want:?}");
    }

    #[test]
    fn patterns_count_pairs() {
        use arrow_array::{RecordBatch, UInt8Array, UInt32Array};
        use std::sync::Arc;
        let b = RecordBatch::try_from_iter(vec![
            ("left", Arc::new(UInt32Array::from(vec![0, 0, 1, 2])) as _),
            ("right", Arc::new(UInt32Array::from(vec![1, 2, 2, 3])) as _),
            ("rule", Arc::new(UInt8Array::from(vec![0u8, 0, 0, 0])) as _),
            ("a", Arc::new(UInt8Array::from(vec![1u8, 2, 2, 0])) as _),
            ("b", Arc::new(UInt8Array::from(vec![3u8, 3, 3, 1])) as _),
        ])
        .expect("batch");
        let p = patterns(&[b], 2, &[1, 1, 1, 1]);
        assert_eq!(p.iter().map(|x| x.count).sum::<u64>(), 4);
        assert_eq!(p.len(), 3);
    }
}
