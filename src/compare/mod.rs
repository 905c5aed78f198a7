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

/// The values of some records that a comparison reads ([`Comparator::take`]).
pub struct Taken {
    col: StringArray,
    aux: Option<StringArray>,
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

    /// This comparison's values of the records `rows` (sorted), read front to back; see
    /// [`Comparator::over`].
    pub fn take(&self, rows: &[u32]) -> Result<Taken, arrow_schema::ArrowError> {
        crate::mem::read_ahead(self.col);
        Ok(Taken {
            col: crate::mem::gather(self.col, rows)?,
            aux: match self.aux {
                Some(a) => {
                    crate::mem::read_ahead(a);
                    Some(crate::mem::gather(a, rows)?)
                }
                None => None,
            },
        })
    }

    /// This comparison over values taken by [`Comparator::take`]: its record `k` is the
    /// `k`-th record taken.
    pub fn over<'b>(&self, taken: &'b Taken) -> Comparator<'b> {
        Comparator {
            method: self.method,
            col: &taken.col,
            aux: taken.aux.as_ref(),
            thresholds: self.thresholds.clone(),
            top: self.top,
        }
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
        let same_aux = self
            .aux
            .is_some_and(|p| p.is_valid(i) && p.is_valid(j) && p.value(i) == p.value(j));
        self.level_of_values(a, b, same_aux)
    }

    /// The level of record `i` and record `j` of `other` (this comparison over values taken
    /// by [`Comparator::take`]) whose values are present and differ.
    fn level_between(&self, i: usize, other: &Comparator, j: usize) -> u8 {
        let same_aux = match (self.aux, other.aux) {
            (Some(p), Some(q)) => p.is_valid(i) && q.is_valid(j) && p.value(i) == q.value(j),
            _ => false,
        };
        self.level_of_values(self.col.value(i), other.col.value(j), same_aux)
    }

    /// The level of two present values that differ; `same_aux`: their records agree on the
    /// auxiliary column (person names: the same pinyin).
    fn level_of_values(&self, a: &str, b: &str, same_aux: bool) -> u8 {
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
                if same_aux {
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

/// What [`Comparators::prefetch_values`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    Offsets,
    Bytes,
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

/// What fingerprints a value ([`Comparators`]).
type PrintHasher = foldhash::fast::FixedState;

fn print_hasher() -> PrintHasher {
    foldhash::fast::FixedState::with_seed(PRINT_SEED)
}

/// The fingerprint of record `i`'s value of comparison `c`: 0 when null.
fn print_of(hasher: &PrintHasher, c: &Comparator, i: usize) -> u64 {
    use std::hash::BuildHasher;
    c.value(i).map_or(0, |v| hasher.hash_one(v).max(1))
}

/// The fingerprint of every record's value of comparison `c` (0 = null), on a mapped file when
/// `spill` is given ([`crate::state::Scratch`]).
fn fingerprints_in(
    c: &Comparator,
    spill: Option<&crate::state::Spill>,
) -> Result<crate::state::Scratch<u64>, crate::error::Error> {
    use rayon::prelude::*;
    let hasher = print_hasher();
    let mut prints = crate::state::Scratch::zeroed(c.col.len(), spill)?;
    prints
        .par_chunks_mut(1 << 14)
        .enumerate()
        .for_each(|(chunk, out)| {
            for (k, p) in out.iter_mut().enumerate() {
                *p = print_of(&hasher, c, (chunk << 14) + k);
            }
        });
    Ok(prints)
}

impl<'a> Comparators<'a> {
    /// Binds `list` and fingerprints the values of the records `needed` marks (all when
    /// `None`); the others are never compared through [`Comparators::levels`].
    fn new(list: Vec<Comparator<'a>>, n: usize, needed: Option<&[bool]>) -> Self {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let w = list.len();
        let mut prints = vec![0u64; n * w];
        if w > 0 {
            let hasher = print_hasher();
            // A chunk of records' rows at a time (in cache), one comparison at a time in it.
            prints
                .par_chunks_mut(CHUNK * w)
                .enumerate()
                .for_each(|(chunk, rows)| {
                    let from = chunk * CHUNK;
                    for (k, c) in list.iter().enumerate() {
                        for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                            let i = from + r;
                            if needed.is_some_and(|n| !n.get(i).copied().unwrap_or(false)) {
                                continue;
                            }
                            row[k] = print_of(&hasher, c, i);
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
            // Not fingerprinted side by side ([`comparators_to_sweep`]): compared as text.
            _ => {
                for (o, c) in out.iter_mut().zip(&self.list) {
                    *o = c.level(i, j);
                }
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

    /// Asks for record `i`'s fingerprints to be brought into the cache: the first and the last
    /// (a record's row, 48 bytes for persons, crosses a cache line every other record).
    pub fn prefetch(&self, i: usize) {
        let w = self.list.len();
        if let Some(row) = self.prints.get(i * w..(i + 1) * w)
            && let (Some(first), Some(last)) = (row.first(), row.last())
        {
            crate::mem::prefetch(first);
            crate::mem::prefetch(last);
        }
    }

    /// Asks for what [`Comparators::levels`] will read of the values of records `i` and `j`
    /// that it compares as text (fingerprints present and different): their offsets
    /// (`Values::Offsets`), or the bytes those offsets point at (`Values::Bytes`, once the
    /// offsets are cached). Both records' fingerprints should be cached by then.
    pub fn prefetch_values(&self, i: usize, j: usize, what: Values) {
        let w = self.list.len();
        let (Some(pi), Some(pj)) = (
            self.prints.get(i * w..(i + 1) * w),
            self.prints.get(j * w..(j + 1) * w),
        ) else {
            return;
        };
        for (k, c) in self.list.iter().enumerate() {
            let (a, b) = (pi[k], pj[k]);
            if a == 0 || b == 0 || a == b {
                continue;
            }
            // The auxiliary column (person names' pinyin) is read for these pairs too.
            for col in std::iter::once(c.col).chain(c.aux) {
                let offsets = col.value_offsets();
                for r in [i, j] {
                    match what {
                        Values::Offsets => {
                            if let Some(o) = offsets.get(r) {
                                crate::mem::prefetch(o);
                            }
                        }
                        Values::Bytes => {
                            // The first byte and the last (addresses often cross a line).
                            let (Some(&from), Some(&to)) = (offsets.get(r), offsets.get(r + 1))
                            else {
                                continue;
                            };
                            let data = col.value_data();
                            if let Some(v) = data.get(from as usize) {
                                crate::mem::prefetch(v);
                            }
                            if to - from > 1
                                && let Some(v) = data.get(to as usize - 1)
                            {
                                crate::mem::prefetch(v);
                            }
                        }
                    }
                }
            }
        }
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
    Ok(Comparators::new(bind(table, specs)?, table.len(), needed))
}

/// The comparisons of [`comparators`] without the fingerprints side by side: for
/// [`Reads::Windows`], which fingerprints one comparison at a time (8 bytes a record, not 8
/// a record and comparison: ~80 instead of ~480 MB at 10M person records). Pairs compared
/// through [`Comparators::levels`] are compared as text.
pub fn comparators_to_sweep<'a>(
    table: &'a StdTable,
    specs: &[ComparisonSpec],
) -> Result<Comparators<'a>, crate::error::Error> {
    Ok(Comparators {
        list: bind(table, specs)?,
        prints: Vec::new(),
    })
}

/// Every comparison bound to its columns; an error names a missing column.
fn bind<'a>(
    table: &'a StdTable,
    specs: &[ComparisonSpec],
) -> Result<Vec<Comparator<'a>>, crate::error::Error> {
    specs
        .iter()
        .map(|s| {
            Comparator::new(s, table).ok_or_else(|| crate::error::Error::Data {
                stage: "compare",
                message: format!("no column `{}` to compare", s.field),
            })
        })
        .collect()
}

/// In what order [`compare_in`] reads the records of the candidate pairs; the levels are the
/// same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// In pair order, batch by batch: for records in memory.
    Pairs,
    /// Windows of this many pairs (whole batches), one comparison at a time, with read-ahead
    /// on the compared columns: for records mapped from disk that the page cache cannot hold.
    /// Pairs come in left-record order, so their right-hand records lie anywhere; read in pair
    /// order they were read at random, a page at a time (10M records under a 1.6 GB cap:
    /// compare 64-71 s). Here each window takes the right-hand values it needs (those whose
    /// fingerprints differ) front to back, then compares in pair order, the left-hand records
    /// read front to back too.
    Windows(usize),
}

/// Pairs per window of [`Reads::Windows`]: 16 batches (~1M pairs; per comparison ~15 MB of
/// levels and places, and the right-hand records' values: up to ~50 MB for addresses), so
/// that 10M person records' 8.4M pairs read each compared column 9 times.
pub const WINDOW: usize = 16 * BATCH;

/// Compares every candidate pair, batch by batch in parallel.
pub fn compare(
    comparators: &Comparators,
    specs: &[ComparisonSpec],
    candidates: &crate::block::Candidates,
) -> Result<Compared, crate::error::Error> {
    compare_in(comparators, specs, candidates, Reads::Pairs, None)
}

/// [`compare`], reading the records as `reads` says. In windows, the compared batches are
/// slices of the candidates' columns and of each comparison's levels (no copies), the levels
/// written to disk as made and mapped back when `levels_to` is given.
pub fn compare_in(
    comparators: &Comparators,
    specs: &[ComparisonSpec],
    candidates: &crate::block::Candidates,
    reads: Reads,
    levels_to: Option<&crate::state::Spill>,
) -> Result<Compared, crate::error::Error> {
    use rayon::prelude::*;
    let schema = levels_schema(specs);
    let pairs_of = |l: &[u32], r: &[u32], rule: &[u8]| {
        RecordBatch::try_new(
            pairs_schema(),
            vec![
                Arc::new(UInt32Array::from(l.to_vec())),
                Arc::new(UInt32Array::from(r.to_vec())),
                Arc::new(UInt8Array::from(rule.to_vec())),
            ],
        )
    };
    let batches =
        match reads {
            Reads::Pairs => candidates
                .left
                .par_chunks(BATCH)
                .zip(candidates.right.par_chunks(BATCH))
                .zip(candidates.rule.par_chunks(BATCH))
                .map(|((l, r), rule)| compare_batch(comparators, &schema, &pairs_of(l, r, rule)?))
                .collect::<Result<Vec<_>, _>>(),
            Reads::Windows(window) => {
                for c in comparators {
                    crate::mem::read_ahead(c.col);
                    if let Some(aux) = c.aux {
                        crate::mem::read_ahead(aux);
                    }
                }
                let window = window.div_ceil(BATCH).max(1) * BATCH;
                let (l, r, rule) = (&candidates.left, &candidates.right, &candidates.rule);
                // One comparison at a time over every pair, a window of pairs at a time.
                let w = comparators.len();
                let mut levels = Vec::with_capacity(w);
                let arrow = |e: arrow_schema::ArrowError| crate::error::Error::Data {
                    stage: "compare",
                    message: e.to_string(),
                };
                for (k, c) in comparators.list.iter().enumerate() {
                    let own;
                    let print = if comparators.prints.is_empty() {
                        // On a mapped file when the levels go to disk (8 bytes a record).
                        own = fingerprints_in(c, levels_to)?;
                        Prints::One(&own)
                    } else {
                        Prints::SideBySide(&comparators.prints, w, k)
                    };
                    // To disk window by window when asked, else in one list.
                    let mut on_disk = levels_to.map(|s| s.words::<u8>(1 << 20)).transpose()?;
                    let mut lv = vec![0u8; if on_disk.is_some() { 0 } else { l.len() }];
                    for from in (0..l.len()).step_by(window) {
                        let to = (from + window).min(l.len());
                        let (l, r) = (&l[from..to], &r[from..to]);
                        match on_disk.as_mut() {
                            Some(words) => {
                                let mut part = vec![0u8; to - from];
                                levels_in_window(c, &print, l, r, &mut part).map_err(arrow)?;
                                words.push(&part)?;
                            }
                            None => levels_in_window(c, &print, l, r, &mut lv[from..to])
                                .map_err(arrow)?,
                        }
                    }
                    levels.push(match on_disk {
                        Some(words) => words.finish()?,
                        None => arrow_buffer::ScalarBuffer::from(lv),
                    });
                }
                (0..l.len())
                    .step_by(BATCH)
                    .map(|at| {
                        let len = (at + BATCH).min(l.len()) - at;
                        let mut cols: Vec<ArrayRef> = vec![
                            Arc::new(UInt32Array::new(l.slice(at, len), None)),
                            Arc::new(UInt32Array::new(r.slice(at, len), None)),
                            Arc::new(UInt8Array::new(rule.slice(at, len), None)),
                        ];
                        cols.extend(levels.iter().map(|v| {
                            Arc::new(UInt8Array::new(v.slice(at, len), None)) as ArrayRef
                        }));
                        RecordBatch::try_new(schema.clone(), cols)
                    })
                    .collect::<Result<Vec<_>, _>>()
            }
        }
        .map_err(|e| crate::error::Error::Data {
            stage: "compare",
            message: e.to_string(),
        })?;
    Ok(Compared { schema, batches })
}

/// Where [`levels_in_window`] finds a record's fingerprint of its comparison.
enum Prints<'p> {
    /// One per record ([`fingerprints_in`]).
    One(&'p [u64]),
    /// [`Comparators`]' own: `w` per record side by side, this comparison's the `k`-th.
    SideBySide(&'p [u64], usize, usize),
}

impl Prints<'_> {
    fn of(&self, i: u32) -> u64 {
        let at = |p: &[u64], x: usize| p.get(x).copied().unwrap_or(0);
        match *self {
            Prints::One(p) => at(p, i as usize),
            Prints::SideBySide(p, w, k) => at(p, i as usize * w + k),
        }
    }
}

/// Comparison `c`'s levels of the pairs `(l[p], r[p])` into `lv`, in pair order: null and
/// exact from the fingerprints; for the pairs whose values differ, the right-hand records'
/// values are taken front to back ([`Comparator::take`]) and the pairs compared in pair order
/// (left-hand records read front to back too).
fn levels_in_window(
    c: &Comparator,
    prints: &Prints,
    l: &[u32],
    r: &[u32],
    lv: &mut [u8],
) -> Result<(), arrow_schema::ArrowError> {
    use rayon::prelude::*;
    const CHUNK: usize = 16384;
    const NONE: u32 = u32::MAX;
    // Null and exact levels at once; the pairs that differ, by right-hand record.
    let differ: Vec<u32> = lv
        .par_chunks_mut(CHUNK)
        .enumerate()
        .flat_map_iter(|(chunk, out)| {
            let from = chunk * CHUNK;
            let mut differ = Vec::new();
            for (q, o) in out.iter_mut().enumerate() {
                let p = from + q;
                let (a, b) = (prints.of(l[p]), prints.of(r[p]));
                if a == 0 || b == 0 {
                    *o = 0;
                } else if a == b {
                    *o = c.top;
                } else {
                    differ.push(p as u32);
                }
            }
            differ
        })
        .collect();
    // The distinct right-hand records, and where each differing pair's is among them.
    let wanted: Vec<u32> = differ.iter().map(|&p| r[p as usize]).collect();
    let (rows, at) = crate::mem::in_row_order(&wanted);
    drop(wanted);
    let mut right_at = vec![NONE; l.len()];
    for (&p, &k) in differ.iter().zip(&at) {
        right_at[p as usize] = k;
    }
    drop((differ, at));
    let taken = c.take(&rows)?;
    drop(rows);
    let right = c.over(&taken);
    lv.par_chunks_mut(CHUNK)
        .zip(right_at.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(chunk, (out, at))| {
            for (q, (o, &j)) in out.iter_mut().zip(at).enumerate() {
                if j != NONE {
                    *o = c.level_between(l[chunk * CHUNK + q] as usize, &right, j as usize);
                }
            }
        });
    Ok(())
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
    // The right-hand records lie anywhere: their fingerprints are asked for a few pairs ahead,
    // then the offsets of the values that differ, then those values' bytes.
    const AHEAD: usize = 8;
    let (left, right) = (l.values(), r.values());
    let at = |p: usize| {
        left.get(p)
            .zip(right.get(p))
            .map(|(&i, &j)| (i as usize, j as usize))
    };
    for (p, (&i, &j)) in left.iter().zip(right.iter()).enumerate() {
        if let Some(&ahead) = right.get(p + 3 * AHEAD) {
            comparators.prefetch(ahead as usize);
        }
        if let Some((i, j)) = at(p + 2 * AHEAD) {
            comparators.prefetch_values(i, j, Values::Offsets);
        }
        if let Some((i, j)) = at(p + AHEAD) {
            comparators.prefetch_values(i, j, Values::Bytes);
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
    fn windows_give_the_levels_pairs_give() {
        use crate::config::{EntityKind, presets::preset};
        let Some(plan) = preset(EntityKind::Person) else {
            panic!("person preset");
        };
        let n = 400usize;
        let text = |f: &dyn Fn(usize) -> Option<String>| -> StringArray { (0..n).map(f).collect() };
        let columns = [
            (
                "name",
                text(&|i| Some(format!("张{}", ["三", "山", "珊"][i % 3]))),
            ),
            (
                "name_pinyin",
                text(&|i| Some(format!("zhang{}", ["san", "shan"][i % 3 / 2]))),
            ),
            (
                "id_number",
                text(&|i| (i % 5 != 0).then(|| format!("1101051949123100{:02}", i % 11))),
            ),
            (
                "birth_date",
                text(&|i| Some(format!("1990-0{}-0{}", 1 + i % 3, 1 + i % 2))),
            ),
            ("gender", text(&|i| Some(["男", "女"][i % 2].to_string()))),
            (
                "phone",
                text(&|i| (i % 7 != 0).then(|| format!("1380013800{}", i % 4))),
            ),
            (
                "address",
                text(&|i| Some(format!("北京市海淀区{}路{}号", i % 6, i % 9))),
            ),
        ];
        let table = StdTable {
            kind: EntityKind::Person,
            sources: vec!["a".into()],
            source: vec![0; n].into(),
            record_id: text(&|i| Some(i.to_string())),
            columns: columns
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            raw: Default::default(),
            stats: Default::default(),
        };
        let Ok(comparators) = comparators(&table, &plan.comparisons) else {
            panic!("comparators");
        };
        // More pairs than a window: left-hand records in order, right-hand ones all over.
        let pairs = 2 * BATCH + 123;
        let mut state = 7u64;
        let candidates = crate::block::Candidates {
            left: (0..pairs).map(|p| (p * n / pairs) as u32).collect(),
            right: (0..pairs)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % n as u64) as u32
                })
                .collect(),
            rule: vec![0; pairs].into(),
            ..Default::default()
        };
        let by_pairs = compare_in(
            &comparators,
            &plan.comparisons,
            &candidates,
            Reads::Pairs,
            None,
        );
        let by_windows = compare_in(
            &comparators,
            &plan.comparisons,
            &candidates,
            Reads::Windows(BATCH),
            None,
        );
        // Fingerprinted one comparison at a time, windows or pairs (compared as text).
        let Ok(unprinted) = comparators_to_sweep(&table, &plan.comparisons) else {
            panic!("comparators");
        };
        assert!(unprinted.prints.is_empty());
        // Levels on disk: the same batches.
        let dir = std::env::temp_dir().join(format!("yiku-levels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let spill = crate::state::Spill::new(&dir, "t");
        let swept = compare_in(
            &unprinted,
            &plan.comparisons,
            &candidates,
            Reads::Windows(BATCH),
            Some(&spill),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let as_text = compare_in(
            &unprinted,
            &plan.comparisons,
            &candidates,
            Reads::Pairs,
            None,
        );
        let (Ok(a), Ok(b), Ok(c), Ok(d)) = (by_pairs, by_windows, swept, as_text) else {
            panic!("compared");
        };
        assert_eq!(a.batches.len(), 3);
        assert_eq!(a.batches, b.batches);
        assert_eq!(a.batches, c.batches);
        assert_eq!(a.batches, d.batches);
        // Every level seen somewhere: the windows met nulls, exact and fuzzy agreement.
        let seen = |k: usize, lv: u8| {
            a.batches.iter().any(|batch| {
                batch
                    .column(FIRST_LEVEL + k)
                    .as_any()
                    .downcast_ref::<UInt8Array>()
                    .is_some_and(|c| c.values().contains(&lv))
            })
        };
        assert!(seen(0, 3) && seen(0, 2) && seen(1, 0) && seen(5, 4));
    }

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
