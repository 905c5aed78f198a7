//! What a run keeps for the next one. Beside the master index, every output folder holds each
//! kind's standardised records and its accepted links:
//!
//! - `standardised_<kind>.arrow`: `source` (dictionary codes), `record_id`, every standardised
//!   and derived column, and the values as loaded (`raw:<field>`) of the fields golden records
//!   show as written (addresses), in the run's record order. An uncompressed Arrow IPC file:
//!   read back zero-copy (a delta run maps it whole), at ~270 bytes per person record on disk.
//!   Folders written by earlier versions (text `source`, every raw column, or
//!   `standardised_<kind>.parquet`) are still read;
//! - `links_<kind>.arrow` (Arrow IPC as well; `.parquet` in older folders): the links the clusters were built from, as rows of that file
//!   (`left < right`), with their match weight and who decided them (`model`, or a clerk's
//!   `match` / `non_match`).
//!
//! A delta run ([`crate::delta`]) starts from these instead of re-standardising and
//! re-comparing the unchanged records; `yiku explain` and `report.html` read the standardised
//! records to explain pairs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;

use crate::cluster::Edge;
use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::standardise::StdTable;

/// Prefix of the columns holding values as loaded.
pub const RAW_PREFIX: &str = "raw:";

/// Path of a kind's standardised records in a run's output folder.
pub fn standardised_path(run_dir: &Path, kind: EntityKind) -> PathBuf {
    run_dir.join(format!("standardised_{}.arrow", kind.as_str()))
}

/// The Parquet file that folders written by earlier versions hold instead.
fn legacy_standardised_path(run_dir: &Path, kind: EntityKind) -> PathBuf {
    run_dir.join(format!("standardised_{}.parquet", kind.as_str()))
}

/// Writes one batch as an uncompressed Arrow IPC file ([`DirectFile`]).
pub fn write_ipc(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_ipc_batches(path, &batch.schema(), std::slice::from_ref(batch))
}

/// Writes batches of one schema as an uncompressed Arrow IPC file ([`DirectFile`]).
pub fn write_ipc_batches(path: &Path, schema: &Schema, batches: &[RecordBatch]) -> Result<()> {
    let file = ipc_into(DirectFile::create(path)?, path, schema, batches)?;
    file.finish().map_err(|e| Error::io(path, e))
}

/// `batches` written to `file` (at `path`, named in errors) as an Arrow IPC file; the file
/// handed back.
fn ipc_into<W: std::io::Write>(
    file: W,
    path: &Path,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<W> {
    use arrow_ipc::writer::FileWriter;
    let mut w = FileWriter::try_new(file, schema).map_err(|e| Error::write(path, e))?;
    for batch in batches {
        w.write(batch).map_err(|e| Error::write(path, e))?;
    }
    w.finish().map_err(|e| Error::write(path, e))?;
    w.into_inner().map_err(|e| Error::write(path, e))
}

/// A file written past the page cache (`O_DIRECT`) where the system allows it, in aligned
/// chunks. The state files are large and not read again by the run that writes them (a
/// mapped run aside, which then reads them from disk): copying them into the page cache cost
/// the kernel more CPU time than writing them took. Where `O_DIRECT` is refused (tmpfs, other
/// systems), the file is written the usual way.
pub struct DirectFile {
    file: std::fs::File,
    path: PathBuf,
    direct: bool,
    /// `CHUNK` bytes aligned to `ALIGN`, at `buf[skip..]`.
    buf: Vec<u8>,
    skip: usize,
    /// Bytes waiting in the chunk.
    len: usize,
    /// Bytes already in the file.
    written: u64,
}

impl DirectFile {
    const ALIGN: usize = 4096;
    const CHUNK: usize = 4 << 20;

    pub fn create(path: &Path) -> Result<DirectFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        let direct = open.clone().custom_flags(libc::O_DIRECT).open(path);
        let (file, direct) = match direct {
            Ok(f) => (f, true),
            Err(_) => (open.open(path).map_err(|e| Error::io(path, e))?, false),
        };
        let buf = vec![0u8; Self::CHUNK + Self::ALIGN];
        let skip = buf.as_ptr().align_offset(Self::ALIGN).min(Self::ALIGN);
        Ok(DirectFile {
            file,
            path: path.to_path_buf(),
            direct,
            buf,
            skip,
            len: 0,
            written: 0,
        })
    }

    /// Writes the chunk's first `n` bytes (a multiple of `ALIGN` unless written the usual way)
    /// at the end of the file; falls back to the usual way if the system refuses.
    fn write_chunk(&mut self, n: usize) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let chunk = &self.buf[self.skip..self.skip + n];
        match self.file.write_all_at(chunk, self.written) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = false;
                self.file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                self.file.write_all_at(chunk, self.written)
            }
            other => other,
        }
    }

    /// Writes what is left and sets the file's length.
    pub fn finish(mut self) -> std::io::Result<()> {
        let tail = self.len;
        if tail > 0 {
            let padded = if self.direct {
                tail.div_ceil(Self::ALIGN) * Self::ALIGN
            } else {
                tail
            };
            self.buf[self.skip + tail..self.skip + padded].fill(0);
            self.write_chunk(padded)?;
            self.written += tail as u64;
            self.file.set_len(self.written)?;
        }
        Ok(())
    }
}

impl std::io::Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(Self::CHUNK - self.len);
        let at = self.skip + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == Self::CHUNK {
            self.write_chunk(Self::CHUNK)?;
            self.written += Self::CHUNK as u64;
            self.len = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Maps an Arrow IPC file into memory and decodes its batches without copying their buffers,
/// keeping only the named columns (all when `None`; columns the file lacks are left out):
/// only the pages of those columns are read.
pub fn read_ipc(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    read_ipc_as(path, columns, &[])
}

/// [`read_ipc`], with the text columns named in `as_bytes` decoded as binary: their values
/// are neither checked to be UTF-8 nor even read from disk until used.
pub fn read_ipc_as(
    path: &Path,
    columns: Option<&[&str]>,
    as_bytes: &[&str],
) -> Result<Vec<RecordBatch>> {
    map_ipc(path, columns, as_bytes, Written::Earlier)
}

/// Who wrote an Arrow IPC file that is mapped back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// An earlier run (a state file): its text is checked to be UTF-8 as it is decoded.
    Earlier,
    /// This process, a moment ago, from arrays that were valid (the state file of a run
    /// under `memory_limit`, mapped back by [`map_standardised`]): not checked again, so that
    /// mapping it reads none of its pages.
    ThisProcess,
    /// A file of the persistent index ([`crate::store`]) of an earlier run: not checked as it
    /// is mapped (that would read every page of the index), every text column mapped as
    /// bytes; the store reads it only through accessors that check every offset they follow.
    Store,
}

/// Maps an Arrow IPC file of the persistent index ([`Written::Store`]): every batch, every text
/// column as binary, nothing validated but the layout of the file's blocks.
pub(crate) fn map_store_file(path: &Path) -> Result<Vec<RecordBatch>> {
    map_ipc(path, None, &[], Written::Store)
}

fn map_ipc(
    path: &Path,
    columns: Option<&[&str]>,
    as_bytes: &[&str],
    written: Written,
) -> Result<Vec<RecordBatch>> {
    use arrow_ipc::reader::{FileDecoder, read_footer_length};
    let bad = |message: String| Error::Read {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the state files are written once, by a run into its own fresh output folder,
    // and never modified after; the map lives as long as the arrays that point into it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let n = map.len();
    let trailer: [u8; 10] = n
        .checked_sub(10)
        .and_then(|s| map[s..].try_into().ok())
        .ok_or_else(|| bad("too short for an Arrow IPC file".into()))?;
    let footer_len = read_footer_length(trailer).map_err(|e| bad(e.to_string()))?;
    let footer_start = (n - 10)
        .checked_sub(footer_len)
        .ok_or_else(|| bad("footer longer than the file".into()))?;
    let buffer = match std::ptr::NonNull::new(map.as_ptr().cast_mut()) {
        // SAFETY: the pointer is valid for `n` bytes for as long as `map`, which the buffer owns.
        Some(ptr) => unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, n, Arc::new(map)) },
        None => return Err(bad("empty file".into())),
    };
    let footer = arrow_ipc::root_as_footer(&buffer[footer_start..n - 10])
        .map_err(|e| bad(format!("unreadable footer: {e}")))?;
    let schema = footer
        .schema()
        .ok_or_else(|| bad("no schema in the footer".into()))?;
    let schema = arrow_ipc::convert::try_fb_to_schema(schema).map_err(|e| bad(e.to_string()))?;
    // Text and binary arrays share one layout (validity, offsets, bytes).
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8
                if written == Written::Store || as_bytes.contains(&f.name().as_str()) =>
            {
                f.as_ref().clone().with_data_type(DataType::Binary)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let version = footer.version();
    let wanted: Vec<usize> = match columns {
        Some(names) => positions(&schema, names),
        None => (0..schema.fields().len()).collect(),
    };
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let projected = Arc::new(schema.project(&wanted).map_err(|e| bad(e.to_string()))?);
    // The bytes of a block (a record batch or a dictionary), checked to lie in the file.
    let block_data = |block: &arrow_ipc::Block| -> Result<arrow_buffer::Buffer> {
        let start = usize::try_from(block.offset()).ok();
        let len = usize::try_from(block.metaDataLength())
            .ok()
            .zip(usize::try_from(block.bodyLength()).ok())
            .map(|(m, b)| m + b);
        let (Some(start), Some(len)) = (start, len) else {
            return Err(bad("a block with a negative offset or length".into()));
        };
        if start.checked_add(len).is_none_or(|end| end > footer_start) {
            return Err(bad("a block beyond the end of the file".into()));
        }
        Ok(buffer.slice_with_length(start, len))
    };
    let dictionaries = footer
        .dictionaries()
        .into_iter()
        .flatten()
        .map(|block| Ok((*block, block_data(block)?)))
        .collect::<Result<Vec<_>>>()?;
    // A decoder of one column, with the file's dictionaries (a few source names) loaded.
    let decoder = |c: usize| -> Result<FileDecoder> {
        let mut d = FileDecoder::new(schema.clone(), version).with_projection(vec![c]);
        match written {
            // SAFETY: the file was written by this process from valid arrays, into the run's
            // own fresh output folder, and is read back at once (`Written::ThisProcess`).
            Written::ThisProcess => d = unsafe { d.with_skip_validation(true) },
            // SAFETY: a store file (`Written::Store`) is only ever read by `crate::store`,
            // which checks each array's buffers against its length when it opens the file
            // (`store::checked`) and every offset it follows before slicing.
            Written::Store => d = unsafe { d.with_skip_validation(true) },
            Written::Earlier => {}
        }
        for (block, data) in &dictionaries {
            d.read_dictionary(block, data)
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(d)
    };
    let mut batches = Vec::new();
    for block in footer.recordBatches().into_iter().flatten() {
        let data = block_data(block)?;
        // One column per task: decoding checks every text value is UTF-8, and a state file
        // is one batch, so this is what spreads the work over the threads.
        let cols = wanted
            .par_iter()
            .map(|&c| {
                decoder(c)?
                    .read_record_batch(block, &data)
                    .map_err(|e| bad(e.to_string()))
                    .map(|b| b.map(|b| b.column(0).clone()))
            })
            .collect::<Result<Option<Vec<_>>>>()?;
        if let Some(cols) = cols {
            batches.push(
                RecordBatch::try_new(projected.clone(), cols).map_err(|e| bad(e.to_string()))?,
            );
        }
    }
    Ok(batches)
}

/// Path of a kind's links in a run's output folder.
pub fn links_path(run_dir: &Path, kind: EntityKind) -> PathBuf {
    run_dir.join(format!("links_{}.arrow", kind.as_str()))
}

/// A state file being written on a thread of its own, overlapping the stages that follow;
/// [`Writing::wait`] gives its result and seconds. The write is mostly the kernel copying into
/// the page cache, which on the benchmark machine runs at ~250 MB/s: every byte kept costs.
pub struct Writing(std::thread::JoinHandle<(Result<()>, f64)>);

impl Writing {
    /// Waits for the write to end; returns the seconds it took.
    pub fn wait(self) -> Result<f64> {
        match self.0.join() {
            Ok((result, secs)) => result.map(|()| secs),
            Err(_) => Err(Error::Data {
                stage: "write",
                message: "the thread writing a state file stopped".into(),
            }),
        }
    }
}

/// Starts writing a kind's standardised records ([`standardised_batch`]) to its state file.
/// The file keeps its own references to the columns, so `table` may drop them meanwhile.
pub fn write_standardised(run_dir: &Path, table: &StdTable) -> Result<Writing> {
    let path = standardised_path(run_dir, table.kind);
    let batch = standardised_batch(table).map_err(|e| Error::write(&path, e))?;
    Ok(Writing(std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let result = write_ipc(&path, &batch);
        (result, start.elapsed().as_secs_f64())
    })))
}

/// Writes a kind's links ([`links_batch`]) to its state file.
pub fn write_links(run_dir: &Path, kind: EntityKind, links: &Links) -> Result<()> {
    let path = links_path(run_dir, kind);
    let batch = links_batch(links).map_err(|e| Error::write(&path, e))?;
    write_ipc(&path, &batch)
}

/// A kind's standardised records: `source` (dictionary-encoded: a 16-bit code per record),
/// `record_id`, every standardised column, then every raw column the table holds as
/// `raw:<field>`.
pub fn standardised_batch(
    table: &StdTable,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let sources = arrow_array::DictionaryArray::<arrow_array::types::UInt16Type>::try_new(
        arrow_array::UInt16Array::new(table.source.clone(), None),
        Arc::new(StringArray::from_iter_values(&table.sources)),
    )?;
    let mut cols: Vec<(String, ArrayRef)> = vec![
        ("source".into(), Arc::new(sources)),
        ("record_id".into(), Arc::new(table.record_id.clone())),
    ];
    cols.extend(
        table
            .columns
            .iter()
            .map(|(name, a)| (name.clone(), Arc::new(a.clone()) as ArrayRef)),
    );
    cols.extend(table.raw.iter().map(|(name, a)| {
        (
            format!("{RAW_PREFIX}{name}"),
            Arc::new(a.clone()) as ArrayRef,
        )
    }));
    RecordBatch::try_from_iter(cols)
}

/// Where a stage puts each text column once it is made, given as pieces that follow one
/// another: joined in memory ([`join`]), or written to disk piece by piece and mapped back
/// ([`Spill::keep`]) for a run under `memory_limit` in spilled mode, so that the joined column
/// never exists in the heap.
pub type Keep<'a> = &'a (dyn Fn(&[StringArray]) -> Result<StringArray> + Sync);

/// The pieces of a column joined in memory (a single piece is taken as it is), the pieces
/// copied side by side on every thread: a field of one column (gender, phone) has no other
/// column to join beside it, and one thread copying a column of 2M records and faulting in
/// its pages held up the stage.
pub fn join(parts: &[StringArray]) -> Result<StringArray> {
    use rayon::prelude::*;
    let too_big = || Error::Data {
        stage: "columns",
        message: "a column's text exceeds 2 GiB (Arrow's 32-bit offsets): split the job (by \
                  region or by kind)"
            .into(),
    };
    match parts {
        [] => return Ok(StringArray::new_null(0)),
        [one] => return Ok(one.clone()),
        _ => {}
    }
    // Each piece's bytes: from its first value's start to its last's end.
    let span = |p: &StringArray| {
        let o = p.value_offsets();
        let (first, last) = (o.first().copied(), o.last().copied());
        let (first, last) = (first.unwrap_or(0) as usize, last.unwrap_or(0) as usize);
        first..last
    };
    let mut starts = Vec::with_capacity(parts.len());
    let mut total = 0usize;
    for p in parts {
        starts.push(i32::try_from(total).map_err(|_| too_big())?);
        total += span(p).len();
    }
    i32::try_from(total).map_err(|_| too_big())?;
    let rows: usize = parts.iter().map(Array::len).sum();
    let mut values = vec![0u8; total];
    let mut offsets = vec![0i32; rows + 1];
    let (mut value_rest, mut offset_rest) = (values.as_mut_slice(), &mut offsets[1..]);
    let mut slots = Vec::with_capacity(parts.len());
    for p in parts {
        let (v, vr) = std::mem::take(&mut value_rest).split_at_mut(span(p).len());
        let (o, or) = std::mem::take(&mut offset_rest).split_at_mut(p.len());
        (value_rest, offset_rest) = (vr, or);
        slots.push((v, o));
    }
    parts
        .par_iter()
        .zip(slots)
        .zip(starts)
        .for_each(|((p, (v, o)), base)| {
            let from = span(p);
            let first = from.start as i32;
            v.copy_from_slice(p.value_data().get(from).unwrap_or_default());
            for (end, &e) in o.iter_mut().zip(p.value_offsets().iter().skip(1)) {
                *end = base + (e - first);
            }
        });
    let nulls = parts.iter().any(|p| p.null_count() > 0).then(|| {
        let mut valid = arrow_buffer::BooleanBufferBuilder::new(rows);
        for p in parts {
            match p.nulls() {
                Some(n) => valid.append_buffer(n.inner()),
                None => valid.append_n(p.len(), true),
            }
        }
        arrow_buffer::NullBuffer::new(valid.finish())
    });
    let offsets = arrow_buffer::OffsetBuffer::new(offsets.into());
    // SAFETY: the bytes are the pieces' values, whole and in order, each piece a valid string
    // array; the offsets are each piece's own, moved by where its bytes now start.
    Ok(unsafe { StringArray::new_unchecked(offsets, values.into(), nulls) })
}

/// Where a stage puts the text columns it makes part by part ([`Columns::parts`]) or whole
/// ([`Columns::keep`]): in the heap, or written to disk as made and mapped back (a run under
/// `memory_limit` in spilled mode), so that a column being made is never whole in the heap.
#[derive(Clone, Copy)]
pub enum Columns<'a> {
    Heap,
    Disk(&'a Spill),
}

impl Columns<'_> {
    /// A column whose pieces are all at hand.
    pub fn keep(&self, parts: &[StringArray]) -> Result<StringArray> {
        match self {
            Columns::Heap => join(parts),
            Columns::Disk(spill) => spill.keep(parts),
        }
    }

    /// A column to be made part by part.
    pub fn parts(&self) -> Result<Parts> {
        Ok(match self {
            Columns::Heap => Parts::Held(Vec::new()),
            Columns::Disk(spill) => Parts::Written(Box::new(spill.text()?)),
        })
    }
}

/// A text column being made part by part ([`Columns::parts`]).
pub enum Parts {
    /// Held until [`Parts::finish`] joins them.
    Held(Vec<StringArray>),
    /// Written out as they come ([`SpillText`]).
    Written(Box<SpillText>),
}

impl Parts {
    /// The next values of the column.
    pub fn push(&mut self, part: StringArray) -> Result<()> {
        match self {
            Parts::Held(held) => {
                held.push(part);
                Ok(())
            }
            Parts::Written(w) => w.push(&part),
        }
    }

    /// The whole column.
    pub fn finish(self) -> Result<StringArray> {
        match self {
            Parts::Held(held) => join(&held),
            Parts::Written(w) => w.finish(),
        }
    }
}

/// Moves text columns out of the heap as they are made, for a run under `memory_limit`
/// ([`crate::load::MemoryMode::Spilled`]): each is written to a file of its own in the output
/// folder, piece by piece, in Arrow's own layout (offsets, bytes, validity bits: through the
/// page cache; the state file is written from it next, and its dirty pages are the kernel's
/// to write back or drop), and handed back mapped from it. The file's name is removed at once;
/// the map keeps its pages until the column is dropped.
pub struct Spill {
    dir: PathBuf,
    tag: String,
    next: std::sync::atomic::AtomicUsize,
}

impl Spill {
    /// Spill files in `dir`, named after `tag` (the kind).
    pub fn new(dir: &Path, tag: &str) -> Spill {
        Spill {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            next: Default::default(),
        }
    }

    /// The column of `parts` one after another, written out and mapped back.
    pub fn keep(&self, parts: &[StringArray]) -> Result<StringArray> {
        use std::io::Write;
        let rows: usize = parts.iter().map(Array::len).sum();
        if rows == 0 {
            return join(parts);
        }
        let span = |p: &StringArray| {
            let o = p.value_offsets();
            (o[0], o[o.len() - 1])
        };
        let bytes: usize = parts
            .iter()
            .map(|p| {
                let (a, b) = span(p);
                (b - a) as usize
            })
            .sum();
        let Ok(total) = i32::try_from(bytes) else {
            return join(parts);
        };
        let nulls: usize = parts.iter().map(Array::null_count).sum();
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!(".spill-{}-{n}.bin", self.tag));
        let io = |e: std::io::Error| Error::io(&path, e);
        // Layout: `rows + 1` offsets (i32, little-endian, from 0), the bytes, then the validity
        // bits when there are nulls. The map starts on a page: the offsets are aligned.
        let offsets_len = (rows + 1) * 4;
        {
            let file = std::fs::File::create(&path).map_err(io)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut at = 0i32;
            let mut buf: Vec<u8> = Vec::new();
            buf.extend_from_slice(&at.to_le_bytes());
            // The offsets a piece at a time (a piece may be a whole source's column).
            for p in parts {
                let (first, last) = span(p);
                for some in p.value_offsets()[1..].chunks(1 << 16) {
                    for &o in some {
                        buf.extend_from_slice(&(o - first + at).to_le_bytes());
                    }
                    w.write_all(&buf).map_err(io)?;
                    buf.clear();
                }
                at += last - first;
            }
            for p in parts {
                let (first, last) = span(p);
                w.write_all(&p.value_data()[first as usize..last as usize])
                    .map_err(io)?;
            }
            if nulls > 0 {
                let mut bits = arrow_buffer::BooleanBufferBuilder::new(rows);
                for p in parts {
                    match p.nulls() {
                        Some(v) => bits.append_buffer(v.inner()),
                        None => bits.append_n(p.len(), true),
                    }
                }
                w.write_all(bits.finish().values()).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the file was just written by this process into the run's own fresh output
        // folder and is not written again; its name goes next, and the map lives as long as
        // the buffers that point into it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        let len = map.len();
        let bits_len = if nulls > 0 { rows.div_ceil(8) } else { 0 };
        if len != offsets_len + bytes + bits_len {
            return Err(Error::Read {
                path,
                message: format!(
                    "spilled {len} bytes, expected {}",
                    offsets_len + bytes + bits_len
                ),
            });
        }
        let Some(ptr) = std::ptr::NonNull::new(map.as_ptr().cast_mut()) else {
            return join(parts);
        };
        // SAFETY: the pointer is valid for `len` bytes for as long as `map`, which the buffer
        // owns.
        let buffer =
            unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, len, Arc::new(map)) };
        let offsets = arrow_buffer::ScalarBuffer::<i32>::new(buffer.clone(), 0, rows + 1);
        // SAFETY: the offsets start at 0, never decrease and end at `total`, the length of
        // the bytes: each piece's own offsets, shifted by what came before.
        let offsets = unsafe { arrow_buffer::OffsetBuffer::new_unchecked(offsets) };
        debug_assert_eq!(offsets[rows], total);
        let values = buffer.slice_with_length(offsets_len, bytes);
        let validity = (nulls > 0).then(|| {
            let bits = buffer.slice_with_length(offsets_len + bytes, bits_len);
            // SAFETY: `nulls` is the pieces' own null count, and the bits are theirs.
            unsafe {
                arrow_buffer::NullBuffer::new_unchecked(
                    arrow_buffer::BooleanBuffer::new(bits, 0, rows),
                    nulls,
                )
            }
        });
        // SAFETY: every value is a whole value of a valid piece (UTF-8, on its boundaries).
        Ok(unsafe { StringArray::new_unchecked(offsets, values, validity) })
    }
}

/// A text column written to disk part by part as it is made ([`Spill::text`]): the values'
/// bytes, their offsets and their validity bits each go to a file of their own, and
/// [`SpillText::finish`] hands the column back mapped from them, so that no part (nor a bit
/// a record) is held once written.
pub struct SpillText {
    paths: [PathBuf; 3],
    offsets: std::io::BufWriter<std::fs::File>,
    bytes: std::io::BufWriter<std::fs::File>,
    bits: std::io::BufWriter<std::fs::File>,
    /// Bytes written so far (the next value's start).
    at: i32,
    rows: usize,
    /// The validity bits not yet written (fewer than [`SpillText::BITS`] and a byte's worth).
    valid: arrow_buffer::BooleanBufferBuilder,
    nulls: usize,
}

impl SpillText {
    /// Validity bits written out at a time.
    const BITS: usize = 1 << 19;

    /// The next values of the column.
    pub fn push(&mut self, part: &StringArray) -> Result<()> {
        use std::io::Write;
        let io = |e: std::io::Error| Error::io(&self.paths[0], e);
        let o = part.value_offsets();
        let (first, last) = (o[0], o[o.len() - 1]);
        let mut buf: Vec<u8> = Vec::with_capacity(4 * part.len());
        for &e in &o[1..] {
            let end = (e - first)
                .checked_add(self.at)
                .ok_or_else(|| Error::write(&self.paths[1], "over 2 GB of text in one column"))?;
            buf.extend_from_slice(&end.to_le_bytes());
        }
        self.offsets.write_all(&buf).map_err(io)?;
        self.bytes
            .write_all(&part.value_data()[first as usize..last as usize])
            .map_err(|e| Error::io(&self.paths[1], e))?;
        self.at += last - first;
        self.rows += part.len();
        self.nulls += part.null_count();
        match part.nulls() {
            Some(v) => self.valid.append_buffer(v.inner()),
            None => self.valid.append_n(part.len(), true),
        }
        // Whole bytes of bits out, the few left over kept for the next part.
        if self.valid.len() >= Self::BITS {
            let whole = self.valid.len() / 8 * 8;
            let bits = self.valid.finish();
            self.bits
                .write_all(&bits.values()[..whole / 8])
                .map_err(|e| Error::io(&self.paths[2], e))?;
            self.valid
                .append_buffer(&bits.slice(whole, bits.len() - whole));
        }
        Ok(())
    }

    /// The column of every part pushed, mapped from its files (whose names are removed).
    pub fn finish(self) -> Result<StringArray> {
        use std::io::Write;
        let SpillText {
            paths,
            offsets,
            bytes,
            mut bits,
            at,
            rows,
            mut valid,
            nulls,
        } = self;
        bits.write_all(valid.finish().values())
            .map_err(|e| Error::io(&paths[2], e))?;
        let mut maps = Vec::with_capacity(3);
        for (w, path) in [offsets, bytes, bits].into_iter().zip(&paths) {
            let io = |e: std::io::Error| Error::io(path, e);
            drop(w.into_inner().map_err(|e| io(e.into_error()))?);
            maps.push(map_written(path)?);
        }
        let empty = || arrow_buffer::Buffer::from_vec(Vec::<u8>::new());
        let bits = maps.pop().unwrap_or_else(empty);
        let values = maps.pop().unwrap_or_else(empty);
        let offsets = maps.pop().unwrap_or_else(empty);
        if offsets.len() != 4 * (rows + 1)
            || values.len() != at as usize
            || bits.len() != rows.div_ceil(8)
        {
            return Err(Error::Read {
                path: paths[0].clone(),
                message: format!(
                    "spilled {} offset, {} text and {} validity bytes, expected {}, {at} and {}",
                    offsets.len(),
                    values.len(),
                    bits.len(),
                    4 * (rows + 1),
                    rows.div_ceil(8)
                ),
            });
        }
        // The map starts on a page: the offsets are aligned.
        let offsets = arrow_buffer::ScalarBuffer::<i32>::new(offsets, 0, rows + 1);
        // SAFETY: the offsets start at 0 (written first), never decrease and end at `at`, the
        // length of the bytes: each part's own offsets, shifted by what came before.
        let offsets = unsafe { arrow_buffer::OffsetBuffer::new_unchecked(offsets) };
        let validity = (nulls > 0).then(|| {
            // SAFETY: `nulls` is the parts' own null count, and the bits are theirs, in order.
            unsafe {
                arrow_buffer::NullBuffer::new_unchecked(
                    arrow_buffer::BooleanBuffer::new(bits, 0, rows),
                    nulls,
                )
            }
        });
        // SAFETY: every value is a whole value of a valid part (UTF-8, on its boundaries).
        Ok(unsafe { StringArray::new_unchecked(offsets, values, validity) })
    }
}

/// The file at `path`, just written by this process into the run's own output folder and not
/// written again, mapped as a buffer (empty for an empty file, which cannot be mapped); its
/// name is removed, the map lives as long as the buffer.
fn map_written(path: &Path) -> Result<arrow_buffer::Buffer> {
    let io = |e: std::io::Error| Error::io(path, e);
    // Written through a handle that cannot be mapped: opened again to read.
    let file = std::fs::File::open(path).map_err(io)?;
    let map = match file.metadata().map_err(io)?.len() {
        0 => None,
        // SAFETY: the file was just written by this process into the run's own fresh output
        // folder and is not written again; its name goes next, and the map lives as long as
        // the buffers that point into it.
        _ => Some(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?),
    };
    std::fs::remove_file(path).map_err(io)?;
    Ok(match map {
        Some(m) => {
            let (ptr, len) = (m.as_ptr().cast_mut(), m.len());
            let ptr = std::ptr::NonNull::new(ptr)
                .ok_or_else(|| io(std::io::ErrorKind::InvalidData.into()))?;
            // SAFETY: the pointer is valid for `len` bytes for as long as `m`, which the
            // buffer owns.
            unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, len, Arc::new(m)) }
        }
        None => arrow_buffer::Buffer::from_vec(Vec::<u8>::new()),
    })
}

impl Spill {
    /// A text column to be written out part by part ([`SpillText`]).
    pub fn text(&self) -> Result<SpillText> {
        self.text_buffered(1 << 20)
    }

    /// `values` written out and handed back mapped from disk (the page cache's to keep or
    /// drop): a list of record numbers a stage reads front to back later.
    pub fn keep_u32(&self, values: &[u32]) -> Result<arrow_buffer::ScalarBuffer<u32>> {
        use std::io::Write;
        if values.is_empty() {
            return Ok(arrow_buffer::ScalarBuffer::from(Vec::new()));
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!(".spill-{}-{n}.u32", self.tag));
        let io = |e: std::io::Error| Error::io(&path, e);
        {
            let file = std::fs::File::create(&path).map_err(io)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            for some in values.chunks(1 << 16) {
                let bytes: Vec<u8> = some.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.write_all(&bytes).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        let buffer = map_written(&path)?;
        if buffer.len() != 4 * values.len() {
            return Err(Error::Read {
                path,
                message: format!(
                    "spilled {} bytes, expected {}",
                    buffer.len(),
                    4 * values.len()
                ),
            });
        }
        // The map starts on a page: aligned for u32.
        Ok(arrow_buffer::ScalarBuffer::new(buffer, 0, values.len()))
    }

    /// A list of numbers to be written out piece by piece as it is made ([`SpillWords`]),
    /// with `buffer` bytes of write buffer, and handed back mapped as [`Spill::keep_u32`]
    /// hands its list.
    pub fn words<T: arrow_buffer::ArrowNativeType>(&self, buffer: usize) -> Result<SpillWords<T>> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!(".spill-{}-{n}.words", self.tag));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(SpillWords {
            out: std::io::BufWriter::with_capacity(buffer, file),
            path,
            len: 0,
            kind: std::marker::PhantomData,
        })
    }

    /// [`Spill::text`] with `buffer` bytes of write buffer per file (many at once: smaller).
    pub fn text_buffered(&self, buffer: usize) -> Result<SpillText> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let paths = ["ends", "bytes", "bits"]
            .map(|p| self.dir.join(format!(".spill-{}-{n}.{p}", self.tag)));
        let create_with = |p: &PathBuf, buffer| -> Result<std::io::BufWriter<std::fs::File>> {
            let f = std::fs::File::create(p).map_err(|e| Error::io(p, e))?;
            Ok(std::io::BufWriter::with_capacity(buffer, f))
        };
        let create = |p: &PathBuf| create_with(p, buffer);
        let mut offsets = create(&paths[0])?;
        // The first value starts at 0.
        std::io::Write::write_all(&mut offsets, &0i32.to_le_bytes())
            .map_err(|e| Error::io(&paths[0], e))?;
        Ok(SpillText {
            offsets,
            bytes: create(&paths[1])?,
            // A bit a value: written out in whole pieces, a small buffer is enough.
            bits: create_with(&paths[2], (buffer / 16).max(1 << 12))?,
            paths,
            at: 0,
            rows: 0,
            valid: arrow_buffer::BooleanBufferBuilder::new(0),
            nulls: 0,
        })
    }

    /// `batches` (of one schema, `schema`), written out as an Arrow IPC file through the page
    /// cache and handed back mapped from it, in the same order: the kernel may page them out
    /// under memory pressure and read them again from disk. The file's name is removed at
    /// once, as [`Spill::keep`]'s.
    pub fn keep_batches(
        &self,
        schema: &Schema,
        batches: &[RecordBatch],
    ) -> Result<Vec<RecordBatch>> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(batches.to_vec());
        }
        let mut out = self.batches(schema)?;
        for b in batches {
            out.push(b)?;
        }
        out.finish()
    }

    /// Batches of `schema` to be written out one by one as they are made ([`SpillBatches`]),
    /// then handed back as [`Spill::keep_batches`] hands them.
    pub fn batches(&self, schema: &Schema) -> Result<SpillBatches> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!(".spill-{}-{n}.arrow", self.tag));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, file);
        let writer = arrow_ipc::writer::FileWriter::try_new(w, schema)
            .map_err(|e| Error::write(&path, e))?;
        Ok(SpillBatches {
            path,
            writer,
            rows: 0,
        })
    }
}

/// Numbers written to disk piece by piece as they are made ([`Spill::words`]), so that no
/// piece is held once written; [`SpillWords::finish`] maps them all back as one list.
pub struct SpillWords<T> {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    len: usize,
    kind: std::marker::PhantomData<T>,
}

impl<T: arrow_buffer::ArrowNativeType> SpillWords<T> {
    /// The next numbers of the list.
    pub fn push(&mut self, values: &[T]) -> Result<()> {
        use arrow_buffer::ToByteSlice;
        std::io::Write::write_all(&mut self.out, values.to_byte_slice())
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += values.len();
        Ok(())
    }

    /// Numbers pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every number pushed, in order, mapped from the file (whose name is removed).
    pub fn finish(self) -> Result<arrow_buffer::ScalarBuffer<T>> {
        let SpillWords { out, path, len, .. } = self;
        drop(
            out.into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?,
        );
        let buffer = map_written(&path)?;
        if len == 0 {
            return Ok(arrow_buffer::ScalarBuffer::from(Vec::new()));
        }
        let want = len * std::mem::size_of::<T>();
        if buffer.len() != want {
            return Err(Error::Read {
                path,
                message: format!("spilled {} bytes, expected {want}", buffer.len()),
            });
        }
        // The map starts on a page: aligned for any number type.
        Ok(arrow_buffer::ScalarBuffer::new(buffer, 0, len))
    }
}

/// A list of numbers a stage makes and changes in place: on the heap, or, in a spilled run, on
/// a file of its own mapped for writing ([`Spill::scratch`]): its pages are then the page
/// cache's to keep, write back and drop, not the process's own memory, so that a list of a
/// number per record (a union-find's parents, each record's cluster) does not grow the run's
/// memory with its records.
pub struct Scratch<T> {
    held: Held<T>,
}

enum Held<T> {
    Heap(Vec<T>),
    /// `len` numbers at the start of the map (page-aligned: aligned for any number type).
    Mapped(memmap2::MmapMut, usize),
}

impl<T: arrow_buffer::ArrowNativeType> Scratch<T> {
    /// `list` on the heap.
    pub fn heap(list: Vec<T>) -> Scratch<T> {
        Scratch {
            held: Held::Heap(list),
        }
    }

    /// `len` zeros: mapped from a file when `spill` is given, else on the heap.
    pub fn zeroed(len: usize, spill: Option<&Spill>) -> Result<Scratch<T>> {
        match spill {
            Some(s) if len > 0 => s.scratch(len),
            _ => Ok(Scratch::heap(vec![T::default(); len])),
        }
    }

    /// Whether the list is on a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.held, Held::Mapped(..))
    }

    /// The list as an Arrow buffer (the map, or the heap list, moved in: no copy).
    pub fn into_buffer(self) -> arrow_buffer::ScalarBuffer<T> {
        match self.held {
            Held::Heap(list) => list.into(),
            Held::Mapped(map, len) => {
                let bytes = len * std::mem::size_of::<T>();
                match std::ptr::NonNull::new(map.as_ptr().cast_mut()) {
                    // SAFETY: the pointer is valid for the map's length (at least `bytes`)
                    // for as long as `map`, which the buffer owns; nothing writes the map
                    // once it is moved in.
                    Some(ptr) => {
                        let buffer = unsafe {
                            arrow_buffer::Buffer::from_custom_allocation(ptr, bytes, Arc::new(map))
                        };
                        arrow_buffer::ScalarBuffer::new(buffer, 0, len)
                    }
                    None => Vec::new().into(),
                }
            }
        }
    }

    /// The list on the heap (copied when mapped).
    pub fn into_vec(self) -> Vec<T> {
        match self.held {
            Held::Heap(list) => list,
            Held::Mapped(..) => self.to_vec(),
        }
    }
}

impl<T: arrow_buffer::ArrowNativeType> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.held {
            Held::Heap(list) => list,
            // SAFETY: the map holds `len` numbers from its (page-aligned) start, made of
            // bytes any pattern of which is a valid number, and lives as long as `self`.
            Held::Mapped(map, len) => unsafe {
                std::slice::from_raw_parts(map.as_ptr().cast::<T>(), *len)
            },
        }
    }
}

impl<T: arrow_buffer::ArrowNativeType> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.held {
            Held::Heap(list) => list,
            // SAFETY: as for reading, and the map is borrowed mutably with `self`.
            Held::Mapped(map, len) => unsafe {
                std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<T>(), *len)
            },
        }
    }
}

impl Spill {
    /// `len` zeros on a file of their own, mapped for writing ([`Scratch`]); the file's name
    /// is removed at once, the map keeps it.
    pub fn scratch<T: arrow_buffer::ArrowNativeType>(&self, len: usize) -> Result<Scratch<T>> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!(".spill-{}-{n}.scratch", self.tag));
        let io = |e: std::io::Error| Error::io(&path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let bytes = len.max(1) * std::mem::size_of::<T>();
        file.set_len(bytes as u64).map_err(io)?;
        // SAFETY: the file was just made by this process in the run's own output folder, at
        // a fresh name that goes next: nothing else maps or writes it.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        Ok(Scratch {
            held: Held::Mapped(map, len),
        })
    }
}

/// Batches written to disk one by one as they are made ([`Spill::batches`]), so that none is
/// held once written; [`SpillBatches::finish`] maps them all back.
pub struct SpillBatches {
    path: PathBuf,
    writer: arrow_ipc::writer::FileWriter<std::io::BufWriter<std::fs::File>>,
    rows: usize,
}

impl SpillBatches {
    /// The next batch.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        self.writer
            .write(batch)
            .map_err(|e| Error::write(&self.path, e))
    }

    /// Every batch pushed, in order, mapped from the file (whose name is removed).
    pub fn finish(mut self) -> Result<Vec<RecordBatch>> {
        let path = self.path;
        let io = |e: std::io::Error| Error::io(&path, e);
        self.writer.finish().map_err(|e| Error::write(&path, e))?;
        self.writer
            .into_inner()
            .map_err(|e| Error::write(&path, e))?
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
        let kept = map_ipc(&path, None, &[], Written::ThisProcess);
        std::fs::remove_file(&path).map_err(io)?;
        let kept = kept?;
        let rows: usize = kept.iter().map(RecordBatch::num_rows).sum();
        if rows != self.rows {
            return Err(Error::Read {
                path,
                message: format!("spilled {} rows, read back {rows}", self.rows),
            });
        }
        Ok(kept)
    }
}

/// Replaces the columns of `table` by the same columns mapped from its state file (written by
/// [`write_standardised`]): the kernel may then page them out under memory pressure and read
/// them again from disk. Only the raw columns `table` still holds are kept. Where the page
/// cache cannot hold the file, stages that read records in an order of their own read them in
/// sweeps instead ([`crate::load::reads_in_sweeps`]).
pub fn map_standardised(run_dir: &Path, table: &mut StdTable) -> Result<()> {
    let path = standardised_path(run_dir, table.kind);
    let mapped = read_standardised_as(run_dir, table.kind, None, Written::ThisProcess)?
        .filter(|m| m.len() == table.len() && m.columns.len() == table.columns.len())
        .ok_or_else(|| Error::Read {
            path: path.clone(),
            message: "the state file just written does not hold the run's records".into(),
        })?;
    table.record_id = mapped.record_id;
    // The sources' codes too, from the file (the same codes, no longer held).
    if mapped.sources == table.sources {
        table.source = mapped.source;
    }
    table.columns = mapped.columns;
    table.raw = mapped
        .raw
        .into_iter()
        .filter(|(field, _)| table.raw.contains_key(field))
        .collect();
    Ok(())
}

/// A kind's state file as read by [`open_standardised`].
struct Opened {
    path: PathBuf,
    batches: Vec<RecordBatch>,
    record_id: StringArray,
    sources: Vec<String>,
    source: arrow_buffer::ScalarBuffer<u16>,
}

/// A kind's state file read: its batches (only the `want`ed columns plus `source` and
/// `record_id`, all when `None`; those named in `as_bytes` as binary, see [`read_ipc_as`]),
/// with the record ids and source codes taken out. `Ok(None)` when the folder has none.
fn open_standardised(
    run_dir: &Path,
    kind: EntityKind,
    want: Option<&[&str]>,
    as_bytes: &[&str],
    written: Written,
) -> Result<Option<Opened>> {
    let want: Option<Vec<&str>> = want.map(|w| {
        let mut w = w.to_vec();
        w.extend(["source", "record_id"]);
        w
    });
    let (path, legacy) = (
        standardised_path(run_dir, kind),
        legacy_standardised_path(run_dir, kind),
    );
    let (path, batches) = if path.exists() {
        let b = map_ipc(&path, want.as_deref(), as_bytes, written)?;
        (path, b)
    } else if legacy.exists() {
        let b = read_parquet(&legacy, want.as_deref())?;
        (legacy, b)
    } else {
        return Ok(None);
    };
    let missing = |c: &str| Error::Schema {
        path: path.clone(),
        column: c.into(),
        message: "not found: not a yiku standardised file".into(),
    };
    let record_id = text_column(&batches, "record_id").ok_or_else(|| missing("record_id"))?;
    // A file this process just wrote from its table keeps the table's list of sources (empty
    // ones too) and its codes as they are.
    let as_written = matches!(written, Written::ThisProcess);
    let (sources, source) = source_codes(&batches, as_written).ok_or_else(|| missing("source"))?;
    Ok(Some(Opened {
        path,
        batches,
        record_id,
        sources,
        source,
    }))
}

/// A kind's standardised records as written by [`standardised_batch`], with only `columns`
/// (all when `None`); `Ok(None)` when the folder has none for this kind.
pub fn read_standardised(
    run_dir: &Path,
    kind: EntityKind,
    columns: Option<&[&str]>,
) -> Result<Option<StdTable>> {
    read_standardised_as(run_dir, kind, columns, Written::Earlier)
}

fn read_standardised_as(
    run_dir: &Path,
    kind: EntityKind,
    columns: Option<&[&str]>,
    written: Written,
) -> Result<Option<StdTable>> {
    let Some(Opened {
        batches,
        record_id,
        sources,
        source,
        ..
    }) = open_standardised(run_dir, kind, columns, &[], written)?
    else {
        return Ok(None);
    };
    let names: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| n != "source" && n != "record_id")
                .collect()
        })
        .unwrap_or_default();
    let mut columns = std::collections::BTreeMap::new();
    let mut raw = std::collections::BTreeMap::new();
    for n in names {
        let Some(a) = text_column(&batches, &n) else {
            continue;
        };
        match n.strip_prefix(RAW_PREFIX) {
            Some(field) => raw.insert(field.to_string(), a),
            None => columns.insert(n, a),
        };
    }
    Ok(Some(StdTable {
        kind,
        sources,
        source,
        record_id,
        columns,
        raw,
        stats: Default::default(),
    }))
}

/// A kind's standardised records for counting over all of them and looking closely at a few:
/// `source` and `record_id` as in [`read_standardised`], the other named `columns` as bytes
/// (see [`read_ipc_as`]); `Ok(None)` when the folder has none for this kind.
pub fn read_standardised_bytes(
    run_dir: &Path,
    kind: EntityKind,
    columns: &[&str],
) -> Result<
    Option<(
        StdTable,
        std::collections::BTreeMap<String, arrow_array::BinaryArray>,
    )>,
> {
    let Some(Opened {
        path,
        batches,
        record_id,
        sources,
        source,
    }) = open_standardised(run_dir, kind, Some(columns), columns, Written::Earlier)?
    else {
        return Ok(None);
    };
    let mut bytes = std::collections::BTreeMap::new();
    for &name in columns {
        let parts: Option<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| b.column_by_name(name).cloned())
            .collect();
        let Some(parts) = parts.filter(|p| !p.is_empty()) else {
            continue;
        };
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let one = match refs.as_slice() {
            [_] => parts[0].clone(),
            _ => arrow_select::concat::concat(&refs).map_err(|e| Error::Read {
                path: path.clone(),
                message: e.to_string(),
            })?,
        };
        let one = arrow_cast::cast(&one, &DataType::Binary).map_err(|e| Error::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(b) = one.as_any().downcast_ref::<arrow_array::BinaryArray>() {
            bytes.insert(name.to_string(), b.clone());
        }
    }
    let table = StdTable {
        kind,
        sources,
        source,
        record_id,
        columns: Default::default(),
        raw: Default::default(),
        stats: Default::default(),
    };
    Ok(Some((table, bytes)))
}

/// The links one kind's clusters were built from, by row of its standardised records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Links {
    /// Model links and clerks' must-links (weight +∞).
    pub edges: Vec<Edge>,
    /// Pairs a clerk decided are different entities.
    pub cannot_link: Vec<(u32, u32)>,
}

impl Links {
    /// Adds a link between records `a` and `b` as a links file has it: its weight and who
    /// decided it (`non_match` makes it a cannot-link pair).
    pub fn push(&mut self, a: u32, b: u32, weight: f64, decided_by: &[u8]) {
        let (left, right) = (a.min(b), a.max(b));
        if decided_by == b"non_match" {
            self.cannot_link.push((left, right));
        } else {
            self.edges.push(Edge {
                left,
                right,
                weight,
            });
        }
    }
}

fn links_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("left", DataType::UInt32, false),
        Field::new("right", DataType::UInt32, false),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("decided_by", DataType::Utf8, false),
    ]))
}

/// Link `i` of `links` (the edges, then the cannot-links) as (left, right, weight, decided by:
/// 0 match, 1 model, 2 non_match).
fn link_row(links: &Links, i: usize) -> (u32, u32, f64, u8) {
    match links.edges.get(i) {
        Some(e) => (
            e.left,
            e.right,
            e.weight,
            if e.weight == f64::INFINITY { 0 } else { 1 },
        ),
        None => {
            let (l, r) = links
                .cannot_link
                .get(i - links.edges.len())
                .copied()
                .unwrap_or_default();
            (l, r, f64::NEG_INFINITY, 2)
        }
    }
}

/// A link's `decided_by` value by its number in [`link_row`].
const DECIDED_BY: [&str; 3] = ["match", "model", "non_match"];

/// The order of the links file's rows: (left, right, decided by), then weight.
fn link_order(a: &(u32, u32, f64, u8), b: &(u32, u32, f64, u8)) -> std::cmp::Ordering {
    (a.0, a.1, a.3)
        .cmp(&(b.0, b.1, b.3))
        .then(a.2.total_cmp(&b.2))
}

/// Whether `links` are in the links file's order already.
fn links_sorted(links: &Links) -> bool {
    let n = links.edges.len() + links.cannot_link.len();
    (1..n).all(|i| link_order(&link_row(links, i - 1), &link_row(links, i)).is_le())
}

/// [`write_links`] for links nothing reads afterwards (a full run's: its store's base links
/// the file). When they need no sorting (a full run's model links come sorted), the columns
/// are made from the back while the edges are given back a slice at a time, so that the
/// edges and the columns (~16 bytes a link each: ~115 MB at 10M person records) are never
/// whole together. The file is the one [`write_links`] writes.
pub fn write_links_once(run_dir: &Path, kind: EntityKind, mut links: Links) -> Result<()> {
    if !links.cannot_link.is_empty() || !links_sorted(&links) {
        return write_links(run_dir, kind, &links);
    }
    let path = links_path(run_dir, kind);
    let n = links.edges.len();
    let (mut left, mut right, mut weight) = (vec![0u32; n], vec![0u32; n], vec![0f64; n]);
    let mut end = n;
    while end > 0 {
        let from = end.saturating_sub(1 << 20);
        for (k, e) in links.edges[from..end].iter().enumerate() {
            (left[from + k], right[from + k], weight[from + k]) = (e.left, e.right, e.weight);
        }
        links.edges.truncate(from);
        links.edges.shrink_to_fit();
        end = from;
    }
    let by = StringArray::from_iter_values(
        weight
            .iter()
            .map(|&w| DECIDED_BY[usize::from(w != f64::INFINITY)]),
    );
    let batch = RecordBatch::try_new(
        links_schema(),
        vec![
            Arc::new(UInt32Array::from(left)),
            Arc::new(UInt32Array::from(right)),
            Arc::new(Float64Array::from(weight)),
            Arc::new(by),
        ],
    )
    .map_err(|e| Error::write(&path, e))?;
    write_ipc(&path, &batch)
}

/// [`write_links_once`] for a spilled full run's model links as columns mapped from disk
/// ([`crate::cluster::edge_columns`]: sorted, no clerk's decisions): the same file, its
/// `decided_by` column written to disk as made too, so that no column is held.
pub fn write_edge_columns(
    run_dir: &Path,
    kind: EntityKind,
    edges: &crate::cluster::EdgeColumns,
    spill: &Spill,
) -> Result<()> {
    let path = links_path(run_dir, kind);
    let n = edges.left.len();
    let mut by = spill.text()?;
    for from in (0..n).step_by(1 << 20) {
        let to = n.min(from + (1 << 20));
        by.push(&StringArray::from_iter_values(
            edges.weight[from..to]
                .iter()
                .map(|&w| DECIDED_BY[usize::from(w != f64::INFINITY)]),
        ))?;
    }
    let batch = RecordBatch::try_new(
        links_schema(),
        vec![
            Arc::new(UInt32Array::new(edges.left.clone(), None)),
            Arc::new(UInt32Array::new(edges.right.clone(), None)),
            Arc::new(Float64Array::new(edges.weight.clone(), None)),
            Arc::new(by.finish()?),
        ],
    )
    .map_err(|e| Error::write(&path, e))?;
    write_ipc(&path, &batch)
}

/// `links_<kind>.arrow` rows, sorted by (left, right) (then clerks' decisions before the
/// model's, then weight): the persistent index looks a record's links up by binary search.
pub fn links_batch(links: &Links) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    // Rows in order of (left, right, decided by: 0 match, 1 model, 2 non_match, weight): the
    // edges, then the cannot-links, as a permutation (4 bytes a row, not a sorted copy of
    // 24): a full run's model links come sorted already.
    let n = links.edges.len() + links.cannot_link.len();
    let row = |i: u32| link_row(links, i as usize);
    // Sorted already (a full run's model links): no permutation at all.
    let sorted = links_sorted(links);
    let order: Option<Vec<u32>> = (!sorted).then(|| {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.par_sort_by(|&a, &b| link_order(&row(a), &row(b)));
        order
    });
    let nth = |k: usize| row(order.as_ref().map_or(k as u32, |o| o[k]));
    RecordBatch::try_new(
        links_schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values((0..n).map(|k| nth(k).0))),
            Arc::new(UInt32Array::from_iter_values((0..n).map(|k| nth(k).1))),
            Arc::new(Float64Array::from_iter_values((0..n).map(|k| nth(k).2))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|k| DECIDED_BY[usize::from(nth(k).3)]),
            )),
        ],
    )
}

/// Reads a kind's links; `Ok(None)` when the folder has none for this kind.
pub fn read_links(run_dir: &Path, kind: EntityKind) -> Result<Option<Links>> {
    let (path, legacy) = (
        links_path(run_dir, kind),
        run_dir.join(format!("links_{}.parquet", kind.as_str())),
    );
    let (path, batches) = if path.exists() {
        let b = read_ipc(&path, None)?;
        (path, b)
    } else if legacy.exists() {
        let b = read_parquet(&legacy, None)?;
        (legacy, b)
    } else {
        return Ok(None);
    };
    let mut links = Links::default();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).map(|c| c.as_any());
        let (Some(l), Some(r), Some(w), Some(by)) = (
            col("left").and_then(|c| c.downcast_ref::<UInt32Array>()),
            col("right").and_then(|c| c.downcast_ref::<UInt32Array>()),
            col("match_weight").and_then(|c| c.downcast_ref::<Float64Array>()),
            col("decided_by").and_then(|c| c.downcast_ref::<StringArray>()),
        ) else {
            return Err(Error::Schema {
                path,
                column: "left/right/match_weight/decided_by".into(),
                message: "missing or of the wrong type: not a yiku links file".into(),
            });
        };
        for i in 0..b.num_rows() {
            let (left, right) = (l.value(i), r.value(i));
            if by.value(i) == "non_match" {
                links.cannot_link.push((left, right));
            } else {
                links.edges.push(Edge {
                    left,
                    right,
                    weight: w.value(i),
                });
            }
        }
    }
    Ok(Some(links))
}

/// Reads the named columns of a Parquet file (all columns when `columns` is `None`); columns
/// the file lacks are left out.
pub fn read_parquet(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    scan_parquet_with(path, columns, usize::MAX, &mut |b| {
        out.push(b.clone());
        Ok(())
    })?;
    Ok(out)
}

/// Shows `f` every batch of the named columns of a Parquet file, in file order, holding only
/// a few row groups at a time (decoded in parallel, two per thread).
pub fn scan_parquet(
    path: &Path,
    columns: &[&str],
    f: &mut dyn FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    let wave = 2 * rayon::current_num_threads().max(1);
    scan_parquet_with(path, Some(columns), wave, f)
}

/// [`scan_parquet`] with `wave` row groups decoded at a time.
fn scan_parquet_with(
    path: &Path,
    columns: Option<&[&str]>,
    wave: usize,
    f: &mut dyn FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use rayon::prelude::*;
    let read_err = |e: &dyn std::fmt::Display| Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
        .map_err(|e| read_err(&e))?;
    let mask = columns
        .map(|names| ProjectionMask::roots(meta.parquet_schema(), positions(meta.schema(), names)));
    let all: Vec<usize> = (0..meta.metadata().num_row_groups()).collect();
    for groups in all.chunks(wave.max(1)) {
        // Row groups are decoded in parallel, then shown in file order.
        let decoded: Vec<Vec<RecordBatch>> = groups
            .par_iter()
            .map(|&g| {
                // Its own handle: clones of one handle share the read position.
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let mut builder =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
                        .with_row_groups(vec![g])
                        .with_batch_size(65536);
                if let Some(m) = &mask {
                    builder = builder.with_projection(m.clone());
                }
                builder
                    .build()
                    .map_err(|e| read_err(&e))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| read_err(&e))
            })
            .collect::<Result<_>>()?;
        for b in decoded.iter().flatten() {
            f(b)?;
        }
    }
    Ok(())
}

/// Positions in `schema` of the columns named (those it has).
fn positions(schema: &Schema, names: &[&str]) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect()
}

/// One column of a set of batches as a single text array (`None` if absent or not text).
/// The `source` column of standardised records as (source names in order of first
/// appearance, each record's index into them); rows are sorted by source name, so the names
/// come sorted. Reads the dictionary codes of [`standardised_batch`] directly, and text too.
fn source_codes(
    batches: &[RecordBatch],
    as_written: bool,
) -> Option<(Vec<String>, arrow_buffer::ScalarBuffer<u16>)> {
    use arrow_array::types::UInt16Type;
    // One batch whose codes already are the sources' order of first appearance (as
    // [`standardised_batch`] writes them), or `as_written` (its dictionary is the table's
    // list of sources, empty ones too): its codes as they are (mapped with the file, no list
    // of a code per record of the run's own).
    if let [b] = batches
        && let Some(dict) = b.column_by_name("source").and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow_array::DictionaryArray<UInt16Type>>()
        })
        && let Some(values) = dict.values().as_any().downcast_ref::<StringArray>()
        && dict.null_count() == 0
        && values.null_count() == 0
        && (1..values.len()).all(|i| (0..i).all(|j| values.value(i) != values.value(j)))
    {
        let keys = dict.keys().values();
        // Each code at most one above the highest before it (the first of each in order), and
        // every value there.
        let mut next = 0usize;
        let in_order = keys.iter().all(|&k| {
            let k = usize::from(k);
            if k == next {
                next += 1;
            }
            k < next
        });
        if as_written || (in_order && next == values.len()) {
            let sources = values.iter().map(|v| v.unwrap_or_default().to_string());
            return Some((sources.collect(), keys.clone()));
        }
    }
    let mut sources: Vec<String> = Vec::new();
    let mut source = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    // Index in `sources` of each dictionary value, once seen.
    let mut seen: Vec<u16> = Vec::new();
    for b in batches {
        let col = b.column_by_name("source")?;
        let Some(dict) = col
            .as_any()
            .downcast_ref::<arrow_array::DictionaryArray<UInt16Type>>()
        else {
            break;
        };
        let values = dict.values().as_any().downcast_ref::<StringArray>()?;
        seen.clear();
        seen.resize(values.len(), u16::MAX);
        for (i, &k) in dict.keys().values().iter().enumerate() {
            let k = usize::from(if dict.is_valid(i) { k } else { 0 });
            let slot = seen.get_mut(k)?;
            if *slot == u16::MAX {
                let name = values.value(k);
                *slot = match sources.iter().rposition(|x| x == name) {
                    Some(s) => s as u16,
                    None => {
                        sources.push(name.to_string());
                        (sources.len() - 1) as u16
                    }
                };
            }
            source.push(*slot);
        }
    }
    if source.len() == batches.iter().map(|b| b.num_rows()).sum::<usize>() {
        return Some((sources, source.into()));
    }
    // Text (files of earlier versions, Parquet).
    let src = text_column(batches, "source")?;
    let (mut sources, mut source) = (Vec::new(), Vec::with_capacity(src.len()));
    for v in src.iter() {
        let v = v.unwrap_or_default();
        let s = match sources.iter().rposition(|x: &String| x == v) {
            Some(s) => s,
            None => {
                sources.push(v.to_string());
                sources.len() - 1
            }
        };
        source.push(s as u16);
    }
    Some((sources, source.into()))
}

pub fn text_column(batches: &[RecordBatch], name: &str) -> Option<StringArray> {
    let parts: Vec<ArrayRef> = batches
        .iter()
        .map(|b| b.column_by_name(name).cloned())
        .collect::<Option<_>>()?;
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    let one: ArrayRef = match refs.len() {
        0 => Arc::new(StringArray::new_null(0)),
        1 => parts[0].clone(),
        _ => arrow_select::concat::concat(&refs).ok()?,
    };
    let one = arrow_cast::cast(&one, &arrow_schema::DataType::Utf8).ok()?;
    one.as_any().downcast_ref::<StringArray>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder for spill files, named after the test, and a spill into it.
    fn spill_in(test: &str) -> (PathBuf, Spill) {
        let dir = std::env::temp_dir().join(format!("yiku-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spill = Spill::new(&dir, "t");
        (dir, spill)
    }

    #[test]
    fn links_are_written_in_order_whatever_order_they_come_in() {
        use crate::cluster::Edge;
        let e = |left, right, weight| Edge {
            left,
            right,
            weight,
        };
        let links = Links {
            // Model links sorted, then a clerk's must-link and a carried link out of order.
            edges: vec![
                e(0, 3, 4.5),
                e(2, 5, 1.0),
                e(4, 6, 2.0),
                e(1, 2, f64::INFINITY),
                e(0, 3, 2.0),
            ],
            cannot_link: vec![(2, 5), (0, 1)],
        };
        let b = links_batch(&links).expect("a batch");
        let col = |i: usize| b.column(i).as_any();
        let left = col(0).downcast_ref::<UInt32Array>().expect("u32");
        let right = col(1).downcast_ref::<UInt32Array>().expect("u32");
        let weight = col(2).downcast_ref::<Float64Array>().expect("f64");
        let by = col(3).downcast_ref::<StringArray>().expect("text");
        let rows: Vec<(u32, u32, f64, &str)> = (0..b.num_rows())
            .map(|i| (left.value(i), right.value(i), weight.value(i), by.value(i)))
            .collect();
        let want = vec![
            (0, 1, f64::NEG_INFINITY, "non_match"),
            (0, 3, 2.0, "model"),
            (0, 3, 4.5, "model"),
            (1, 2, f64::INFINITY, "match"),
            (2, 5, 1.0, "model"),
            (2, 5, f64::NEG_INFINITY, "non_match"),
            (4, 6, 2.0, "model"),
        ];
        assert_eq!(rows, want);
        // Already in order: the same rows.
        let sorted = Links {
            edges: vec![e(0, 3, 2.0), e(0, 3, 4.5), e(4, 6, 2.0)],
            cannot_link: vec![],
        };
        assert_eq!(links_batch(&sorted).expect("a batch").num_rows(), 3);
        // Written once (the edges given back as the columns are made), sorted or not: the
        // file write_links writes.
        let dir = std::env::temp_dir().join(format!("yiku-links-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let many = Links {
            edges: (0..(3 << 19))
                .map(|i| e(i / 3, i + 1, if i % 7 == 0 { f64::INFINITY } else { 0.5 }))
                .collect(),
            cannot_link: vec![],
        };
        let path = links_path(&dir, EntityKind::Person);
        for links in [many, sorted, links] {
            write_links(&dir, EntityKind::Person, &links).expect("written");
            let want = std::fs::read(&path).expect("read");
            write_links_once(&dir, EntityKind::Person, links).expect("written once");
            assert!(std::fs::read(&path).expect("read") == want);
        }
        std::fs::remove_dir_all(&dir).expect("removed");
    }

    #[test]
    fn direct_files_hold_exactly_what_was_written() {
        use std::io::Write;
        // The target folder is on a disk (O_DIRECT taken); the system's temporary folder
        // may be tmpfs (refused: written the usual way). Both must give the same bytes.
        let dirs = [
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            std::env::temp_dir(),
        ];
        for dir in dirs {
            let dir = dir.join(format!("yiku-direct-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let chunk = DirectFile::CHUNK;
            for size in [
                0,
                1,
                4095,
                4096,
                4097,
                chunk - 1,
                chunk,
                chunk + 1,
                2 * chunk + 77,
            ] {
                let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
                let path = dir.join(format!("f{size}"));
                let mut f = DirectFile::create(&path).unwrap();
                // Writes of uneven sizes, as an IPC writer makes.
                let mut rest = &data[..];
                let mut step = 1;
                while !rest.is_empty() {
                    let (head, tail) = rest.split_at(step.min(rest.len()));
                    f.write_all(head).unwrap();
                    rest = tail;
                    step = step * 7 % 100_003 + 1;
                }
                f.finish().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), data, "size {size}");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_spilled_column_is_its_pieces_joined() {
        let (dir, spill) = spill_in("spill");
        let whole = StringArray::from(vec![
            Some("张三"),
            None,
            Some(""),
            Some("110105194912310021"),
            None,
            Some("北京市朝阳区"),
            Some("x"),
            Some("李四"),
            None,
            Some("末"),
        ]);
        // Pieces as a chunked stage makes them, some sliced out of a larger array (offsets
        // not starting at 0, validity bits not on a byte boundary), one empty.
        let pieces = [
            whole.slice(0, 3),
            whole.slice(3, 0),
            whole.slice(3, 4),
            whole.slice(7, 3),
        ];
        let kept = spill.keep(&pieces).unwrap();
        assert_eq!(kept, whole);
        assert_eq!(kept, join(&pieces).unwrap());
        assert_eq!(kept.null_count(), 3);
        // Pieces with no nulls join with none; the offsets run on from piece to piece.
        let plain = [
            StringArray::from(vec!["甲", ""]),
            StringArray::from(vec!["乙丙"]).slice(0, 1),
            StringArray::from(vec!["x", "丁"]).slice(1, 1),
        ];
        let joined = join(&plain).unwrap();
        assert_eq!(joined, StringArray::from(vec!["甲", "", "乙丙", "丁"]));
        assert!(joined.nulls().is_none());
        assert_eq!(joined.value_offsets(), &[0, 3, 3, 9, 12]);
        // The same pieces written one after another as they are made.
        let mut text = spill.text().unwrap();
        for p in &pieces {
            text.push(p).unwrap();
        }
        let streamed = text.finish().unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(streamed.null_count(), 3);
        // Nothing but empty values, and nothing at all.
        let mut text = spill.text().unwrap();
        text.push(&StringArray::from(vec!["", ""])).unwrap();
        assert_eq!(text.finish().unwrap(), StringArray::from(vec!["", ""]));
        assert!(spill.text().unwrap().finish().unwrap().is_empty());
        // Batches of pairs, written out and mapped back in order.
        let batch = |l: Vec<u32>, w: Vec<f64>| {
            RecordBatch::try_from_iter([
                ("left", Arc::new(arrow_array::UInt32Array::from(l)) as _),
                (
                    "match_weight",
                    Arc::new(arrow_array::Float64Array::from(w)) as _,
                ),
            ])
            .unwrap()
        };
        let batches = vec![
            batch(vec![1, 2], vec![0.5, -3.0]),
            batch(vec![], vec![]),
            batch(vec![7], vec![12.25]),
        ];
        let kept = spill.keep_batches(&batches[0].schema(), &batches).unwrap();
        let rows =
            |b: &[RecordBatch]| arrow_select::concat::concat_batches(&b[0].schema(), b).unwrap();
        assert_eq!(rows(&kept), rows(&batches));
        // Without nulls, and a single piece.
        let plain = StringArray::from(vec!["a", "bb", "丙"]);
        assert_eq!(spill.keep(std::slice::from_ref(&plain)).unwrap(), plain);
        // Nothing to write.
        assert!(spill.keep(&[]).unwrap().is_empty());
        // Record numbers, more than one write's worth, and none.
        let numbers: Vec<u32> = (0..200_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        assert_eq!(spill.keep_u32(&numbers).unwrap().to_vec(), numbers);
        assert!(spill.keep_u32(&[]).unwrap().is_empty());
        // No spill file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ipc_round_trip_projects_and_refuses_damage() {
        let dir = std::env::temp_dir().join(format!("yiku-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.arrow");
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(StringArray::from(vec![Some("张三"), None])) as ArrayRef,
            ),
            ("b", Arc::new(UInt32Array::from(vec![1, 2])) as ArrayRef),
        ])
        .unwrap();
        write_ipc(&path, &batch).unwrap();
        let back = read_ipc(&path, None).unwrap();
        assert_eq!(back, vec![batch.clone()]);
        let only_b = read_ipc(&path, Some(&["b"])).unwrap();
        assert_eq!(only_b[0].num_columns(), 1);
        assert_eq!(text_column(&back, "a").unwrap().value(0), "张三");
        // A truncated file is an error that names it, not a crash.
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_ipc(&path, None).unwrap_err().to_string();
            assert!(err.contains("t.arrow"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mapped_scratch_list_is_written_and_read_like_one_on_the_heap() {
        let (dir, spill) = spill_in("scratch");
        let n = 100_000;
        let mut mapped = Scratch::<u64>::zeroed(n, Some(&spill)).unwrap();
        let mut heap = Scratch::<u64>::zeroed(n, None).unwrap();
        assert!(mapped.is_mapped() && !heap.is_mapped());
        assert!(mapped.iter().all(|&x| x == 0));
        for list in [&mut mapped, &mut heap] {
            list.par_iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            list.par_sort_unstable();
        }
        assert_eq!(&mapped[..], &heap[..]);
        // The file's name is gone at once; the map keeps its pages.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let (m, h) = (mapped.into_buffer(), heap.into_buffer());
        assert_eq!(m.len(), n);
        assert_eq!(m, h);
        // Nothing to map: an empty list on the heap.
        let empty = Scratch::<u32>::zeroed(0, Some(&spill)).unwrap();
        assert!(empty.is_empty() && !empty.is_mapped());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_column_spilled_part_by_part_keeps_its_nulls_across_written_bits() {
        let (dir, spill) = spill_in("spilltext");
        // Parts of odd sizes (bits written out mid-byte), past several pieces of bits.
        let n = 3 * SpillText::BITS + 12_345;
        let whole: StringArray = (0..n)
            .map(|i| (i % 7 != 3 && i % 11 != 0).then(|| format!("v{}", i % 1000)))
            .collect();
        let mut text = spill.text_buffered(1 << 16).unwrap();
        let mut at = 0;
        for size in [1usize, 7, 9, 100_003, 262_147, 524_289].iter().cycle() {
            if at >= n {
                break;
            }
            let len = (*size).min(n - at);
            text.push(&whole.slice(at, len)).unwrap();
            at += len;
        }
        let back = text.finish().unwrap();
        assert_eq!(back, whole);
        assert_eq!(back.null_count(), whole.null_count());
        // No nulls: no validity.
        let mut text = spill.text().unwrap();
        text.push(&StringArray::from(vec!["a", "b"])).unwrap();
        assert_eq!(text.finish().unwrap().nulls(), None);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
