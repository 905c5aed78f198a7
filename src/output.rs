//! Writing a run's outputs. Everything is written into a temporary folder beside the output
//! folder and moved into place at the end: a failed run leaves no half-written output and
//! does not touch the previous one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

use crate::error::{Error, Result};
use crate::load::QuarantineRow;
use crate::standardise::StdTable;

/// A temporary output folder that becomes the real one on [`OutputDir::commit`].
pub struct OutputDir {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
    /// How its Parquet files are compressed.
    pub compression: crate::config::Compression,
}

impl OutputDir {
    pub fn create(target: &Path, compression: crate::config::Compression) -> Result<OutputDir> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = target.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        remove_left_behind(parent, &name);
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(OutputDir {
            tmp,
            target: target.to_path_buf(),
            committed: false,
            compression,
        })
    }

    /// The folder being written (moved to the target on [`OutputDir::commit`]).
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Path of a file inside the temporary folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Replaces the target folder by the temporary one.
    pub fn commit(mut self) -> Result<PathBuf> {
        let old = self.target.with_file_name(format!(
            ".{}.old-{}",
            self.target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.target.exists();
        if had_old {
            std::fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            if had_old {
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        self.committed = true;
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(self.target.clone())
    }
}

/// Removes the temporary folders (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`) that runs killed
/// by a signal left beside the output folder `name` in `parent`: a run that stops on its own
/// removes its own, one killed cannot, and each is as large as its outputs (~6 GB for 20M
/// records). Only folders of processes that no longer exist go, told by `/proc` (Linux);
/// elsewhere none.
fn remove_left_behind(parent: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let pid = [".tmp-", ".old-"].iter().find_map(|kind| {
            file_name
                .strip_prefix('.')?
                .strip_prefix(name)?
                .strip_prefix(kind)?
                .parse::<u32>()
                .ok()
        });
        if let Some(pid) = pid
            && pid != std::process::id()
            && !proc.join(pid.to_string()).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Rows per row group of the files yiku writes; row groups are encoded in parallel.
pub const ROWS_PER_GROUP: usize = 65_536;

/// Rows handed to a [`ParallelWriter`] at a time by the stages that build their output in
/// blocks (golden records, the master index): whole row groups, so the file is laid out as if
/// written at once, and enough of them to encode in parallel.
pub const ROWS_PER_BLOCK: usize = 4 * ROWS_PER_GROUP;

/// A Parquet file whose row groups are encoded in parallel ([`ParallelWriter::encode`]) and
/// appended in order ([`ParallelWriter::finish`]), so the bytes do not depend on scheduling.
pub struct ParallelWriter {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: Arc<Schema>,
    path: PathBuf,
    /// Row groups written so far by [`ParallelWriter::write`].
    groups: usize,
}

fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::write(path, e)
}

/// Whether an output column holds a handful of distinct values (kinds, source names, rule
/// names, levels, event names, the run id): those are dictionary-encoded.
fn low_cardinality(name: &str) -> bool {
    matches!(
        name,
        "kind" | "source" | "blocking_rule" | "run_id" | "event"
    ) || name.ends_with("_source")
        || name.starts_with("source_")
        || name.starts_with("level_")
}

/// How yiku writes its Parquet outputs: `compression`, [`ROWS_PER_GROUP`] rows, dictionaries
/// only for the low-cardinality columns of `schema`, statistics only for identifiers.
pub fn output_properties(
    schema: &Schema,
    compression: crate::config::Compression,
) -> WriterProperties {
    use crate::config::Compression as C;
    let mut props = WriterProperties::builder()
        .set_compression(match compression {
            // zstd costs ~0.2 s of a 6 s run over 2M records (0.45 s of CPU), for files half
            // the size (80 vs 147 MB); snappy and LZ4 measured the same.
            C::Snappy => Compression::SNAPPY,
            C::Zstd => Compression::ZSTD(ZstdLevel::default()),
            C::Lz4 => Compression::LZ4_RAW,
            C::None => Compression::UNCOMPRESSED,
        })
        // Most columns are near-unique text (ids, names, addresses): building dictionaries
        // for them costs more time than it saves space.
        .set_dictionary_enabled(false)
        .set_created_by("yiku".into())
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        // Min/max statistics cost a comparison per value (a fifth of the encoding time) and
        // say nothing useful about names or addresses; they are kept, per row group, for
        // the identifiers a reader may look rows up by.
        .set_statistics_enabled(EnabledStatistics::None);
    for field in schema.fields() {
        let name = field.name().as_str();
        let path = || parquet::schema::types::ColumnPath::from(name);
        // A few distinct values repeated on every row: a dictionary turns them into a few
        // bits per row, where plain encoding hands zstd the same bytes over and over.
        if low_cardinality(name) {
            props = props.set_column_dictionary_enabled(path(), true);
        }
        if matches!(
            name,
            "master_id" | "record_id" | "record_id_l" | "record_id_r"
        ) {
            props = props.set_column_statistics_enabled(path(), EnabledStatistics::Chunk);
        }
    }
    props.build()
}

impl ParallelWriter {
    /// A file with yiku's [`output_properties`].
    pub fn create(
        path: &Path,
        schema: &Arc<Schema>,
        compression: crate::config::Compression,
    ) -> Result<Self> {
        Self::create_with(path, schema, output_properties(schema, compression))
    }

    /// A file with other writer properties.
    pub fn create_with(path: &Path, schema: &Arc<Schema>, props: WriterProperties) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let (writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_err(path))?;
        Ok(ParallelWriter {
            writer,
            factory,
            schema: schema.clone(),
            path: path.to_path_buf(),
            groups: 0,
        })
    }

    /// Encodes one batch as row group `index`; callable from many threads at once.
    pub fn encode(
        &self,
        index: usize,
        batch: &RecordBatch,
        path: &Path,
    ) -> Result<Vec<ArrowColumnChunk>> {
        let encode =
            || -> std::result::Result<Vec<ArrowColumnChunk>, parquet::errors::ParquetError> {
                let mut writers = self.factory.create_column_writers(index)?;
                let mut slots = writers.iter_mut();
                for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
                    for leaf in compute_leaves(field, array)? {
                        if let Some(w) = slots.next() {
                            w.write(&leaf)?;
                        }
                    }
                }
                writers.into_iter().map(|w| w.close()).collect()
            };
        encode().map_err(parquet_err(path))
    }

    /// Appends encoded row groups, in order.
    pub fn append(&mut self, groups: Vec<Vec<ArrowColumnChunk>>, path: &Path) -> Result<()> {
        let write = || -> std::result::Result<(), parquet::errors::ParquetError> {
            for chunks in groups {
                let mut row_group = self.writer.next_row_group()?;
                for chunk in chunks {
                    chunk.append_to_row_group(&mut row_group)?;
                }
                row_group.close()?;
            }
            Ok(())
        };
        write().map_err(parquet_err(path))
    }

    /// Writes batches as row groups of at most [`ROWS_PER_GROUP`] rows (each batch starts a
    /// new group), encoded in parallel a few at a time: only those wait in memory.
    pub fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        use rayon::prelude::*;
        let slices: Vec<RecordBatch> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows().div_ceil(ROWS_PER_GROUP)).map(move |k| {
                    let from = k * ROWS_PER_GROUP;
                    b.slice(from, ROWS_PER_GROUP.min(b.num_rows() - from))
                })
            })
            .collect();
        let wave = 2 * rayon::current_num_threads().max(1);
        let path = self.path.clone();
        for part in slices.chunks(wave) {
            let first = self.groups;
            let groups = part
                .par_iter()
                .enumerate()
                .map(|(i, b)| self.encode(first + i, b, &path))
                .collect::<Result<Vec<_>>>()?;
            self.groups += groups.len();
            self.append(groups, &path)?;
        }
        Ok(())
    }

    /// Appends the encoded row groups in order and closes the file.
    pub fn finish(mut self, groups: Vec<Vec<ArrowColumnChunk>>, path: &Path) -> Result<()> {
        self.append(groups, path)?;
        self.writer.close().map_err(parquet_err(path))?;
        Ok(())
    }

    /// Closes a file written with [`ParallelWriter::write`].
    pub fn close(self) -> Result<()> {
        let path = self.path.clone();
        self.finish(Vec::new(), &path)
    }
}

/// The output files every kind appends to as soon as its rows are ready, so they need not
/// wait in memory for the other kinds: `master_index`, `pairs`, `review` and `events.parquet`.
/// The pairs' files and the index's are apart, so that a kind can write both side by side.
pub struct RunFiles {
    pub pairs: ParallelWriter,
    pub review: ParallelWriter,
    pub index: IndexFiles,
}

/// The master index and its lineage events (`events.parquet`).
pub struct IndexFiles {
    pub master: ParallelWriter,
    pub events: ParallelWriter,
    /// Events handed to [`IndexFiles::write_events`] not yet written (under a block's rows).
    events_pending: Vec<crate::master::Events>,
    events_rows: usize,
    /// The run's id and start time, on every event row.
    run_id: String,
    unix_time: u64,
}

impl RunFiles {
    /// Creates the files in `out`; `level_fields` are the level columns of all kinds. A delta
    /// night (`changes`) writes `master_index_changes.parquet` instead of the whole index.
    pub fn create(
        out: &OutputDir,
        level_fields: &[String],
        run_id: &str,
        changes: bool,
    ) -> Result<RunFiles> {
        let file = |name: &str, schema: Arc<Schema>| {
            ParallelWriter::create(&out.file(name), &schema, out.compression)
        };
        Ok(RunFiles {
            pairs: file("pairs.parquet", pairs_schema(level_fields, false))?,
            review: file("review.parquet", pairs_schema(level_fields, true))?,
            index: IndexFiles {
                master: match changes {
                    false => file(MASTER_INDEX, master_schema())?,
                    true => file(MASTER_CHANGES, with_change(&master_schema()))?,
                },
                events: file("events.parquet", events_schema())?,
                events_pending: Vec::new(),
                events_rows: 0,
                run_id: run_id.to_string(),
                unix_time: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
        })
    }

    /// Closes the four files.
    pub fn close(self) -> Result<()> {
        self.index.master.close()?;
        self.pairs.close()?;
        self.review.close()?;
        self.index.events.close()
    }
}

impl IndexFiles {
    /// Appends a kind's lineage events (runs in order; may be called again with the next
    /// ones), [`ROWS_PER_BLOCK`] rows at a time, so the file's row groups do not depend on how
    /// the events were handed over; [`IndexFiles::flush_events`] writes the rest.
    pub fn write_events(&mut self, kind: &str, runs: &[crate::master::Events]) -> Result<()> {
        for run in runs {
            let mut at = 0;
            while at < run.len() {
                let take = (ROWS_PER_BLOCK - self.events_rows).min(run.len() - at);
                self.events_pending.push(run.slice(at, take));
                (at, self.events_rows) = (at + take, self.events_rows + take);
                if self.events_rows == ROWS_PER_BLOCK {
                    self.flush_events(kind)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the kind's events [`IndexFiles::write_events`] holds back.
    pub fn flush_events(&mut self, kind: &str) -> Result<()> {
        if self.events_rows == 0 {
            return Ok(());
        }
        let path = self.events.path.clone();
        let joined = crate::master::Events::concat(&self.events_pending)?;
        self.events_pending.clear();
        self.events_rows = 0;
        let batch = events_batch(&self.run_id, self.unix_time, kind, &joined)
            .map_err(|e| Error::write(&path, e))?;
        self.events.write(std::slice::from_ref(&batch))
    }

    /// Appends a kind's rows to the master index, [`ROWS_PER_BLOCK`] at a time; returns how
    /// many.
    pub fn write_master(
        &mut self,
        table: &StdTable,
        master_id: &StringArray,
        cluster_size: &[u32],
    ) -> Result<u64> {
        let mut written = 0;
        for from in (0..table.len()).step_by(ROWS_PER_BLOCK) {
            let to = (from + ROWS_PER_BLOCK).min(table.len());
            let rows = master_batch(table, master_id, cluster_size, from..to)
                .map_err(|e| Error::write(&self.master.path, e))?;
            self.master.write(std::slice::from_ref(&rows))?;
            written += rows.num_rows() as u64;
        }
        Ok(written)
    }

    /// Appends a delta night's changes of one kind to `master_index_changes.parquet`: every
    /// record of the `table` whose row changed — `added` (new tonight), `updated` (sent again
    /// tonight), `relinked` (not sent, but its master id or its cluster's size changed) — and,
    /// in order among them, the records deleted tonight (`removed`, with the master id they
    /// carried and cluster size 0). Returns the rows written.
    pub fn write_master_changes(&mut self, c: &Changes) -> Result<u64> {
        let path = self.master.path.clone();
        let t = c.table;
        let kind = t.kind.as_str();
        // (source, record id, master id, size, change), in (source, record id) order.
        let mut rows: Vec<(&str, &str, &str, u32, &str)> = Vec::new();
        for i in 0..t.len() {
            let sent = c.focus.get(i).copied().unwrap_or(false);
            let change = match (sent, c.old_id.get(i).and_then(Option::as_ref)) {
                (true, None) => "added",
                (true, Some(_)) => "updated",
                (false, _) if c.row_changed(i) => "relinked",
                _ => continue,
            };
            rows.push((
                &t.sources[t.source[i] as usize],
                t.record_id.value(i),
                c.master_id.value(i),
                c.cluster_size[i],
                change,
            ));
        }
        rows.extend(
            c.removed
                .iter()
                .map(|(s, r, id)| (s.as_str(), r.as_str(), id.as_str(), 0, "removed")),
        );
        rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let batch = RecordBatch::try_new(
            with_change(&master_schema()),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| kind))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .map_err(|e| Error::write(&path, e))?;
        self.master.write(std::slice::from_ref(&batch))?;
        Ok(rows.len() as u64)
    }
}

/// Writes batches of one schema to a Parquet file, row groups encoded in parallel.
pub fn write_parquet(
    path: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
    compression: crate::config::Compression,
) -> Result<()> {
    let mut w = ParallelWriter::create(path, &schema, compression)?;
    w.write(batches)?;
    w.close()
}

/// Writes several Parquet files in parallel: (path, schema, batches) each.
pub fn write_parquets(
    files: &[(PathBuf, Arc<Schema>, &[RecordBatch])],
    compression: crate::config::Compression,
) -> Result<()> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|(path, schema, batches)| write_parquet(path, schema.clone(), batches, compression))
        .collect()
}

/// Writes JSON, pretty-printed.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::write(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn err(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> Error + '_ {
    move |e| Error::write(path, e)
}

/// `master_index.parquet` rows of one kind, records `rows` (a few row groups at a time, so
/// that the file's text columns are not all built at once).
pub fn master_batch(
    table: &StdTable,
    master_id: &StringArray,
    cluster_size: &[u32],
    rows: std::ops::Range<usize>,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let kind = table.kind.as_str();
    let (from, n) = (rows.start, rows.len());
    let sources = crate::mem::text_of(n, |k| &table.sources[table.source[from + k] as usize])?;
    RecordBatch::try_new(
        master_schema(),
        vec![
            Arc::new(crate::mem::text_of(n, |_| kind)?),
            Arc::new(sources),
            Arc::new(table.record_id.slice(from, n)),
            Arc::new(master_id.slice(from, n)),
            Arc::new(UInt32Array::from(cluster_size[rows].to_vec())),
        ],
    )
}

/// The whole master index of a full run.
pub const MASTER_INDEX: &str = "master_index.parquet";
/// A delta night's changes to it.
pub const MASTER_CHANGES: &str = "master_index_changes.parquet";

/// A schema with a last column `change` (what a delta night's change files add).
pub fn with_change(schema: &Schema) -> Arc<Schema> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("change", DataType::Utf8, false));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A delta night's records of one kind, as the change files need them.
pub struct Changes<'a> {
    pub table: &'a StdTable,
    pub focus: &'a [bool],
    pub master_id: &'a StringArray,
    pub cluster_size: &'a [u32],
    /// The master id each record carried and that cluster's size (see
    /// [`crate::delta::Prepared`]).
    pub old_id: &'a [Option<String>],
    pub old_size: &'a [u32],
    pub removed: &'a [(String, String, String)],
}

impl Changes<'_> {
    /// Whether record `i`'s row of the master index is not what it was.
    pub fn row_changed(&self, i: usize) -> bool {
        self.focus.get(i).copied().unwrap_or(false)
            || self.old_id.get(i).and_then(|x| x.as_deref()) != Some(self.master_id.value(i))
            || self.old_size.get(i) != self.cluster_size.get(i)
    }

    /// Per cluster of `groups`: whether its golden record may have changed (a record of it
    /// changed).
    pub fn changed_clusters(&self, groups: &crate::cluster::Groups) -> Vec<bool> {
        (0..groups.len())
            .map(|c| {
                groups
                    .members(c)
                    .iter()
                    .any(|&i| self.row_changed(i as usize))
            })
            .collect()
    }

    /// Master ids the records carried that no cluster carries any more (merged away, or
    /// every record deleted), sorted.
    pub fn retired(&self) -> Vec<&str> {
        let now: std::collections::HashSet<&str> = self.master_id.iter().flatten().collect();
        let mut gone: Vec<&str> = self
            .old_id
            .iter()
            .flatten()
            .map(String::as_str)
            .chain(self.removed.iter().map(|r| r.2.as_str()))
            .filter(|id| !now.contains(id))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        gone
    }
}

/// Golden rows of a delta night: the rows of `batch` (clusters `first..` of the night's
/// table) whose cluster `changed`, marked `upserted`.
pub fn golden_changes(
    batch: &RecordBatch,
    first: usize,
    changed: &[bool],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let keep: arrow_array::BooleanArray = (0..batch.num_rows())
        .map(|k| Some(changed.get(first + k).copied().unwrap_or(true)))
        .collect();
    let kept = arrow_select::filter::filter_record_batch(batch, &keep)?;
    let mut cols = kept.columns().to_vec();
    cols.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n("upserted", kept.num_rows()),
    )));
    RecordBatch::try_new(with_change(&batch.schema()), cols)
}

/// Golden rows of master ids retired tonight: the id, 0 records, `retired`.
pub fn golden_retired(
    schema: &Schema,
    ids: &[&str],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = with_change(schema);
    let cols = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "master_id" => Arc::new(StringArray::from_iter_values(ids.iter().copied())),
                "records" => Arc::new(UInt32Array::from(vec![0; ids.len()])),
                "change" => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    "retired",
                    ids.len(),
                ))),
                _ => arrow_array::new_null_array(f.data_type(), ids.len()),
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols)
}

pub fn master_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("master_id", DataType::Utf8, false),
        Field::new("cluster_size", DataType::UInt32, false),
    ]))
}

/// Schema of `pairs.parquet` / `review.parquet` given the level columns of all kinds.
pub fn pairs_schema(level_fields: &[String], review: bool) -> Arc<Schema> {
    let mut f = vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("source_l", DataType::Utf8, false),
        Field::new("record_id_l", DataType::Utf8, false),
        Field::new("source_r", DataType::Utf8, false),
        Field::new("record_id_r", DataType::Utf8, false),
        Field::new("blocking_rule", DataType::Utf8, false),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("match_probability", DataType::Float64, false),
    ];
    f.extend(
        level_fields
            .iter()
            .map(|c| Field::new(format!("level_{c}"), DataType::UInt8, true)),
    );
    if review {
        // What a clerk decides from: each compared field's standardised value on both sides.
        for c in level_fields {
            f.push(Field::new(format!("{c}_l"), DataType::Utf8, true));
            f.push(Field::new(format!("{c}_r"), DataType::Utf8, true));
        }
        f.push(Field::new("decision", DataType::Utf8, true));
    }
    Arc::new(Schema::new(f))
}

/// What turns one kind's scored batches into rows of the pairs files.
pub struct PairsLayout<'a> {
    pub table: &'a StdTable,
    /// Blocking rule names, indexed by the candidates' rule numbers.
    pub rule_names: &'a [String],
    /// Level columns of the file (all kinds).
    pub level_fields: &'a [String],
    /// Compared fields of this kind, in the scored batch's order.
    pub kind_fields: &'a [String],
}

/// The rows of a scored batch (`left`, `right`, `match_probability`) that `keep` accepts.
fn kept(
    l: &UInt32Array,
    r: &UInt32Array,
    prob: &Float64Array,
    keep: &impl Fn(u32, u32, f64) -> bool,
) -> Vec<usize> {
    (0..l.len())
        .filter(|&i| keep(l.value(i), r.value(i), prob.value(i)))
        .collect()
}

/// The left- and right-hand records of the rows of a scored batch that `keep` accepts.
fn kept_sides(
    scored: &RecordBatch,
    keep: &impl Fn(u32, u32, f64) -> bool,
    path: &Path,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let column = |name: &str| {
        scored
            .column_by_name(name)
            .ok_or_else(|| Error::write(path, format!("internal: no `{name}`")))
    };
    let (l, r, prob) = (
        column("left")?.as_any().downcast_ref::<UInt32Array>(),
        column("right")?.as_any().downcast_ref::<UInt32Array>(),
        column("match_probability")?
            .as_any()
            .downcast_ref::<Float64Array>(),
    );
    let (Some(l), Some(r), Some(prob)) = (l, r, prob) else {
        return Err(Error::write(path, "internal: scored pairs of another type"));
    };
    let rows = kept(l, r, prob, keep);
    Ok((
        rows.iter().map(|&i| l.value(i)).collect(),
        rows.iter().map(|&i| r.value(i)).collect(),
    ))
}

/// Fills in the value columns of the review rows (`{field}_l`, `{field}_r`: each compared
/// field's standardised value on both sides; `sides` holds each batch's left- and right-hand
/// records), one field at a time: the review pairs' records are read front to back, once
/// each, then placed. Read pair by pair, they lay anywhere in the table (10M records under a
/// 1.6 GB cap: pair rows 24-63 s).
fn fill_review_values(
    layout: &PairsLayout,
    review: &mut [RecordBatch],
    sides: &[(Vec<u32>, Vec<u32>)],
    path: &Path,
) -> Result<()> {
    // Every side of every review row, batch after batch (left-hand records, then right).
    let slots: Vec<u32> = sides
        .iter()
        .flat_map(|(l, r)| l.iter().chain(r))
        .copied()
        .collect();
    // The distinct records, in row order, and where each slot's record is among them.
    let (rows, at) = crate::mem::in_row_order(&slots);
    let table = layout.table;
    for f in layout.level_fields {
        let Some(col) = table.column(f).filter(|_| layout.kind_fields.contains(f)) else {
            continue;
        };
        crate::mem::read_ahead(col);
        let taken = crate::mem::gather(col, &rows).map_err(err(path))?;
        let mut from = 0usize;
        for (batch, (l, r)) in review.iter_mut().zip(sides) {
            let schema = batch.schema();
            let mut cols = batch.columns().to_vec();
            for (name, n) in [(format!("{f}_l"), l.len()), (format!("{f}_r"), r.len())] {
                let k = schema.index_of(&name).map_err(err(path))?;
                let values = at.get(from..from + n).unwrap_or_default();
                cols[k] = Arc::new(crate::mem::gather(&taken, values).map_err(err(path))?);
                from += n;
            }
            *batch = RecordBatch::try_new(schema, cols).map_err(err(path))?;
        }
    }
    Ok(())
}

/// Turns a scored batch into rows of the pairs file, keeping rows whose probability `keep`
/// accepts; `rules` holds the blocking rule of each row of the batch. Rows for the review
/// queue (`review`) get their value columns empty: [`write_pair_rows`] fills them in.
pub fn pairs_batch<'a>(
    layout: &PairsLayout<'a>,
    scored: &RecordBatch,
    rules: &[u8],
    keep: impl Fn(u32, u32, f64) -> bool,
    review: bool,
    path: &Path,
) -> Result<RecordBatch> {
    let PairsLayout {
        table,
        rule_names,
        level_fields,
        kind_fields,
    } = *layout;
    let col = |name: &str| scored.column_by_name(name).cloned();
    let get_u32 = |name: &str| {
        col(name)
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>().cloned())
            .ok_or_else(|| Error::write(path, format!("internal: no `{name}`")))
    };
    let (l, r) = (get_u32("left")?, get_u32("right")?);
    let prob = col("match_probability")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        .ok_or_else(|| Error::write(path, "internal: no probability"))?;
    let weight = col("match_weight")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        .ok_or_else(|| Error::write(path, "internal: no weight"))?;
    let rows = kept(&l, &r, &prob, &keep);
    // Text columns in one pass for their sizes and one to copy; record ids gathered with
    // the rows ahead asked for (a pair's right-hand record lies anywhere in the table).
    let text = |f: &dyn Fn(usize) -> &'a str| {
        crate::mem::text_of(rows.len(), |k| f(rows[k])).map_err(err(path))
    };
    let src = |i: u32| table.sources[table.source[i as usize] as usize].as_str();
    let rows_of =
        |side: &UInt32Array| -> Vec<u32> { rows.iter().map(|&i| side.value(i)).collect() };
    let ids = |side: &UInt32Array| {
        crate::mem::gather(&table.record_id, &rows_of(side)).map_err(err(path))
    };
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(text(&|_| table.kind.as_str())?),
        Arc::new(text(&|i| src(l.value(i)))?),
        Arc::new(ids(&l)?),
        Arc::new(text(&|i| src(r.value(i)))?),
        Arc::new(ids(&r)?),
        Arc::new(text(&|i| rule_names[rules[i] as usize].as_str())?),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&i| weight.value(i)),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&i| prob.value(i)),
        )),
    ];
    for f in level_fields {
        let levels = match kind_fields.iter().position(|k| k == f) {
            Some(k) => {
                let lv = scored
                    .column(crate::compare::FIRST_LEVEL + k)
                    .as_any()
                    .downcast_ref::<UInt8Array>()
                    .ok_or_else(|| Error::write(path, "internal: levels"))?
                    .values();
                UInt8Array::from_iter_values(rows.iter().map(|&i| lv[i]))
            }
            None => UInt8Array::new_null(rows.len()),
        };
        cols.push(Arc::new(levels));
    }
    if review {
        // The values on both sides are filled in by `fill_review_values`, all batches at once.
        for _ in 0..2 * level_fields.len() + 1 {
            cols.push(Arc::new(StringArray::new_null(rows.len())));
        }
    }
    RecordBatch::try_new(pairs_schema(level_fields, review), cols).map_err(err(path))
}

/// Rows of `pairs.parquet` (every pair) and `review.parquet` (probability within
/// `[review, match)`, and not yet `decided` by a clerk) for one kind's scored batches; `rules`
/// holds every candidate's rule.
pub fn pair_rows(
    layout: &PairsLayout,
    scored: &[RecordBatch],
    rules: &[u8],
    (review, matched): (f64, f64),
    decided: &(dyn Fn(u32, u32) -> bool + Sync),
    path: &Path,
) -> Result<PairRows> {
    use rayon::prelude::*;
    let rows: Vec<(RecordBatch, (RecordBatch, Sides))> = scored
        .par_iter()
        .enumerate()
        .map(|(b, sb)| {
            let from = b * crate::compare::BATCH;
            let rules = &rules[from..from + sb.num_rows()];
            let all = pairs_batch(layout, sb, rules, |_, _, _| true, false, path)?;
            // The queue holds the pairs in the review band that no clerk has decided yet.
            let keep = |l, r, p| p >= review && p < matched && !decided(l, r);
            let rev = pairs_batch(layout, sb, rules, keep, true, path)?;
            Ok((all, (rev, kept_sides(sb, &keep, path)?)))
        })
        .collect::<Result<_>>()?;
    let (all, review): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    let (review, sides) = review.into_iter().unzip();
    Ok(PairRows { all, review, sides })
}

/// Each review row's left- and right-hand records, a batch's at a time.
type Sides = (Vec<u32>, Vec<u32>);

/// The rows [`pair_rows`] makes: every pair's, and the review queue's with their records
/// ([`write_pair_rows`] fills in their values).
pub struct PairRows {
    pub all: Vec<RecordBatch>,
    pub review: Vec<RecordBatch>,
    sides: Vec<Sides>,
}

/// [`pair_rows`], with every pair written to `pairs` as its scored batch is turned into rows
/// (a few batches at a time, in order) instead of held: at 10M records the rows of 8M pairs
/// took ~0.7 GB. Each batch written is shown to `tally` (the report's first pass over the
/// pairs), in file order. Returns the review rows and the number of pairs written. With a
/// `spill`, the review rows are filled in and written to disk [`REVIEW_SEGMENT`] rows at a
/// time and handed back mapped from there (their number grows with the records: ~0.3M
/// rows and ~0.1 GB at 10M records).
#[allow(clippy::too_many_arguments)]
pub fn write_pair_rows(
    layout: &PairsLayout,
    scored: &[RecordBatch],
    rules: &[u8],
    thresholds: (f64, f64),
    decided: &(dyn Fn(u32, u32) -> bool + Sync),
    pairs: &mut ParallelWriter,
    tally: &mut dyn FnMut(&RecordBatch) -> Result<()>,
    spill: Option<&crate::state::Spill>,
) -> Result<(Vec<RecordBatch>, u64)> {
    let wave = 2 * rayon::current_num_threads().max(1);
    let path = pairs.path.clone();
    let (mut review, mut written) = (Vec::new(), 0u64);
    let mut sides = Vec::new();
    let mut on_disk: Option<crate::state::SpillBatches> = None;
    // The review rows so far filled in and written out (a segment's worth at a time).
    let mut to_disk = |review: &mut Vec<RecordBatch>, sides: &mut Vec<Sides>| -> Result<()> {
        let Some(spill) = spill else {
            return Ok(());
        };
        fill_review_values(layout, review, sides, &path)?;
        for b in review.drain(..) {
            if on_disk.is_none() {
                on_disk = Some(spill.batches(&b.schema())?);
            }
            if let Some(out) = on_disk.as_mut() {
                out.push(&b)?;
            }
        }
        sides.clear();
        Ok(())
    };
    let mut from = 0usize;
    // Every pair's record ids are read, the right-hand ones at random: asked for at once.
    crate::mem::will_need(&layout.table.record_id);
    for part in scored.chunks(wave) {
        let n: usize = part.iter().map(RecordBatch::num_rows).sum();
        let rules = rules
            .get(from..from + n)
            .ok_or_else(|| Error::write(&path, "internal: fewer rules than pairs"))?;
        let PairRows {
            all,
            review: rev,
            sides: rev_sides,
        } = pair_rows(layout, part, rules, thresholds, decided, &path)?;
        pairs.write(&all)?;
        sides.extend(rev_sides);
        for b in &all {
            written += b.num_rows() as u64;
            tally(b)?;
        }
        review.extend(rev);
        from += n;
        if rows(&review) >= REVIEW_SEGMENT as u64 {
            to_disk(&mut review, &mut sides)?;
        }
    }
    if spill.is_some() {
        to_disk(&mut review, &mut sides)?;
        if let Some(out) = on_disk {
            review = out.finish()?;
        }
        return Ok((review, written));
    }
    fill_review_values(layout, &mut review, &sides, &path)?;
    Ok((review, written))
}

/// Review rows [`write_pair_rows`] fills in at a time (their values gathered from the
/// records in one pass, front to back) before it writes them to disk, in a spilled run.
pub const REVIEW_SEGMENT: usize = 1 << 17;

/// Rows `rows` (numbers within `scored`, sorted) of what [`write_pair_rows`] wrote, made again
/// from the scored batches.
pub fn pair_rows_at(
    layout: &PairsLayout,
    scored: &[RecordBatch],
    rules: &[u8],
    rows: &[usize],
    path: &Path,
) -> Result<Vec<RecordBatch>> {
    let mut starts = Vec::with_capacity(scored.len());
    let mut at = 0usize;
    for b in scored {
        starts.push(at);
        at += b.num_rows();
    }
    rows.iter()
        .map(|&r| {
            let b = starts.partition_point(|&s| s <= r).saturating_sub(1);
            let (Some(batch), Some(rule)) = (scored.get(b), rules.get(r..=r)) else {
                return Err(Error::write(path, format!("internal: no pair row {r}")));
            };
            pairs_batch(
                layout,
                &batch.slice(r - starts[b], 1),
                rule,
                |_, _, _| true,
                false,
                path,
            )
        })
        .collect()
}

/// The previous run's open review queue of one kind, for a delta run: its pairs whose two
/// records are still in the index and unchanged tonight, and that no clerk has decided since.
/// `status` tells where a record stands after tonight: `None` gone or changed tonight,
/// `Some(None)` untouched, `Some(Some(row))` unchanged in tonight's table at `row`;
/// `decided(a, b)` whether a clerk decided on two rows of tonight's table. Empty when the
/// previous folder has no queue or one of another layout (the job's compared fields changed).
pub fn carried_review(
    path: &Path,
    kind: &str,
    status: &dyn Fn(&str, &str) -> Option<Option<u32>>,
    decided: &dyn Fn(u32, u32) -> bool,
    schema: &Arc<Schema>,
) -> Result<Vec<RecordBatch>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for batch in crate::state::read_parquet(path, None)? {
        if batch.schema().fields() != schema.fields() {
            return Ok(Vec::new());
        }
        let text = |n: &str| crate::state::text_column(std::slice::from_ref(&batch), n);
        let (Some(k), Some(sl), Some(rl), Some(sr), Some(rr)) = (
            text("kind"),
            text("source_l"),
            text("record_id_l"),
            text("source_r"),
            text("record_id_r"),
        ) else {
            return Ok(Vec::new());
        };
        let keep: arrow_array::BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let still_open = k.value(i) == kind
                    && match (
                        status(sl.value(i), rl.value(i)),
                        status(sr.value(i), rr.value(i)),
                    ) {
                        (Some(Some(a)), Some(Some(b))) => !decided(a, b),
                        (Some(_), Some(_)) => true,
                        _ => false,
                    };
                Some(still_open)
            })
            .collect();
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep).map_err(err(path))?;
        if kept.num_rows() > 0 {
            out.push(
                RecordBatch::try_new(schema.clone(), kept.columns().to_vec()).map_err(err(path))?,
            );
        }
    }
    Ok(out)
}

/// `decisions.parquet`: the clerks' decisions in effect, one row per pair of records.
pub fn decisions_batch(
    labels: &[&crate::load::Label],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let text = |f: &dyn Fn(&crate::load::Label) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(labels.iter().map(|l| f(l))))
    };
    RecordBatch::try_new(
        decisions_schema(),
        vec![
            text(&|l| &l.source_l),
            text(&|l| &l.record_id_l),
            text(&|l| &l.source_r),
            text(&|l| &l.record_id_r),
            text(&|l| if l.is_match { "match" } else { "non_match" }),
            text(&|l| &l.decided_in),
        ],
    )
}

pub fn decisions_schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        crate::load::DECISION_COLUMNS
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ))
}

/// `events.parquet`: the lineage of master ids; `time` is when the run wrote it.
/// Rows of `events.parquet`: one kind's events, stamped with the run and its start time.
pub fn events_batch(
    run_id: &str,
    unix_time: u64,
    kind: &str,
    events: &crate::master::Events,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let n = events.len();
    RecordBatch::try_new(
        events_schema(),
        vec![
            Arc::new(StringArray::from(vec![run_id; n])),
            Arc::new(UInt64Array::from(vec![unix_time; n])),
            Arc::new(StringArray::from(vec![kind; n])),
            Arc::new(events.master_id.clone()),
            Arc::new(events.event.clone()),
            Arc::new(events.other_id.clone()),
            Arc::new(events.records.clone()),
        ],
    )
}

pub fn events_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("unix_time", DataType::UInt64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("master_id", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("other_id", DataType::Utf8, true),
        Field::new("records", DataType::Utf8, false),
    ]))
}

/// `quarantine.parquet`.
pub fn quarantine_batch(
    rows: &[QuarantineRow],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    RecordBatch::try_new(
        quarantine_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.source.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.row))),
            Arc::new(
                rows.iter()
                    .map(|r| r.record_id.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.reason.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.raw.as_str()),
            )),
        ],
    )
}

pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("record_id", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Length helper for arrays used by callers that only need a count.
pub fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn folders_left_by_killed_runs_go_and_live_ones_stay() {
        let parent = std::env::temp_dir().join(format!("yiku-left-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        // A process that has ended (its number not in use right after), and one alive.
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let gone = ended.id();
        ended.wait().unwrap();
        let stale = [format!(".out.tmp-{gone}"), format!(".out.old-{gone}")];
        let alive = format!(".out.tmp-{}", std::os::unix::process::parent_id());
        let other = format!(".report.tmp-{gone}");
        for d in stale.iter().chain([&alive, &other]) {
            std::fs::create_dir_all(parent.join(d).join("sub")).unwrap();
        }
        let out = OutputDir::create(&parent.join("out"), Default::default()).unwrap();
        if Path::new("/proc/self").exists() {
            for d in &stale {
                assert!(!parent.join(d).exists(), "{d} left");
            }
        }
        assert!(parent.join(&alive).exists() && parent.join(&other).exists());
        assert!(out.dir().exists());
        drop(out);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn review_rows_show_both_records_values() {
        let names = ["甲", "乙", "丙", "丁", "戊", "己"];
        let rows: Vec<(&str, String, &str)> = (0..60)
            .map(|i| ("s", format!("r{i}"), names[i % 6]))
            .collect();
        let rows: Vec<(&str, &str, &str)> =
            rows.iter().map(|(s, r, n)| (*s, r.as_str(), *n)).collect();
        let table = StdTable::of_names(&rows);
        let fields = ["name".to_string()];
        let layout = PairsLayout {
            table: &table,
            rule_names: &["name".to_string()],
            level_fields: &fields,
            kind_fields: &fields,
        };
        // Two scored batches; pairs whose probability is in the band [0.1, 0.5) are for review.
        let batch = |pairs: &[(u32, u32, f64)]| {
            let col_u32 = |f: &dyn Fn(&(u32, u32, f64)) -> u32| -> ArrayRef {
                Arc::new(UInt32Array::from_iter_values(pairs.iter().map(f)))
            };
            let col_f64 = |f: &dyn Fn(&(u32, u32, f64)) -> f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter_values(pairs.iter().map(f)))
            };
            let schema = Arc::new(Schema::new(vec![
                Field::new("left", DataType::UInt32, false),
                Field::new("right", DataType::UInt32, false),
                Field::new("rule", DataType::UInt8, false),
                Field::new("level_name", DataType::UInt8, false),
                Field::new("match_weight", DataType::Float64, false),
                Field::new("match_probability", DataType::Float64, false),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    col_u32(&|p| p.0),
                    col_u32(&|p| p.1),
                    Arc::new(UInt8Array::from(vec![0u8; pairs.len()])),
                    Arc::new(UInt8Array::from(vec![1u8; pairs.len()])),
                    col_f64(&|p| p.2),
                    col_f64(&|p| p.2),
                ],
            )
        };
        let pairs: Vec<(u32, u32, f64)> = (0..40u32)
            .map(|i| (i, (i * 37 + 11) % 60, [0.05, 0.2, 0.3, 0.9][i as usize % 4]))
            .collect();
        let (Ok(a), Ok(b)) = (batch(&pairs[..25]), batch(&pairs[25..])) else {
            panic!("scored batches");
        };
        // Each batch's rows made on their own (as `write_pair_rows` makes a few at a time),
        // the values of all filled in at once.
        let path = std::path::Path::new("pairs.parquet");
        let (mut review, mut sides) = (Vec::new(), Vec::new());
        for scored in [a, b] {
            let made = pair_rows(
                &layout,
                &[scored],
                &[0u8; 25],
                (0.1, 0.5),
                &|_, _| false,
                path,
            );
            let Ok(made) = made else {
                panic!("pair rows");
            };
            review.extend(made.review);
            sides.extend(made.sides);
        }
        assert!(fill_review_values(&layout, &mut review, &sides, path).is_ok());
        let want: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|p| (0.1..0.5).contains(&p.2))
            .map(|p| (names[p.0 as usize % 6], names[p.1 as usize % 6]))
            .collect();
        let mut got = Vec::new();
        for b in &review {
            let col = |name: &str| {
                b.column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .map(|c| {
                        c.iter()
                            .map(|v| v.unwrap_or("-").to_string())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            };
            got.extend(col("name_l").into_iter().zip(col("name_r")));
        }
        let got: Vec<(&str, &str)> = got.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        assert_eq!(got.len(), 20);
        assert_eq!(got, want);
    }
}
