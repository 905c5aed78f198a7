//! Stage 3: block. Consumes: a [`StdTable`] and the blocking rules (each an equality on one or
//! more standardised columns). Produces: [`Candidates`], the union of the pairs the rules find,
//! each pair once, with the first rule that found it; and per-rule counts and the oversized
//! blocks that were skipped. Cost: a parallel sort per rule, then O(pairs).
//!
//! INVARIANTS: every pair has `left < right`; pairs are sorted by (`left`, `right`) and
//! unique. A pair belongs to the first rule whose key both records share in a block that was
//! not skipped; later rules skip it, so no global set of pairs is ever built.
//!
//! Delta runs pass a `focus` (the records that are new or changed tonight): only the blocks
//! holding a focused record are gathered, and only pairs with a focused record are kept. Block
//! sizes, skips and rule attribution are decided over all records, so the pairs found are
//! exactly the full run's pairs that involve a focused record.

use std::hash::{BuildHasher, Hasher};

use arrow_array::Array;
use arrow_buffer::ScalarBuffer;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Mode;
use crate::mask::mask;
use crate::standardise::StdTable;

/// A block that was larger than the cap and so was not expanded into pairs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkippedBlock {
    pub rule: String,
    /// The block's key, masked.
    pub key: String,
    pub records: u64,
    /// Pairs it would have produced.
    pub pairs: u64,
}

/// Counts for one blocking rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleStats {
    pub rule: String,
    /// Pairs this rule found first.
    pub pairs: u64,
    /// Blocks (distinct keys) with at least two records.
    pub blocks: u64,
    pub largest_block: u64,
    pub skipped: Vec<SkippedBlock>,
}

/// The candidate pairs of one kind.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub left: ScalarBuffer<u32>,
    pub right: ScalarBuffer<u32>,
    /// Index of the rule that found the pair.
    pub rule: ScalarBuffer<u8>,
    /// Bit `r` set when the pair shares rule `r`'s key (in a block that was not skipped).
    pub agree: ScalarBuffer<u32>,
    pub stats: Vec<RuleStats>,
}

/// What [`block_with`] does beyond [`block`].
#[derive(Default)]
pub struct Options<'a> {
    /// Blocks known to be larger than the table holds of them: `sizes(rule, key hash)` is the
    /// block's size over the whole index (a delta run's table holds only the members of the
    /// blocks it expands, not of those it knows to be too large).
    pub sizes: Option<&'a (dyn Fn(usize, u64) -> Option<u64> + Sync)>,
    /// Handed each rule's key list in rule order, as soon as it is made: the records with a
    /// key, sorted by (key hash, record), as (the top 32 bits of each key hash, the records).
    /// What the persistent index ([`crate::store`]) finds a record's block with. The records
    /// are blocking's own list, shared (not copied).
    pub keyed: Option<&'a mut dyn FnMut(ScalarBuffer<u32>, ScalarBuffer<u32>)>,
    /// Where each rule's sorted records and blocks go until its pairs are found (~12 bytes a
    /// record per rule, read front to back once): to disk, mapped back, for a run under a
    /// `memory_limit` that spills; in memory otherwise (or when writing them fails).
    pub spill: Option<&'a crate::state::Spill>,
}

impl Candidates {
    pub fn len(&self) -> usize {
        self.left.len()
    }

    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }
}

/// Display name of a rule: its columns joined by `+`.
pub fn rule_name(rule: &[String]) -> String {
    rule.join("+")
}

/// Key hash of every record for one rule; 0 where a key column is null.
pub fn rule_keys(table: &StdTable, rule: &[String]) -> Vec<u64> {
    rule_keys_of(table, rule, 0..table.len())
}

/// [`rule_keys`] of the records in `rows` only.
fn rule_keys_of(table: &StdTable, rule: &[String], rows: std::ops::Range<usize>) -> Vec<u64> {
    let cols: Vec<_> = rule.iter().filter_map(|c| table.column(c)).collect();
    if cols.len() != rule.len() {
        return vec![0; rows.len()];
    }
    rows.into_par_iter()
        .map(|i| {
            key_hash(
                cols.iter()
                    .map(|c| c.is_valid(i).then(|| c.value(i).as_bytes())),
            )
        })
        .collect()
}

/// The key hash of one record for a rule, given the values of the rule's columns in order:
/// 0 when one is null (no key), never 0 otherwise. [`rule_keys`] for one record, from bytes
/// wherever they are kept.
pub fn key_hash<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5949_4b55).build_hasher();
    for v in values {
        let Some(v) = v else { return 0 };
        h.write(v);
        h.write_u8(0x1f);
    }
    h.finish().max(1)
}

/// The records `keep` accepts, sorted by (key, record), and for each place in that order
/// whether a new key starts there and (with `tags`) the top 32 bits of its key. Keys are
/// hashes, so their top bits spread the records evenly over buckets: one counting pass over
/// `keys` sizes the buckets, a second places every record in its bucket, then each bucket
/// (small enough for the cache) is sorted on its own, in parallel, by (key, record) pairs made
/// for it alone: 4 bytes a record in the list instead of 16 for a list of (key, record) pairs.
fn sort_keyed(keys: &[u64], keep: impl Fn(usize) -> bool + Sync, tags: bool) -> Sorted {
    const BITS: u32 = 12;
    let bucket = |k: u64| (k >> (64 - BITS)) as usize;
    let mut start = vec![0usize; (1 << BITS) + 1];
    for (i, &k) in keys.iter().enumerate() {
        if keep(i) {
            start[bucket(k) + 1] += 1;
        }
    }
    for b in 0..1 << BITS {
        start[b + 1] += start[b];
    }
    let total = start[1 << BITS];
    let mut sorted = Sorted {
        order: vec![0u32; total],
        starts: vec![false; total],
        tags: vec![0u32; if tags { total } else { 0 }],
    };
    let mut fill = start.clone();
    for (i, &k) in keys.iter().enumerate() {
        if keep(i) {
            let b = bucket(k);
            sorted.order[fill[b]] = i as u32;
            fill[b] += 1;
        }
    }
    drop(fill);
    // Each bucket's places in the three lists.
    let mut parts = Vec::with_capacity(1 << BITS);
    let (mut order, mut starts, mut tag) = (
        sorted.order.as_mut_slice(),
        sorted.starts.as_mut_slice(),
        sorted.tags.as_mut_slice(),
    );
    for b in 0..1 << BITS {
        let len = start[b + 1] - start[b];
        let (o, o_rest) = order.split_at_mut(len);
        let (s, s_rest) = starts.split_at_mut(len);
        let (t, t_rest) = tag.split_at_mut(if tags { len } else { 0 });
        parts.push((o, s, t));
        (order, starts, tag) = (o_rest, s_rest, t_rest);
    }
    parts.into_par_iter().for_each(|(o, s, t)| {
        let mut pairs: Vec<(u64, u32)> = o.iter().map(|&i| (keys[i as usize], i)).collect();
        pairs.sort_unstable();
        for (p, &(k, i)) in pairs.iter().enumerate() {
            o[p] = i;
            s[p] = p == 0 || pairs[p - 1].0 != k;
            if let Some(slot) = t.get_mut(p) {
                *slot = (k >> 32) as u32;
            }
        }
    });
    sorted
}

/// The records with a key of one rule in key order ([`sort_keyed`]).
struct Sorted {
    order: Vec<u32>,
    /// Whether a new key starts at each place of `order`.
    starts: Vec<bool>,
    /// The top 32 bits of the key at each place of `order` (when asked for).
    tags: Vec<u32>,
}

/// The blocks of one rule's sorted records (`order`, with `starts` where a key starts): the
/// (start, end) in `order` of every block of 2 to `max_block` records, one after another (under
/// 2^32 records), the largest block's size, and the blocks over the cap, skipped. A block's
/// size is `size(start, end)` (more than its records here when known from outside).
fn runs_of(
    table: &StdTable,
    rule: &[String],
    order: &[u32],
    starts: &[bool],
    max_block: usize,
    size: impl Fn(usize, usize) -> usize,
) -> (Vec<u32>, u64, Vec<SkippedBlock>) {
    let mut runs: Vec<u32> = Vec::new();
    let mut skipped = Vec::new();
    let mut largest = 0u64;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && !starts[end] {
            end += 1;
        }
        let size = size(start, end);
        largest = largest.max(size as u64);
        if size > max_block {
            let first = order[start] as usize;
            let key: Vec<String> = rule
                .iter()
                .filter_map(|c| table.column(c).map(|a| mask(a.value(first))))
                .collect();
            skipped.push(SkippedBlock {
                rule: rule_name(rule),
                key: key.join("+"),
                records: size as u64,
                pairs: (size as u64) * (size as u64 - 1) / 2,
            });
        } else if size > 1 {
            runs.extend([start as u32, end as u32]);
        }
        start = end;
    }
    (runs, largest, skipped)
}

/// Finds the candidate pairs of a table; with a `focus`, only pairs with a focused record.
pub fn block(
    table: &StdTable,
    rules: &[Vec<String>],
    max_block: usize,
    mode: Mode,
    focus: Option<&[bool]>,
) -> Candidates {
    block_with(table, rules, max_block, mode, focus, Options::default())
}

/// [`block`], with block sizes known from outside the table and the sorted keys kept.
pub fn block_with(
    table: &StdTable,
    rules: &[Vec<String>],
    max_block: usize,
    mode: Mode,
    focus: Option<&[bool]>,
    mut opts: Options,
) -> Candidates {
    let n = table.len();
    let keep_keyed = opts.keyed.is_some();
    let sizes = opts.sizes;
    let to_disk = |list: Vec<u32>| -> ScalarBuffer<u32> {
        match opts.spill.map(|s| s.keep_u32(&list)) {
            Some(Ok(mapped)) => mapped,
            _ => ScalarBuffer::from(list),
        }
    };
    let focused = |i: u32| focus.is_none_or(|f| f.get(i as usize).copied().unwrap_or(false));
    // Phase 1: keys and blocks per rule; records in skipped blocks are in none of the rule's
    // blocks, so that later rules do not think this rule produced their pairs.
    let phase1 = |r: usize, rule: &Vec<String>| {
        let k = rule_keys(table, rule);
        // Keys of the focused records: only their blocks are gathered.
        let touched: Option<std::collections::HashSet<u64, foldhash::fast::FixedState>> = focus
            .map(|_| {
                (0..n as u32)
                    .filter(|&i| focused(i) && k[i as usize] != 0)
                    .map(|i| k[i as usize])
                    .collect()
            });
        let sorted = sort_keyed(
            &k,
            |i| {
                let ki = k[i];
                ki != 0 && touched.as_ref().is_none_or(|t| t.contains(&ki))
            },
            keep_keyed,
        );
        drop(touched);
        let Sorted {
            order,
            starts,
            tags,
        } = sorted;
        let size_of = |start: usize, end: usize| {
            sizes
                .and_then(|f| f(r, k[order[start] as usize]))
                .map_or(end - start, |s| (s as usize).max(end - start))
        };
        let (runs, largest, skipped) = runs_of(table, rule, &order, &starts, max_block, size_of);
        drop((k, starts));
        let stats = RuleStats {
            rule: rule_name(rule),
            pairs: 0,
            blocks: runs.len() as u64 / 2,
            largest_block: largest,
            skipped,
        };
        // What phase 2 needs of the keys is which records share one: the block each record
        // is in (1 + its place among the blocks), 0 for none (no key, a skipped block, a key
        // no other record has). Half the size of the key hashes.
        let mut block_of = vec![0u32; n];
        for (b, run) in runs.chunks_exact(2).enumerate() {
            for &i in &order[run[0] as usize..run[1] as usize] {
                block_of[i as usize] = b as u32 + 1;
            }
        }
        let (order, runs) = (to_disk(order), to_disk(runs));
        let keyed = keep_keyed.then(|| (ScalarBuffer::from(tags), order.clone()));
        (block_of, runs, order, stats, keyed)
    };
    // Phase 2 checks a pair by both records' source (unless every pair is wanted) and every
    // rule's block: laid out record by record, [source, blocks...], those are one cache line
    // per record instead of one per rule. Each rule's blocks go in as phase 1 makes them (not
    // kept per rule, then copied).
    let sourced = usize::from(mode != Mode::Both);
    let width = rules.len() + sourced;
    let mut rows = vec![0u32; n * width];
    const ROWS: usize = 1 << 12;
    if sourced == 1 {
        rows.par_chunks_mut(width * ROWS)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (j, row) in chunk.chunks_mut(width).enumerate() {
                    row[0] = u32::from(table.source[c * ROWS + j]);
                }
            });
    }
    let mut blocks_of: Vec<ScalarBuffer<u32>> = Vec::with_capacity(rules.len());
    let mut order_of: Vec<ScalarBuffer<u32>> = Vec::with_capacity(rules.len());
    let mut stats = Vec::with_capacity(rules.len());
    // One rule at a time, each sort in parallel: two side by side held two sorts' working
    // memory (24 bytes a record each: ~0.5 GB at 10M records) for no faster a stage.
    for (r, rule) in rules.iter().enumerate() {
        let (k, runs, order, st, kept) = phase1(r, rule);
        rows.par_chunks_mut(width * ROWS)
            .zip(k.par_chunks(ROWS))
            .for_each(|(chunk, k)| {
                for row in chunk.chunks_mut(width).zip(k) {
                    row.0[r + sourced] = *row.1;
                }
            });
        drop(k);
        blocks_of.push(runs);
        order_of.push(order);
        stats.push(st);
        if let (Some(sink), Some((tags, rows))) = (opts.keyed.as_mut(), kept) {
            sink(tags, rows);
        }
    }
    // Phase 2: pairs per rule, minus those an earlier rule found.
    let row_of = |i: u32| {
        let at = i as usize * width;
        &rows[at..at + width]
    };
    // (left, right, rules agreed): the rule that found a pair is the first it agrees on.
    let mut all: Vec<(u32, u32, u32)> = Vec::new();
    // Each rule's blocks are let go once its pairs are found.
    for (r, (runs, order)) in blocks_of.into_iter().zip(order_of).enumerate() {
        // Blocks a thousand at a time: most hold two records, too little work for a task.
        let found: Vec<Vec<(u32, u32, u32)>> = runs
            .par_chunks(2 * 1024)
            .map(|some| {
                let mut out = Vec::new();
                for (z, run) in some.chunks_exact(2).enumerate() {
                    let (s, e) = (run[0], run[1]);
                    // The records of a block a few blocks on, asked for ahead of use.
                    if let (Some(&s2), Some(&e2)) = (some.get(2 * z + 16), some.get(2 * z + 17)) {
                        for &m in &order[s2 as usize..e2.min(s2 + 4) as usize] {
                            crate::mem::prefetch(&rows[m as usize * width]);
                        }
                    }
                    let members = &order[s as usize..e as usize];
                    for (x, &a) in members.iter().enumerate() {
                        for &b in &members[x + 1..] {
                            let (a, b) = (a.min(b), a.max(b));
                            if focus.is_some() && !focused(a) && !focused(b) {
                                continue;
                            }
                            let (ra, rb) = (row_of(a), row_of(b));
                            let wanted = match mode {
                                Mode::Dedupe => ra[0] == rb[0],
                                Mode::Link => ra[0] != rb[0],
                                Mode::Both => true,
                            };
                            if !wanted {
                                continue;
                            }
                            let (ka, kb) = (&ra[sourced..], &rb[sourced..]);
                            // Bit q: the two records are in one of rule q's blocks.
                            let agree =
                                ka.iter().zip(kb).enumerate().fold(0u32, |m, (q, (x, y))| {
                                    if *x != 0 && x == y { m | 1 << q } else { m }
                                });
                            // Found by an earlier rule already.
                            if agree & ((1u32 << r) - 1) == 0 {
                                out.push((a, b, agree));
                            }
                        }
                    }
                }
                out
            })
            .collect();
        let pairs: usize = found.iter().map(Vec::len).sum();
        stats[r].pairs = pairs as u64;
        // Exactly as large as needed: grown in place (a large block is remapped, not copied).
        all.reserve_exact(pairs);
        for f in found {
            all.extend(f);
        }
    }
    // Only the pairs are needed from here: the blocks go before the pairs are sorted and laid
    // out as columns (at 10M records they are ~0.4 GB).
    drop(rows);
    all.par_sort_unstable();
    into_columns(all, stats)
}

/// Records a spilled run sorts at once for one rule: a rule's records are split by the top
/// bits of their key hash into as many partitions as it takes (a power of two), each a
/// complete set of the rule's blocks, written to disk and sorted one after another.
const PARTITION_RECORDS: usize = 1 << 21;

/// Pairs go to disk in buckets of left-hand records, at least this many records a bucket and
/// no more than [`MAX_BUCKETS`] buckets.
const BUCKET_RECORDS: usize = 1 << 16;
const MAX_BUCKETS: usize = 256;

/// [`block`] for a full run under a `memory_limit` that spills, in partitions by key hash:
/// what it holds does not grow with the records but for the pairs' columns it returns.
///
/// Per rule, one pass hashes the keys a million records at a time and writes each record
/// (key hash, record) to its partition's files; each partition is then mapped back and sorted
/// on its own, its blocks expanded into pairs, and every pair written as
/// (left, right, the rule's bit) to the bucket of its left-hand record. Once every rule is
/// done, each bucket is mapped back, sorted, and the copies of a pair that several rules found
/// become one pair whose bits are the rules it agrees on: the same pairs, rules and bits as
/// [`block`] finds (a pair agrees on a rule exactly when that rule's blocks hold it). The key
/// lists go to `keyed` as mapped files.
pub fn block_spilled(
    table: &StdTable,
    rules: &[Vec<String>],
    max_block: usize,
    mode: Mode,
    spill: &crate::state::Spill,
    keyed: Option<&mut dyn FnMut(ScalarBuffer<u32>, ScalarBuffer<u32>)>,
) -> crate::error::Result<Candidates> {
    block_partitioned(
        table,
        rules,
        (max_block, mode),
        spill,
        keyed,
        (PARTITION_RECORDS, BUCKET_RECORDS),
    )
}

/// [`block_spilled`] with the partition and bucket sizes given (small ones in tests).
fn block_partitioned(
    table: &StdTable,
    rules: &[Vec<String>],
    (max_block, mode): (usize, Mode),
    spill: &crate::state::Spill,
    mut keyed: Option<&mut dyn FnMut(ScalarBuffer<u32>, ScalarBuffer<u32>)>,
    (partition_records, bucket_records): (usize, usize),
) -> crate::error::Result<Candidates> {
    const CHUNK: usize = 1 << 20;
    const PIECE: usize = 1 << 16;
    const BUFFER: usize = 1 << 16;
    let n = table.len();
    if u32::try_from(n).is_err() || rules.len() > 32 {
        return Ok(block(table, rules, max_block, mode, None));
    }
    let bits = n
        .div_ceil(partition_records.max(1))
        .next_power_of_two()
        .trailing_zeros();
    let part = |k: u64| {
        if bits == 0 {
            0
        } else {
            (k >> (64 - bits)) as usize
        }
    };
    let shift = bucket_records
        .max(n.div_ceil(MAX_BUCKETS))
        .next_power_of_two()
        .trailing_zeros();
    let mut buckets = (0..(n >> shift) + 1)
        .map(|_| spill.words::<u32>(BUFFER))
        .collect::<crate::error::Result<Vec<_>>>()?;
    let wanted = |a: u32, b: u32| {
        let source = |i: u32| table.source.get(i as usize).copied();
        match mode {
            Mode::Dedupe => source(a) == source(b),
            Mode::Link => source(a) != source(b),
            Mode::Both => true,
        }
    };
    let mut stats = Vec::with_capacity(rules.len());
    for (r, rule) in rules.iter().enumerate() {
        let mut keys_out = (0..1usize << bits)
            .map(|_| spill.words::<u64>(BUFFER))
            .collect::<crate::error::Result<Vec<_>>>()?;
        let mut rows_out = (0..1usize << bits)
            .map(|_| spill.words::<u32>(BUFFER))
            .collect::<crate::error::Result<Vec<_>>>()?;
        // A million records at a time, split in pieces by the threads, written in order.
        for from in (0..n).step_by(CHUNK) {
            let to = n.min(from + CHUNK);
            let split = |s: usize| {
                let rows = s..to.min(s + PIECE);
                let keys = rule_keys_of(table, rule, rows.clone());
                let mut split: Vec<(Vec<u64>, Vec<u32>)> = vec![Default::default(); 1 << bits];
                for (k, i) in keys.into_iter().zip(rows) {
                    if k != 0 {
                        let q = &mut split[part(k)];
                        q.0.push(k);
                        q.1.push(i as u32);
                    }
                }
                split
            };
            let pieces: Vec<Vec<(Vec<u64>, Vec<u32>)>> = (from..to)
                .into_par_iter()
                .step_by(PIECE)
                .map(split)
                .collect();
            for piece in pieces {
                for (q, (k, i)) in piece.iter().enumerate() {
                    keys_out[q].push(k)?;
                    rows_out[q].push(i)?;
                }
            }
        }
        let (mut tags_all, mut rows_all) = match keyed.is_some() {
            true => (
                Some(spill.words::<u32>(BUFFER)?),
                Some(spill.words::<u32>(BUFFER)?),
            ),
            false => (None, None),
        };
        let mut st = RuleStats {
            rule: rule_name(rule),
            pairs: 0,
            blocks: 0,
            largest_block: 0,
            skipped: Vec::new(),
        };
        let bit = 1u32 << r;
        for (keys, rows) in keys_out.into_iter().zip(rows_out) {
            let (keys, rows) = (keys.finish()?, rows.finish()?);
            let Sorted {
                mut order,
                starts,
                tags,
            } = sort_keyed(&keys, |_| true, tags_all.is_some());
            drop(keys);
            // Places in the partition to records (the partition's records ascend: the same
            // order by key and record).
            order.par_iter_mut().for_each(|x| *x = rows[*x as usize]);
            drop(rows);
            if let (Some(t), Some(o)) = (tags_all.as_mut(), rows_all.as_mut()) {
                t.push(&tags)?;
                o.push(&order)?;
            }
            drop(tags);
            let (runs, largest, skipped) =
                runs_of(table, rule, &order, &starts, max_block, |a, b| b - a);
            st.largest_block = st.largest_block.max(largest);
            st.skipped.extend(skipped);
            drop(starts);
            st.blocks += runs.len() as u64 / 2;
            let found: Vec<Vec<u32>> = runs
                .par_chunks(2 * 1024)
                .map(|some| {
                    let mut out = Vec::new();
                    for run in some.chunks_exact(2) {
                        let members = &order[run[0] as usize..run[1] as usize];
                        for (x, &a) in members.iter().enumerate() {
                            for &b in &members[x + 1..] {
                                let (a, b) = (a.min(b), a.max(b));
                                if wanted(a, b) {
                                    out.extend([a, b, bit]);
                                }
                            }
                        }
                    }
                    out
                })
                .collect();
            drop((order, runs));
            for f in found {
                for p in f.chunks_exact(3) {
                    if let Some(b) = buckets.get_mut((p[0] >> shift) as usize) {
                        b.push(p)?;
                    }
                }
            }
        }
        if let (Some(sink), Some(t), Some(o)) = (keyed.as_mut(), tags_all, rows_all) {
            sink(t.finish()?, o.finish()?);
        }
        stats.push(st);
    }
    // Each bucket's pairs sorted and merged, a few buckets at a time (as many as threads),
    // appended in bucket order (sorted by (left, right) throughout) to columns on disk.
    let (mut left, mut right) = (spill.words::<u32>(BUFFER)?, spill.words::<u32>(BUFFER)?);
    let (mut rule, mut agree) = (spill.words::<u8>(BUFFER)?, spill.words::<u32>(BUFFER)?);
    let mut counts = vec![0u64; rules.len()];
    let mut buckets = buckets.into_iter();
    let wave = rayon::current_num_threads().max(1);
    loop {
        let some = buckets
            .by_ref()
            .take(wave)
            .map(|b| b.finish())
            .collect::<crate::error::Result<Vec<_>>>()?;
        if some.is_empty() {
            break;
        }
        let merged: Vec<Vec<(u32, u32, u32)>> = some
            .into_par_iter()
            .map(|words| {
                let mut v: Vec<(u32, u32, u32)> =
                    words.chunks_exact(3).map(|w| (w[0], w[1], w[2])).collect();
                drop(words);
                v.sort_unstable();
                v.dedup_by(|later, kept| {
                    let same = (later.0, later.1) == (kept.0, kept.1);
                    if same {
                        kept.2 |= later.2;
                    }
                    same
                });
                v
            })
            .collect();
        for v in merged {
            let first = |m: u32| m.trailing_zeros() as u8;
            for &(_, _, m) in &v {
                if let Some(k) = counts.get_mut(first(m) as usize) {
                    *k += 1;
                }
            }
            left.push(&v.iter().map(|p| p.0).collect::<Vec<_>>())?;
            right.push(&v.iter().map(|p| p.1).collect::<Vec<_>>())?;
            rule.push(&v.iter().map(|p| first(p.2)).collect::<Vec<_>>())?;
            agree.push(&v.iter().map(|p| p.2).collect::<Vec<_>>())?;
        }
    }
    for (st, k) in stats.iter_mut().zip(counts) {
        st.pairs = k;
    }
    Ok(Candidates {
        left: left.finish()?,
        right: right.finish()?,
        rule: rule.finish()?,
        agree: agree.finish()?,
        stats,
    })
}

/// The sorted pairs as columns, filled from the back while the pairs are given back a slice
/// at a time: the two are never held whole together (at 10M records ~100 MB each).
fn into_columns(mut all: Vec<(u32, u32, u32)>, stats: Vec<RuleStats>) -> Candidates {
    const SLICE: usize = 1 << 20;
    let len = all.len();
    let (mut left, mut right, mut rule, mut agree) =
        (vec![0; len], vec![0; len], vec![0; len], vec![0; len]);
    let mut end = len;
    while end > 0 {
        let from = end.saturating_sub(SLICE);
        for (k, &(a, b, m)) in all[from..end].iter().enumerate() {
            let at = from + k;
            left[at] = a;
            right[at] = b;
            rule[at] = m.trailing_zeros() as u8;
            agree[at] = m;
        }
        all.truncate(from);
        all.shrink_to_fit();
        end = from;
    }
    Candidates {
        left: left.into(),
        right: right.into(),
        rule: rule.into(),
        agree: agree.into(),
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EntityKind;

    fn table(cols: &[(&str, &[Option<&str>])]) -> StdTable {
        let n = cols[0].1.len();
        StdTable {
            kind: EntityKind::Person,
            sources: vec!["s".into(), "t".into()],
            source: (0..n).map(|i| (i % 2) as u16).collect(),
            record_id: (0..n).map(|i| Some(i.to_string())).collect(),
            columns: cols
                .iter()
                .map(|(name, v)| (name.to_string(), v.iter().copied().collect()))
                .collect(),
            raw: Default::default(),
            stats: Default::default(),
        }
    }

    #[test]
    fn keyed_sort_is_a_sort() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let v: Vec<(u64, u32)> = (0..200_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Many repeated keys, as blocks have.
                ((x % 50_000).wrapping_mul(0x9E37_79B9_7F4A_7C15), i)
            })
            .collect();
        let keys: Vec<u64> = v.iter().map(|&(k, _)| k).collect();
        let keep = |i: usize| !i.is_multiple_of(3);
        let mut want: Vec<(u64, u32)> = v.into_iter().filter(|&(_, i)| keep(i as usize)).collect();
        want.sort_unstable();
        let check = |got: Sorted, want: &[(u64, u32)], tags: bool| {
            let order: Vec<u32> = want.iter().map(|&(_, i)| i).collect();
            let starts: Vec<bool> = (0..want.len())
                .map(|p| p == 0 || want[p - 1].0 != want[p].0)
                .collect();
            assert_eq!(got.order, order);
            assert_eq!(got.starts, starts);
            match tags {
                true => {
                    let t: Vec<u32> = want.iter().map(|&(k, _)| (k >> 32) as u32).collect();
                    assert_eq!(got.tags, t);
                }
                false => assert!(got.tags.is_empty()),
            }
        };
        // Many records share a key (a block).
        assert!(want.windows(2).filter(|w| w[0].0 == w[1].0).count() > want.len() / 4);
        check(sort_keyed(&keys, keep, true), &want, true);
        check(sort_keyed(&keys, keep, false), &want, false);
        // Few records.
        let few = &keys[..1000];
        let mut want: Vec<(u64, u32)> = (0..1000u32).map(|i| (few[i as usize], i)).collect();
        want.sort_unstable();
        check(sort_keyed(few, |_| true, true), &want, true);
    }

    #[test]
    fn the_key_lists_handed_over_are_the_stores_own() {
        let a = [Some("x"), None, Some("x"), Some("y"), Some("z"), Some("y")];
        let b = [Some("1"), Some("2"), Some("1"), None, Some("2"), Some("3")];
        let t = table(&[("a", &a), ("b", &b)]);
        let rules = vec![
            vec!["a".to_string()],
            vec!["b".to_string()],
            vec!["a".to_string(), "b".to_string()],
        ];
        let dir = std::env::temp_dir().join(format!("yiku-block-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let spill = crate::state::Spill::new(&dir, "t");
        let plain = block(&t, &rules, 10, Mode::Both, None);
        // One thread or several, the lists in memory or on disk: the lists come in rule
        // order, and the pairs are the same.
        for (threads, spilled) in [(1, false), (3, false), (1, true), (3, true)] {
            let mut got = Vec::new();
            let mut sink = |tags: ScalarBuffer<u32>, rows: ScalarBuffer<u32>| {
                got.push((tags.to_vec(), rows.to_vec()))
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            let found = pool.install(|| match spilled {
                true => block_spilled(&t, &rules, 10, Mode::Both, &spill, Some(&mut sink))
                    .expect("blocking in partitions"),
                false => block_with(
                    &t,
                    &rules,
                    10,
                    Mode::Both,
                    None,
                    Options {
                        sizes: None,
                        keyed: Some(&mut sink),
                        spill: None,
                    },
                ),
            });
            assert_eq!(pairs(&found), pairs(&plain), "{threads} threads");
            assert!(!found.is_empty());
            assert_eq!(
                got,
                crate::store::key_lists(&t, &rules),
                "{threads} threads"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partitions_find_the_pairs_blocking_at_once_finds() {
        // Keys from small alphabets: blocks of every size, some over the cap, and many pairs
        // that several rules find.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let n = 3000;
        let mut col = |m: u64, nulls: u64| -> Vec<Option<String>> {
            (0..n)
                .map(|_| (next(100) >= nulls).then(|| next(m).to_string()))
                .collect()
        };
        let (a, b, c) = (col(900, 10), col(40, 0), col(2000, 50));
        fn view(v: &[Option<String>]) -> Vec<Option<&str>> {
            v.iter().map(|s| s.as_deref()).collect()
        }
        let t = table(&[("a", &view(&a)), ("b", &view(&b)), ("c", &view(&c))]);
        let rules = vec![
            vec!["a".to_string()],
            vec!["b".to_string(), "c".to_string()],
            vec!["b".to_string()],
            vec!["c".to_string()],
        ];
        let dir = std::env::temp_dir().join(format!("yiku-parts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let spill = crate::state::Spill::new(&dir, "t");
        for mode in [Mode::Both, Mode::Dedupe, Mode::Link] {
            let plain = block(&t, &rules, 60, mode, None);
            assert!(plain.stats[2].skipped.len() > 1, "some blocks skipped");
            assert!(plain.agree.iter().any(|m| m.count_ones() > 1));
            for (threads, sizes) in [
                (1, (100, 64)),
                (3, (100, 64)),
                (2, (7, 1)),
                (2, (5000, 4096)),
            ] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a pool");
                let mut got = Vec::new();
                let mut sink = |tags: ScalarBuffer<u32>, rows: ScalarBuffer<u32>| {
                    got.push((tags.to_vec(), rows.to_vec()))
                };
                let found = pool
                    .install(|| {
                        block_partitioned(&t, &rules, (60, mode), &spill, Some(&mut sink), sizes)
                    })
                    .expect("blocking in partitions");
                let at = format!("{mode:?}, {threads} threads, sizes {sizes:?}");
                assert_eq!(pairs(&found), pairs(&plain), "{at}");
                assert_eq!(found.stats, plain.stats, "{at}");
                assert_eq!(got, crate::store::key_lists(&t, &rules), "{at}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn pairs(c: &Candidates) -> Vec<(u32, u32, u8, u32)> {
        (0..c.len())
            .map(|k| (c.left[k], c.right[k], c.rule[k], c.agree[k]))
            .collect()
    }

    #[test]
    fn dedupe_and_link_split_both_by_source() {
        let a = [Some("x"), Some("x"), Some("x"), Some("y"), Some("y"), None];
        let b = [Some("1"), None, Some("1"), Some("2"), Some("2"), Some("2")];
        let t = table(&[("a", &a), ("b", &b)]);
        let rules = vec![vec!["a".to_string()], vec!["b".to_string()]];
        let of = |mode| pairs(&block(&t, &rules, 10, mode, None));
        let (both, dedupe, link) = (of(Mode::Both), of(Mode::Dedupe), of(Mode::Link));
        let source = |i: u32| t.source[i as usize];
        assert!(dedupe.iter().all(|p| source(p.0) == source(p.1)));
        assert!(link.iter().all(|p| source(p.0) != source(p.1)));
        assert!(!dedupe.is_empty() && !link.is_empty());
        let mut joined = [dedupe, link].concat();
        joined.sort_unstable();
        assert_eq!(joined, both);
    }

    #[test]
    fn a_focus_keeps_exactly_the_full_runs_pairs_with_a_focused_record() {
        let a = [
            Some("x"),
            Some("x"),
            Some("x"),
            Some("y"),
            Some("y"),
            None,
            Some("z"),
            Some("z"),
            Some("z"),
            Some("z"),
        ];
        let b = [
            Some("1"),
            Some("2"),
            Some("1"),
            Some("1"),
            Some("1"),
            Some("1"),
            Some("2"),
            Some("2"),
            Some("3"),
            Some("2"),
        ];
        let t = table(&[("a", &a), ("b", &b)]);
        let rules = vec![vec!["a".to_string()], vec!["b".to_string()]];
        // Blocks of 4 or more are skipped: rule `a`'s z block and rule `b`'s 1 block.
        let full = block(&t, &rules, 3, Mode::Both, None);
        assert_eq!(full.stats[0].skipped.len(), 1);
        for focused in [vec![3usize], vec![0, 7], vec![5], vec![]] {
            let mut focus = vec![false; t.len()];
            for &i in &focused {
                focus[i] = true;
            }
            let part = block(&t, &rules, 3, Mode::Both, Some(&focus));
            let want: Vec<_> = pairs(&full)
                .into_iter()
                .filter(|p| focus[p.0 as usize] || focus[p.1 as usize])
                .collect();
            assert_eq!(pairs(&part), want, "focus {focused:?}");
        }
    }
}
