//! Explanations: the match weight of one pair of records as a waterfall — the prior of the
//! blocking rule that found the pair, then each comparison's level and contribution (with the
//! term-frequency adjustment), the total and the probability. Shared by `report.html` and
//! `yiku explain`.
//!
//! INVARIANT: [`from_records`] adds the same terms in the same order as
//! [`super::score_batch`] (prior, then every counted comparison in model order, exact
//! agreement on a term-frequency field weighed by the value's own frequency), so its total is
//! bit-for-bit the pair's `match_weight`.

use std::path::Path;

use arrow_array::{Array, RecordBatch, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::model::{Model, rule_covers};
use super::probability;
use super::tf::TermFrequencies;
use crate::compare::Comparator;
use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::standardise::StdTable;
use crate::state::{read_parquet, read_standardised};

/// One comparison's line of a waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub field: String,
    pub level: u8,
    pub level_name: String,
    /// What the step adds to the total (0 when not counted).
    pub weight: f64,
    /// log2(m/u) of the level, before any term-frequency adjustment.
    pub level_weight: f64,
    /// False when the rule that found the pair covers this comparison's field.
    pub counted: bool,
    /// Term-frequency adjustment: the u of the agreed value (None: no adjustment).
    pub tf_u: Option<f64>,
    /// True when the adjustment was inferred from the pair's stored weight (no values).
    pub tf_inferred: bool,
    /// The compared standardised values (left, right), when known.
    pub values: Option<(Option<String>, Option<String>)>,
}

/// A pair's match weight, term by term.
#[derive(Debug, Clone, PartialEq)]
pub struct Waterfall {
    /// The blocking rule that found the pair; `None`: not a candidate pair.
    pub rule: Option<usize>,
    /// The prior probability (λ of the rule, or the overall λ for non-candidates).
    pub lambda: f64,
    /// log2 of the prior odds.
    pub prior: f64,
    pub steps: Vec<Step>,
    pub total: f64,
    pub probability: f64,
}

impl Waterfall {
    /// Display name of the rule that found the pair.
    pub fn rule_name(&self, model: &Model) -> String {
        match self.rule.and_then(|r| model.blocking.get(r)) {
            Some(r) => crate::block::rule_name(r),
            None => "none (not a candidate pair)".into(),
        }
    }
}

/// The prior weight of a pair found by `rule` (`None`: the overall λ).
fn prior(model: &Model, rule: Option<usize>) -> (f64, f64) {
    // `prior_weight` falls back to the overall λ for a rule index it does not know.
    let r = rule.unwrap_or(model.lambda_by_rule.len().max(model.blocking.len()));
    let lambda = model.lambda_by_rule.get(r).copied().unwrap_or(model.lambda);
    (lambda, model.prior_weight(r))
}

/// Whether comparison `k` counts for a pair found by `rule` (all count for non-candidates).
fn counts(model: &Model, rule: Option<usize>, k: usize) -> bool {
    let Some(rule) = rule.and_then(|r| model.blocking.get(r)) else {
        return true;
    };
    model
        .comparisons
        .get(k)
        .is_none_or(|c| !rule_covers(rule, &c.spec.field))
}

/// The waterfall of records `a` and `b` of a standardised table, compared afresh with the
/// run's comparators and term frequencies. `rule` is the blocking rule that found the pair.
pub fn from_records(
    model: &Model,
    comparators: &[Comparator],
    tfs: &[Option<TermFrequencies>],
    a: usize,
    b: usize,
    rule: Option<usize>,
) -> Waterfall {
    // Pairs are compared as (left, right) with left < right, like the pipeline.
    let (i, j) = (a.min(b), a.max(b));
    let (lambda, prior) = prior(model, rule);
    let mut total = prior;
    let mut steps = Vec::with_capacity(model.comparisons.len());
    for (k, (cm, cmp)) in model.comparisons.iter().zip(comparators).enumerate() {
        let lv = cmp.level(i, j);
        let counted = counts(model, rule, k);
        let exact = lv as usize + 1 == cm.m.len();
        let tf_u = match (tfs.get(k), exact) {
            (Some(Some(tf)), true) => Some(tf.u_of(cmp.value(i))),
            _ => None,
        };
        let w = match tf_u {
            Some(u) => cm.tf_weight(u),
            None => cm.weight(lv),
        };
        if counted {
            total += w;
        }
        steps.push(Step {
            field: cm.spec.field.clone(),
            level: lv,
            level_name: level_name(cm, lv),
            weight: if counted { w } else { 0.0 },
            level_weight: cm.weight(lv),
            counted,
            tf_u: tf_u.flatten(),
            tf_inferred: false,
            values: Some((
                cmp.value(i).map(str::to_string),
                cmp.value(j).map(str::to_string),
            )),
        });
    }
    Waterfall {
        rule,
        lambda,
        prior,
        steps,
        total,
        probability: probability(total),
    }
}

/// The waterfall of a scored pair from its levels alone (as stored in `pairs.parquet`),
/// without the records' values: the term-frequency adjustment of exact agreement is what the
/// stored `match_weight` holds beyond the level weights.
pub fn from_levels(model: &Model, levels: &[u8], rule: usize, match_weight: f64) -> Waterfall {
    let rule = Some(rule);
    let (lambda, prior) = prior(model, rule);
    let mut steps = Vec::with_capacity(model.comparisons.len());
    let mut sum = prior;
    let mut tf_steps = Vec::new();
    for (k, cm) in model.comparisons.iter().enumerate() {
        let lv = levels.get(k).copied().unwrap_or(0);
        let counted = counts(model, rule, k);
        let w = cm.weight(lv);
        if counted && cm.spec.term_frequency && lv as usize + 1 == cm.m.len() {
            tf_steps.push(k);
        }
        if counted {
            sum += w;
        }
        steps.push(Step {
            field: cm.spec.field.clone(),
            level: lv,
            level_name: level_name(cm, lv),
            weight: if counted { w } else { 0.0 },
            level_weight: w,
            counted,
            tf_u: None,
            tf_inferred: false,
            values: None,
        });
    }
    // What the stored weight holds beyond the level weights is the term-frequency adjustment;
    // with several adjusted fields it is split evenly between them.
    let mut total = sum;
    if !tf_steps.is_empty() {
        let extra = (match_weight - sum) / tf_steps.len() as f64;
        for &k in &tf_steps {
            steps[k].weight += extra;
            steps[k].tf_inferred = true;
        }
        total = match_weight;
    }
    Waterfall {
        rule,
        lambda,
        prior,
        steps,
        total,
        probability: probability(total),
    }
}

fn level_name(cm: &super::ComparisonModel, lv: u8) -> String {
    cm.levels
        .get(lv as usize)
        .cloned()
        .unwrap_or_else(|| format!("level {lv}"))
}

/// Index of a blocking rule of the model by its display name (`birth_date+name_pinyin`).
pub fn rule_index(model: &Model, name: &str) -> Option<usize> {
    model
        .blocking
        .iter()
        .position(|r| crate::block::rule_name(r) == name)
}

/// Reads the named columns of only the given rows (sorted, unique) of a Parquet file: pages
/// without a wanted row are not decoded.
pub fn read_parquet_rows(
    path: &Path,
    columns: &[&str],
    rows: &[usize],
) -> Result<Vec<RecordBatch>> {
    use parquet::arrow::arrow_reader::RowSelection;
    let read_err = |e: &dyn std::fmt::Display| Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(&e))?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let ranges = rows.iter().filter(|&&r| r < total).map(|&r| r..r + 1);
    let selection = RowSelection::from_consecutive_ranges(ranges, total);
    builder
        .with_projection(mask)
        .with_row_selection(selection)
        .build()
        .map_err(|e| read_err(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| read_err(&e))
}

/// Row of a record in a standardised table.
pub fn find_record(table: &StdTable, source: &str, record_id: &str) -> Option<usize> {
    let s = table.sources.iter().position(|x| x == source)? as u16;
    (0..table.len()).find(|&i| table.source[i] == s && table.record_id.value(i) == record_id)
}

/// How one blocking rule treats a pair of records.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    pub rule: String,
    /// Every column of the rule is non-null and equal on both records.
    pub joins: bool,
    /// Per column: (column, left value, right value).
    pub columns: Vec<(String, Option<String>, Option<String>)>,
    /// Records sharing the pair's key (when it joins them): the block's size.
    pub block_size: Option<u64>,
}

/// Checks every blocking rule of the model on records `a` and `b`.
pub fn check_rules(model: &Model, table: &StdTable, a: usize, b: usize) -> Vec<RuleCheck> {
    model
        .blocking
        .iter()
        .map(|rule| {
            let mut columns = Vec::new();
            let mut joins = true;
            let mut cols = Vec::new();
            for c in rule {
                let col = table.column(c);
                let get = |i: usize| col.and_then(|a| table.value(a, i)).map(str::to_string);
                let (x, y) = (get(a), get(b));
                joins &= x.is_some() && x == y;
                columns.push((c.clone(), x, y));
                cols.push(col);
            }
            let block_size = joins.then(|| {
                (0..table.len())
                    .filter(|&i| {
                        cols.iter().all(|c| {
                            c.is_some_and(|c| {
                                c.is_valid(i) && c.is_valid(a) && c.value(i) == c.value(a)
                            })
                        })
                    })
                    .count() as u64
            });
            RuleCheck {
                rule: crate::block::rule_name(rule),
                joins,
                columns,
                block_size,
            }
        })
        .collect()
}

/// A pair as stored in `pairs.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPair {
    pub left: (String, String),
    pub right: (String, String),
    pub blocking_rule: String,
    pub match_weight: f64,
    pub match_probability: f64,
    /// Level per comparison of the model, in model order.
    pub levels: Vec<u8>,
}

/// Columns of `pairs.parquet` that identify and score a pair, plus the model's level columns.
pub fn pair_columns(model: &Model) -> Vec<String> {
    let mut c: Vec<String> = [
        "kind",
        "source_l",
        "record_id_l",
        "source_r",
        "record_id_r",
        "blocking_rule",
        "match_weight",
        "match_probability",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.extend(
        model
            .comparisons
            .iter()
            .map(|m| format!("level_{}", m.spec.field)),
    );
    c
}

/// Reads the rows `keep` accepts (kind, left, right as `(source, record_id)`) from a batch of
/// `pairs.parquet` read with [`pair_columns`].
pub fn stored_pairs(
    model: &Model,
    batch: &RecordBatch,
    mut keep: impl FnMut(usize, &str, (&str, &str), (&str, &str)) -> bool,
) -> Vec<StoredPair> {
    use arrow_array::{Float64Array, UInt8Array};
    let text = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    };
    let float = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
    };
    let (Some(kind), Some(sl), Some(rl), Some(sr), Some(rr), Some(rule), Some(w), Some(p)) = (
        text("kind"),
        text("source_l"),
        text("record_id_l"),
        text("source_r"),
        text("record_id_r"),
        text("blocking_rule"),
        float("match_weight"),
        float("match_probability"),
    ) else {
        return Vec::new();
    };
    let levels: Vec<Option<&UInt8Array>> = model
        .comparisons
        .iter()
        .map(|m| {
            batch
                .column_by_name(&format!("level_{}", m.spec.field))
                .and_then(|c| c.as_any().downcast_ref::<UInt8Array>())
        })
        .collect();
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        let (l, r) = ((sl.value(i), rl.value(i)), (sr.value(i), rr.value(i)));
        if !keep(i, kind.value(i), l, r) {
            continue;
        }
        out.push(StoredPair {
            left: (l.0.to_string(), l.1.to_string()),
            right: (r.0.to_string(), r.1.to_string()),
            blocking_rule: rule.value(i).to_string(),
            match_weight: w.value(i),
            match_probability: p.value(i),
            levels: levels
                .iter()
                .map(|c| c.filter(|c| c.is_valid(i)).map_or(0, |c| c.value(i)))
                .collect(),
        });
    }
    out
}

/// Everything `yiku explain` says about two records.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub kind: EntityKind,
    pub model: Model,
    /// The two records as (source, record id), in the run's order (left first).
    pub left: (String, String),
    pub right: (String, String),
    /// Their master ids.
    pub master_ids: (String, String),
    /// The pair as scored by the run; `None`: never compared.
    pub stored: Option<StoredPair>,
    /// How every blocking rule treats the pair (empty without standardised records).
    pub rules: Vec<RuleCheck>,
    pub waterfall: Waterfall,
    /// Skipped (oversized) blocks of the run, per rule: (rule, records).
    pub skipped_blocks: Vec<(String, u64)>,
    /// The run was a nightly delta: it compared only pairs with a record new or changed that
    /// night; pairs of earlier nights are kept as links, not compared again.
    pub delta_run: bool,
}

/// Whether the run in `run_dir` was a delta run (its `run.json` names a delta folder).
fn is_delta_run(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["delta"].is_string())
}

/// Explains the match weight of two records of a run's output folder.
pub fn explain(run_dir: &Path, a: (&str, &str), b: (&str, &str)) -> Result<Explanation> {
    if a == b {
        return Err(Error::Data {
            stage: "explain",
            message: format!("{}:{} is given twice: name two records", a.0, a.1),
        });
    }
    let models = super::model::ModelFile::load(&run_dir.join("model.json"))?;
    let (found, index) = locate(run_dir, a, b)?;
    let not_found = |k: (&str, &str)| Error::Data {
        stage: "explain",
        message: format!(
            "record {}:{} is not in {index}; give records as SOURCE:RECORD_ID as in the master index",
            k.0, k.1,
        ),
    };
    let [Some((ka, ma)), Some((kb, mb))] = found else {
        let missing = if found[0].is_none() { a } else { b };
        return Err(not_found(missing));
    };
    if ka != kb {
        return Err(Error::Data {
            stage: "explain",
            message: format!(
                "{}:{} is a {ka} and {}:{} a {kb}; only records of the same kind are compared",
                a.0, a.1, b.0, b.1
            ),
        });
    }
    let kind = EntityKind::ALL
        .into_iter()
        .find(|k| k.as_str() == ka)
        .ok_or_else(|| Error::Data {
            stage: "explain",
            message: format!("unknown kind `{ka}` in the master index"),
        })?;
    let model = models.model(kind).cloned().ok_or_else(|| Error::Data {
        stage: "explain",
        message: format!("model.json has no {ka} model"),
    })?;
    let pairs_path = run_dir.join("pairs.parquet");
    let cols = pair_columns(&model);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut stored = None;
    for batch in read_parquet(&pairs_path, Some(&col_refs))? {
        let hit = stored_pairs(&model, &batch, |_, k, l, r| {
            k == ka && ((l == a && r == b) || (l == b && r == a))
        });
        if let Some(p) = hit.into_iter().next() {
            stored = Some(p);
            break;
        }
    }
    let skipped_blocks = skipped_blocks(run_dir, &ka);
    let rule = match &stored {
        Some(p) => Some(
            rule_index(&model, &p.blocking_rule).ok_or_else(|| Error::Data {
                stage: "explain",
                message: format!(
                    "pairs.parquet names blocking rule `{}`, which model.json does not have",
                    p.blocking_rule
                ),
            })?,
        ),
        None => None,
    };
    let (mut left, mut right, mut master_ids) = (
        (a.0.to_string(), a.1.to_string()),
        (b.0.to_string(), b.1.to_string()),
        (ma, mb),
    );
    match standardised_records(run_dir, kind)? {
        Some(table) => {
            let (Some(i), Some(j)) = (find_record(&table, a.0, a.1), find_record(&table, b.0, b.1))
            else {
                let missing = if find_record(&table, a.0, a.1).is_none() {
                    a
                } else {
                    b
                };
                return Err(not_found(missing));
            };
            if j < i {
                std::mem::swap(&mut left, &mut right);
                master_ids = (master_ids.1, master_ids.0);
            }
            let specs: Vec<_> = model.comparisons.iter().map(|c| c.spec.clone()).collect();
            let comparators = crate::compare::comparators(&table, &specs)?;
            let tfs = super::term_frequencies(&model, &comparators, &[i, j]);
            let waterfall = from_records(&model, &comparators, &tfs, i, j, rule);
            let rules = check_rules(&model, &table, i.min(j), i.max(j));
            Ok(Explanation {
                kind,
                model,
                left,
                right,
                master_ids,
                stored,
                rules,
                waterfall,
                skipped_blocks,
                delta_run: is_delta_run(run_dir),
            })
        }
        None => {
            let (Some(p), Some(r)) = (&stored, rule) else {
                return Err(Error::Data {
                    stage: "explain",
                    message: format!(
                        "{}:{} and {}:{} were never compared, and the output folder has no standardised records (standardised_{ka}.arrow or store/); rerun the job (every run writes them) to compare them",
                        a.0, a.1, b.0, b.1
                    ),
                });
            };
            left = p.left.clone();
            right = p.right.clone();
            if left.0 != a.0 || left.1 != a.1 {
                master_ids = (master_ids.1, master_ids.0);
            }
            let waterfall = from_levels(&model, &p.levels, r, p.match_weight);
            Ok(Explanation {
                kind,
                model,
                left,
                right,
                master_ids,
                stored,
                rules: Vec::new(),
                waterfall,
                skipped_blocks,
                delta_run: is_delta_run(run_dir),
            })
        }
    }
}

/// Per record, its kind and master id (`None`: not found); and what was searched, for
/// messages.
type Located = ([Option<(String, String)>; 2], String);

/// Where two records are in a run's index: `master_index.parquet`, or, in a delta night's
/// folder (which has only its changes), the whole index in `store/`, looked up by record (a
/// binary search per segment).
fn locate(run_dir: &Path, a: (&str, &str), b: (&str, &str)) -> Result<Located> {
    let mi_path = run_dir.join(crate::output::MASTER_INDEX);
    let mut found: [Option<(String, String)>; 2] = [None, None];
    if !mi_path.is_file() {
        if crate::store::Manifest::read(run_dir)?.is_none() {
            return Err(Error::Data {
                stage: "explain",
                message: format!(
                    "{} has neither {} nor a persistent index (store/): not the output folder of a yiku run",
                    run_dir.display(),
                    crate::output::MASTER_INDEX
                ),
            });
        }
        for kind in EntityKind::ALL {
            let Some(store) = crate::store::KindStore::open(run_dir, kind)? else {
                continue;
            };
            for (slot, key) in found.iter_mut().zip([a, b]) {
                if slot.is_some() {
                    continue;
                }
                let Some(at) = store.find(key.0, key.1) else {
                    continue;
                };
                let id = store
                    .master_id(at)
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .unwrap_or_default();
                *slot = Some((kind.as_str().to_string(), id));
            }
        }
        let store = run_dir.join(crate::store::DIR);
        return Ok((found, format!("the index in {}", store.display())));
    }
    let mi = read_parquet(
        &mi_path,
        Some(&["kind", "source", "record_id", "master_id"]),
    )?;
    for batch in &mi {
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (Some(kind), Some(src), Some(rid), Some(mid)) = (
            col("kind"),
            col("source"),
            col("record_id"),
            col("master_id"),
        ) else {
            return Err(Error::Schema {
                path: mi_path.clone(),
                column: "kind/source/record_id/master_id".into(),
                message: "missing: not a yiku master index".into(),
            });
        };
        for i in 0..batch.num_rows() {
            for (slot, key) in found.iter_mut().zip([a, b]) {
                if src.value(i) == key.0 && rid.value(i) == key.1 {
                    *slot = Some((kind.value(i).to_string(), mid.value(i).to_string()));
                }
            }
        }
    }
    Ok((found, mi_path.display().to_string()))
}

/// A kind's standardised records: `standardised_<kind>.arrow`, or, in a delta night's folder
/// (which does not write it), the whole index merged out of `store/` (O(records), like reading
/// the file); `None` when the folder has neither.
fn standardised_records(run_dir: &Path, kind: EntityKind) -> Result<Option<StdTable>> {
    if let Some(table) = read_standardised(run_dir, kind, None)? {
        return Ok(Some(table));
    }
    match crate::store::KindStore::open(run_dir, kind)? {
        Some(store) => Ok(Some(store.merged(&crate::state::join)?.table)),
        None => Ok(None),
    }
}

/// The oversized blocks `run.json` lists for a kind: (rule, records).
pub fn skipped_blocks(run_dir: &Path, kind: &str) -> Vec<(String, u64)> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("run.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for k in v["kinds"].as_array().into_iter().flatten() {
        if k["kind"].as_str() != Some(kind) {
            continue;
        }
        for r in k["blocking"].as_array().into_iter().flatten() {
            for s in r["skipped"].as_array().into_iter().flatten() {
                if let (Some(rule), Some(n)) = (s["rule"].as_str(), s["records"].as_u64()) {
                    out.push((rule.to_string(), n));
                }
            }
        }
    }
    out
}
