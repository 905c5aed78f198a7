//! The persistent index: what a run keeps so that the next night's delta run costs what its
//! delta costs, not what the index costs. Every output folder holds `store/`:
//!
//! ```text
//! store/manifest.json                  the segments of each kind, in order, with their row counts
//! store/<kind>/<run id>/records.arrow  standardised records, sorted by (source, record id)
//!                      /index.arrow    per record: master id, component; records by component
//!                      /links.arrow    links between the segment's records, sorted by (left, right)
//!                      /keys.arrow     per blocking rule: the records with a key, by (key hash, record),
//!                                      with the top 32 bits of each hash (`tag`) to search by
//!                      /tf.arrow       per term-frequency field: (value hash, count), by hash
//!                      /tombstones.arrow  components of earlier segments this one replaces
//! ```
//!
//! A full run writes one segment per kind, the **base** (its `records.arrow` and `links.arrow`
//! are hard links of the folder's `standardised_<kind>.arrow` and `links_<kind>.arrow`). A delta
//! run hard-links the previous folder's segments and adds a **layer**: the records of every
//! component it touched (tonight's records, the records they replace or delete, and every
//! record in a block with one of them), re-clustered whole; the layer's tombstones name the
//! components of earlier segments it replaces. A component (records joined by links, before
//! must-not-link cuts any) always lives whole in one segment, so a record is live in exactly
//! one segment: the one whose component no later segment has tombstoned. Term frequencies are
//! a ledger: the base counts every value, each layer holds the night's net change.
//!
//! Everything is mapped, never decoded: a delta run reads the pages it looks at (binary
//! searches on record ids and key hashes), so its cost follows the delta. When the layers hold
//! more than a share of the base's rows (the job's `compact_after`), the delta run writes a
//! new base instead ([`compact`]), which costs a full night's write once every so many nights.
//!
//! The files are read only by this module, through accessors that check every offset they
//! follow (they are not validated as they are mapped: that would
//! read every page of the index).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::UInt16Type;
use arrow_array::{
    Array, ArrayRef, BinaryArray, DictionaryArray, Float64Array, Int64Array, RecordBatch,
    StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cluster::Edge;
use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::standardise::StdTable;
use crate::state::Links;

/// The store's folder in a run's output folder.
pub const DIR: &str = "store";
const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const FILES: [&str; 6] = ["records", "index", "links", "keys", "tf", "tombstones"];

type Fast = foldhash::fast::FixedState;

/// `store/manifest.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    /// The run that wrote this folder.
    pub run_id: String,
    pub kinds: BTreeMap<String, KindEntry>,
}

/// One kind's segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KindEntry {
    /// The blocking rules the key lists were made for (their columns).
    pub rules: Vec<Vec<String>>,
    /// The fields whose values are counted for term frequencies, in `tf.arrow`'s order.
    pub term_frequency: Vec<String>,
    /// The base first, then the layers in the order they were written.
    pub segments: Vec<SegmentEntry>,
}

impl KindEntry {
    /// Records live in the index.
    pub fn live(&self) -> u64 {
        self.segments.iter().map(|s| s.live).sum()
    }

    /// Rows of the layers (every segment after the base).
    pub fn layered(&self) -> u64 {
        self.segments.iter().skip(1).map(|s| s.rows).sum()
    }

    /// Whether the layers have grown past `share` of the base.
    pub fn due_for_compaction(&self, share: f64) -> bool {
        let base = self.segments.first().map_or(0, |s| s.rows);
        self.layered() as f64 > share * base as f64
    }
}

/// One segment: the run that wrote it and its row counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SegmentEntry {
    /// The id of the run that wrote it (its folder's name).
    pub name: String,
    pub rows: u64,
    /// Rows not replaced by a later segment.
    pub live: u64,
    /// Per term-frequency field, the segment's share of the count of non-null values (the
    /// base: all of them; a layer: the night's net change).
    pub tf_total: Vec<i64>,
}

impl Manifest {
    /// An empty manifest of the run `run_id`.
    pub fn new(run_id: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            run_id: run_id.to_string(),
            kinds: BTreeMap::new(),
        }
    }

    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(DIR).join(MANIFEST)
    }

    /// The manifest of a run's folder; `Ok(None)` when it has no store.
    pub fn read(run_dir: &Path) -> Result<Option<Manifest>> {
        let path = Manifest::path(run_dir);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(Error::Read {
                path,
                message: format!(
                    "store format {} (this version of yiku reads {FORMAT}): run a full night",
                    m.format
                ),
            });
        }
        Ok(Some(m))
    }

    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let dir = run_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::output::write_json(&Manifest::path(run_dir), self)
    }
}

fn segment_dir(run_dir: &Path, kind: &str, name: &str) -> PathBuf {
    run_dir.join(DIR).join(kind).join(name)
}

fn file(run_dir: &Path, kind: &str, name: &str, what: &str) -> PathBuf {
    segment_dir(run_dir, kind, name).join(format!("{what}.arrow"))
}

/// A record's place in the store: segment and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub seg: u32,
    pub row: u32,
}

/// Bytes of row `i` of a mapped text column; `None` for a null, a row out of range or an offset
/// that points outside the column's data.
fn bytes_at(a: &BinaryArray, i: usize) -> Option<&[u8]> {
    if i >= a.len() || a.is_null(i) {
        return None;
    }
    let o = a.value_offsets();
    let (s, e) = (*o.get(i)?, *o.get(i + 1)?);
    a.value_data()
        .get(usize::try_from(s).ok()?..usize::try_from(e).ok()?)
}

/// The first of `0..n` at which `below` is false (`below` true on a prefix): a binary search
/// over positions whose values are read through checked accessors.
fn first_not_below(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn u32_at(a: &UInt32Array, i: usize) -> Option<u32> {
    a.values().get(i).copied()
}

/// One segment, mapped.
pub struct Segment {
    pub name: String,
    dir: PathBuf,
    rows: usize,
    source_key: arrow_array::UInt16Array,
    source_name: Vec<String>,
    record_id: BinaryArray,
    /// Standardised columns by name, raw ones as `raw:<field>`.
    columns: BTreeMap<String, BinaryArray>,
    master_id: BinaryArray,
    component: UInt32Array,
    by_component: UInt32Array,
    left: UInt32Array,
    right: UInt32Array,
    weight: Float64Array,
    decided: BinaryArray,
    /// Per rule: (tag, row).
    keys: Vec<(UInt32Array, UInt32Array)>,
    tf: Vec<(UInt64Array, Int64Array)>,
    tombstones: Vec<(u32, u32)>,
    /// Components a later segment replaced.
    dead: HashSet<u32, Fast>,
}

impl Segment {
    fn open(
        run_dir: &Path,
        kind: &str,
        entry: &SegmentEntry,
        rules: usize,
        tf: usize,
    ) -> Result<Segment> {
        let dir = segment_dir(run_dir, kind, &entry.name);
        let read =
            |what: &str| crate::state::map_store_file(&file(run_dir, kind, &entry.name, what));
        let bad = |what: &str, message: &str| Error::Read {
            path: file(run_dir, kind, &entry.name, what),
            message: format!("{message}: not a yiku store file, or damaged"),
        };
        let one = |what: &str| -> Result<Option<RecordBatch>> {
            let mut b = read(what)?;
            match b.len() {
                0 => Ok(None),
                1 => Ok(b.pop()),
                _ => Err(bad(what, "more than one batch")),
            }
        };
        let records = one("records")?;
        let rows = records.as_ref().map_or(0, |b| b.num_rows());
        if rows as u64 != entry.rows {
            return Err(bad("records", "row count differs from the manifest's"));
        }
        let binary = |b: &Option<RecordBatch>, what: &str, name: &str| -> Result<BinaryArray> {
            match b {
                None => Ok(BinaryArray::new_null(0)),
                Some(b) => b
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                    .filter(|c| c.len() == b.num_rows())
                    .cloned()
                    .ok_or_else(|| bad(what, &format!("no text column `{name}`"))),
            }
        };
        let prim = |b: &Option<RecordBatch>, what: &str, name: &str| -> Result<UInt32Array> {
            match b {
                None => Ok(UInt32Array::from(Vec::<u32>::new())),
                Some(b) => b
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
                    .filter(|c| c.len() == b.num_rows())
                    .cloned()
                    .ok_or_else(|| bad(what, &format!("no column `{name}`"))),
            }
        };
        let (source_key, source_name) = match &records {
            None => (
                arrow_array::UInt16Array::from(Vec::<u16>::new()),
                Vec::new(),
            ),
            Some(b) => {
                let dict = b
                    .column_by_name("source")
                    .and_then(|c| c.as_any().downcast_ref::<DictionaryArray<UInt16Type>>())
                    .ok_or_else(|| bad("records", "no dictionary column `source`"))?;
                let values = dict
                    .values()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| bad("records", "source names are not text"))?;
                // The names were not validated as they were mapped: read them as bytes.
                let o = values.value_offsets();
                let data = values.value_data();
                let names = (0..values.len())
                    .map(|i| {
                        let (s, e) = (o.get(i).copied(), o.get(i + 1).copied());
                        s.zip(e)
                            .and_then(|(s, e)| data.get(s as usize..e as usize))
                            .and_then(|b| std::str::from_utf8(b).ok())
                            .map(str::to_string)
                            .ok_or_else(|| bad("records", "a source name is not text"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                (dict.keys().clone(), names)
            }
        };
        let record_id = binary(&records, "records", "record_id")?;
        let mut columns = BTreeMap::new();
        if let Some(b) = &records {
            for f in b.schema().fields() {
                if f.name() != "source" && f.name() != "record_id" {
                    columns.insert(f.name().clone(), binary(&records, "records", f.name())?);
                }
            }
        }
        let index = one("index")?;
        let master_id = binary(&index, "index", "master_id")?;
        let component = prim(&index, "index", "component")?;
        let by_component = prim(&index, "index", "by_component")?;
        if [master_id.len(), component.len(), by_component.len()] != [rows; 3] {
            return Err(bad("index", "row count differs from the records'"));
        }
        let links = one("links")?;
        let (left, right) = (
            prim(&links, "links", "left")?,
            prim(&links, "links", "right")?,
        );
        let weight = match &links {
            None => Float64Array::from(Vec::<f64>::new()),
            Some(b) => b
                .column_by_name("match_weight")
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .filter(|c| c.len() == b.num_rows())
                .cloned()
                .ok_or_else(|| bad("links", "no column `match_weight`"))?,
        };
        let decided = binary(&links, "links", "decided_by")?;
        let keys: Vec<(UInt32Array, UInt32Array)> = read("keys")?
            .into_iter()
            .map(|b| {
                let b = Some(b);
                Ok((prim(&b, "keys", "tag")?, prim(&b, "keys", "row")?))
            })
            .collect::<Result<_>>()?;
        if keys.len() != rules {
            return Err(bad("keys", "not one list per blocking rule"));
        }
        let tf_lists = read("tf")?
            .into_iter()
            .map(|b| {
                let h = b
                    .column_by_name("hash")
                    .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                    .cloned();
                let c = b
                    .column_by_name("count")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .cloned();
                h.zip(c)
                    .filter(|(h, c)| h.len() == c.len())
                    .ok_or_else(|| bad("tf", "no (hash, count) columns"))
            })
            .collect::<Result<Vec<_>>>()?;
        if tf_lists.len() != tf {
            return Err(bad("tf", "not one list per term-frequency field"));
        }
        let tomb = one("tombstones")?;
        let (ts, tc) = (
            prim(&tomb, "tombstones", "segment")?,
            prim(&tomb, "tombstones", "component")?,
        );
        let tombstones = ts
            .values()
            .iter()
            .copied()
            .zip(tc.values().iter().copied())
            .collect();
        Ok(Segment {
            name: entry.name.clone(),
            dir,
            rows,
            source_key,
            source_name,
            record_id,
            columns,
            master_id,
            component,
            by_component,
            left,
            right,
            weight,
            decided,
            keys,
            tf: tf_lists,
            tombstones,
            dead: HashSet::default(),
        })
    }

    fn source(&self, row: usize) -> &str {
        self.source_key
            .values()
            .get(row)
            .and_then(|&k| self.source_name.get(usize::from(k)))
            .map_or("", String::as_str)
    }

    fn key(&self, row: usize) -> (&str, &[u8]) {
        (
            self.source(row),
            bytes_at(&self.record_id, row).unwrap_or_default(),
        )
    }

    /// Row of a record by binary search (rows are sorted by source name, record id).
    fn find(&self, source: &str, record_id: &[u8]) -> Option<u32> {
        let lo = first_not_below(self.rows, |k| self.key(k) < (source, record_id));
        (lo < self.rows && self.key(lo) == (source, record_id)).then_some(lo as u32)
    }

    fn component(&self, row: usize) -> u32 {
        u32_at(&self.component, row).unwrap_or(u32::MAX)
    }

    fn live(&self, row: usize) -> bool {
        row < self.rows && !self.dead.contains(&self.component(row))
    }

    /// Rows of component `c`: a binary search over the rows listed by component.
    fn members(&self, c: u32) -> Vec<u32> {
        let comp_at = |k: usize| {
            u32_at(&self.by_component, k).map_or(u32::MAX, |r| self.component(r as usize))
        };
        let n = self.by_component.len();
        let mut lo = first_not_below(n, |k| comp_at(k) < c);
        let mut out = Vec::new();
        while lo < n && comp_at(lo) == c {
            if let Some(r) = u32_at(&self.by_component, lo) {
                out.push(r);
            }
            lo += 1;
        }
        out
    }

    fn value(&self, column: &str, row: usize) -> Option<&[u8]> {
        bytes_at(self.columns.get(column)?, row)
    }

    /// Rows with key `hash` under rule `r` (columns `cols`), live or not: a binary search
    /// on the tags, then each row with the tag checked against the whole hash.
    fn block(&self, r: usize, cols: &[String], hash: u64) -> Vec<u32> {
        self.tagged(r, hash)
            .into_iter()
            .filter(|&row| {
                crate::block::key_hash(cols.iter().map(|c| self.value(c, row as usize))) == hash
            })
            .collect()
    }

    /// Rows whose key under rule `r` has the top 32 bits of `hash` (a superset of the
    /// block), live or not.
    fn tagged(&self, r: usize, hash: u64) -> Vec<u32> {
        let Some((tags, rows)) = self.keys.get(r) else {
            return Vec::new();
        };
        let tag = (hash >> 32) as u32;
        let tags = tags.values();
        let from = tags.partition_point(|&t| t < tag);
        let to = from + tags[from..].partition_point(|&t| t == tag);
        (from..to).filter_map(|k| u32_at(rows, k)).collect()
    }

    /// Links whose left record is `row`: (right row, weight, decided by).
    fn links_of(&self, row: u32) -> Vec<(u32, f64, &[u8])> {
        let n = self.left.len();
        let left_at = |k: usize| u32_at(&self.left, k).unwrap_or(u32::MAX);
        let mut lo = first_not_below(n, |k| left_at(k) < row);
        let mut out = Vec::new();
        while lo < n && left_at(lo) == row {
            if let (Some(r), Some(&w)) = (u32_at(&self.right, lo), self.weight.values().get(lo)) {
                out.push((r, w, bytes_at(&self.decided, lo).unwrap_or_default()));
            }
            lo += 1;
        }
        out
    }

    fn tf_count(&self, field: usize, hash: u64) -> i64 {
        let Some((h, c)) = self.tf.get(field) else {
            return 0;
        };
        match h.values().binary_search(&hash) {
            Ok(k) => c.values().get(k).copied().unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// One kind's store, mapped: its segments, with the components later ones replaced.
pub struct KindStore {
    pub kind: EntityKind,
    pub entry: KindEntry,
    pub segments: Vec<Segment>,
}

impl KindStore {
    /// Opens a kind's store in a run's folder; `Ok(None)` when the folder has no store or no
    /// records of this kind.
    pub fn open(run_dir: &Path, kind: EntityKind) -> Result<Option<KindStore>> {
        let Some(m) = Manifest::read(run_dir)? else {
            return Ok(None);
        };
        let Some(entry) = m.kinds.get(kind.as_str()).cloned() else {
            return Ok(None);
        };
        KindStore::open_entry(run_dir, kind, entry).map(Some)
    }

    /// A store with no records (the previous run had none of this kind).
    pub fn empty(
        kind: EntityKind,
        rules: Vec<Vec<String>>,
        term_frequency: Vec<String>,
    ) -> KindStore {
        KindStore {
            kind,
            entry: KindEntry {
                rules,
                term_frequency,
                segments: Vec::new(),
            },
            segments: Vec::new(),
        }
    }

    fn open_entry(run_dir: &Path, kind: EntityKind, entry: KindEntry) -> Result<KindStore> {
        let (rules, tf) = (entry.rules.len(), entry.term_frequency.len());
        let mut segments = entry
            .segments
            .par_iter()
            .map(|e| Segment::open(run_dir, kind.as_str(), e, rules, tf))
            .collect::<Result<Vec<_>>>()?;
        for k in 0..segments.len() {
            let tombs = std::mem::take(&mut segments[k].tombstones);
            for &(s, c) in &tombs {
                match segments.get_mut(s as usize) {
                    Some(seg) if (s as usize) < k => {
                        seg.dead.insert(c);
                    }
                    _ => {
                        return Err(Error::Read {
                            path: segments[k].dir.join("tombstones.arrow"),
                            message: format!("a tombstone names segment {s}, not an earlier one"),
                        });
                    }
                }
            }
            segments[k].tombstones = tombs;
        }
        Ok(KindStore {
            kind,
            entry,
            segments,
        })
    }

    fn seg(&self, l: Loc) -> Option<&Segment> {
        self.segments.get(l.seg as usize)
    }

    /// Whether a row is live (no later segment replaced its component).
    pub fn live(&self, l: Loc) -> bool {
        self.seg(l).is_some_and(|s| s.live(l.row as usize))
    }

    /// The live row of a record.
    pub fn find(&self, source: &str, record_id: &str) -> Option<Loc> {
        self.segments.iter().enumerate().rev().find_map(|(k, s)| {
            let row = s.find(source, record_id.as_bytes())?;
            s.live(row as usize).then_some(Loc { seg: k as u32, row })
        })
    }

    pub fn source(&self, l: Loc) -> &str {
        self.seg(l).map_or("", |s| s.source(l.row as usize))
    }

    pub fn record_id(&self, l: Loc) -> &[u8] {
        self.seg(l)
            .and_then(|s| bytes_at(&s.record_id, l.row as usize))
            .unwrap_or_default()
    }

    pub fn master_id(&self, l: Loc) -> Option<&[u8]> {
        bytes_at(&self.seg(l)?.master_id, l.row as usize)
    }

    /// A column's value (a raw one as `raw:<field>`).
    pub fn value(&self, l: Loc, column: &str) -> Option<&[u8]> {
        self.seg(l)?.value(column, l.row as usize)
    }

    /// The names of the stored columns (raw ones as `raw:<field>`).
    pub fn columns(&self) -> Vec<String> {
        self.segments
            .first()
            .map(|s| s.columns.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The component of a row: (segment, component).
    pub fn component(&self, l: Loc) -> (u32, u32) {
        (
            l.seg,
            self.seg(l)
                .map_or(u32::MAX, |s| s.component(l.row as usize)),
        )
    }

    /// The rows of a component.
    pub fn members(&self, (seg, c): (u32, u32)) -> Vec<Loc> {
        self.segments.get(seg as usize).map_or(Vec::new(), |s| {
            s.members(c)
                .into_iter()
                .map(|row| Loc { seg, row })
                .collect()
        })
    }

    /// The live rows whose key under blocking rule `r` hashes to `hash`.
    pub fn block(&self, r: usize, hash: u64) -> Vec<Loc> {
        let Some(cols) = self.entry.rules.get(r) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, s) in self.segments.iter().enumerate() {
            out.extend(
                s.block(r, cols, hash)
                    .into_iter()
                    .filter(|&row| s.live(row as usize))
                    .map(|row| Loc { seg: k as u32, row }),
            );
        }
        out
    }

    /// The number of live rows, not in `except`, in the block of key `hash` under rule `r`,
    /// exact whenever it is over `cap`; at most `cap` means the block is at most `cap`. Only the
    /// key lists are read unless the rows sharing the hash's top bits are more than `cap`:
    /// then each row's key is checked against the whole hash.
    pub fn block_size(&self, r: usize, hash: u64, cap: u64, except: &HashSet<Loc, Fast>) -> u64 {
        let mut tagged: Vec<Loc> = Vec::new();
        for (k, s) in self.segments.iter().enumerate() {
            tagged.extend(
                s.tagged(r, hash)
                    .into_iter()
                    .filter(|&row| s.live(row as usize))
                    .map(|row| Loc { seg: k as u32, row }),
            );
        }
        tagged.retain(|l| !except.contains(l));
        if tagged.len() as u64 <= cap {
            return tagged.len() as u64;
        }
        let Some(cols) = self.entry.rules.get(r) else {
            return 0;
        };
        tagged
            .iter()
            .filter(|l| crate::block::key_hash(cols.iter().map(|c| self.value(**l, c))) == hash)
            .count() as u64
    }

    /// Links whose left record is `l`: (right record, weight, decided by).
    pub fn links_of(&self, l: Loc) -> Vec<(Loc, f64, &[u8])> {
        self.seg(l).map_or(Vec::new(), |s| {
            s.links_of(l.row)
                .into_iter()
                .map(|(row, w, by)| (Loc { seg: l.seg, row }, w, by))
                .collect()
        })
    }

    /// How many records hold the value hashing to `hash` in term-frequency field `field`.
    pub fn tf_count(&self, field: usize, hash: u64) -> i64 {
        self.segments.iter().map(|s| s.tf_count(field, hash)).sum()
    }

    /// How many records hold a value in term-frequency field `field`.
    pub fn tf_total(&self, field: usize) -> i64 {
        self.entry
            .segments
            .iter()
            .map(|s| s.tf_total.get(field).copied().unwrap_or(0))
            .sum()
    }

    /// Every live row, in (source, record id) order.
    pub fn live_rows(&self) -> Vec<Loc> {
        let mut all: Vec<Loc> = self
            .segments
            .par_iter()
            .enumerate()
            .flat_map_iter(|(k, s)| {
                (0..s.rows as u32)
                    .filter(|&row| s.live(row as usize))
                    .map(move |row| Loc { seg: k as u32, row })
            })
            .collect();
        if self.segments.len() > 1 {
            all.par_sort_by(|&a, &b| self.key(a).cmp(&self.key(b)));
        }
        all
    }

    fn key(&self, l: Loc) -> (&str, &[u8]) {
        (self.source(l), self.record_id(l))
    }

    /// A text column of the rows `locs`, checked to be UTF-8 (`source` and `record_id` are
    /// columns too).
    pub fn gather(&self, column: &str, locs: &[Loc]) -> Result<StringArray> {
        let mut b = arrow_array::builder::StringBuilder::with_capacity(locs.len(), locs.len() * 8);
        for &l in locs {
            let v = match column {
                "source" => Some(self.source(l).as_bytes()),
                "record_id" => Some(self.record_id(l)),
                "master_id" => self.master_id(l),
                c => self.value(l, c),
            };
            match v {
                None => b.append_null(),
                Some(v) => b.append_value(std::str::from_utf8(v).map_err(|_| {
                    Error::Read {
                        path: self
                            .seg(l)
                            .map_or_else(PathBuf::new, |s| s.dir.join("records.arrow")),
                        message: format!("column `{column}` of row {} is not UTF-8", l.row),
                    }
                })?),
            }
        }
        Ok(b.finish())
    }

    /// The whole index as one table in (source, record id) order, with its master ids,
    /// components and links: what a full snapshot, a compaction and the readers of a whole
    /// index need. Costs O(records).
    pub fn merged(&self, keep: crate::state::Keep) -> Result<Merged> {
        let locs = self.live_rows();
        let n = locs.len();
        let mut sources: Vec<String> = self
            .segments
            .iter()
            .flat_map(|s| s.source_name.iter().cloned())
            .collect();
        sources.sort();
        sources.dedup();
        let source: Vec<u16> = locs
            .iter()
            .map(|&l| {
                sources
                    .binary_search_by(|x| x.as_str().cmp(self.source(l)))
                    .unwrap_or(0) as u16
            })
            .collect();
        let names = self.columns();
        let gathered = std::iter::once("record_id".to_string())
            .chain(std::iter::once("master_id".to_string()))
            .chain(names)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|c| Ok((c.clone(), keep(&[self.gather(&c, &locs)?])?)))
            .collect::<Result<Vec<(String, StringArray)>>>()?;
        let mut record_id = StringArray::new_null(0);
        let mut master_id = StringArray::new_null(0);
        let mut columns = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for (c, a) in gathered {
            match c.as_str() {
                "record_id" => record_id = a,
                "master_id" => master_id = a,
                _ => match c.strip_prefix(crate::state::RAW_PREFIX) {
                    Some(f) => {
                        raw.insert(f.to_string(), a);
                    }
                    None => {
                        columns.insert(c, a);
                    }
                },
            }
        }
        // Row of every live (segment, row) in the merged table.
        let mut at: Vec<Vec<u32>> = self
            .segments
            .iter()
            .map(|s| vec![u32::MAX; s.rows])
            .collect();
        for (i, l) in locs.iter().enumerate() {
            at[l.seg as usize][l.row as usize] = i as u32;
        }
        let mut first: HashMap<(u32, u32), u32, Fast> = HashMap::default();
        let component: Vec<u32> = locs
            .iter()
            .enumerate()
            .map(|(i, &l)| *first.entry(self.component(l)).or_insert(i as u32))
            .collect();
        let mut links = Links::default();
        for (i, &l) in locs.iter().enumerate() {
            for (r, weight, by) in self.links_of(l) {
                let j = at[r.seg as usize]
                    .get(r.row as usize)
                    .copied()
                    .unwrap_or(u32::MAX);
                if j == u32::MAX {
                    continue;
                }
                links.push(i as u32, j, weight, by);
            }
        }
        Ok(Merged {
            table: StdTable {
                kind: self.kind,
                sources,
                source: source.into(),
                record_id,
                columns,
                raw,
                stats: Default::default(),
            },
            master_id,
            component,
            links,
            rows: n,
        })
    }
}

/// A kind's whole index as one table ([`KindStore::merged`]).
pub struct Merged {
    pub table: StdTable,
    pub master_id: StringArray,
    /// Per record, the first record of its component.
    pub component: Vec<u32>,
    pub links: Links,
    pub rows: usize,
}

impl Merged {
    /// Records grouped by master id: clusters in order of their first record, as a run makes
    /// them.
    pub fn groups(&self) -> crate::cluster::Groups {
        let mut first: HashMap<&str, u32, Fast> = HashMap::default();
        let label: Vec<u32> = (0..self.master_id.len())
            .map(|i| *first.entry(self.master_id.value(i)).or_insert(i as u32))
            .collect();
        crate::cluster::Groups::of(&label)
    }
}

/// The rows of a table (with their master ids, components and links) that `keep` marks, in
/// order: what a delta night's layer holds of its table.
pub fn subset(
    table: &StdTable,
    master_id: &StringArray,
    components: &[u32],
    links: &Links,
    keep: &[bool],
) -> Result<(StdTable, StringArray, Vec<u32>, Links)> {
    let mask: arrow_array::BooleanArray = keep.iter().map(|&k| Some(k)).collect();
    let err = |e: arrow_schema::ArrowError| Error::Data {
        stage: "store",
        message: e.to_string(),
    };
    let filter = |a: &StringArray| -> Result<StringArray> {
        let f = arrow_select::filter::filter(a, &mask).map_err(err)?;
        f.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| Error::Data {
                stage: "store",
                message: "internal: a filtered column is not text".into(),
            })
    };
    let mut at = vec![u32::MAX; keep.len()];
    let mut next = 0u32;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            at[i] = next;
            next += 1;
        }
    }
    let kept = |v: u32| at.get(v as usize).copied().filter(|&x| x != u32::MAX);
    let pick = |a: &[u32]| -> Vec<u32> {
        a.iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(&v, _)| v)
            .collect()
    };
    let map = |m: &BTreeMap<String, StringArray>| -> Result<BTreeMap<String, StringArray>> {
        m.iter().map(|(k, a)| Ok((k.clone(), filter(a)?))).collect()
    };
    let t = StdTable {
        kind: table.kind,
        sources: table.sources.clone(),
        source: table
            .source
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(&s, _)| s)
            .collect(),
        record_id: filter(&table.record_id)?,
        columns: map(&table.columns)?,
        raw: map(&table.raw)?,
        stats: Default::default(),
    };
    let links = Links {
        edges: links
            .edges
            .iter()
            .filter_map(|e| {
                Some(Edge {
                    left: kept(e.left)?,
                    right: kept(e.right)?,
                    weight: e.weight,
                })
            })
            .collect(),
        cannot_link: links
            .cannot_link
            .iter()
            .filter_map(|&(l, r)| Some((kept(l)?, kept(r)?)))
            .collect(),
    };
    // Components are named by a record of theirs: renamed to rows of the subset.
    let comps: Vec<u32> = pick(components)
        .into_iter()
        .map(|c| kept(c).unwrap_or(c))
        .collect();
    Ok((t, filter(master_id)?, comps, links))
}

/// What a segment is written from.
pub struct Parts<'a> {
    /// The records, in (source, record id) order.
    pub table: &'a StdTable,
    pub master_id: &'a StringArray,
    /// The records' components.
    pub components: Components<'a>,
    pub links: &'a Links,
    /// Per term-frequency field, (value hash, count) sorted by hash.
    pub tf: Vec<Vec<(u64, i64)>>,
    /// Components of earlier segments this one replaces: (segment, component), sorted.
    pub tombstones: &'a [(u32, u32)],
}

/// The components of a segment's records.
pub enum Components<'a> {
    /// Per record, any number shared by exactly the records of its component (e.g. its first
    /// record, as [`crate::cluster::Clusters::components`] gives).
    Labels(&'a [u32]),
    /// Already grouped: a full run's clusters when clustering cut no edge (each component is
    /// then a cluster), not grouped again.
    Grouped(&'a crate::cluster::Groups),
}

fn ipc_schema(fields: Vec<Field>) -> Arc<Schema> {
    Arc::new(Schema::new(fields))
}

/// Hard-links `from` as `to`, copying where the two are on different file systems.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(from, e))
}

/// The key lists of a segment (per rule, the rows with a key, by (key hash, row), as (tags,
/// rows): see [`crate::block::Options::keyed`]), computed from its records where the
/// blocking stage has not written them.
pub fn key_lists(table: &StdTable, rules: &[Vec<String>]) -> Vec<(Vec<u32>, Vec<u32>)> {
    rules
        .par_iter()
        .map(|rule| {
            let keys = crate::block::rule_keys(table, rule);
            let mut keyed: Vec<(u64, u32)> = keys
                .iter()
                .enumerate()
                .filter(|&(_, &k)| k != 0)
                .map(|(i, &k)| (k, i as u32))
                .collect();
            keyed.par_sort_unstable();
            (
                keyed.iter().map(|&(k, _)| (k >> 32) as u32).collect(),
                keyed.iter().map(|&(_, i)| i).collect(),
            )
        })
        .collect()
}

/// A segment's key lists file (`keys.arrow`) being written, one rule's list at a time: the
/// blocking stage of a full run hands each over as soon as it has it, so that no more than
/// the rules it sorts at once are held (at 10M records a list is 80 MB).
pub struct KeysFile {
    path: PathBuf,
    schema: Arc<Schema>,
    writer: arrow_ipc::writer::FileWriter<crate::state::DirectFile>,
}

impl KeysFile {
    pub fn create(run_dir: &Path, kind: EntityKind, name: &str) -> Result<KeysFile> {
        let dir = segment_dir(run_dir, kind.as_str(), name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = file(run_dir, kind.as_str(), name, "keys");
        let schema = ipc_schema(vec![
            Field::new("tag", DataType::UInt32, false),
            Field::new("row", DataType::UInt32, false),
        ]);
        let out = crate::state::DirectFile::create(&path)?;
        let writer = arrow_ipc::writer::FileWriter::try_new(out, &schema)
            .map_err(|e| Error::write(&path, e))?;
        Ok(KeysFile {
            path,
            schema,
            writer,
        })
    }

    /// The next rule's list (the lists go in rule order); the vectors become the batch's
    /// columns as they are, without a copy.
    pub fn write(
        &mut self,
        tags: arrow_buffer::ScalarBuffer<u32>,
        rows: arrow_buffer::ScalarBuffer<u32>,
    ) -> Result<()> {
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(UInt32Array::new(tags, None)) as ArrayRef,
                Arc::new(UInt32Array::new(rows, None)),
            ],
        )
        .map_err(|e| Error::write(&self.path, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::write(&self.path, e))
    }

    pub fn finish(mut self) -> Result<()> {
        self.writer
            .finish()
            .map_err(|e| Error::write(&self.path, e))?;
        let out = self
            .writer
            .into_inner()
            .map_err(|e| Error::write(&self.path, e))?;
        out.finish().map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes a segment's key lists (`keys.arrow`) at once.
pub fn write_keys(
    run_dir: &Path,
    kind: EntityKind,
    name: &str,
    keyed: Vec<(Vec<u32>, Vec<u32>)>,
) -> Result<()> {
    let mut f = KeysFile::create(run_dir, kind, name)?;
    for (tags, rows) in keyed {
        f.write(tags.into(), rows.into())?;
    }
    f.finish()
}

/// The fields a kind's comparisons count term frequencies of, in order, each once.
pub fn tf_fields(plan: &crate::config::KindPlan) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in plan.comparisons.iter().filter(|c| c.term_frequency) {
        if !out.contains(&c.field) {
            out.push(c.field.clone());
        }
    }
    out
}

/// The (value hash, count) list of every term-frequency field of a table's records, sorted
/// by hash. Counted by sorting the hashes, one field after another: 8 bytes per record at a
/// time (a hash map of the values took several times that, for every field at once, while a
/// full run makes its golden records).
pub fn tf_lists(table: &StdTable, fields: &[String]) -> Vec<Vec<(u64, i64)>> {
    let Ok(lists) = tf_lists_with(table, fields, |len| {
        Ok::<_, std::convert::Infallible>(crate::state::Scratch::heap(vec![0; len]))
    });
    lists
}

/// [`tf_lists`], each field's hashes sorted in a list from `zeroed` (on a mapped file in a
/// spilled run: [`crate::state::Scratch`]).
pub fn tf_lists_with<E>(
    table: &StdTable,
    fields: &[String],
    zeroed: impl Fn(usize) -> std::result::Result<crate::state::Scratch<u64>, E>,
) -> std::result::Result<Vec<Vec<(u64, i64)>>, E> {
    use arrow_array::Array;
    const CHUNK: usize = 1 << 16;
    let mut lists = Vec::with_capacity(fields.len());
    for f in fields {
        let Some(col) = table.column(f) else {
            lists.push(Vec::new());
            continue;
        };
        // Each chunk of records' non-null values, hashed into its own part of the list.
        let counts: Vec<usize> = (0..col.len())
            .step_by(CHUNK)
            .map(|from| {
                (from..(from + CHUNK).min(col.len()))
                    .filter(|&i| col.is_valid(i))
                    .count()
            })
            .collect();
        let mut hashes = zeroed(counts.iter().sum())?;
        let mut parts: Vec<(usize, &mut [u64])> = Vec::with_capacity(counts.len());
        let mut rest: &mut [u64] = &mut hashes;
        for (c, &n) in counts.iter().enumerate() {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(n);
            parts.push((c * CHUNK, part));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(from, part)| {
            let valid = (from..(from + CHUNK).min(col.len())).filter(|&i| col.is_valid(i));
            for (h, i) in part.iter_mut().zip(valid) {
                *h = crate::score::tf::value_hash(col.value(i));
            }
        });
        hashes.par_sort_unstable();
        let mut out: Vec<(u64, i64)> = Vec::new();
        for &h in hashes.iter() {
            match out.last_mut() {
                Some(last) if last.0 == h => last.1 += 1,
                _ => out.push((h, 1)),
            }
        }
        lists.push(out);
    }
    Ok(lists)
}

/// Writes a segment of `kind` named `name` (the run id) into `run_dir`'s store: `keys.arrow`
/// unless [`write_keys`] already has; `records.arrow` and `links.arrow` as hard links of
/// `linked` (the run's standardised records and links files, already written) or from the
/// parts. Returns its manifest entry.
pub fn write_segment(
    run_dir: &Path,
    kind: EntityKind,
    name: &str,
    rules: &[Vec<String>],
    parts: Parts,
    linked: Option<(&Path, &Path)>,
) -> Result<SegmentEntry> {
    let k = kind.as_str();
    let dir = segment_dir(run_dir, k, name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = |what: &str| file(run_dir, k, name, what);
    let n = parts.table.len();
    match linked {
        Some((records, links)) => {
            link_or_copy(records, &path("records"))?;
            link_or_copy(links, &path("links"))?;
        }
        None => {
            let b = crate::state::standardised_batch(parts.table)
                .map_err(|e| Error::write(path("records"), e))?;
            crate::state::write_ipc(&path("records"), &b)?;
            let b = crate::state::links_batch(parts.links)
                .map_err(|e| Error::write(path("links"), e))?;
            crate::state::write_ipc(&path("links"), &b)?;
        }
    }
    if !path("keys").exists() {
        write_keys(run_dir, kind, name, key_lists(parts.table, rules))?;
    }
    // Components numbered in order of their first record; the rows listed component by
    // component.
    let made;
    let groups = match parts.components {
        Components::Labels(labels) => {
            made = crate::cluster::Groups::of(labels);
            &made
        }
        Components::Grouped(groups) => groups,
    };
    let index = RecordBatch::try_new(
        ipc_schema(vec![
            Field::new("master_id", DataType::Utf8, true),
            Field::new("component", DataType::UInt32, false),
            Field::new("by_component", DataType::UInt32, false),
        ]),
        vec![
            Arc::new(parts.master_id.clone()),
            Arc::new(UInt32Array::new(groups.cluster_of.clone(), None)),
            Arc::new(UInt32Array::new(groups.member.clone(), None)),
        ],
    )
    .map_err(|e| Error::write(path("index"), e))?;
    crate::state::write_ipc(&path("index"), &index)?;
    let tf_schema = ipc_schema(vec![
        Field::new("hash", DataType::UInt64, false),
        Field::new("count", DataType::Int64, false),
    ]);
    let tf_batches = parts
        .tf
        .iter()
        .map(|list| {
            RecordBatch::try_new(
                tf_schema.clone(),
                vec![
                    Arc::new(UInt64Array::from_iter_values(list.iter().map(|x| x.0))) as ArrayRef,
                    Arc::new(Int64Array::from_iter_values(list.iter().map(|x| x.1))),
                ],
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::write(path("tf"), e))?;
    crate::state::write_ipc_batches(&path("tf"), &tf_schema, &tf_batches)?;
    let tomb = RecordBatch::try_new(
        ipc_schema(vec![
            Field::new("segment", DataType::UInt32, false),
            Field::new("component", DataType::UInt32, false),
        ]),
        vec![
            Arc::new(UInt32Array::from_iter_values(
                parts.tombstones.iter().map(|t| t.0),
            )),
            Arc::new(UInt32Array::from_iter_values(
                parts.tombstones.iter().map(|t| t.1),
            )),
        ],
    )
    .map_err(|e| Error::write(path("tombstones"), e))?;
    crate::state::write_ipc(&path("tombstones"), &tomb)?;
    Ok(SegmentEntry {
        name: name.to_string(),
        rows: n as u64,
        live: n as u64,
        tf_total: parts
            .tf
            .iter()
            .map(|l| l.iter().map(|x| x.1).sum())
            .collect(),
    })
}

/// Hard-links the segments of a kind's previous store into this run's folder.
pub fn carry(
    previous_dir: &Path,
    run_dir: &Path,
    kind: EntityKind,
    entry: &KindEntry,
) -> Result<()> {
    let k = kind.as_str();
    for s in &entry.segments {
        let dir = segment_dir(run_dir, k, &s.name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for what in FILES {
            link_or_copy(
                &file(previous_dir, k, &s.name, what),
                &file(run_dir, k, &s.name, what),
            )?;
        }
    }
    Ok(())
}

/// The segment entries after a layer: the earlier ones with the rows it replaced taken off
/// their live counts, then the layer's own.
pub fn after_layer(store: &KindStore, tombstones: &[(u32, u32)], layer: SegmentEntry) -> KindEntry {
    let mut entry = store.entry.clone();
    for &(s, c) in tombstones {
        let gone = store.members((s, c)).len() as u64;
        if let Some(e) = entry.segments.get_mut(s as usize) {
            e.live = e.live.saturating_sub(gone);
        }
    }
    entry.segments.push(layer);
    entry
}

/// One kind's rows of an index: the kind, and its (source, record id, master id) columns.
pub type IndexRows = (String, [StringArray; 3]);

/// The rows of every kind's index in (source, record id) order: (kind, source, record id,
/// master id) columns, from a folder's store; `Ok(None)` when it has none.
pub fn index_rows(run_dir: &Path) -> Result<Option<Vec<IndexRows>>> {
    let Some(m) = Manifest::read(run_dir)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (kind, entry) in m.kinds {
        let Some(k) = EntityKind::parse(&kind) else {
            continue;
        };
        let store = KindStore::open_entry(run_dir, k, entry)?;
        let locs = store.live_rows();
        let cols = ["source", "record_id", "master_id"]
            .par_iter()
            .map(|c| store.gather(c, &locs))
            .collect::<Result<Vec<_>>>()?;
        let [s, r, id]: [StringArray; 3] = cols.try_into().map_err(|_| Error::Data {
            stage: "store",
            message: "internal: three columns expected".into(),
        })?;
        out.push((kind, [s, r, id]));
    }
    Ok(Some(out))
}

/// Replaces a kind's segments in `run_dir` by one new base made of every live record (see
/// the module's notes): the store just written for this run, layers and all, merged.
pub fn compact(
    run_dir: &Path,
    kind: EntityKind,
    name: &str,
    keep: crate::state::Keep,
) -> Result<KindEntry> {
    let k = kind.as_str();
    let store = KindStore::open(run_dir, kind)?.ok_or_else(|| Error::Data {
        stage: "store",
        message: format!("no {k} store to compact in {}", run_dir.display()),
    })?;
    let merged = store.merged(keep)?;
    let rules = store.entry.rules.clone();
    let fields = store.entry.term_frequency.clone();
    let old: Vec<String> = store
        .entry
        .segments
        .iter()
        .map(|s| s.name.clone())
        .collect();
    drop(store);
    let base_name = format!("{name}-base");
    let entry = write_segment(
        run_dir,
        kind,
        &base_name,
        &rules,
        Parts {
            table: &merged.table,
            master_id: &merged.master_id,
            components: Components::Labels(&merged.component),
            links: &merged.links,
            tf: tf_lists(&merged.table, &fields),
            tombstones: &[],
        },
        None,
    )?;
    for s in old {
        let dir = segment_dir(run_dir, k, &s);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(KindEntry {
        rules,
        term_frequency: fields,
        segments: vec![entry],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str, &str)]) -> StdTable {
        StdTable::of_names(rows)
    }

    fn write(
        dir: &Path,
        name: &str,
        t: &StdTable,
        ids: &[&str],
        comps: &[u32],
        links: &Links,
        tombs: &[(u32, u32)],
    ) -> SegmentEntry {
        let rules = vec![vec!["name".to_string()]];
        let ids: StringArray = ids.iter().map(|s| Some(*s)).collect();
        write_segment(
            dir,
            EntityKind::Person,
            name,
            &rules,
            Parts {
                table: t,
                master_id: &ids,
                components: Components::Labels(comps),
                links,
                tf: tf_lists(t, &["name".to_string()]),
                tombstones: tombs,
            },
            None,
        )
        .expect("segment written")
    }

    #[test]
    fn a_layer_replaces_whole_components_and_the_merged_index_has_every_live_record_once() {
        let dir = std::env::temp_dir().join(format!("yiku-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let base = table(&[("a", "1", "张三"), ("a", "2", "张三"), ("b", "1", "李四")]);
        let links = Links {
            edges: vec![Edge {
                left: 0,
                right: 1,
                weight: 9.0,
            }],
            cannot_link: vec![],
        };
        let e0 = write(
            &dir,
            "R1",
            &base,
            &["P1", "P1", "P2"],
            &[0, 0, 2],
            &links,
            &[],
        );
        let rules = vec![vec!["name".to_string()]];
        let mut entry = KindEntry {
            rules: rules.clone(),
            term_frequency: vec!["name".into()],
            segments: vec![e0],
        };
        let m = |entry: &KindEntry| Manifest {
            format: FORMAT,
            run_id: "R".into(),
            kinds: [("person".to_string(), entry.clone())]
                .into_iter()
                .collect(),
        };
        m(&entry).write(&dir).expect("manifest");
        let s = KindStore::open(&dir, EntityKind::Person)
            .expect("open")
            .expect("store");
        let l = s.find("a", "2").expect("found");
        assert_eq!(l, Loc { seg: 0, row: 1 });
        assert_eq!(s.master_id(l), Some(&b"P1"[..]));
        assert_eq!(s.members(s.component(l)).len(), 2);
        let h = crate::block::key_hash(std::iter::once(Some("张三".as_bytes())));
        assert_eq!(s.block(0, h).len(), 2);
        assert_eq!(s.links_of(Loc { seg: 0, row: 0 }).len(), 1);
        let th = crate::score::tf::value_hash("张三");
        assert_eq!((s.tf_count(0, th), s.tf_total(0)), (2, 3));

        // A layer: a:2 renamed and moved to b:1's person; component 0 (a:1, a:2) and
        // component 2 (b:1) replaced.
        let layer = table(&[("a", "1", "张三"), ("a", "2", "李四"), ("b", "1", "李四")]);
        let lk = Links {
            edges: vec![Edge {
                left: 1,
                right: 2,
                weight: 8.0,
            }],
            cannot_link: vec![],
        };
        let mut e1 = write(
            &dir,
            "R2",
            &layer,
            &["P1", "P2", "P2"],
            &[0, 1, 1],
            &lk,
            &[(0, 0), (0, 1)],
        );
        e1.tf_total = vec![0];
        entry = after_layer(&s, &[(0, 0), (0, 1)], e1);
        drop(s);
        m(&entry).write(&dir).expect("manifest");
        let s = KindStore::open(&dir, EntityKind::Person)
            .expect("open")
            .expect("store");
        assert_eq!(entry.live(), 3);
        assert_eq!(s.find("a", "2"), Some(Loc { seg: 1, row: 1 }));
        assert_eq!(s.block(0, h).len(), 1, "the old a:2 is no longer live");
        let merged = s.merged(&crate::state::join).expect("merged");
        assert_eq!(merged.rows, 3);
        let ids: Vec<&str> = merged.master_id.iter().flatten().collect();
        assert_eq!(ids, ["P1", "P2", "P2"]);
        assert_eq!(merged.component, [0, 1, 1]);
        assert_eq!(merged.links.edges.len(), 1);
        assert_eq!(merged.groups().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
