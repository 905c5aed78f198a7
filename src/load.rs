//! Stage 1: load. Consumes: the job's sources (Parquet, Arrow IPC, CSV). Produces: one
//! [`RawTable`] per entity kind, rows sorted by (source, record id), every mapped field as a
//! text column; and the quarantine of rows that cannot be used. Cost: one pass over each file,
//! sources read in parallel.
//!
//! Rows are sorted so that every later stage sees the same order whatever order the files had:
//! this is what makes the output independent of input row order.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, BinaryArray, LargeBinaryArray, RecordBatch, StringArray};
use arrow_schema::DataType;
use rayon::prelude::*;

use crate::config::{EntityKind, Format, Plan, Source};
use crate::error::{Error, Result};
use crate::state::Keep;

/// The records of one entity kind, as loaded: raw text per canonical field.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub kind: EntityKind,
    /// Source names of this kind, sorted; `source[i]` indexes this list.
    pub sources: Vec<String>,
    /// Each record's index of `sources` (on a mapped file in a spilled run).
    pub source: arrow_buffer::ScalarBuffer<u16>,
    pub record_id: StringArray,
    /// Canonical fields, in the order of `columns`.
    pub fields: Vec<String>,
    /// Raw values per field; null where the source lacks the field or the cell is empty.
    pub columns: Vec<StringArray>,
}

impl RawTable {
    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn column(&self, field: &str) -> Option<&StringArray> {
        self.fields
            .iter()
            .position(|f| f == field)
            .map(|i| &self.columns[i])
    }
}

/// A row that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuarantineRow {
    pub source: String,
    /// 1-based data row in the file (header excluded); 0 for a record of a delta run that
    /// `deletions.csv` deleted the same night (its row is not kept past loading).
    pub row: u64,
    pub record_id: Option<String>,
    pub reason: String,
    /// The row's mapped values as `column=value` pairs, for whoever repairs it.
    pub raw: String,
}

/// Per-source counts of the load stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStats {
    pub source: String,
    pub kind: EntityKind,
    pub path: String,
    pub rows_read: u64,
    pub records: u64,
    pub quarantined: u64,
}

/// Everything stage 1 produces.
#[derive(Debug)]
pub struct Loaded {
    pub tables: Vec<RawTable>,
    pub quarantine: Vec<QuarantineRow>,
    pub stats: Vec<SourceStats>,
}

/// One source after reading: columns as text, before quarantine filtering.
struct SourceData {
    record_id: StringArray,
    /// Mapped fields in the source's `columns` order, as decoded: joined only once, with the
    /// other sources' (a join per source first would copy every value twice).
    fields: Vec<Chunked>,
    quarantine: Vec<QuarantineRow>,
    /// Rows that were rejected while decoding (bad UTF-8 or field count), by 0-based row.
    rejected: Vec<bool>,
    rows_read: u64,
}

/// A text column in the pieces it was decoded in (one per batch).
struct Chunked {
    parts: Vec<StringArray>,
    /// First row of each part; ascending.
    starts: Vec<usize>,
}

impl Chunked {
    fn new(parts: Vec<StringArray>) -> Chunked {
        let starts = parts
            .iter()
            .scan(0, |at, p| {
                let start = *at;
                *at += p.len();
                Some(start)
            })
            .collect();
        Chunked { parts, starts }
    }

    /// The part holding row `i` and the row within it; `None` past the end.
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        let k = self.starts.partition_point(|&s| s <= i).checked_sub(1)?;
        let r = i - self.starts[k];
        (r < self.parts.get(k)?.len()).then_some((k, r))
    }

    /// The value of row `i`, `None` when null (or out of range).
    fn get(&self, i: usize) -> Option<&str> {
        let (k, r) = self.locate(i)?;
        let part = &self.parts[k];
        part.is_valid(r).then(|| part.value(r))
    }

    /// The values at `rows`, in that order.
    fn take(&self, rows: &[u32]) -> Result<StringArray> {
        let refs: Vec<&dyn Array> = self.parts.iter().map(|p| p as &dyn Array).collect();
        let take = rows
            .iter()
            .map(|&r| {
                self.locate(r as usize).ok_or_else(|| Error::Data {
                    stage: "load",
                    message: format!("internal: row {r} past the end of a column"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        interleave_strings(&refs, &take)
    }
}

/// Loads every source of the plan.
pub fn load(plan: &Plan) -> Result<Loaded> {
    load_with(plan, None)
}

/// [`load`]; with a `spill` (a run under `memory_limit` in spilled mode, see
/// [`crate::state::Spill`]), every text column is passed through it as soon as it is decoded
/// (per batch of a Parquet or Arrow IPC file, per stretch of [`CSV_SPILL_ROWS`] rows of a
/// CSV file) and again once joined: the loaded records are then mapped from disk, not held in
/// the heap, and the heap holds the record ids and the few pieces in flight.
pub fn load_with(plan: &Plan, spilled: Option<&crate::state::Spill>) -> Result<Loaded> {
    let keep_in = |s: &crate::state::Spill, parts: &[StringArray]| s.keep(parts);
    let keep = spilled.map(|s| move |parts: &[StringArray]| keep_in(s, parts));
    let spill: Option<Keep> = keep.as_ref().map(|k| k as Keep);
    let read: Vec<Result<SourceData>> = plan
        .sources
        .par_iter()
        .map(|src| read_source(src, spill))
        .collect();
    let mut data = Vec::with_capacity(read.len());
    for r in read {
        data.push(r?);
    }
    let mut quarantine = Vec::new();
    let mut stats = Vec::new();
    let mut kept: Vec<Kept> = Vec::with_capacity(data.len());
    // Sources screened side by side: each one's passes over its rows are sequential.
    let screened: Vec<Kept> = plan
        .sources
        .par_iter()
        .zip(data.par_iter_mut())
        .map(|(src, d)| screen_rows(src, d))
        .collect();
    for ((src, d), rows) in plan.sources.iter().zip(&mut data).zip(screened) {
        stats.push(SourceStats {
            source: src.name.clone(),
            kind: src.kind,
            path: src.path.display().to_string(),
            rows_read: d.rows_read,
            records: rows.len() as u64,
            quarantined: d.quarantine.len() as u64,
        });
        quarantine.append(&mut d.quarantine);
        // Screening was the last to need the rejected rows (a flag a row).
        d.rejected = Vec::new();
        kept.push(rows);
    }
    quarantine.sort();
    let mut tables = Vec::new();
    for kp in &plan.kinds {
        let idx: Vec<usize> = (0..plan.sources.len())
            .filter(|&i| plan.sources[i].kind == kp.kind)
            .collect();
        tables.push(assemble(
            plan,
            kp.kind,
            &kp.fields.keys().cloned().collect::<Vec<_>>(),
            &idx,
            &mut data,
            &kept,
            (spill, spilled),
        )?);
    }
    Ok(Loaded {
        tables,
        quarantine,
        stats,
    })
}

/// Name of the file in a delta folder that lists deleted records (`source`, `record_id`).
pub const DELETIONS_FILE: &str = "deletions.csv";

/// A record a delta says was deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deletion {
    pub kind: EntityKind,
    pub source: String,
    pub record_id: String,
    /// Row of `deletions.csv` (1 = the first after the header), to name it in the quarantine.
    pub row: u64,
}

/// Loads a delta folder: for every source of the job, the file with the same file name as
/// the source's in `dir` (if there is one) holds its new and changed records, in the source's
/// format and columns; `deletions.csv` (`source`, `record_id`) lists deleted records. Any
/// other file (but hidden ones) is an error: a misnamed file would otherwise drop a
/// department's changes without a word. Deletions naming a source the job does not have, or
/// with other than two fields, go to the quarantine.
pub fn load_delta(plan: &Plan, dir: &Path) -> Result<(Loaded, Vec<Deletion>)> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "delta folder not found"),
        ));
    }
    let expected: Vec<String> = plan
        .sources
        .iter()
        .filter_map(|s| Some(s.path.file_name()?.to_string_lossy().into_owned()))
        .chain(std::iter::once(DELETIONS_FILE.to_string()))
        .collect();
    let mut unknown: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !expected.contains(n))
        .collect();
    unknown.sort();
    if let Some(first) = unknown.first() {
        return Err(Error::Read {
            path: dir.join(first),
            message: format!(
                "is not a file a delta folder may hold{}: tonight's records of a source go in a \
                 file named as the source's own file ({}), deleted records in {DELETIONS_FILE}",
                match unknown.len() {
                    1 => String::new(),
                    n => format!(" (nor are {} other files)", n - 1),
                },
                expected[..expected.len() - 1].join(", ")
            ),
        });
    }
    let mut delta = plan.clone();
    delta.sources = plan
        .sources
        .iter()
        .filter_map(|s| {
            let file = dir.join(s.path.file_name()?);
            file.is_file().then(|| Source {
                path: file,
                ..s.clone()
            })
        })
        .collect();
    let mut loaded = load(&delta)?;
    let mut deletions = Vec::new();
    let path = dir.join(DELETIONS_FILE);
    // An empty file (no header either) deletes nothing.
    if path.is_file()
        && std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len()
            > 0
    {
        let read_err = |e: csv::Error| Error::Read {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&path)
            .map_err(read_err)?;
        let headers = r.headers().map_err(read_err)?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| Error::Schema {
                    path: path.clone(),
                    column: name.into(),
                    message: "not found; a deletions file has columns source, record_id".into(),
                })
        };
        let (cs, cr) = (col("source")?, col("record_id")?);
        for (row, rec) in r.byte_records().enumerate() {
            let rec = rec.map_err(read_err)?;
            let cell = |c: usize| {
                rec.get(c)
                    .map(|b| String::from_utf8_lossy(b).trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            let (source, record_id) = (cell(cs), cell(cr));
            let kind = source
                .as_deref()
                .and_then(|s| plan.sources.iter().find(|x| x.name == s))
                .map(|s| s.kind);
            let fields_ok = rec.len() == headers.len();
            match (kind, source, record_id) {
                (Some(kind), Some(source), Some(record_id)) if fields_ok => {
                    deletions.push(Deletion {
                        kind,
                        source,
                        record_id,
                        row: row as u64 + 1,
                    })
                }
                (_, source, record_id) => loaded.quarantine.push(QuarantineRow {
                    source: DELETIONS_FILE.into(),
                    row: row as u64 + 1,
                    reason: match &source {
                        _ if !fields_ok => format!(
                            "{} fields where the header has {}",
                            rec.len(),
                            headers.len()
                        ),
                        Some(s) if record_id.is_some() => {
                            format!("deletion names source `{s}`, which the job does not have")
                        }
                        _ => "deletion without a source or record id".into(),
                    },
                    raw: format!(
                        "source={}; record_id={}",
                        source.as_deref().unwrap_or(""),
                        record_id.as_deref().unwrap_or("")
                    ),
                    record_id,
                }),
            }
        }
        loaded.quarantine.sort();
    }
    deletions.sort();
    // The same record named twice: its first row counts.
    deletions
        .dedup_by(|b, a| (a.kind, &a.source, &a.record_id) == (b.kind, &b.source, &b.record_id));
    Ok((loaded, deletions))
}

/// Peak memory of a run per record, measured (`scripts/bench.sh`: 0.67 GB at 1M and 5.5 GB at
/// 10M person records, 2 threads, everything in memory) with a margin.
pub const PEAK_BYTES_PER_RECORD: u64 = 700;
/// Memory a run takes whatever its size: code, thread stacks, and the stages' own working
/// sets that do not grow with the records (a block of golden records and its encoded row
/// groups, a wave of master ids, Parquet buffers). Measured in the spilled run, where it shows
/// most (2026-12-06, eighteenth session: 92-96 MB at 2.02M person records, 207-210 MB at
/// 10.09M, the master ids' settling: ~60 MB plus ~14 bytes a record; the seventeenth:
/// 169-176 and 398-407 MB), with a margin kept for the page cache a capped run reads its
/// mapped files through (320 MB until the seventeenth session).
pub const PEAK_BYTES_BASE: u64 = 192 << 20;
/// Bytes of a row in a file whose row count is not in its metadata (CSV, Arrow IPC), a
/// generous guess so that the estimate errs high.
const FILE_BYTES_PER_ROW: u64 = 100;

/// How many records the job's sources hold (Parquet: from the file footers; other formats:
/// estimated from the file size).
pub fn count_records(plan: &Plan) -> Result<u64> {
    plan.sources
        .par_iter()
        .map(|src| -> Result<u64> {
            let size = std::fs::metadata(&src.path)
                .map_err(|e| Error::io(&src.path, e))?
                .len();
            Ok(match src.format {
                Format::Parquet => {
                    let file = File::open(&src.path).map_err(|e| Error::io(&src.path, e))?;
                    parquet::file::reader::FileReader::metadata(
                        &parquet::file::serialized_reader::SerializedFileReader::new(file)
                            .map_err(|e| read_err(&src.path, e))?,
                    )
                    .file_metadata()
                    .num_rows()
                    .max(0) as u64
                }
                Format::Csv | Format::Ipc => size / FILE_BYTES_PER_ROW,
            })
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
}

/// Peak memory per record when the standardised records are mapped from the state file
/// instead of held ([`MemoryMode::Mapped`]): the peak is then standardising (the loaded and the
/// standardised columns, before they are written and mapped). Measured likewise (anonymous
/// memory, with freed blocks over 1 MB handed back, [`crate::mem::return_freed_blocks`]:
/// 0.35 GB at 1M, 3.45 GB at 10M), with a margin.
pub const MAPPED_BYTES_PER_RECORD: u64 = 400;

/// Peak memory per record when, on top of that, every loaded and standardised column is moved
/// to disk as soon as it is made (in waves of rows), and so are the scored pairs, the master
/// ids and blocking's sorted lists ([`MemoryMode::Spilled`]): the peak is then blocking,
/// scoring, clustering or the master ids at 10M records, all close, and golden records at 2M.
/// Measured likewise (see [`PEAK_BYTES_BASE`]), with a margin: 0.36 GB at 20M, 0.28 GB at
/// 10M, 0.21 GB at 2M (measured 0.17, 0.16 and 0.12 GB in the twenty-third session, when the
/// union-find, the groups, the fingerprints, the weights, the source codes and the review rows
/// went to mapped files: the peak grew 0.7 bytes a record from 10M to 20M; 16 until then, when
/// clustering alone took ~12 and the review rows grew faster than the records: 0.80 GB at 20M;
/// 20 in the eighteenth session; 40 in the seventeenth; 64 until then; 140 on a 64 MB base
/// before the sixteenth).
pub const SPILLED_BYTES_PER_RECORD: u64 = 8;

/// How a run holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMode {
    /// Everything in memory: the fastest.
    InMemory,
    /// Standardised records written to the state file first and mapped back: the kernel can
    /// page them out and in again, so the process needs less memory of its own.
    Mapped,
    /// Mapped, and every standardised column written to disk and mapped back as soon as it
    /// is made, so the loaded and the standardised records are never held together: the
    /// least memory, for one more write of the standardised records (~+20% wall at 1M
    /// records, ~+4% at 10M).
    Spilled,
}

impl MemoryMode {
    /// Whether the standardised records are mapped from the state file.
    pub fn mapped(self) -> bool {
        self != MemoryMode::InMemory
    }
}

/// The peak memory a run of `records` records is expected to need.
pub fn estimated_peak_bytes(records: u64, mode: MemoryMode) -> u64 {
    let per = match mode {
        MemoryMode::InMemory => PEAK_BYTES_PER_RECORD,
        MemoryMode::Mapped => MAPPED_BYTES_PER_RECORD,
        MemoryMode::Spilled => SPILLED_BYTES_PER_RECORD,
    };
    PEAK_BYTES_BASE + records * per
}

/// Whether a run under a `memory_limit` of `limit` bytes, holding `records` records as `mode`,
/// should read the records it maps back from their state file (`file_bytes` long) in sweeps,
/// front to back, wherever a stage reads them in an order of its own (compare: windows of
/// pairs; the u sample and the review rows; golden records: partitions of clusters): when the
/// page cache the limit leaves beside the run's own memory (its estimate) cannot hold the
/// file. Measured (10M records, a 2.76 GB file, spilled, the run's own memory ~0.4 GB, estimate
/// 0.60 GB; 2026-12-06, seventeenth session): under a 1.6 GB cgroup golden records in blocks
/// took 43 s (81 s in all), in sweeps 14 s (51 s); under 2.0 GB in blocks 23 s (60 s); with no
/// cap, in blocks 7 s (35 s), in sweeps 11 s (41 s). (Until then the rule was a third of the
/// file against an estimate of 0.97 GB, when the run's own memory was ~0.93 GB and golden
/// records swept the columns once per partition.)
pub fn reads_in_sweeps(limit: u64, records: u64, mode: MemoryMode, file_bytes: u64) -> bool {
    let left = limit.saturating_sub(estimated_peak_bytes(records, mode));
    left < file_bytes
}

/// Chooses how a run of `records` records holds them under the job's `memory_limit`: in
/// memory when the estimate fits, else mapped from disk, else spilled as made, whichever is
/// the fastest that fits; otherwise refuses, before any work, with the estimates.
pub fn memory_mode(plan: &Plan, limit: u64, records: u64) -> Result<MemoryMode> {
    for mode in [
        MemoryMode::InMemory,
        MemoryMode::Mapped,
        MemoryMode::Spilled,
    ] {
        if estimated_peak_bytes(records, mode) <= limit {
            return Ok(mode);
        }
    }
    let size = |b: u64| match b {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.0} MB", b as f64 / 1e6),
        b => format!("{} KB", b.div_ceil(1000)),
    };
    // Parquet footers give row counts; CSV and Arrow IPC files are sized at a guess.
    let counted = if plan.sources.iter().all(|s| s.format == Format::Parquet) {
        format!("{records} records")
    } else {
        format!("~{records} records, estimated from the file sizes")
    };
    Err(Error::Config {
        path: plan.job_path.clone(),
        key: "job.memory_limit".into(),
        message: format!(
            "this run needs about {} ({counted}, ~{PEAK_BYTES_PER_RECORD} bytes each in \
             memory), or at least {} with the records written to disk as they are made and \
             mapped back (~{SPILLED_BYTES_PER_RECORD} bytes each), but memory_limit is {}: raise \
             the limit, or split the job (by region or by kind)",
            size(estimated_peak_bytes(records, MemoryMode::InMemory)),
            size(estimated_peak_bytes(records, MemoryMode::Spilled)),
            size(limit)
        ),
    })
}

/// The rows of a source that screening keeps, in record id order.
enum Kept {
    /// Every row, in file order: the ids were unique and ascending, none empty, no row
    /// rejected (files sorted by record id, the usual case: no list of rows, 4 bytes a row).
    All(usize),
    Rows(Vec<u32>),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Kept::All(n) => *n,
            Kept::Rows(rows) => rows.len(),
        }
    }

    /// Whether the rows kept are every row of the `rows` read, in file order.
    fn whole(&self, rows: usize) -> bool {
        match self {
            Kept::All(n) => *n == rows,
            Kept::Rows(kept) => {
                kept.len() == rows && kept.iter().enumerate().all(|(k, &r)| r as usize == k)
            }
        }
    }
}

/// Quarantines empty and duplicate record ids; returns the rows kept, sorted by record id.
fn screen_rows(src: &Source, d: &mut SourceData) -> Kept {
    let n = d.record_id.len();
    // The usual case first: ids present, ascending and so unique, no row rejected. Sorting
    // would leave them as they are and find no duplicate.
    let id = |i: usize| d.record_id.value(i).trim();
    let usable = |i: usize| !d.rejected[i] && d.record_id.is_valid(i) && !id(i).is_empty();
    if u32::try_from(n).is_ok()
        && (0..n)
            .into_par_iter()
            .with_min_len(1 << 14)
            .all(|i| usable(i) && (i == 0 || id(i - 1) < id(i)))
    {
        return Kept::All(n);
    }
    let mut rows: Vec<u32> = Vec::with_capacity(n);
    for i in 0..n {
        if d.rejected[i] {
            continue;
        }
        let id = (!d.record_id.is_null(i)).then(|| d.record_id.value(i).trim());
        match id {
            Some(s) if !s.is_empty() => rows.push(i as u32),
            _ => d.quarantine.push(QuarantineRow {
                source: src.name.clone(),
                row: i as u64 + 1,
                record_id: None,
                reason: format!("empty record id (column `{}`)", src.record_id),
                raw: raw_text(src, d, i),
            }),
        }
    }
    // Sort by record id, then by row content, so that which duplicate is kept does not
    // depend on the order of rows in the file.
    let content = |i: u32| raw_text(src, d, i as usize);
    rows.par_sort_by(|&a, &b| {
        d.record_id
            .value(a as usize)
            .trim()
            .cmp(d.record_id.value(b as usize).trim())
            .then_with(|| content(a).cmp(&content(b)))
    });
    let mut out = Vec::with_capacity(rows.len());
    for (k, &r) in rows.iter().enumerate() {
        let id = d.record_id.value(r as usize).trim();
        if k > 0 && d.record_id.value(rows[k - 1] as usize).trim() == id {
            d.quarantine.push(QuarantineRow {
                source: src.name.clone(),
                row: u64::from(r) + 1,
                record_id: Some(id.to_string()),
                reason: format!("duplicate record id `{id}` in this source"),
                raw: raw_text(src, d, r as usize),
            });
        } else {
            out.push(r);
        }
    }
    Kept::Rows(out)
}

fn raw_text(src: &Source, d: &SourceData, i: usize) -> String {
    let mut s = String::new();
    for ((col, _), arr) in src.columns.iter().zip(&d.fields) {
        if let Some(v) = arr.get(i) {
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str(col);
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// Gathers the kept rows of the sources of one kind into one table sorted by (source, id).
fn assemble(
    plan: &Plan,
    kind: EntityKind,
    fields: &[String],
    idx: &[usize],
    data: &mut [SourceData],
    kept: &[Kept],
    (spill, spilled): (Option<Keep>, Option<&crate::state::Spill>),
) -> Result<RawTable> {
    // A column's pieces, one after another: spilled as they are (never joined in memory),
    // or joined.
    let keep = |parts: Vec<StringArray>| match spill {
        Some(k) => k(&parts),
        None => crate::state::join(&parts),
    };
    let mut order: Vec<usize> = idx.to_vec();
    order.sort_by(|&a, &b| plan.sources[a].name.cmp(&plan.sources[b].name));
    let sources: Vec<String> = order
        .iter()
        .map(|&i| plan.sources[i].name.clone())
        .collect();
    if sources.len() > usize::from(u16::MAX) {
        return Err(Error::Data {
            stage: "load",
            message: "more than 65535 sources of one kind".into(),
        });
    }
    // On a mapped file when spilling (2 bytes a record held through standardising otherwise).
    let total = order.iter().map(|&i| kept[i].len()).sum();
    let mut source = crate::state::Scratch::<u16>::zeroed(total, spilled)?;
    let mut at = 0;
    for (k, &i) in order.iter().enumerate() {
        let n = kept[i].len();
        source[at..at + n].fill(k as u16);
        at += n;
    }
    // Each source's kept rows, then the sources one after another. A source whose rows are
    // all kept in file order (files sorted by record id, the usual case) is used as it is.
    let in_order: Vec<bool> = order
        .iter()
        .map(|&i| kept[i].whole(data[i].record_id.len()))
        .collect();
    // `column[k]`: the column of the k-th source in order, `None` where it lacks it.
    let gather = |column: Vec<Option<&Chunked>>| -> Result<Vec<StringArray>> {
        let mut parts: Vec<StringArray> = Vec::new();
        for ((&i, &whole), col) in order.iter().zip(&in_order).zip(column) {
            match col {
                None => parts.push(StringArray::new_null(kept[i].len())),
                Some(a) => match &kept[i] {
                    Kept::Rows(rows) if !whole => parts.push(a.take(rows)?),
                    _ => parts.extend(a.parts.iter().cloned()),
                },
            }
        }
        Ok(parts)
    };
    let ids: Vec<Chunked> = order
        .iter()
        .map(|&i| Chunked::new(vec![data[i].record_id.clone()]))
        .collect();
    let record_id = keep(
        gather(ids.iter().map(Some).collect())?
            .iter()
            .map(trim_strings)
            .collect(),
    )?;
    // Each field's decoded pieces are moved out of the sources and dropped as soon as the
    // field is joined: the loaded records are held once (and a field or two twice), not twice.
    let pieces: Vec<Vec<Option<Chunked>>> = fields
        .iter()
        .map(|f| {
            order
                .iter()
                .map(|&i| {
                    let p = plan.sources[i].columns.iter().position(|(_, cf)| cf == f)?;
                    data[i]
                        .fields
                        .get_mut(p)
                        .map(|c| std::mem::replace(c, Chunked::new(Vec::new())))
                })
                .collect()
        })
        .collect();
    let columns = pieces
        .into_par_iter()
        .map(|cols| keep(gather(cols.iter().map(Option::as_ref).collect())?))
        .collect::<Result<Vec<_>>>()?;
    Ok(RawTable {
        kind,
        sources,
        source: source.into_buffer(),
        record_id,
        fields: fields.to_vec(),
        columns,
    })
}

/// Gathers text values from several arrays: `take` holds (array, row) per output row.
pub(crate) fn interleave_strings(
    arrays: &[&dyn Array],
    take: &[(usize, usize)],
) -> Result<StringArray> {
    if arrays.is_empty() {
        // A kind with no source files (a delta that leaves it unchanged).
        return Ok(StringArray::new_null(0));
    }
    let out = arrow_select::interleave::interleave(arrays, take).map_err(|e| Error::Data {
        stage: "load",
        message: e.to_string(),
    })?;
    as_text(out.as_ref())
}

/// A gathered column as text.
fn as_text(a: &dyn Array) -> Result<StringArray> {
    a.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Data {
            stage: "load",
            message: "internal: gathered column is not text".into(),
        })
}

fn trim_strings(a: &StringArray) -> StringArray {
    // Record ids rarely carry spaces: copied only when one does.
    if a.iter().flatten().all(|v| v.trim().len() == v.len()) {
        return a.clone();
    }
    a.iter().map(|v| v.map(str::trim)).collect()
}

/// Reads the named text columns of a Parquet file (columns that are absent come back `None`).
pub fn read_text_columns(path: &Path, names: &[&str]) -> Result<Vec<Option<Vec<Option<String>>>>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return read_csv_text_columns(path, names);
    }
    let batches = crate::state::read_parquet(path, Some(names))?;
    names
        .iter()
        .map(|name| {
            if !batches.is_empty() && batches.iter().all(|b| b.column_by_name(name).is_none()) {
                return Ok(None);
            }
            let col = crate::state::text_column(&batches, name).ok_or_else(|| Error::Schema {
                path: path.to_path_buf(),
                column: name.to_string(),
                message: "cannot be read as text".into(),
            })?;
            Ok(Some(col.iter().map(|v| v.map(str::to_string)).collect()))
        })
        .collect()
}

/// [`read_text_columns`] of a CSV file (a review queue filled in with a spreadsheet, say):
/// empty cells are nulls.
fn read_csv_text_columns(path: &Path, names: &[&str]) -> Result<Vec<Option<Vec<Option<String>>>>> {
    let err = |e: csv::Error| read_err(path, e);
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(err)?;
    let headers: Vec<String> = r
        .headers()
        .map_err(err)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let at: Vec<Option<usize>> = names
        .iter()
        .map(|n| headers.iter().position(|h| h == n))
        .collect();
    let mut cols: Vec<Option<Vec<Option<String>>>> =
        at.iter().map(|a| a.map(|_| Vec::new())).collect();
    for rec in r.records() {
        let rec = rec.map_err(err)?;
        for (col, a) in cols.iter_mut().zip(&at) {
            if let (Some(col), Some(a)) = (col.as_mut(), a) {
                col.push(
                    rec.get(*a)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    Ok(cols)
}

/// A clerk's decision on a pair of records (from a filled-in `review.parquet`, or carried
/// over from an earlier run's `decisions.parquet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub source_l: String,
    pub record_id_l: String,
    pub source_r: String,
    pub record_id_r: String,
    pub is_match: bool,
    /// The run that received the decision (empty: the run now reading it).
    pub decided_in: String,
    /// Row of the file it was read from (1 = the first after the header).
    pub row: u64,
}

impl Label {
    /// The pair's two records in a fixed order, whichever side the clerk's file gave first.
    pub fn key(&self) -> ((&str, &str), (&str, &str)) {
        let (a, b) = (
            (self.source_l.as_str(), self.record_id_l.as_str()),
            (self.source_r.as_str(), self.record_id_r.as_str()),
        );
        (a.min(b), a.max(b))
    }
}

/// File of a run's output folder holding every clerks' decision in effect: the earlier runs'
/// and this run's `--labels`; the next run with `--previous` applies them again.
pub const DECISIONS_FILE: &str = "decisions.parquet";

/// Columns of a clerks' decisions file, as [`DECISIONS_FILE`] has them (a filled-in review
/// queue has all but the last).
pub const DECISION_COLUMNS: [&str; 6] = [
    "source_l",
    "record_id_l",
    "source_r",
    "record_id_r",
    "decision",
    "decided_in",
];

/// Reads clerks' decisions: `source_l, record_id_l, source_r, record_id_r, decision`
/// (`match` / `non_match`; rows without a decision are skipped), and `decided_in` when the
/// file has it (a `decisions.parquet`).
pub fn load_labels(path: &Path) -> Result<Vec<Label>> {
    let names = DECISION_COLUMNS;
    let mut cols = read_text_columns(path, &names)?;
    let decided_in = cols.pop().flatten();
    let mut got = Vec::new();
    for (c, name) in cols.into_iter().zip(names) {
        got.push(c.ok_or_else(|| Error::Schema {
            path: path.to_path_buf(),
            column: name.into(),
            message: "not found; a labels file has source_l, record_id_l, source_r, record_id_r, decision (a filled-in review.parquet)".into(),
        })?);
    }
    let mut out = Vec::new();
    #[allow(clippy::needless_range_loop)] // one row across five columns
    for i in 0..got[0].len() {
        let cell = |c: usize| got[c][i].as_deref().map(str::trim);
        let is_match = match cell(4) {
            None | Some("") => continue,
            Some("match") => true,
            Some("non_match") => false,
            Some(other) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    message: format!(
                        "row {}: decision `{other}` must be `match` or `non_match`",
                        i + 1
                    ),
                });
            }
        };
        if let (Some(a), Some(b), Some(c), Some(d)) = (cell(0), cell(1), cell(2), cell(3)) {
            out.push(Label {
                source_l: a.into(),
                record_id_l: b.into(),
                source_r: c.into(),
                record_id_r: d.into(),
                is_match,
                decided_in: decided_in
                    .as_ref()
                    .and_then(|col| col[i].clone())
                    .unwrap_or_default(),
                row: i as u64 + 1,
            });
        }
    }
    Ok(out)
}

fn read_source(src: &Source, spill: Option<Keep>) -> Result<SourceData> {
    match src.format {
        Format::Csv => read_csv(src, spill, CSV_SPILL_ROWS),
        Format::Parquet | Format::Ipc => {
            let batches = read_batches(src, spill)?;
            from_batches(src, batches, spill)
        }
    }
}

/// `batch` with each of its text columns passed through `spill`.
fn spill_batch(path: &Path, batch: RecordBatch, spill: Keep) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c.as_any().downcast_ref::<StringArray>() {
            Some(text) => Ok(Arc::new(spill(std::slice::from_ref(text))?) as ArrayRef),
            None => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| read_err(path, e))
}

fn read_err(path: &Path, e: impl ToString) -> Error {
    Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn read_batches(
    src: &Source,
    spill: Option<Keep>,
) -> Result<(arrow_schema::SchemaRef, Vec<RecordBatch>)> {
    let spilled_one = |b: RecordBatch| match spill {
        Some(keep) => spill_batch(&src.path, b, keep),
        None => Ok(b),
    };
    let file = File::open(&src.path).map_err(|e| Error::io(&src.path, e))?;
    match src.format {
        Format::Parquet => {
            use parquet::arrow::arrow_reader::{
                ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
            };
            let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
                .map_err(|e| read_err(&src.path, format!("not a readable Parquet file: {e}")))?;
            let schema = meta.schema().clone();
            let columns = wanted_columns(src, &schema)?;
            let mask = parquet::arrow::ProjectionMask::roots(
                meta.parquet_schema(),
                columns.iter().copied(),
            );
            // Runs of row groups decoded side by side (a large department's file would
            // otherwise be one thread's work while the small ones finish), kept in file order.
            const GROUPS_PER_TASK: usize = 2;
            let groups: Vec<usize> = (0..meta.metadata().num_row_groups()).collect();
            let parts = groups
                .par_chunks(GROUPS_PER_TASK)
                .map(|run| {
                    // Its own handle: clones of one would share the read position.
                    let file = File::open(&src.path).map_err(|e| Error::io(&src.path, e))?;
                    ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                        .with_projection(mask.clone())
                        .with_row_groups(run.to_vec())
                        .with_batch_size(65536)
                        .build()
                        .map_err(|e| read_err(&src.path, e))?
                        // Each batch spilled as decoded, not once the run is whole.
                        .map(|b| spilled_one(b.map_err(|e| read_err(&src.path, e))?))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<Vec<RecordBatch>>>>()?;
            let projected = Arc::new(
                schema
                    .project(&columns)
                    .map_err(|e| read_err(&src.path, e))?,
            );
            Ok((projected, parts.into_iter().flatten().collect()))
        }
        _ => {
            let reader =
                arrow_ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
                    .map_err(|e| {
                        read_err(&src.path, format!("not a readable Arrow IPC file: {e}"))
                    })?;
            let schema = reader.schema();
            wanted_columns(src, &schema)?;
            let batches = reader
                .map(|b| spilled_one(b.map_err(|e| read_err(&src.path, e))?))
                .collect::<Result<Vec<_>>>()?;
            Ok((schema, batches))
        }
    }
}

/// Indices of the record-id and mapped columns; an error names a missing one and lists those
/// that exist.
fn wanted_columns(src: &Source, schema: &arrow_schema::Schema) -> Result<Vec<usize>> {
    let mut idx = Vec::new();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for col in std::iter::once(&src.record_id).chain(src.columns.iter().map(|(c, _)| c)) {
        match names.iter().position(|n| n == col) {
            Some(i) => idx.push(i),
            None => return Err(missing_column(src, col, &names)),
        }
    }
    idx.sort_unstable();
    idx.dedup();
    Ok(idx)
}

fn missing_column(src: &Source, col: &str, names: &[&str]) -> Error {
    Error::Schema {
        path: src.path.clone(),
        column: col.to_string(),
        message: format!(
            "not found (source `{}`); columns are: {}",
            src.name,
            names.join(", ")
        ),
    }
}

fn from_batches(
    src: &Source,
    (schema, batches): (arrow_schema::SchemaRef, Vec<RecordBatch>),
    spill: Option<Keep>,
) -> Result<SourceData> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rejected = vec![false; rows];
    let mut quarantine = Vec::new();
    // Text columns (the usual case) are kept as decoded, batch by batch: no per-value
    // work. Others are converted below, one by one.
    let names: Vec<&str> = std::iter::once(src.record_id.as_str())
        .chain(src.columns.iter().map(|(c, _)| c.as_str()))
        .collect();
    let mut decoded: Vec<Option<Vec<StringArray>>> = names
        .iter()
        .map(|col| {
            let i = schema.index_of(col).ok()?;
            batches
                .iter()
                .map(|b| b.column(i).as_any().downcast_ref::<StringArray>().cloned())
                .collect()
        })
        .collect();
    let mut text_column = |k: usize, col: &str| -> Result<Chunked> {
        if let Some(parts) = decoded.get_mut(k).and_then(Option::take) {
            return Ok(Chunked::new(parts));
        }
        let i = schema
            .index_of(col)
            .map_err(|_| missing_column(src, col, &[]))?;
        let mut b = StringBuilder::with_capacity(rows, rows * 8);
        let mut offset = 0usize;
        for batch in &batches {
            let arr = batch.column(i);
            append_text(
                src,
                col,
                arr,
                offset,
                &mut b,
                &mut rejected,
                &mut quarantine,
            )?;
            offset += arr.len();
        }
        let column = b.finish();
        Ok(Chunked::new(vec![match spill {
            // The record ids are spilled once joined.
            Some(keep) if k > 0 => keep(&[column])?,
            _ => column,
        }]))
    };
    // The record ids are joined now (screening sorts by them): on disk when spilling.
    let ids = text_column(0, &src.record_id)?.parts;
    let record_id = match spill {
        Some(keep) => keep(&ids)?,
        None => crate::state::join(&ids)?,
    };
    drop(ids);
    let mut fields = Vec::with_capacity(src.columns.len());
    for (k, (col, _)) in src.columns.iter().enumerate() {
        fields.push(text_column(k + 1, col)?);
    }
    // Rows quarantined for a value name their record where it has an id.
    for q in quarantine.iter_mut().filter(|q| q.record_id.is_none()) {
        let i = q.row.saturating_sub(1) as usize;
        if i < record_id.len() && record_id.is_valid(i) && !record_id.value(i).trim().is_empty() {
            q.record_id = Some(record_id.value(i).to_string());
        }
    }
    Ok(SourceData {
        record_id,
        fields,
        quarantine,
        rejected,
        rows_read: rows as u64,
    })
}

/// Appends one column of any scalar type as text; binary cells that are not UTF-8 become null
/// and quarantine their row.
fn append_text(
    src: &Source,
    col: &str,
    arr: &ArrayRef,
    offset: usize,
    b: &mut StringBuilder,
    rejected: &mut [bool],
    quarantine: &mut Vec<QuarantineRow>,
) -> Result<()> {
    // A row's first bad value quarantines it (the record id is filled in later).
    let mut reject = |row: usize, reason: String, raw: String| {
        if !rejected[row] {
            rejected[row] = true;
            quarantine.push(QuarantineRow {
                source: src.name.clone(),
                row: row as u64 + 1,
                record_id: None,
                reason,
                raw,
            });
        }
    };
    let mut binary = |i: usize, v: Option<&[u8]>, b: &mut StringBuilder| match v {
        None => b.append_null(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => b.append_value(s),
            Err(_) => {
                b.append_null();
                reject(
                    offset + i,
                    format!("invalid UTF-8 in column `{col}`"),
                    String::from_utf8_lossy(bytes).into_owned(),
                );
            }
        },
    };
    match arr.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            // Whole numbers are written as such (a phone or an id stored as a float would
            // otherwise read `13812345678.0`); past 2^53 a float has lost digits, which no
            // reading can restore (an 18-digit ID number does not fit). A column mostly of
            // such values was exported wrongly and is refused; a few stray ones quarantine
            // their rows.
            let f =
                arrow_cast::cast(arr.as_ref(), &DataType::Float64).map_err(|e| Error::Schema {
                    path: src.path.clone(),
                    column: col.to_string(),
                    message: format!("has type {}, which cannot be read: {e}", arr.data_type()),
                })?;
            if let Some(f) = f.as_any().downcast_ref::<arrow_array::Float64Array>() {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                let lost = |v: f64| v.abs() >= EXACT;
                let big = f.iter().flatten().filter(|&v| lost(v)).count();
                let present = f.len() - f.null_count();
                if let Some(v) = f.iter().flatten().find(|&v| lost(v))
                    && big * 2 > present
                {
                    return Err(Error::Schema {
                        path: src.path.clone(),
                        column: col.to_string(),
                        message: format!(
                            "holds floating-point numbers as large as {v:e}, whose last digits are lost (an 18-digit ID number does not fit in a float): export the column as text"
                        ),
                    });
                }
                for (i, v) in f.iter().enumerate() {
                    match v {
                        Some(v) if lost(v) => {
                            b.append_null();
                            reject(
                                offset + i,
                                format!(
                                    "column `{col}` holds the floating-point number {v:e}, whose last digits are lost"
                                ),
                                v.to_string(),
                            );
                        }
                        Some(v) if v.fract() == 0.0 => b.append_value(format!("{}", v as i64)),
                        Some(v) => b.append_value(v.to_string()),
                        None => b.append_null(),
                    }
                }
                return Ok(());
            }
        }
        DataType::Binary => {
            if let Some(a) = arr.as_any().downcast_ref::<BinaryArray>() {
                a.iter().enumerate().for_each(|(i, v)| binary(i, v, b));
            }
            return Ok(());
        }
        DataType::LargeBinary => {
            if let Some(a) = arr.as_any().downcast_ref::<LargeBinaryArray>() {
                a.iter().enumerate().for_each(|(i, v)| binary(i, v, b));
            }
            return Ok(());
        }
        dt if dt.is_nested() => {
            return Err(Error::Schema {
                path: src.path.clone(),
                column: col.to_string(),
                message: format!(
                    "has type {dt}, which cannot be read as text; map a column of text, numbers or dates"
                ),
            });
        }
        _ => {}
    }
    let cast = arrow_cast::cast(arr.as_ref(), &DataType::Utf8).map_err(|e| Error::Schema {
        path: src.path.clone(),
        column: col.to_string(),
        message: format!(
            "has type {}, which cannot be read as text: {e}",
            arr.data_type()
        ),
    })?;
    let s = cast
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Schema {
            path: src.path.clone(),
            column: col.to_string(),
            message: "could not be converted to text".into(),
        })?;
    for v in s.iter() {
        b.append_option(v);
    }
    Ok(())
}

/// Rows of a CSV file decoded before their columns are spilled (in spilled mode).
pub const CSV_SPILL_ROWS: u64 = 1 << 20;

/// A CSV source; with a `spill`, its columns are spilled every `rows_per_piece` rows.
fn read_csv(src: &Source, spill: Option<Keep>, rows_per_piece: u64) -> Result<SourceData> {
    let file = File::open(&src.path).map_err(|e| Error::io(&src.path, e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(std::io::BufReader::new(file));
    let headers = rdr
        .byte_headers()
        .map_err(|e| read_err(&src.path, e))?
        .clone();
    if headers.is_empty() {
        return Err(read_err(
            &src.path,
            "the file is empty: a CSV source needs a header row",
        ));
    }
    let names: Vec<String> = headers
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let find = |col: &str| {
        name_refs.iter().position(|n| *n == col).ok_or_else(|| {
            // What a header that matches nothing usually means.
            let starts_parquet = || {
                let mut magic = [0u8; 4];
                File::open(&src.path)
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                    .is_ok_and(|()| &magic == b"PAR1")
            };
            if starts_parquet() {
                return read_err(
                    &src.path,
                    "is a Parquet file, not CSV: name it .parquet or set the source's format",
                );
            }
            let hint = if names.iter().any(|n| n.contains('\u{fffd}')) {
                " (the header is not UTF-8: convert a GBK/GB18030 export first, e.g. `iconv -f GB18030 -t UTF-8`)"
            } else if names.len() == 1 && names[0].contains([';', '\t', '|']) {
                " (one column only: the file is not separated by commas)"
            } else {
                ""
            };
            match missing_column(src, col, &name_refs) {
                Error::Schema {
                    path,
                    column,
                    message,
                } => Error::Schema {
                    path,
                    column,
                    message: format!("{message}{hint}"),
                },
                other => other,
            }
        })
    };
    // A mapped name twice in the header: which column is meant cannot be guessed.
    for col in std::iter::once(&src.record_id).chain(src.columns.iter().map(|(c, _)| c)) {
        let at: Vec<String> = (0..names.len())
            .filter(|&i| names[i] == *col)
            .map(|i| (i + 1).to_string())
            .collect();
        if at.len() > 1 {
            return Err(Error::Schema {
                path: src.path.clone(),
                column: col.clone(),
                message: format!(
                    "appears {} times in the header (columns {}): rename all but the one to read",
                    at.len(),
                    at.join(", ")
                ),
            });
        }
    }
    let id_col = find(&src.record_id)?;
    let cols: Vec<usize> = src
        .columns
        .iter()
        .map(|(c, _)| find(c))
        .collect::<Result<_>>()?;
    let mut id_b = StringBuilder::new();
    let mut bs: Vec<StringBuilder> = cols.iter().map(|_| StringBuilder::new()).collect();
    // Each field's pieces: one, unless spilled every `CSV_SPILL_ROWS` rows.
    let mut parts: Vec<Vec<StringArray>> = cols.iter().map(|_| Vec::new()).collect();
    let mut flush = |bs: &mut [StringBuilder]| -> Result<()> {
        for (b, p) in bs.iter_mut().zip(parts.iter_mut()) {
            let column = b.finish();
            p.push(match spill {
                Some(keep) => keep(&[column])?,
                None => column,
            });
        }
        Ok(())
    };
    let mut rejected = Vec::new();
    let mut quarantine = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let mut row = 0u64;
    loop {
        if spill.is_some() && row > 0 && row.is_multiple_of(rows_per_piece.max(1)) {
            flush(&mut bs)?;
        }
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(read_err(&src.path, e));
                }
                row += 1;
                reject_row(
                    src,
                    row,
                    format!("unreadable CSV row: {e}"),
                    String::new(),
                    &mut quarantine,
                );
                push_nulls(&mut id_b, &mut bs);
                rejected.push(true);
                continue;
            }
        }
        row += 1;
        // The row as read, fields separated as in the file, for whoever repairs it; and its
        // record id when that much is readable.
        let lossy = || {
            rec.iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        let rid = || {
            rec.get(id_col)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let reject = |reason: String, q: &mut Vec<QuarantineRow>| {
            q.push(QuarantineRow {
                source: src.name.clone(),
                row,
                record_id: rid(),
                reason,
                raw: lossy(),
            });
        };
        if rec.len() != headers.len() {
            let reason = format!(
                "row has {} fields, the header has {}",
                rec.len(),
                headers.len()
            );
            reject(reason, &mut quarantine);
            push_nulls(&mut id_b, &mut bs);
            rejected.push(true);
            continue;
        }
        let bad: Vec<&str> = std::iter::once(id_col)
            .chain(cols.iter().copied())
            .filter(|&c| std::str::from_utf8(&rec[c]).is_err())
            .map(|c| names[c].as_str())
            .collect();
        if !bad.is_empty() {
            let reason = format!(
                "invalid UTF-8 in column{} `{}` (files must be UTF-8; a GBK/GB18030 export needs converting first, e.g. `iconv -f GB18030 -t UTF-8`)",
                if bad.len() > 1 { "s" } else { "" },
                bad.join("`, `")
            );
            reject(reason, &mut quarantine);
            push_nulls(&mut id_b, &mut bs);
            rejected.push(true);
            continue;
        }
        let text = |c: usize| std::str::from_utf8(&rec[c]).ok().filter(|s| !s.is_empty());
        id_b.append_option(text(id_col));
        for (b, &c) in bs.iter_mut().zip(&cols) {
            b.append_option(text(c));
        }
        rejected.push(false);
    }
    flush(&mut bs)?;
    Ok(SourceData {
        record_id: id_b.finish(),
        fields: parts.into_iter().map(Chunked::new).collect(),
        quarantine,
        rejected,
        rows_read: row,
    })
}

fn push_nulls(id: &mut StringBuilder, bs: &mut [StringBuilder]) {
    id.append_null();
    bs.iter_mut().for_each(StringBuilder::append_null);
}

fn reject_row(src: &Source, row: u64, reason: String, raw: String, q: &mut Vec<QuarantineRow>) {
    q.push(QuarantineRow {
        source: src.name.clone(),
        row,
        record_id: None,
        reason,
        raw,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_where_the_file_cannot_stay_in_the_page_cache() {
        // The measured points: 10M records spilled, a 2.76 GB file.
        let (records, file) = (10_090_826, 2_762_875_394);
        let sweeps = |limit| reads_in_sweeps(limit, records, MemoryMode::Spilled, file);
        assert!(sweeps(1_600_000_000) && sweeps(2_000_000_000));
        // Plenty of room, or a limit under the run's own estimate.
        assert!(!sweeps(4_000_000_000) && !sweeps(64_000_000_000));
        assert!(sweeps(500_000_000));
        // Fewer records: the same file fits beside them sooner.
        assert!(!reads_in_sweeps(
            3_200_000_000,
            1_000,
            MemoryMode::Spilled,
            file
        ));
    }

    #[test]
    fn parquet_row_groups_read_in_parallel_come_back_in_file_order() {
        let dir = std::env::temp_dir().join(format!("yiku-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("many-groups.parquet");
        let ids: Vec<String> = (0..1000).map(|i| format!("r{i:04}")).collect();
        let names: Vec<Option<String>> = (0..1000)
            .map(|i| (i % 3 != 0).then(|| format!("名{i}")))
            .collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(ids.clone())) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(names.clone())) as ArrayRef,
            ),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(7))
            .build();
        let f = File::create(&path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let src = Source {
            name: "s".into(),
            kind: EntityKind::Person,
            path: path.clone(),
            format: Format::Parquet,
            record_id: "id".into(),
            columns: vec![("name".into(), "name".into())],
        };
        let data = read_source(&src, None).unwrap();
        assert_eq!(data.record_id, StringArray::from(ids));
        let parts: Vec<&dyn Array> = data.fields[0]
            .parts
            .iter()
            .map(|p| p as &dyn Array)
            .collect();
        let joined = arrow_select::concat::concat(&parts).unwrap();
        assert_eq!(
            joined.as_any().downcast_ref::<StringArray>(),
            Some(&StringArray::from(names.clone()))
        );
        assert!(data.fields[0].parts.len() > 1, "one part per batch");
        assert_eq!(data.fields[0].get(998), Some("名998"));
        assert_eq!(data.fields[0].get(999), None);
        assert_eq!(data.fields[0].get(1000), None);
        let rows = [999u32, 0, 7, 8, 500];
        let taken = data.fields[0].take(&rows).unwrap();
        let want: Vec<Option<String>> = rows.iter().map(|&r| names[r as usize].clone()).collect();
        assert_eq!(taken, StringArray::from(want));
        // Spilled per batch: the same values, every text column of every batch spilled, the
        // record ids again once joined.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let spill = |parts: &[StringArray]| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::state::join(parts)
        };
        let spilled = read_source(&src, Some(&spill)).unwrap();
        assert_eq!(spilled.record_id, data.record_id);
        assert_eq!(
            spilled.fields[0].take(&rows).unwrap(),
            data.fields[0].take(&rows).unwrap()
        );
        // Both columns of every batch, and the record ids once joined.
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            2 * data.fields[0].parts.len() + 1
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spilled_load_gives_the_same_columns_in_pieces() {
        let dir = std::env::temp_dir().join(format!("yiku-load-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("people.csv");
        std::fs::write(&path, "id,name\nb,乙\na,甲\nc,\nd,丁\ne,戊\n").unwrap();
        let src = Source {
            name: "s".into(),
            kind: EntityKind::Person,
            path,
            format: Format::Csv,
            record_id: "id".into(),
            columns: vec![("name".into(), "name".into())],
        };
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let spill = |parts: &[StringArray]| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::state::join(parts)
        };
        let whole = read_csv(&src, None, 2).unwrap();
        let pieces = read_csv(&src, Some(&spill), 2).unwrap();
        assert_eq!(whole.fields[0].parts.len(), 1);
        // Five rows in pieces of two: three pieces, each passed through the spill.
        assert_eq!(pieces.fields[0].parts.len(), 3);
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
        let rows: Vec<u32> = (0..5).collect();
        assert_eq!(
            pieces.fields[0].take(&rows).unwrap(),
            whole.fields[0].take(&rows).unwrap()
        );
        assert_eq!(pieces.fields[0].get(3), Some("丁"));
        assert_eq!(pieces.fields[0].get(2), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
