//! Stage 8: report. Consumes: every stage's counts and the master index. Produces: the run
//! summary (`run.json`) and, given a truth file, the evaluation of a run's master index
//! (pairwise and B-cubed precision/recall/F1, split and over-merged entities, blocking
//! completeness), overall and per pair of departments.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::block::RuleStats;
use crate::error::{Error, Result};
use crate::load::SourceStats;

/// Seconds and counts of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageStats {
    pub stage: String,
    pub kind: String,
    pub seconds: f64,
    pub count: u64,
}

/// Per-kind results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    pub kind: String,
    pub records: u64,
    pub candidate_pairs: u64,
    pub blocking: Vec<RuleStats>,
    pub standardise: BTreeMap<String, u64>,
    pub matches: u64,
    pub review_pairs: u64,
    pub clusters: u64,
    pub must_not_link_conflicts: u64,
    pub cut_edges: u64,
    pub model_reused: bool,
    /// Clerks' decisions applied (must-link and cannot-link pairs).
    pub decisions_applied: u64,
    pub lambda: f64,
    /// What tonight's delta changed (delta runs only).
    pub delta: Option<crate::delta::DeltaStats>,
}

/// `run.json`: what went in, what each stage did, what came out.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub yiku_version: String,
    pub job: String,
    /// Run number within this master index's history (1 for a first run).
    pub run: u64,
    pub run_id: String,
    /// Output folder of the previous run whose master ids were kept.
    pub previous: Option<String>,
    /// The delta folder applied to the previous run's index (delta runs only).
    pub delta: Option<String>,
    /// Which model scored the pairs.
    pub model: String,
    pub threads: usize,
    /// How the records were held ([`crate::load::MemoryMode`]; `mapped` under a tight
    /// `memory_limit`).
    pub memory: crate::load::MemoryMode,
    pub sources: Vec<SourceStats>,
    pub kinds: Vec<KindSummary>,
    pub stages: Vec<StageStats>,
    pub quarantined: u64,
    pub records_in: u64,
    pub records_in_master_index: u64,
    pub conservation_ok: bool,
    pub total_seconds: f64,
    pub peak_rss_mb: f64,
}

/// Peak resident memory of this process in MB (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Prf {
    fn from_counts(tp: f64, predicted: f64, actual: f64) -> Prf {
        let precision = if predicted > 0.0 { tp / predicted } else { 1.0 };
        let recall = if actual > 0.0 { tp / actual } else { 1.0 };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            f1,
        }
    }
}

/// Pair counts of one pair of departments.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct PairCounts {
    pub true_positive: u64,
    pub predicted: u64,
    pub actual: u64,
    pub candidates_true: u64,
    pub pairwise: Prf,
}

/// The evaluation of a run against a truth file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub records: u64,
    pub records_not_in_run: u64,
    pub entities: u64,
    pub clusters: u64,
    pub pairwise: Prf,
    pub true_positive_pairs: u64,
    pub predicted_pairs: u64,
    pub true_pairs: u64,
    pub bcubed: Prf,
    /// Predicted clusters holding records of more than one entity.
    pub over_merged_clusters: u64,
    /// Entities whose records are spread over more than one cluster.
    pub split_entities: u64,
    /// Share of true pairs that were candidate pairs.
    pub pairs_completeness: Option<f64>,
    /// 1 - candidate pairs / all pairs.
    pub reduction_ratio: Option<f64>,
    pub by_departments: BTreeMap<String, PairCounts>,
}

/// A record of the evaluation: its source, predicted cluster and true entity.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub source: String,
    pub cluster: String,
    pub entity: String,
}

fn choose2(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Pairs between the members of a group, counted per pair of departments.
fn pairs_by_dept(counts: &BTreeMap<&str, u64>, out: &mut BTreeMap<String, u64>) {
    let v: Vec<(&&str, &u64)> = counts.iter().collect();
    for (x, (sa, na)) in v.iter().enumerate() {
        if **na > 1 {
            *out.entry(format!("{sa}~{sa}")).or_default() += choose2(**na);
        }
        for (sb, nb) in &v[x + 1..] {
            *out.entry(format!("{sa}~{sb}")).or_default() += **na * **nb;
        }
    }
}

/// Evaluates predicted clusters against true entities. `candidates` are the run's candidate
/// pairs as (record, record) indices into `records`, for pairs completeness.
pub fn evaluate(
    records: &[Labelled],
    candidates: Option<&[(usize, usize)]>,
    not_in_run: u64,
) -> Evaluation {
    let n = records.len() as u64;
    let mut by_cluster: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_entity: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_both: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_cluster.entry(&r.cluster).or_default().push(i);
        by_entity.entry(&r.entity).or_default().push(i);
        by_both.entry((&r.cluster, &r.entity)).or_default().push(i);
    }
    let group_pairs = |groups: Vec<&Vec<usize>>, out: &mut BTreeMap<String, u64>| -> u64 {
        let mut total = 0;
        for members in groups {
            total += choose2(members.len() as u64);
            let mut per: BTreeMap<&str, u64> = BTreeMap::new();
            for &i in members {
                *per.entry(records[i].source.as_str()).or_default() += 1;
            }
            pairs_by_dept(&per, out);
        }
        total
    };
    let (mut pred_d, mut true_d, mut tp_d) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let predicted = group_pairs(by_cluster.values().collect(), &mut pred_d);
    let actual = group_pairs(by_entity.values().collect(), &mut true_d);
    let tp = group_pairs(by_both.values().collect(), &mut tp_d);
    let (mut bp, mut br) = (0.0, 0.0);
    for members in by_both.values() {
        let r0 = &records[members[0]];
        let k = members.len() as f64;
        let c = by_cluster[r0.cluster.as_str()].len() as f64;
        let e = by_entity[r0.entity.as_str()].len() as f64;
        bp += k * k / c;
        br += k * k / e;
    }
    let bcubed = if n > 0 {
        let (p, r) = (bp / n as f64, br / n as f64);
        Prf {
            precision: p,
            recall: r,
            f1: if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            },
        }
    } else {
        Prf::default()
    };
    let mut entities_in_cluster: HashMap<&str, u64> = HashMap::new();
    let mut clusters_of_entity: HashMap<&str, u64> = HashMap::new();
    for (c, e) in by_both.keys() {
        *entities_in_cluster.entry(c).or_default() += 1;
        *clusters_of_entity.entry(e).or_default() += 1;
    }
    let mut cand_true: BTreeMap<String, u64> = BTreeMap::new();
    let (mut completeness, mut reduction) = (None, None);
    if let Some(cands) = candidates {
        let mut found = 0u64;
        for &(a, b) in cands {
            if records[a].entity == records[b].entity {
                found += 1;
                let (sa, sb) = (&records[a].source, &records[b].source);
                let key = if sa <= sb {
                    format!("{sa}~{sb}")
                } else {
                    format!("{sb}~{sa}")
                };
                *cand_true.entry(key).or_default() += 1;
            }
        }
        completeness = Some(if actual > 0 {
            found as f64 / actual as f64
        } else {
            1.0
        });
        let all = choose2(n);
        reduction = Some(if all > 0 {
            1.0 - cands.len() as f64 / all as f64
        } else {
            1.0
        });
    }
    let mut by_departments = BTreeMap::new();
    for key in pred_d.keys().chain(true_d.keys()) {
        let t = tp_d.get(key).copied().unwrap_or(0);
        let p = pred_d.get(key).copied().unwrap_or(0);
        let a = true_d.get(key).copied().unwrap_or(0);
        by_departments.insert(
            key.clone(),
            PairCounts {
                true_positive: t,
                predicted: p,
                actual: a,
                candidates_true: cand_true.get(key).copied().unwrap_or(0),
                pairwise: Prf::from_counts(t as f64, p as f64, a as f64),
            },
        );
    }
    Evaluation {
        records: n,
        records_not_in_run: not_in_run,
        entities: by_entity.len() as u64,
        clusters: by_cluster.len() as u64,
        pairwise: Prf::from_counts(tp as f64, predicted as f64, actual as f64),
        true_positive_pairs: tp,
        predicted_pairs: predicted,
        true_pairs: actual,
        bcubed,
        over_merged_clusters: entities_in_cluster.values().filter(|&&k| k > 1).count() as u64,
        split_entities: clusters_of_entity.values().filter(|&&k| k > 1).count() as u64,
        pairs_completeness: completeness,
        reduction_ratio: reduction,
        by_departments,
    }
}

/// Evaluates the run in `run_dir` against a truth file (`source`, `record_id`, `entity_id`;
/// `source` may be absent when the run has one source).
pub fn evaluate_run(truth: &Path, run_dir: &Path) -> Result<Evaluation> {
    let t = crate::load::read_text_columns(truth, &["source", "record_id", "entity_id"])?;
    let missing = |c: &str| Error::Schema {
        path: truth.to_path_buf(),
        column: c.into(),
        message: "not found; a truth file has `record_id`, `entity_id` and optionally `source`"
            .into(),
    };
    let t_rec = t[1].clone().ok_or_else(|| missing("record_id"))?;
    let t_ent = t[2].clone().ok_or_else(|| missing("entity_id"))?;
    let t_src = t[0].clone();
    let mi = run_dir.join("master_index.parquet");
    // A delta night's folder holds its changes: its whole index is in its store.
    let m = match crate::store::index_rows(run_dir)? {
        Some(kinds) if !mi.is_file() => {
            let text = |a: &arrow_array::StringArray| -> Vec<Option<String>> {
                a.iter().map(|v| v.map(str::to_string)).collect()
            };
            let mut cols = vec![Some(Vec::new()), Some(Vec::new()), Some(Vec::new())];
            for (_, arrays) in kinds {
                for (c, a) in cols.iter_mut().zip(&arrays) {
                    if let Some(c) = c {
                        c.extend(text(a));
                    }
                }
            }
            cols
        }
        _ => crate::load::read_text_columns(&mi, &["source", "record_id", "master_id"])?,
    };
    let (m_src, m_rec, m_id) = match (&m[0], &m[1], &m[2]) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => {
            return Err(Error::Schema {
                path: mi,
                column: "source/record_id/master_id".into(),
                message: "missing: not a yiku master index".into(),
            });
        }
    };
    let key = |s: Option<&str>, r: &str| match (&t_src, s) {
        (Some(_), Some(s)) => format!("{s}\u{1f}{r}"),
        _ => r.to_string(),
    };
    let mut cluster_of: HashMap<String, (String, String)> = HashMap::new();
    for i in 0..m_rec.len() {
        if let (Some(s), Some(r), Some(c)) = (&m_src[i], &m_rec[i], &m_id[i]) {
            cluster_of.insert(key(Some(s), r), (c.clone(), s.clone()));
        }
    }
    let mut records = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut not_in_run = 0;
    for i in 0..t_rec.len() {
        let (Some(r), Some(e)) = (&t_rec[i], &t_ent[i]) else {
            continue;
        };
        let s = t_src.as_ref().and_then(|v| v[i].as_deref());
        let k = key(s, r);
        match cluster_of.get(&k) {
            Some((c, src)) => {
                index.insert(k, records.len());
                records.push(Labelled {
                    source: src.clone(),
                    cluster: c.clone(),
                    entity: e.clone(),
                });
            }
            None => not_in_run += 1,
        }
    }
    let pairs_path = run_dir.join("pairs.parquet");
    // A delta run's pairs file holds only tonight's pairs: blocking is judged on full runs.
    let delta_run = std::fs::read_to_string(run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["delta"].is_string());
    let cands = if pairs_path.exists() && !delta_run {
        let p = crate::load::read_text_columns(
            &pairs_path,
            &["source_l", "record_id_l", "source_r", "record_id_r"],
        )?;
        match (&p[0], &p[1], &p[2], &p[3]) {
            (Some(sl), Some(rl), Some(sr), Some(rr)) => {
                let mut v = Vec::with_capacity(sl.len());
                for i in 0..sl.len() {
                    let (Some(sl), Some(rl), Some(sr), Some(rr)) = (&sl[i], &rl[i], &sr[i], &rr[i])
                    else {
                        continue;
                    };
                    if let (Some(&a), Some(&b)) =
                        (index.get(&key(Some(sl), rl)), index.get(&key(Some(sr), rr)))
                    {
                        v.push((a, b));
                    }
                }
                Some(v)
            }
            _ => None,
        }
    } else {
        None
    };
    Ok(evaluate(&records, cands.as_deref(), not_in_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(v: &[(&str, &str)]) -> Vec<Labelled> {
        v.iter()
            .map(|(c, e)| Labelled {
                source: "s".into(),
                cluster: c.to_string(),
                entity: e.to_string(),
            })
            .collect()
    }

    #[test]
    fn hand_computed_case() {
        // Truth: {0,1,2} {3}; predicted: {0,1} {2,3}.
        let r = recs(&[("a", "x"), ("a", "x"), ("b", "x"), ("b", "y")]);
        let e = evaluate(&r, None, 0);
        assert_eq!(
            (e.true_positive_pairs, e.predicted_pairs, e.true_pairs),
            (1, 2, 3)
        );
        assert!((e.pairwise.precision - 0.5).abs() < 1e-12);
        assert!((e.pairwise.recall - 1.0 / 3.0).abs() < 1e-12);
        // B-cubed precision: (1 + 1 + 1/2 + 1/2) / 4; recall: (2/3 + 2/3 + 1/3 + 1) / 4.
        assert!((e.bcubed.precision - 0.75).abs() < 1e-12);
        assert!((e.bcubed.recall - (8.0 / 3.0) / 4.0).abs() < 1e-12);
        assert_eq!(e.over_merged_clusters, 1);
        assert_eq!(e.split_entities, 1);
    }

    #[test]
    fn all_singletons_and_everything_in_one_cluster() {
        let single = recs(&[("a", "x"), ("b", "x"), ("c", "y")]);
        let e = evaluate(&single, Some(&[]), 0);
        assert_eq!(e.pairwise.precision, 1.0);
        assert_eq!(e.pairwise.recall, 0.0);
        assert_eq!(e.pairwise.f1, 0.0);
        assert_eq!(e.pairs_completeness, Some(0.0));
        let one = recs(&[("a", "x"), ("a", "x"), ("a", "y")]);
        let e = evaluate(&one, Some(&[(0, 1), (0, 2), (1, 2)]), 0);
        assert!((e.pairwise.precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.pairwise.recall, 1.0);
        assert_eq!(e.pairs_completeness, Some(1.0));
        assert_eq!(e.reduction_ratio, Some(0.0));
    }
}
