//! Engine entry points: the stages as functions of Arrow record batches, for running a job
//! on an engine other than [`pipeline`](crate::pipeline) (the Spark driver and executors of
//! `python/`). Consumes: the job [`Plan`] and batches of records, block groups or edges.
//! Produces: batches of standardised records with blocking keys, scored candidate pairs,
//! level patterns, a trained [`Model`], and the master index. Cost: that of the stages called.
//!
//! Every function is built from the stages' public functions, so a record, a pair and a
//! cluster come out exactly as in a single-machine run:
//! - a record is identified by (`_source`, `_rid`): the index of its source among the kind's
//!   sources sorted by name, and its trimmed record id. Ordering records by that pair is the
//!   load stage's order, so "left < right" means the same here as in [`block`].
//! - blocking keys are [`block::rule_keys`] hashes (as `i64` bits, 0 = no key); the caller
//!   zeroes the keys of blocks above `max_block_size` before [`block_group`], exactly as the
//!   block stage does, so the first-rule attribution and the agree bits are the same.
//! - term frequencies are whole-column counts passed in by the caller ([`Scorer::new`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int8Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::cluster::{self, Edge};
use crate::config::{EntityKind, KindPlan, Method, Mode, Plan};
use crate::error::{Error, Result};
use crate::load::RawTable;
use crate::score::Model;
use crate::score::em;
use crate::score::tf::TermFrequencies;
use crate::standardise::StdTable;
use crate::{block, compare, master, output, standardise};

/// Column of a record's source index (among its kind's sources, sorted by name).
pub const SOURCE: &str = "_source";
/// Column of a record's trimmed record id.
pub const RID: &str = "_rid";
/// Column of a prepared row's raw text (`column=value; ...`), which orders duplicates.
pub const RAW: &str = "_raw";
/// Column of why a prepared row must be quarantined (null when it can be used).
pub const REJECT: &str = "_reject";

/// Column of blocking rule `r`'s key hash.
pub fn key_column(r: usize) -> String {
    format!("_k{r}")
}

fn data_err(message: impl ToString) -> Error {
    Error::Data {
        stage: "engine",
        message: message.to_string(),
    }
}

fn arrow_err(e: arrow_schema::ArrowError) -> Error {
    data_err(e)
}

/// A parsed job with the lookups the engine needs.
pub struct Job {
    pub plan: Plan,
}

impl Job {
    /// Parses a job file's text; `path` is where it lives (relative paths start there).
    pub fn from_toml(text: &str, path: &Path) -> Result<Job> {
        Ok(Job {
            plan: Plan::from_toml(text, path)?,
        })
    }

    /// The settings of a kind named `person`, `enterprise` or `generic`.
    pub fn kind(&self, kind: &str) -> Result<&KindPlan> {
        self.plan
            .kinds
            .iter()
            .find(|k| k.kind.as_str() == kind)
            .ok_or_else(|| {
                let known: Vec<&str> = self.plan.kinds.iter().map(|k| k.kind.as_str()).collect();
                data_err(format!(
                    "the job has no sources of kind `{kind}`; its kinds are: {}",
                    known.join(", ")
                ))
            })
    }

    /// The names of a kind's sources, sorted: a record's `_source` indexes this list.
    pub fn kind_sources(&self, kind: EntityKind) -> Vec<String> {
        let mut v: Vec<String> = self
            .plan
            .sources
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Standardised columns that pairing needs: compared fields (and the pinyin of person
    /// names) and must-not-link columns, sorted.
    pub fn pair_columns(&self, kp: &KindPlan) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in &kp.comparisons {
            v.push(c.field.clone());
            if c.method == Method::PersonName {
                v.push(format!("{}_pinyin", c.field));
            }
        }
        v.extend(kp.must_not_link.iter().cloned());
        v.sort();
        v.dedup();
        v
    }

    /// What a driver needs to know about the job, as JSON.
    pub fn describe(&self) -> serde_json::Value {
        let p = &self.plan;
        let sources: Vec<serde_json::Value> = p
            .sources
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "kind": s.kind.as_str(),
                    "path": s.path.display().to_string(),
                    "format": format!("{:?}", s.format).to_lowercase(),
                    "record_id": s.record_id,
                    "columns": s.columns.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let kinds: Vec<serde_json::Value> = p
            .kinds
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kind": k.kind.as_str(),
                    "sources": self.kind_sources(k.kind),
                    "fields": k.fields.keys().cloned().collect::<Vec<_>>(),
                    "blocking": k.blocking,
                    "rule_names": k.blocking.iter().map(|r| block::rule_name(r)).collect::<Vec<_>>(),
                    "max_block_size": k.max_block_size,
                    "comparisons": k.comparisons.iter().map(|c| c.field.clone()).collect::<Vec<_>>(),
                    "term_frequency": k.comparisons.iter().filter(|c| c.term_frequency).map(|c| c.field.clone()).collect::<Vec<_>>(),
                    "must_not_link": k.must_not_link,
                    "pair_columns": self.pair_columns(k),
                    "match_probability": k.match_probability,
                    "review_probability": k.review_probability,
                })
            })
            .collect();
        serde_json::json!({
            "name": p.name,
            "output": p.output.display().to_string(),
            "mode": format!("{:?}", p.mode).to_lowercase(),
            "seed": p.seed,
            "sources": sources,
            "kinds": kinds,
        })
    }
}

/// A column as `StringArray` whatever its string type (`utf8`, `large_utf8`, `utf8_view`).
fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| data_err(format!("batch has no column `{name}`")))?;
    to_utf8(c, name)
}

fn to_utf8(c: &ArrayRef, name: &str) -> Result<StringArray> {
    if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
        return Ok(s.clone());
    }
    let cast = arrow_cast::cast(c.as_ref(), &DataType::Utf8)
        .map_err(|e| data_err(format!("column `{name}` cannot be read as text: {e}")))?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| data_err(format!("column `{name}` could not be converted to text")))
}

fn int_column(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| data_err(format!("batch has no column `{name}`")))?;
    let cast = arrow_cast::cast(c.as_ref(), &DataType::Int64)
        .map_err(|e| data_err(format!("column `{name}` must be an integer: {e}")))?;
    let a = cast
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| data_err(format!("column `{name}` must be an integer")))?;
    if a.null_count() > 0 {
        return Err(data_err(format!("column `{name}` has nulls")));
    }
    Ok(a.values().to_vec())
}

fn source_indices(batch: &RecordBatch, sources: usize) -> Result<Vec<u16>> {
    int_column(batch, SOURCE)?
        .into_iter()
        .map(|s| {
            u16::try_from(s)
                .ok()
                .filter(|&s| usize::from(s) < sources)
                .ok_or_else(|| data_err(format!("`{SOURCE}` {s} is not one of the kind's sources")))
        })
        .collect()
}

/// Stage 1 for one source: its columns as text, in canonical field names.
///
/// In: the source's record-id column and mapped columns, any scalar type (as Spark read
/// them). Out: `_source` (int32), `_rid` (trimmed; null when empty), `_raw`, `_reject`, then
/// every field of the kind (utf8; null where the source does not map it). The caller
/// quarantines rows with a `_reject` reason or a null `_rid`, and, among rows with the same
/// `_rid`, keeps the one with the smallest `_raw` (the load stage's rule).
pub fn prepare_source(job: &Job, source: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let src = job
        .plan
        .sources
        .iter()
        .find(|s| s.name == source)
        .ok_or_else(|| data_err(format!("the job has no source `{source}`")))?;
    let kp = job.kind(src.kind.as_str())?;
    let sources = job.kind_sources(src.kind);
    let sidx = sources
        .iter()
        .position(|s| *s == src.name)
        .ok_or_else(|| data_err(format!("source `{source}` not found among its kind")))?;
    let n = batch.num_rows();
    let mut reject: Vec<Option<String>> = vec![None; n];
    // Every column as text; binary cells that are not UTF-8 become null and reject the row.
    let mut text = |col: &str| -> Result<StringArray> {
        let c = batch.column_by_name(col).ok_or_else(|| {
            let names: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            data_err(format!(
                "source `{source}`: column `{col}` not found; columns are: {}",
                names.join(", ")
            ))
        })?;
        let bytes: Option<Vec<Option<&[u8]>>> = match c.data_type() {
            DataType::Binary => c
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .map(|a| a.iter().collect()),
            DataType::LargeBinary => c
                .as_any()
                .downcast_ref::<arrow_array::LargeBinaryArray>()
                .map(|a| a.iter().collect()),
            dt if dt.is_nested() => {
                return Err(data_err(format!(
                    "source `{source}`: column `{col}` has type {dt}, which cannot be read as text; map a column of text, numbers or dates"
                )));
            }
            _ => None,
        };
        match bytes {
            Some(values) => {
                let mut b = StringBuilder::new();
                for (i, v) in values.into_iter().enumerate() {
                    match v.map(std::str::from_utf8) {
                        None => b.append_null(),
                        Some(Ok(s)) => b.append_value(s),
                        Some(Err(_)) => {
                            b.append_null();
                            if reject[i].is_none() {
                                reject[i] = Some(format!("invalid UTF-8 in column `{col}`"));
                            }
                        }
                    }
                }
                Ok(b.finish())
            }
            None => to_utf8(c, col),
        }
    };
    let ids = text(&src.record_id)?;
    let cols: Vec<StringArray> = src
        .columns
        .iter()
        .map(|(c, _)| text(c))
        .collect::<Result<_>>()?;
    let rid: StringArray = ids
        .iter()
        .map(|v| v.map(str::trim).filter(|s| !s.is_empty()))
        .collect();
    let raw: StringArray = (0..n)
        .map(|i| {
            let mut s = String::new();
            for ((col, _), arr) in src.columns.iter().zip(&cols) {
                if arr.is_valid(i) {
                    if !s.is_empty() {
                        s.push_str("; ");
                    }
                    s.push_str(col);
                    s.push('=');
                    s.push_str(arr.value(i));
                }
            }
            Some(s)
        })
        .collect();
    let mut fields = vec![
        Field::new(SOURCE, DataType::Int32, false),
        Field::new(RID, DataType::Utf8, true),
        Field::new(RAW, DataType::Utf8, false),
        Field::new(REJECT, DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![sidx as i32; n])),
        Arc::new(rid),
        Arc::new(raw),
        Arc::new(StringArray::from(reject)),
    ];
    for f in kp.fields.keys() {
        fields.push(Field::new(f, DataType::Utf8, true));
        let col = match src.columns.iter().position(|(_, cf)| cf == f) {
            Some(p) => Arc::new(cols[p].clone()) as ArrayRef,
            None => Arc::new(StringArray::new_null(n)),
        };
        columns.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)
}

/// Stage 2 per partition: standardises a batch of prepared records of one kind and adds the
/// blocking keys.
///
/// In: `_source`, `_rid` and the kind's fields. Out: `_source` (int32), `_rid`, every
/// standardised and derived column (sorted by name), then `_k0`, `_k1`, ... (int64, 0 = no
/// key), and the standardisation counters of the batch.
pub fn standardise_batch(
    job: &Job,
    kind: &str,
    batch: &RecordBatch,
) -> Result<(RecordBatch, BTreeMap<String, u64>)> {
    let kp = job.kind(kind)?;
    let sources = job.kind_sources(kp.kind);
    let source = source_indices(batch, sources.len())?;
    let fields: Vec<String> = kp.fields.keys().cloned().collect();
    let columns = fields
        .iter()
        .map(|f| text_column(batch, f))
        .collect::<Result<Vec<_>>>()?;
    let raw = RawTable {
        kind: kp.kind,
        sources,
        source: source.into(),
        record_id: text_column(batch, RID)?,
        fields,
        columns,
    };
    let table = standardise::standardise(raw, kp, &[])?;
    let n = table.len();
    let mut fields = vec![
        Field::new(SOURCE, DataType::Int32, false),
        Field::new(RID, DataType::Utf8, true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            table.source.iter().map(|&s| i32::from(s)),
        )),
        Arc::new(table.record_id.clone()),
    ];
    for (name, col) in &table.columns {
        fields.push(Field::new(name, DataType::Utf8, true));
        cols.push(Arc::new(col.clone()));
    }
    for (r, rule) in kp.blocking.iter().enumerate() {
        let keys = block::rule_keys(&table, rule);
        fields.push(Field::new(key_column(r), DataType::Int64, false));
        cols.push(Arc::new(Int64Array::from_iter_values(
            keys.iter().map(|&k| k as i64),
        )));
    }
    debug_assert_eq!(cols.first().map(|c| c.len()), Some(n));
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(arrow_err)?;
    Ok((out, table.stats))
}

/// A table of records rebuilt from a batch (`_source`, `_rid`, utf8 columns), sorted into
/// the load stage's order (source, record id). Columns named `_...` are left out.
fn table_of(job: &Job, kp: &KindPlan, batch: &RecordBatch) -> Result<(StdTable, Vec<usize>)> {
    let sources = job.kind_sources(kp.kind);
    let source = source_indices(batch, sources.len())?;
    let rid = &text_column(batch, RID)?;
    if rid.null_count() > 0 {
        return Err(data_err(format!(
            "`{RID}` has nulls: quarantine them first"
        )));
    }
    let mut order: Vec<usize> = (0..batch.num_rows()).collect();
    order.sort_by(|&a, &b| {
        source[a]
            .cmp(&source[b])
            .then_with(|| rid.value(a).cmp(rid.value(b)))
    });
    let idx = arrow_array::UInt32Array::from_iter_values(order.iter().map(|&i| i as u32));
    let take = |a: &StringArray| -> Result<StringArray> {
        let t = arrow_select::take::take(a, &idx, None).map_err(arrow_err)?;
        t.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| data_err("internal: taken column is not text"))
    };
    let mut columns = BTreeMap::new();
    for (f, c) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        if f.name().starts_with('_') {
            continue;
        }
        if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
            columns.insert(f.name().clone(), take(s)?);
        } else if matches!(f.data_type(), DataType::LargeUtf8 | DataType::Utf8View) {
            columns.insert(f.name().clone(), take(&to_utf8(c, f.name())?)?);
        }
    }
    let table = StdTable {
        kind: kp.kind,
        sources,
        source: order.iter().map(|&i| source[i]).collect(),
        record_id: take(rid)?,
        columns,
        raw: BTreeMap::new(),
        stats: BTreeMap::new(),
    };
    Ok((table, order))
}

/// A model bound to a kind's comparisons and term frequencies: scores pairs as
/// [`crate::score::score_batch`] does.
pub struct Scorer {
    pub model: Model,
    /// Per comparison, in model order: its term frequencies if it asks for them.
    tfs: Vec<Option<TermFrequencies>>,
}

impl Scorer {
    /// Checks that the model fits the kind; `tfs` holds (field, frequencies) for the
    /// comparisons with `term_frequency`.
    pub fn new(
        kp: &KindPlan,
        model: Model,
        mut tfs: HashMap<String, TermFrequencies>,
    ) -> Result<Scorer> {
        model.check_fits(&kp.comparisons)?;
        let tfs = model
            .comparisons
            .iter()
            .map(|c| {
                if !c.spec.term_frequency {
                    return Ok(None);
                }
                tfs.remove(&c.spec.field).map(Some).ok_or_else(|| {
                    data_err(format!(
                        "no term frequencies given for `{}`, which asks for them",
                        c.spec.field
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Scorer { model, tfs })
    }

    /// Match weight of a pair found by `rule`, with `levels` in model order; `value(k)` is
    /// the left record's value of comparison `k`.
    fn weight<'v>(
        &self,
        rule: usize,
        levels: &[u8],
        counted: &[Vec<bool>],
        priors: &[f64],
        value: impl Fn(usize) -> Option<&'v str>,
    ) -> Result<f64> {
        crate::score::pair_weight(
            &self.model,
            &self.tfs,
            (counted, priors),
            rule,
            |k| levels[k],
            value,
        )
        .map_err(data_err)
    }
}

/// What [`block_group`] returns for a block group.
pub enum GroupOutput {
    /// Distinct level patterns (`levels` packed 4 bits per comparison, `agree`, `count`).
    Patterns(RecordBatch),
    /// Scored pairs.
    Pairs(RecordBatch),
}

/// Schema of scored pairs from [`block_group`].
pub fn pairs_schema(kp: &KindPlan) -> Arc<Schema> {
    let mut f = vec![
        Field::new("source_l", DataType::Int32, false),
        Field::new("rid_l", DataType::Utf8, false),
        Field::new("source_r", DataType::Int32, false),
        Field::new("rid_r", DataType::Utf8, false),
        Field::new("rule", DataType::Int32, false),
        Field::new("agree", DataType::Int64, false),
    ];
    f.extend(
        kp.comparisons
            .iter()
            .map(|c| Field::new(format!("level_{}", c.field), DataType::Int8, false)),
    );
    f.push(Field::new("match_weight", DataType::Float64, false));
    f.push(Field::new("match_probability", DataType::Float64, false));
    Arc::new(Schema::new(f))
}

/// Schema of level patterns from [`block_group`].
pub fn patterns_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("levels", DataType::Int64, false),
        Field::new("agree", DataType::Int64, false),
        Field::new("count", DataType::Int64, false),
    ]))
}

/// Stages 3-5 for one block group of rule `rule`: the pairs this rule finds first among the
/// group's records, compared, and scored by `scorer` (or, without one, counted by level
/// pattern for training).
///
/// In: records with `_source`, `_rid`, every rule's key `_k*` (keys of skipped blocks
/// zeroed) and the [`Job::pair_columns`]. A group may hold many blocks (all records whose
/// rule key falls in one shuffle bucket); blocks are the runs of equal `_k{rule}`.
/// INVARIANT: a pair is emitted once, by the first rule whose key both records share, with
/// `left < right` in (source, record id) order, exactly as [`block::block`] does.
pub fn block_group(
    job: &Job,
    kind: &str,
    rule: usize,
    batch: &RecordBatch,
    scorer: Option<&Scorer>,
) -> Result<GroupOutput> {
    let kp = job.kind(kind)?;
    if rule >= kp.blocking.len() {
        return Err(data_err(format!(
            "rule {rule}: kind {kind} has {} blocking rules",
            kp.blocking.len()
        )));
    }
    let (table, order) = table_of(job, kp, batch)?;
    let keys: Vec<Vec<i64>> = (0..kp.blocking.len())
        .map(|r| int_column(batch, &key_column(r)).map(|k| order.iter().map(|&i| k[i]).collect()))
        .collect::<Result<_>>()?;
    let comparators = compare::comparators(&table, &kp.comparisons)?;
    let mode = job.plan.mode;
    // Records of the group by (key, source, record id): blocks are runs of one key, and
    // inside a block the order is the load order.
    let own = &keys[rule];
    let mut by_key: Vec<u32> = (0..table.len() as u32)
        .filter(|&i| own[i as usize] != 0)
        .collect();
    by_key.sort_by_key(|&i| (own[i as usize], i));
    let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
    let mut start = 0;
    while start < by_key.len() {
        let key = own[by_key[start] as usize];
        let mut end = start + 1;
        while end < by_key.len() && own[by_key[end] as usize] == key {
            end += 1;
        }
        let members = &by_key[start..end];
        if members.len() <= kp.max_block_size {
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    let same = table.source[a as usize] == table.source[b as usize];
                    let wanted = match mode {
                        Mode::Dedupe => same,
                        Mode::Link => !same,
                        Mode::Both => true,
                    };
                    let shared = |k: &Vec<i64>| {
                        let ka = k[a as usize];
                        ka != 0 && ka == k[b as usize]
                    };
                    if wanted && !keys[..rule].iter().any(shared) {
                        let agree = keys
                            .iter()
                            .enumerate()
                            .fold(0u32, |m, (q, k)| if shared(k) { m | 1 << q } else { m });
                        pairs.push((a, b, agree));
                    }
                }
            }
        }
        start = end;
    }
    let levels_of = |a: u32, b: u32| -> Vec<u8> {
        comparators
            .iter()
            .map(|c| c.level(a as usize, b as usize))
            .collect()
    };
    let Some(scorer) = scorer else {
        let mut counts: BTreeMap<(u64, u32), i64> = BTreeMap::new();
        for &(a, b, agree) in &pairs {
            let key = levels_of(a, b)
                .iter()
                .enumerate()
                .fold(0u64, |acc, (k, &l)| acc | (u64::from(l) << (4 * k)));
            *counts.entry((key, agree)).or_default() += 1;
        }
        let out = RecordBatch::try_new(
            patterns_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    counts.keys().map(|&(l, _)| l as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    counts.keys().map(|&(_, a)| i64::from(a)),
                )),
                Arc::new(Int64Array::from_iter_values(counts.values().copied())),
            ],
        )
        .map_err(arrow_err)?;
        return Ok(GroupOutput::Patterns(out));
    };
    let counted = scorer.model.counted();
    let priors: Vec<f64> = (0..scorer.model.blocking.len())
        .map(|r| scorer.model.prior_weight(r))
        .collect();
    let kc = kp.comparisons.len();
    let np = pairs.len();
    let (mut sl, mut sr) = (
        Int32Builder::with_capacity(np),
        Int32Builder::with_capacity(np),
    );
    let (mut rl, mut rr) = (StringBuilder::new(), StringBuilder::new());
    let (mut ru, mut ag) = (
        Int32Builder::with_capacity(np),
        Int64Builder::with_capacity(np),
    );
    let mut lv: Vec<Int8Builder> = (0..kc).map(|_| Int8Builder::with_capacity(np)).collect();
    let (mut w, mut p) = (
        Float64Builder::with_capacity(np),
        Float64Builder::with_capacity(np),
    );
    for &(a, b, agree) in &pairs {
        let levels = levels_of(a, b);
        let weight = scorer.weight(rule, &levels, &counted, &priors, |k| {
            comparators[k].value(a as usize)
        })?;
        sl.append_value(i32::from(table.source[a as usize]));
        sr.append_value(i32::from(table.source[b as usize]));
        rl.append_value(table.record_id.value(a as usize));
        rr.append_value(table.record_id.value(b as usize));
        ru.append_value(rule as i32);
        ag.append_value(i64::from(agree));
        for (builder, &l) in lv.iter_mut().zip(&levels) {
            builder.append_value(l as i8);
        }
        w.append_value(weight);
        p.append_value(crate::score::probability(weight));
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(sl.finish()),
        Arc::new(rl.finish()),
        Arc::new(sr.finish()),
        Arc::new(rr.finish()),
        Arc::new(ru.finish()),
        Arc::new(ag.finish()),
    ];
    cols.extend(lv.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(w.finish()));
    cols.push(Arc::new(p.finish()));
    let out = RecordBatch::try_new(pairs_schema(kp), cols).map_err(arrow_err)?;
    Ok(GroupOutput::Pairs(out))
}

/// Trains a kind's model on the driver: u from random pairs of the `sample` records (all
/// the kind's records give exactly the single-machine model), m and λ by EM over the level
/// patterns of all candidate pairs (summed from [`block_group`]'s pattern output).
pub fn train(job: &Job, kind: &str, sample: &RecordBatch, patterns: &RecordBatch) -> Result<Model> {
    let kp = job.kind(kind)?;
    let (table, _) = table_of(job, kp, sample)?;
    let comparators = compare::comparators(&table, &kp.comparisons)?;
    let (u, sampled) = em::estimate_u(
        &comparators,
        &table.source,
        job.plan.mode,
        kp.u_sample_pairs,
        job.plan.seed,
    );
    let levels = int_column(patterns, "levels")?;
    let agree = int_column(patterns, "agree")?;
    let count = int_column(patterns, "count")?;
    let mut merged: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for ((l, a), c) in levels.iter().zip(&agree).zip(&count) {
        let a = u32::try_from(*a).map_err(|_| data_err(format!("agree bits {a} out of range")))?;
        *merged.entry((*l as u64, a)).or_default() += u64::try_from(*c).unwrap_or(0);
    }
    let pats = em::sorted_patterns(merged);
    Ok(em::train(kp, u, &pats, job.plan.seed, sampled))
}

/// Counts from [`cluster_master`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterCounts {
    pub records: u64,
    pub edges: u64,
    pub clusters: u64,
    pub must_not_link_conflicts: u64,
    pub cut_edges: u64,
}

/// Stages 6-7 on the driver: clusters a kind's records from the edges (pairs at or above the
/// match probability) with the single-machine union-find and must-not-link rule, and gives
/// every record its master id (a first run: no previous ids).
///
/// In: `records` (`_source`, `_rid` and the must-not-link columns, every record of the kind
/// once); `edges` (`source_l`, `rid_l`, `source_r`, `rid_r`, `match_weight`). Out: the
/// `master_index.parquet` rows of the kind and the counts.
pub fn cluster_master(
    job: &Job,
    kind: &str,
    records: &RecordBatch,
    edges: &RecordBatch,
) -> Result<(RecordBatch, ClusterCounts)> {
    let kp = job.kind(kind)?;
    let (table, _) = table_of(job, kp, records)?;
    let n = table.len();
    let mut index: HashMap<(u16, &str), u32> = HashMap::with_capacity(n);
    for i in 0..n {
        if index
            .insert((table.source[i], table.record_id.value(i)), i as u32)
            .is_some()
        {
            return Err(data_err(format!(
                "record `{}` of source `{}` appears twice",
                table.record_id.value(i),
                table.sources[table.source[i] as usize]
            )));
        }
    }
    let nsrc = table.sources.len();
    let (sl, sr) = (
        source_indices_named(edges, "source_l", nsrc)?,
        source_indices_named(edges, "source_r", nsrc)?,
    );
    let (rl, rr) = (&text_column(edges, "rid_l")?, &text_column(edges, "rid_r")?);
    let weight = edges
        .column_by_name("match_weight")
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::Float64Array>())
        .ok_or_else(|| data_err("edges need a float64 `match_weight`"))?;
    let find = |s: u16, r: &StringArray, i: usize| -> Result<u32> {
        index.get(&(s, r.value(i))).copied().ok_or_else(|| {
            data_err(format!(
                "edge names record `{}` of source `{}`, which is not among the records",
                r.value(i),
                table.sources.get(s as usize).map_or("?", String::as_str)
            ))
        })
    };
    let mut es: Vec<Edge> = (0..edges.num_rows())
        .map(|i| {
            let (a, b) = (find(sl[i], rl, i)?, find(sr[i], rr, i)?);
            Ok(Edge {
                left: a.min(b),
                right: a.max(b),
                weight: weight.value(i),
            })
        })
        .collect::<Result<_>>()?;
    es.sort_by_key(|x| (x.left, x.right));
    let mnl: Vec<&StringArray> = kp
        .must_not_link
        .iter()
        .filter_map(|c| table.column(c))
        .collect();
    let clusters = cluster::cluster(n, &es, &mnl, &[])?;
    let mi = master::master_index(&table, &clusters, None, master::Previous::next_run(None))?;
    let batch = output::master_batch(&table, &mi.master_id, &mi.cluster_size, 0..table.len())
        .map_err(arrow_err)?;
    Ok((
        batch,
        ClusterCounts {
            records: n as u64,
            edges: clusters.edges,
            clusters: mi.clusters,
            must_not_link_conflicts: clusters.conflicts,
            cut_edges: clusters.cut_edges,
        },
    ))
}

fn source_indices_named(batch: &RecordBatch, name: &str, sources: usize) -> Result<Vec<u16>> {
    int_column(batch, name)?
        .into_iter()
        .map(|s| {
            u16::try_from(s)
                .ok()
                .filter(|&s| usize::from(s) < sources)
                .ok_or_else(|| data_err(format!("`{name}` {s} is not one of the kind's sources")))
        })
        .collect()
}
