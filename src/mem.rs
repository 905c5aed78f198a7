//! Memory helpers the stages share.

use arrow_array::{Array, StringArray};

/// Hints the processor to fetch the cache line at `p` ahead of use; nothing else. Stages that
/// read records in an order unrelated to their layout (a pair's right-hand record, a cluster's
/// members) ask for rows a few steps ahead, so that the waits on memory overlap.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing the program sees and the
    // address comes from a reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Blocks up to this size come from the allocator's heaps rather than from their own `mmap`.
pub const HEAP_BLOCKS_UP_TO: usize = 32 << 20;

/// Tells glibc's allocator to serve blocks up to [`HEAP_BLOCKS_UP_TO`] from its heaps, where
/// freed memory is reused, instead of mapping each one afresh. Stages allocate and free many
/// column buffers of a few MB; mapped ones come back as new pages that the kernel faults in
/// and zeroes one by one. Measured on the 2M-record benchmark: system time 1.4 -> 1.15 s,
/// wall -0.15 s, peak memory unchanged. Elsewhere (musl, other systems) it does nothing.
pub fn reuse_freed_blocks() {
    set_mmap_threshold(HEAP_BLOCKS_UP_TO);
}

/// Blocks above this size get their own `mmap` in a run under a `memory_limit`.
pub const LIMITED_HEAP_BLOCKS_UP_TO: usize = 1 << 20;

/// Narrows [`reuse_freed_blocks`] for a run under a `memory_limit`: blocks over 1 MB go back
/// to the system when freed, so the memory a stage let go of is not still resident (and
/// counted against the limit) while later stages run. Measured on the mapped runs, against
/// the 32 MB of [`HEAP_BLOCKS_UP_TO`]: ~1M records, peak anonymous memory 420 -> 345 MB for
/// +3% wall time (system time 0.75 -> 1.17 s); 10M records 4.1 -> 3.45 GB. glibc's own 128 KB
/// gave 315 MB but +20% wall time.
pub fn return_freed_blocks() {
    set_mmap_threshold(LIMITED_HEAP_BLOCKS_UP_TO);
}

/// The glibc setting that backs its heaps and large blocks with transparent huge pages
/// (`madvise`, 2 MB pages): one page fault and one TLB entry per 2 MB instead of per 4 KB.
pub const HUGE_PAGE_TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Inputs (the job's source files, in bytes) from which a run starts itself again with
/// [`with_huge_pages`] ([`huge_pages_wanted`]). Measured, the same binary, interleaved runs:
/// 10M records in memory (699 MB of Parquet) 27.75 vs 29.76 s median of 3 with them; 2M
/// records (139 MB) 4.95 vs 4.72 s median of 6 *without* them (system time 1.0-1.4 vs 0.7-0.9
/// s: whole 2 MB pages zeroed for blocks that use part of them). Between the two, unmeasured:
/// the line is drawn near their geometric mean.
pub const HUGE_PAGES_FROM_INPUT_BYTES: u64 = 300 << 20;

/// Whether a run over `input_bytes` of source files (`None`: not known) should have glibc's
/// heaps on huge pages: `YIKU_HUGE_PAGES=1` or `0` says so, else inputs of at least
/// [`HUGE_PAGES_FROM_INPUT_BYTES`].
pub fn huge_pages_wanted(input_bytes: Option<u64>) -> bool {
    match std::env::var_os("YIKU_HUGE_PAGES") {
        Some(v) if v == "1" => true,
        Some(v) if v == "0" => false,
        _ => input_bytes.is_some_and(|b| b >= HUGE_PAGES_FROM_INPUT_BYTES),
    }
}

/// Starts the program again, once, with glibc's heaps on transparent huge pages
/// ([`HUGE_PAGE_TUNABLE`]), which glibc reads only at start. Measured on 10M records in memory
/// (release build, 2 threads, 4 runs each, interleaved): 29.0 -> 25.2 s median (standardise,
/// load and golden records fault in fewer pages), peak memory the same (4.7-4.8 GB); the
/// spilled run's anonymous peak the same (0.80-0.84 GB); on 2M records slower (see
/// [`HUGE_PAGES_FROM_INPUT_BYTES`]), so `main` asks only for large runs
/// ([`huge_pages_wanted`]). Does nothing when the setting is already there or off glibc; if
/// the program cannot be started again it simply goes on as it is. Call it in `main` before
/// any thread starts.
pub fn with_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if tunables.contains("glibc.malloc.hugetlb") {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let tunables = if tunables.is_empty() {
            HUGE_PAGE_TUNABLE.to_string()
        } else {
            format!("{tunables}:{HUGE_PAGE_TUNABLE}")
        };
        // `exec` returns only when the program could not be started again: go on as is.
        let _ = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", tunables)
            .exec();
    }
}

/// Hands the free memory at the top and in the middle of glibc's heaps back to the system
/// (`malloc_trim`): what many small blocks freed by a stage would otherwise keep resident.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory of the allocator's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// While alive, a thread that calls [`trim_heap`] every [`TrimEvery::PERIOD`]: in a run under
/// a `memory_limit`, the small blocks every stage frees (a megabyte or less: columns of a
/// batch, per-block lists) would otherwise stay resident in glibc's heaps, ~0.3-0.5 GB at
/// 10M records, and count against the limit in later stages.
pub struct TrimEvery {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TrimEvery {
    pub const PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

    pub fn start() -> TrimEvery {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("yiku-trim".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Self::PERIOD)
                {
                    trim_heap();
                }
            })
            .ok();
        TrimEvery { stop, thread }
    }
}

impl Drop for TrimEvery {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_mmap_threshold(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a setting of the allocator; it may be called at any
    // time, and a refused setting (return value 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes as libc::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// The rows of `wanted` in row order, to be read once each and front to back: the distinct
/// rows, ascending, and where each of `wanted` is among them.
pub fn in_row_order(wanted: &[u32]) -> (Vec<u32>, Vec<u32>) {
    use rayon::prelude::*;
    let mut order: Vec<u64> = wanted
        .par_iter()
        .enumerate()
        .map(|(k, &row)| (u64::from(row) << 32) | k as u64)
        .collect();
    order.par_sort_unstable();
    let mut rows: Vec<u32> = Vec::new();
    let mut at = vec![0u32; wanted.len()];
    for &o in &order {
        let row = (o >> 32) as u32;
        if rows.last() != Some(&row) {
            rows.push(row);
        }
        at[(o & u64::from(u32::MAX)) as usize] = (rows.len() - 1) as u32;
    }
    (rows, at)
}

/// Asks the kernel to read the pages of `col` well ahead of use and to drop them soon after
/// (`MADV_SEQUENTIAL`): for a column mapped from a file that is about to be read front to
/// back. Advice only: where it is refused (or `col` is in memory), reads are as they were.
pub fn read_ahead(col: &StringArray) {
    for bytes in buffers(col).into_iter().flatten() {
        advise(bytes, Advice::Sequential);
    }
}

/// Asks the kernel to read the pages of `col` now (`MADV_WILLNEED`): for a column mapped from
/// a file that is about to be read at random all over. Advice only, as [`read_ahead`].
pub fn will_need(col: &StringArray) {
    for bytes in buffers(col).into_iter().flatten() {
        advise(bytes, Advice::WillNeed);
    }
}

/// The buffers of a text column: its bytes, offsets and validity.
fn buffers(col: &StringArray) -> [Option<&[u8]>; 3] {
    [
        Some(col.value_data()),
        Some(col.offsets().inner().inner().as_slice()),
        col.nulls().map(|n| n.buffer().as_slice()),
    ]
}

/// How the pages of a mapped column are going to be read.
#[derive(Clone, Copy)]
enum Advice {
    Sequential,
    WillNeed,
}

fn advise(bytes: &[u8], advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = bytes.as_ptr() as usize;
        let aligned = start - start % PAGE;
        let len = bytes.len() + (start - aligned);
        if bytes.is_empty() {
            return;
        }
        // SAFETY: advice about pages the slice lies on (rounded out to whole pages): it changes
        // how the kernel reads them ahead, never what they hold.
        unsafe {
            let advice = match advice {
                Advice::Sequential => libc::MADV_SEQUENTIAL,
                Advice::WillNeed => libc::MADV_WILLNEED,
            };
            libc::madvise(aligned as *mut libc::c_void, len, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (bytes, advice);
}

/// Text of `value(i)` for each `Some(i)` of `picks`, null for `None`: one pass for the sizes,
/// one to copy, no builder growing or concatenating.
pub fn text_at<'a>(
    picks: &[Option<u32>],
    value: impl Fn(usize) -> &'a str,
) -> Result<StringArray, arrow_schema::ArrowError> {
    texts(picks.len(), |k| picks[k].map(|i| value(i as usize)))
}

/// Text of `value(k)` for `k` in `0..n`, made as [`text_at`] does.
pub fn text_of<'a>(
    n: usize,
    value: impl Fn(usize) -> &'a str,
) -> Result<StringArray, arrow_schema::ArrowError> {
    texts(n, |k| Some(value(k)))
}

/// Text of `value(k)` for `k` in `0..n`, made on every thread: the sizes in parallel blocks,
/// then each block copies its values into its own stretch of the one buffer.
pub fn par_text_of<'a>(
    n: usize,
    value: impl Fn(usize) -> &'a str + Sync,
) -> Result<StringArray, arrow_schema::ArrowError> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    let overflow = |n: usize| arrow_schema::ArrowError::OffsetOverflowError(n);
    let blocks = n.div_ceil(BLOCK);
    let range = |b: usize| b * BLOCK..((b + 1) * BLOCK).min(n);
    // Each value's end within its block, then the blocks' starts.
    let mut offsets: Vec<i32> = vec![0; n + 1];
    let sizes: Vec<usize> = offsets[1..]
        .par_chunks_mut(BLOCK)
        .enumerate()
        .map(|(b, ends)| {
            let mut len = 0usize;
            for (end, k) in ends.iter_mut().zip(range(b)) {
                len += value(k).len();
                *end = i32::try_from(len).map_err(|_| overflow(len))?;
            }
            Ok(len)
        })
        .collect::<Result<_, arrow_schema::ArrowError>>()?;
    let mut starts = Vec::with_capacity(blocks);
    let mut total = 0usize;
    for s in &sizes {
        starts.push(total);
        total += s;
    }
    let base = |b: usize| i32::try_from(starts[b]).map_err(|_| overflow(starts[b]));
    i32::try_from(total).map_err(|_| overflow(total))?;
    offsets[1..]
        .par_chunks_mut(BLOCK)
        .enumerate()
        .try_for_each(|(b, ends)| {
            let base = base(b)?;
            ends.iter_mut().for_each(|e| *e += base);
            Ok::<(), arrow_schema::ArrowError>(())
        })?;
    let mut bytes: Vec<u8> = vec![0; total];
    let mut parts: Vec<&mut [u8]> = Vec::with_capacity(blocks);
    let mut rest = bytes.as_mut_slice();
    for &s in &sizes {
        let (part, tail) = rest.split_at_mut(s);
        parts.push(part);
        rest = tail;
    }
    parts.into_par_iter().enumerate().for_each(|(b, part)| {
        let mut at = 0;
        for k in range(b) {
            let v = value(k).as_bytes();
            if let Some(dst) = part.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
            at += v.len();
        }
    });
    let offsets = arrow_buffer::OffsetBuffer::new(offsets.into());
    // Checked, not assumed: `value` is called twice per row and must give the same text.
    StringArray::try_new(offsets, bytes.into(), None)
}

fn texts<'a>(
    n: usize,
    value: impl Fn(usize) -> Option<&'a str>,
) -> Result<StringArray, arrow_schema::ArrowError> {
    let overflow = |n: usize| arrow_schema::ArrowError::OffsetOverflowError(n);
    // Each value asked for once: they can cost (golden records trim addresses) and lie
    // anywhere in memory. 16 bytes a row, for the blocks of rows this is called with.
    let values: Vec<Option<&'a str>> = (0..n).map(value).collect();
    let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
    offsets.push(0);
    let (mut len, mut nulls) = (0usize, 0usize);
    for v in &values {
        match v {
            Some(v) => len += v.len(),
            None => nulls += 1,
        }
        offsets.push(i32::try_from(len).map_err(|_| overflow(len))?);
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(len);
    for v in values.iter().flatten() {
        bytes.extend_from_slice(v.as_bytes());
    }
    let nulls = (nulls > 0)
        .then(|| arrow_buffer::BooleanBuffer::collect_bool(n, |k| values[k].is_some()).into());
    // SAFETY: the offsets start at 0 and never decrease (each adds a value's length).
    let offsets = unsafe { arrow_buffer::OffsetBuffer::new_unchecked(offsets.into()) };
    // SAFETY: the bytes are whole `&str` values one after another, and the offsets mark
    // exactly where each starts and ends (a null's value is empty).
    Ok(unsafe { StringArray::new_unchecked(offsets, bytes.into(), nulls) })
}

/// The values of `col` at `rows`, in that order: what `take` does, with the memory of rows
/// further on requested ahead of time. The rows of a block lie all over the table, and a
/// plain gather waits on memory twice per value (its offsets, then its bytes).
pub fn gather(col: &StringArray, rows: &[u32]) -> Result<StringArray, arrow_schema::ArrowError> {
    const AHEAD: usize = 16;
    let offsets = col.value_offsets();
    let data = col.value_data();
    let span = |r: u32| {
        let r = r as usize;
        match (offsets.get(r), offsets.get(r + 1)) {
            (Some(&s), Some(&e)) => Ok((s as usize, e as usize)),
            _ => Err(arrow_schema::ArrowError::InvalidArgumentError(format!(
                "row {r} out of {}",
                col.len()
            ))),
        }
    };
    let mut spans = Vec::with_capacity(rows.len());
    for (k, &r) in rows.iter().enumerate() {
        if let Some(o) = rows
            .get(k + 2 * AHEAD)
            .and_then(|&a| offsets.get(a as usize))
        {
            prefetch(o);
        }
        spans.push(span(r)?);
    }
    let total: usize = spans.iter().map(|&(s, e)| e - s).sum();
    let mut values: Vec<u8> = Vec::with_capacity(total);
    let mut out: Vec<i32> = Vec::with_capacity(rows.len() + 1);
    out.push(0);
    for (k, &(s, e)) in spans.iter().enumerate() {
        if let Some(b) = spans.get(k + AHEAD).and_then(|&(a, _)| data.get(a)) {
            prefetch(b);
        }
        values.extend_from_slice(data.get(s..e).unwrap_or_default());
        out.push(
            i32::try_from(values.len())
                .map_err(|_| arrow_schema::ArrowError::OffsetOverflowError(values.len()))?,
        );
    }
    let nulls = col.nulls().map(|n| {
        arrow_buffer::BooleanBuffer::collect_bool(rows.len(), |k| n.is_valid(rows[k] as usize))
            .into()
    });
    // SAFETY: the offsets start at 0 and never decrease (each adds a value's length).
    let offsets = unsafe { arrow_buffer::OffsetBuffer::new_unchecked(out.into()) };
    // SAFETY: the values are whole values of a valid string array, one after another, and
    // the offsets mark exactly where each starts and ends.
    Ok(unsafe { StringArray::new_unchecked(offsets, values.into(), nulls) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_row_order_are_distinct_and_placed() {
        let wanted = [7u32, 3, 7, 0, 3, 9];
        let (rows, at) = in_row_order(&wanted);
        assert_eq!(rows, [0, 3, 7, 9]);
        let back: Vec<u32> = at.iter().map(|&k| rows[k as usize]).collect();
        assert_eq!(back, wanted);
    }
    use arrow_array::UInt32Array;

    #[test]
    fn par_text_of_is_text_of() {
        // Several blocks, a last one part full, empty values and multi-byte text.
        let values: Vec<String> = (0..150_001)
            .map(|i| match i % 5 {
                0 => String::new(),
                1 => "主索引".repeat(i % 4),
                _ => format!("P{i}"),
            })
            .collect();
        let value = |k: usize| values[k].as_str();
        assert_eq!(
            par_text_of(values.len(), value).unwrap(),
            text_of(values.len(), value).unwrap()
        );
        assert_eq!(par_text_of(0, value).unwrap().len(), 0);
    }

    #[test]
    fn gather_is_take() {
        let values: Vec<Option<String>> = (0..1000)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                _ => Some("张三李四".repeat(i % 5) + &i.to_string()),
            })
            .collect();
        let col = StringArray::from(values);
        let mut x = 12345u64;
        let rows: Vec<u32> = (0..3000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u32 % 1000
            })
            .collect();
        let want = arrow_select::take::take(&col, &UInt32Array::from(rows.clone()), None).unwrap();
        let got = gather(&col, &rows).unwrap();
        assert_eq!(&got as &dyn Array, want.as_ref());
        assert!(gather(&col, &[1000]).is_err());
        let plain = StringArray::from(vec!["a", "bc"]);
        assert_eq!(
            gather(&plain, &[1, 1, 0]).unwrap(),
            StringArray::from(vec!["bc", "bc", "a"])
        );
    }
}
