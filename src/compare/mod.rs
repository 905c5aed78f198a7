//! Stage 4: compare. Consumes: candidate pairs (an Arrow batch of `left`, `right` record
//! indices) and the standardised records. Produces: one comparison level per comparison per
//! pair (a `UInt8` column each). Cost: O(pairs), independent per pair, parallel per batch.
//!
//! Levels are ordered: 0 = null (either side missing), 1 = disagree, and higher levels mean
//! closer agreement; the top level is exact agreement.

pub mod similarity;

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt8Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::config::{ComparisonSpec, Method};
use crate::standardise::{StdTable, address, date};
use similarity::{Chars, damerau, jaro_winkler, levenshtein, within_one_edit};

/// Names of the levels of a comparison, index = level.
pub fn level_names(spec: &ComparisonSpec) -> Vec<String> {
    let mut v: Vec<String> = vec!["null".into(), "else".into()];
    let t = thresholds(spec);
    match spec.method {
        Method::Exact => {}
        Method::JaroWinkler | Method::EnterpriseName => {
            v.extend(t.iter().rev().map(|x| format!("jaro_winkler>={x}")))
        }
        Method::Levenshtein => v.extend(t.iter().rev().map(|x| format!("levenshtein<={x}"))),
        Method::Damerau => v.extend(t.iter().rev().map(|x| format!("damerau<={x}"))),
        Method::PersonName => v.extend(["one_edit".into(), "same_pinyin".into()]),
        Method::IdNumber => v.extend(["two_digits_transposed".into(), "one_digit_off".into()]),
        Method::Date => v.extend(["one_edit".into(), "day_month_swapped".into()]),
        Method::Phone => v.extend(["one_edit".into()]),
        Method::Address => v.extend(t.iter().rev().map(|x| format!("dice>={x}"))),
    }
    v.push("exact".into());
    v
}

/// The thresholds of a comparison, defaults filled in: similarities highest first, distances
/// lowest first.
pub fn thresholds(spec: &ComparisonSpec) -> Vec<f64> {
    let mut t = spec.thresholds.clone();
    if t.is_empty() {
        t = match spec.method {
            Method::JaroWinkler => vec![0.92, 0.8],
            Method::EnterpriseName => vec![0.9, 0.75],
            Method::Levenshtein | Method::Damerau => vec![1.0, 2.0],
            Method::Address => vec![0.8, 0.55],
            _ => vec![],
        };
    }
    match spec.method {
        Method::Levenshtein | Method::Damerau => t.sort_by(f64::total_cmp),
        _ => t.sort_by(|a, b| b.total_cmp(a)),
    }
    t
}

/// A comparison bound to the columns it reads.
pub struct Comparator<'a> {
    method: Method,
    col: &'a StringArray,
    /// `field_pinyin` for person names.
    aux: Option<&'a StringArray>,
    thresholds: Vec<f64>,
    top: u8,
}

impl<'a> Comparator<'a> {
    /// Binds a comparison to its columns; `None` if the table lacks the column.
    pub fn new(spec: &ComparisonSpec, table: &'a StdTable) -> Option<Self> {
        let col = table.column(&spec.field)?;
        let aux = match spec.method {
            Method::PersonName => table.column(&format!("{}_pinyin", spec.field)),
            _ => None,
        };
        Some(Comparator {
            method: spec.method,
            col,
            aux,
            thresholds: thresholds(spec),
            top: (level_names(spec).len() - 1) as u8,
        })
    }

    /// The column this comparison reads.
    pub fn column(&self) -> &'a StringArray {
        self.col
    }

    /// Number of levels, null included.
    pub fn levels(&self) -> usize {
        self.top as usize + 1
    }

    /// The compared value of a record.
    pub fn value(&self, i: usize) -> Option<&'a str> {
        self.col.is_valid(i).then(|| self.col.value(i))
    }

    /// The level of one pair of records.
    pub fn level(&self, i: usize, j: usize) -> u8 {
        let c = self.col;
        if c.is_null(i) || c.is_null(j) {
            return 0;
        }
        let (a, b) = (c.value(i), c.value(j));
        if a == b {
            return self.top;
        }
        self.level_of_different(i, j, a, b)
    }

    /// The level of records `i` and `j` whose values `a` and `b` are present and differ.
    fn level_of_different(&self, i: usize, j: usize, a: &str, b: &str) -> u8 {
        match self.method {
            Method::Exact => 1,
            Method::JaroWinkler | Method::EnterpriseName => {
                let s = jaro_winkler(Chars::new(a).as_slice(), Chars::new(b).as_slice());
                self.by_similarity(s)
            }
            Method::Levenshtein | Method::Damerau => {
                let (ca, cb) = (Chars::new(a), Chars::new(b));
                let d = if self.method == Method::Levenshtein {
                    levenshtein(ca.as_slice(), cb.as_slice())
                } else {
                    damerau(ca.as_slice(), cb.as_slice())
                } as f64;
                // thresholds lowest first: level top-1 for the smallest distance.
                match self.thresholds.iter().position(|&t| d <= t) {
                    Some(p) => self.top - 1 - p as u8,
                    None => 1,
                }
            }
            Method::PersonName => {
                if let Some(p) = self.aux
                    && p.is_valid(i)
                    && p.is_valid(j)
                    && p.value(i) == p.value(j)
                {
                    return 3;
                }
                let one = within_one_edit(Chars::new(a).as_slice(), Chars::new(b).as_slice());
                if one { 2 } else { 1 }
            }
            Method::IdNumber => id_level(a.as_bytes(), b.as_bytes()),
            Method::Date => {
                if swapped_day_month(a, b) {
                    3
                } else if within_one_edit(Chars::new(a).as_slice(), Chars::new(b).as_slice()) {
                    2
                } else {
                    1
                }
            }
            Method::Phone => {
                if within_one_edit(Chars::new(a).as_slice(), Chars::new(b).as_slice()) {
                    2
                } else {
                    1
                }
            }
            Method::Address => self.by_similarity(address::dice(a, b)),
        }
    }

    /// Level for a similarity with thresholds highest first.
    fn by_similarity(&self, s: f64) -> u8 {
        match self.thresholds.iter().position(|&t| s >= t) {
            Some(p) => self.top - 1 - p as u8,
            None => 1,
        }
    }
}

/// 4 = exact (handled by the caller), 3 = one digit off, 2 = two adjacent digits
/// transposed, 1 = else.
fn id_level(a: &[u8], b: &[u8]) -> u8 {
    if a.len() != b.len() {
        return 1;
    }
    let mut diff = [0usize; 3];
    let mut n = 0;
    for k in (0..a.len()).filter(|&k| a[k] != b[k]).take(3) {
        diff[n] = k;
        n += 1;
    }
    match &diff[..n] {
        [_] => 3,
        [x, y] if *y == x + 1 && a[*x] == b[*y] && a[*y] == b[*x] => 2,
        _ => 1,
    }
}

/// Dates `YYYY-MM-DD` with day and month swapped.
fn swapped_day_month(a: &str, b: &str) -> bool {
    a.len() == 10
        && b.len() == 10
        && a.get(..4) == b.get(..4)
        && a.get(5..7) == b.get(8..10)
        && a.get(8..10) == b.get(5..7)
}

/// Days between two standardised dates, if both parse.
pub fn days_apart(a: &str, b: &str) -> Option<i64> {
    Some((date::days(a)? - date::days(b)?).abs())
}

/// Pairs per Arrow batch.
pub const BATCH: usize = 65536;

/// Column of the first level in a compared batch (after `left`, `right`, `rule`).
pub const FIRST_LEVEL: usize = 3;

/// The compared candidate pairs of one kind: batches of [`BATCH`] pairs, in candidate order.
pub struct Compared {
    pub schema: Arc<Schema>,
    pub batches: Vec<RecordBatch>,
}

/// Every comparison of a kind bound to its columns, and a fingerprint of every compared value:
/// a 64-bit hash per record and comparison, the record's hashes side by side (0 = null). Most
/// candidate pairs agree exactly on most fields, and two fingerprints read from one place per
/// record settle that; only the values that differ are read and compared as text. Equal
/// values always have equal fingerprints; two different values share one with a chance of
/// about 1 in 10^19 per comparison, which would count them as exact agreement.
pub struct Comparators<'a> {
    list: Vec<Comparator<'a>>,
    prints: Vec<u64>,
}

impl<'a> std::ops::Deref for Comparators<'a> {
    type Target = [Comparator<'a>];
    fn deref(&self) -> &[Comparator<'a>] {
        &self.list
    }
}

impl<'c, 'a> IntoIterator for &'c Comparators<'a> {
    type Item = &'c Comparator<'a>;
    type IntoIter = std::slice::Iter<'c, Comparator<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Seed of the value fingerprints (any fixed value: they live for one run).
const PRINT_SEED: u64 = 0x5949_4b55_4350;

impl<'a> Comparators<'a> {
    /// Binds `list` and fingerprints the values of the records `needed` marks (all when
    /// `None`); the others are never compared through [`Comparators::levels`].
    fn new(list: Vec<Comparator<'a>>, n: usize, needed: Option<&[bool]>) -> Self {
        use rayon::prelude::*;
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::FixedState::with_seed(PRINT_SEED);
        let w = list.len();
        let mut prints = vec![0u64; n * w];
        if w > 0 {
            prints
                .par_chunks_mut(w * 4096)
                .enumerate()
                .for_each(|(chunk, rows)| {
                    for (r, row) in rows.chunks_mut(w).enumerate() {
                        let i = chunk * 4096 + r;
                        if needed.is_some_and(|n| !n.get(i).copied().unwrap_or(false)) {
                            continue;
                        }
                        for (slot, c) in row.iter_mut().zip(&list) {
                            if let Some(v) = c.value(i) {
                                *slot = hasher.hash_one(v).max(1);
                            }
                        }
                    }
                });
        }
        Comparators { list, prints }
    }

    /// The levels of one pair of records, one per comparison, into `out`: equal fingerprints
    /// give the exact level at once, others are compared as text ([`Comparator::level`]).
    pub fn levels(&self, i: usize, j: usize, out: &mut [u8]) {
        let w = self.list.len();
        let (pi, pj) = match (
            self.prints.get(i * w..(i + 1) * w),
            self.prints.get(j * w..(j + 1) * w),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                out.fill(0);
                return;
            }
        };
        for (k, (o, c)) in out.iter_mut().zip(&self.list).enumerate() {
            let (a, b) = (pi[k], pj[k]);
            *o = if a == 0 || b == 0 {
                0
            } else if a == b {
                c.top
            } else {
                // Different fingerprints: different values (equal values hash alike).
                c.level_of_different(i, j, c.col.value(i), c.col.value(j))
            };
        }
    }

    /// The comparisons without the fingerprints (8 bytes per record per comparison): what
    /// scoring needs once the levels are made and the model trained.
    pub fn into_list(self) -> Vec<Comparator<'a>> {
        self.list
    }

    /// Asks for record `i`'s fingerprints to be brought into the cache.
    pub fn prefetch(&self, i: usize) {
        if let Some(p) = self.prints.get(i * self.list.len()) {
            crate::mem::prefetch(p);
        }
    }

    /// The fingerprints of comparison `k`, one per record (0 = null or not fingerprinted).
    pub fn prints_of(&self, k: usize) -> impl Iterator<Item = u64> + '_ {
        let w = self.list.len().max(1);
        self.prints.iter().skip(k).step_by(w).copied()
    }
}

/// Binds every comparison of a kind to its columns; an error names a missing column.
pub fn comparators<'a>(
    table: &'a StdTable,
    specs: &[ComparisonSpec],
) -> Result<Comparators<'a>, crate::error::Error> {
    comparators_for(table, specs, None)
}

/// [`comparators`] that can compare only the records `needed` marks (all when `None`): a
/// delta run compares a few records against a large index.
pub fn comparators_for<'a>(
    table: &'a StdTable,
    specs: &[ComparisonSpec],
    needed: Option<&[bool]>,
) -> Result<Comparators<'a>, crate::error::Error> {
    let list = specs
        .iter()
        .map(|s| {
            Comparator::new(s, table).ok_or_else(|| crate::error::Error::Data {
                stage: "compare",
                message: format!("no column `{}` to compare", s.field),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Comparators::new(list, table.len(), needed))
}

/// Compares every candidate pair, batch by batch in parallel.
pub fn compare(
    comparators: &Comparators,
    specs: &[ComparisonSpec],
    candidates: &crate::block::Candidates,
) -> Result<Compared, crate::error::Error> {
    use rayon::prelude::*;
    let schema = levels_schema(specs);
    let batches = candidates
        .left
        .par_chunks(BATCH)
        .zip(candidates.right.par_chunks(BATCH))
        .zip(candidates.rule.par_chunks(BATCH))
        .map(|((l, r), rule)| {
            let pairs = RecordBatch::try_new(
                pairs_schema(),
                vec![
                    Arc::new(UInt32Array::from(l.to_vec())),
                    Arc::new(UInt32Array::from(r.to_vec())),
                    Arc::new(UInt8Array::from(rule.to_vec())),
                ],
            )?;
            compare_batch(comparators, &schema, &pairs)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::error::Error::Data {
            stage: "compare",
            message: e.to_string(),
        })?;
    Ok(Compared { schema, batches })
}

/// Schema of a batch of candidate pairs: `left`, `right` record indices and the blocking
/// `rule` that found the pair.
pub fn pairs_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("left", DataType::UInt32, false),
        Field::new("right", DataType::UInt32, false),
        Field::new("rule", DataType::UInt8, false),
    ]))
}

/// Schema of a compared batch: `left`, `right`, `rule`, then one level column per comparison.
pub fn levels_schema(specs: &[ComparisonSpec]) -> Arc<Schema> {
    let mut fields = vec![
        Field::new("left", DataType::UInt32, false),
        Field::new("right", DataType::UInt32, false),
        Field::new("rule", DataType::UInt8, false),
    ];
    fields.extend(
        specs
            .iter()
            .map(|s| Field::new(format!("level_{}", s.field), DataType::UInt8, false)),
    );
    Arc::new(Schema::new(fields))
}

/// Compares a batch of candidate pairs (`left`, `right` as `UInt32`, `rule` as `UInt8`): the
/// kernel that runs unchanged wherever the batch comes from.
pub fn compare_batch(
    comparators: &Comparators,
    schema: &Arc<Schema>,
    pairs: &RecordBatch,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let idx = |name: &str| -> Result<UInt32Array, arrow_schema::ArrowError> {
        pairs
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .cloned()
            .ok_or_else(|| {
                arrow_schema::ArrowError::SchemaError(format!(
                    "pairs need a UInt32 `{name}` column"
                ))
            })
    };
    let (l, r) = (idx("left")?, idx("right")?);
    let rule = pairs.column_by_name("rule").cloned().ok_or_else(|| {
        arrow_schema::ArrowError::SchemaError("pairs need a UInt8 `rule` column".into())
    })?;
    let w = comparators.len();
    let n = l.len();
    // Row by row (a record's fingerprints are read together), into one column per comparison.
    let mut levels: Vec<Vec<u8>> = (0..w).map(|_| vec![0u8; n]).collect();
    let mut row = vec![0u8; w];
    // The right-hand records lie anywhere: their fingerprints are asked for a few pairs ahead.
    const AHEAD: usize = 8;
    let right = r.values();
    for (p, (&i, &j)) in l.values().iter().zip(right.iter()).enumerate() {
        if let Some(&ahead) = right.get(p + AHEAD) {
            comparators.prefetch(ahead as usize);
        }
        comparators.levels(i as usize, j as usize, &mut row);
        for (col, &lv) in levels.iter_mut().zip(&row) {
            col[p] = lv;
        }
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(l.clone()), Arc::new(r.clone()), rule];
    cols.extend(
        levels
            .into_iter()
            .map(|v| Arc::new(UInt8Array::from(v)) as ArrayRef),
    );
    RecordBatch::try_new(schema.clone(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_one_digit_and_transposition() {
        assert_eq!(id_level(b"11010519491231002X", b"11010519491231003X"), 3);
        assert_eq!(id_level(b"11010519491231002X", b"11010519492131002X"), 2);
        assert_eq!(id_level(b"11010519491231002X", b"21010519491231003X"), 1);
    }

    #[test]
    fn day_month_swap() {
        assert!(swapped_day_month("1990-01-02", "1990-02-01"));
        assert!(!swapped_day_month("1990-01-02", "1991-02-01"));
        assert_eq!(days_apart("1990-01-02", "1990-01-01"), Some(1));
    }

    #[test]
    fn level_names_end_with_exact() {
        let spec = ComparisonSpec {
            field: "x".into(),
            method: Method::JaroWinkler,
            thresholds: vec![],
            term_frequency: false,
        };
        assert_eq!(
            level_names(&spec),
            [
                "null",
                "else",
                "jaro_winkler>=0.8",
                "jaro_winkler>=0.92",
                "exact"
            ]
        );
    }
}
