//! Stage 7b: golden records. Consumes: the standardised records and their master ids.
//! Produces: one row per master id with the best value of every field, chosen by the field's
//! survivorship rule, and the source and record each value came from. Cost: O(records).
//!
//! Values are the standardised ones (simplified names, 18-digit IDs, ISO dates), but addresses
//! are shown as their source wrote them. ID numbers
//! and USCCs are taken only when their check digit passes. Ties go to the more authoritative
//! source (the kind's `source_priority`, then the job's source order), then to the record
//! that sorts first, so the result does not depend on thread count or input order.
//!
//! A delta run computes every row again from the merged records rather than keeping the
//! previous run's rows of the clusters that did not change: the result is the same, and
//! reading and interleaving the previous file took longer (0.66 vs 0.51 s for a 1% delta on
//! 1.08M records).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use std::collections::HashMap;

use arrow_schema::{ArrowError, DataType, Field, Schema};
use rayon::prelude::*;
use std::ops::Range;

use crate::config::{FieldType, KindPlan, Survivorship};
use crate::standardise::StdTable;

/// The column holding a field's usable values: the valid-only column for identifiers.
fn value_column(field: &str, ty: FieldType) -> String {
    match ty {
        FieldType::IdNumber | FieldType::Uscc => format!("{field}_valid"),
        _ => field.to_string(),
    }
}

/// The fields whose raw values (as loaded) golden records show: addresses, chosen by their
/// standardised form but shown as written. Other raw columns are not needed here.
pub fn raw_fields(plan: &KindPlan) -> Vec<String> {
    plan.fields
        .iter()
        .filter(|(_, ty)| **ty == FieldType::Address)
        .map(|(f, _)| f.clone())
        .collect()
}

/// Schema metadata key holding the survivorship settings a golden file was made with.
const SETTINGS_KEY: &str = "yiku:golden_settings";

/// The survivorship settings of a kind, as text, kept in the golden file's metadata.
fn settings(plan: &KindPlan, job_sources: &[String]) -> String {
    format!(
        "rules={:?};priority={:?};sources={:?}",
        plan.golden, plan.source_priority, job_sources
    )
}

/// The fields of a kind that get golden values: every field but `updated_at` that the table
/// has a value column for.
fn golden_fields<'p>(table: &StdTable, plan: &'p KindPlan) -> Vec<(&'p String, &'p FieldType)> {
    plan.fields
        .iter()
        .filter(|(f, ty)| *f != "updated_at" && table.column(&value_column(f, **ty)).is_some())
        .collect()
}

/// Schema of a kind's golden records: `master_id`, `records`, then per field its value, source
/// and record id; the survivorship settings in the metadata.
pub fn schema(table: &StdTable, plan: &KindPlan, job_sources: &[String]) -> Arc<Schema> {
    let mut fields = vec![
        Field::new("master_id", DataType::Utf8, false),
        Field::new("records", DataType::UInt32, false),
    ];
    for (field, _) in golden_fields(table, plan) {
        for name in [
            field.to_string(),
            format!("{field}_source"),
            format!("{field}_record_id"),
        ] {
            fields.push(Field::new(name, DataType::Utf8, true));
        }
    }
    let metadata = HashMap::from([(SETTINGS_KEY.to_string(), settings(plan, job_sources))]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The memory, per record of the run, that a partition of [`Reads::Partitions`] may take: each
/// partition reads the golden columns once (~200 bytes a person record: ~7 sweeps of them).
/// Measured on 10M person records under a 1.6 GB cap (one run each): 16 bytes, golden records
/// 31 s and the stage's peak anonymous memory 0.76 GB; 32 bytes, 20.5 s and 0.94 GB (the run's
/// peak was 0.91 GB elsewhere); 48 bytes, 21 s and 1.09 GB. Within the spilled estimate
/// ([`crate::load::SPILLED_BYTES_PER_RECORD`]) either way.
pub const PARTITION_BYTES_PER_RECORD: u64 = 32;

/// How golden records read the records' columns ([`golden_records`]); the rows are the same
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// A block of [`crate::output::ROWS_PER_BLOCK`] clusters at a time: for records in memory,
    /// where reading them in any order costs little.
    Blocks,
    /// Clusters in partitions (of whole blocks) whose members' values take at most about this
    /// many bytes (at least one block each): every column is read once per partition, front to
    /// back (the partition's rows only, in row order) and with read-ahead, and the values are
    /// picked from what was read. For records mapped from disk that the page cache cannot
    /// hold: a cluster's members lie anywhere in the table, so each block read pages from all
    /// over the file, at random, and block after block read them again (10M records under a
    /// 1.6 GB cap: 250 s of a 408 s run).
    Partitions(u64),
}

/// A field that gets golden values: its value column, the column its values are shown from
/// (addresses: as written; otherwise the value column) and its survivorship rule.
struct Golden<'t> {
    col: &'t StringArray,
    shown: Option<&'t StringArray>,
    rule: Survivorship,
    /// No record has a value (a field no source maps): nothing to read or pick.
    empty: bool,
}

/// The columns a partition of clusters reads, for its member rows in row order; `at[j]` is
/// where the partition's `j`-th member (clusters one after another) is among them.
struct Taken {
    at: Vec<usize>,
    source: Vec<u16>,
    record_id: StringArray,
    updated: Option<StringArray>,
    /// Per field: its value column and, where it has one, the column it is shown from.
    fields: Vec<Option<(StringArray, Option<StringArray>)>>,
}

impl Taken {
    /// Reads the values of `rows` (member rows, clusters one after another), in row order
    /// (`in_row_order`: a sweep of the columns) or as they come (the members of a cluster
    /// then lie side by side, and picking from them reads memory in order: for records in
    /// memory that is faster; 2M records: golden records 0.90-1.21 s vs 1.21-1.32 s in row
    /// order. Putting a partition's values back in cluster order block by block saved ~1.5 of
    /// ~20 s under a 1.6 GB cap, for ~110 MB more at 10M records: not done).
    fn read(
        table: &StdTable,
        fields: &[Golden],
        rows: &[u32],
        in_row_order: bool,
    ) -> Result<Taken, ArrowError> {
        let (sorted, at) = match in_row_order {
            true => {
                let (sorted, at) = crate::mem::in_row_order(rows);
                (sorted, at.into_iter().map(|k| k as usize).collect())
            }
            false => (rows.to_vec(), (0..rows.len()).collect()),
        };
        let gather = |col: &StringArray| crate::mem::gather(col, &sorted);
        let updated = table.column("updated_at");
        let ((record_id, updated), (source, fields)) = rayon::join(
            || rayon::join(|| gather(&table.record_id), || updated.map(gather)),
            || {
                rayon::join(
                    || sorted.iter().map(|&i| table.source[i as usize]).collect(),
                    || {
                        fields
                            .par_iter()
                            .map(|f| match f.empty {
                                true => Ok(None),
                                false => {
                                    Ok(Some((gather(f.col)?, f.shown.map(gather).transpose()?)))
                                }
                            })
                            .collect::<Result<Vec<_>, ArrowError>>()
                    },
                )
            },
        );
        Ok(Taken {
            at,
            source,
            record_id: record_id?,
            updated: updated.transpose()?,
            fields: fields?,
        })
    }
}

impl Taken {
    /// [`Taken::read`] in row order, from the partition's values already read (`read`: the
    /// columns golden records read, in order, each holding the values of `rows` in row order:
    /// [`to_buckets`]).
    fn of_buckets(
        table: &StdTable,
        fields: &[Golden],
        rows: &[u32],
        read: Vec<StringArray>,
    ) -> Result<Taken, ArrowError> {
        let (sorted, at) = crate::mem::in_row_order(rows);
        let missing = || ArrowError::InvalidArgumentError("internal: a bucket is missing".into());
        let mut read = read.into_iter();
        let record_id = read.next().ok_or_else(missing)?;
        let updated = match table.column("updated_at") {
            Some(_) => Some(read.next().ok_or_else(missing)?),
            None => None,
        };
        let mut taken_fields = Vec::with_capacity(fields.len());
        for f in fields {
            taken_fields.push(match f.empty {
                true => None,
                false => {
                    let col = read.next().ok_or_else(missing)?;
                    let shown = match f.shown {
                        Some(_) => Some(read.next().ok_or_else(missing)?),
                        None => None,
                    };
                    Some((col, shown))
                }
            });
        }
        if record_id.len() != sorted.len() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "internal: a bucket of {} values for {} records",
                record_id.len(),
                sorted.len()
            )));
        }
        Ok(Taken {
            at: at.into_iter().map(|k| k as usize).collect(),
            source: sorted.iter().map(|&i| table.source[i as usize]).collect(),
            record_id,
            updated,
            fields: taken_fields,
        })
    }
}

/// One sweep of `col`, front to back: the values of each of `parts` partitions (`part_of`
/// a row), in row order, written to files of their own and mapped back.
fn to_buckets(
    col: &StringArray,
    parts: usize,
    part_of: &(dyn Fn(usize) -> usize + Sync),
    spill: &crate::state::Spill,
) -> crate::error::Result<Vec<StringArray>> {
    const ROWS: usize = 1 << 16;
    let mut out = (0..parts)
        .map(|_| spill.text_buffered(1 << 18))
        .collect::<crate::error::Result<Vec<_>>>()?;
    for from in (0..col.len()).step_by(ROWS) {
        let to = (from + ROWS).min(col.len());
        let mut built: Vec<arrow_array::builder::StringBuilder> = (0..parts)
            .map(|_| arrow_array::builder::StringBuilder::new())
            .collect();
        for i in from..to {
            if let Some(b) = built.get_mut(part_of(i)) {
                b.append_option(col.is_valid(i).then(|| col.value(i)));
            }
        }
        for (o, mut b) in out.iter_mut().zip(built) {
            o.push(&b.finish())?;
        }
    }
    out.into_iter().map(|o| o.finish()).collect()
}

/// The bytes a record's values take in `cols`.
fn bytes_per_record(cols: &[&StringArray], records: usize) -> u64 {
    let bytes: usize = cols
        .iter()
        .map(|c| c.value_data().len() + 4 * c.len() + c.len().div_ceil(8))
        .sum();
    (bytes / records.max(1)) as u64 + 1
}

/// Golden records of one kind, handed to `sink` in batches of
/// [`crate::output::ROWS_PER_BLOCK`] clusters (of [`schema`]) so that they need not all be
/// held at once; returns the rows. `job_sources` lists the kind's sources in job order;
/// `groups` lists each cluster's records; `reads` says how the records are read and, for
/// [`Reads::Partitions`] with a spill, that each partition's values come from bucket files
/// made in one sweep of each column (written there and mapped back) instead of a sweep of
/// every column per partition: 10M records under a 1.6 GB cap 21.7 -> 17.4 s, under 1.0 GB
/// 25.2 -> 15.4 s, and the partition's values are page cache, not the heap. With a spill (a
/// run that spills), blocks hold as many row groups as there are threads instead of four
/// (each block's members' values and golden rows, ~0.2 GB at four, are the stage's own
/// memory); the file is the same.
pub fn golden_records(
    table: &StdTable,
    plan: &KindPlan,
    job_sources: &[String],
    master_id: &StringArray,
    groups: &crate::cluster::Groups,
    reads: (Reads, Option<&crate::state::Spill>),
    sink: &mut (dyn FnMut(&RecordBatch) -> crate::error::Result<()> + Send),
) -> crate::error::Result<u64> {
    let block = match reads.1 {
        Some(_) => rayon::current_num_threads().clamp(1, 4) * crate::output::ROWS_PER_GROUP,
        None => crate::output::ROWS_PER_BLOCK,
    };
    golden_in_blocks(
        table,
        plan,
        job_sources,
        master_id,
        groups,
        reads,
        block,
        sink,
    )
}

/// [`golden_records`] in batches of `block` clusters.
#[allow(clippy::too_many_arguments)]
fn golden_in_blocks(
    table: &StdTable,
    plan: &KindPlan,
    job_sources: &[String],
    master_id: &StringArray,
    groups: &crate::cluster::Groups,
    (reads, buckets): (Reads, Option<&crate::state::Spill>),
    block: usize,
    sink: &mut (dyn FnMut(&RecordBatch) -> crate::error::Result<()> + Send),
) -> crate::error::Result<u64> {
    let arrow = |e: ArrowError| crate::error::Error::Data {
        stage: "golden",
        message: e.to_string(),
    };
    // Authority of each source index of the table: lower is more authoritative.
    let rank: Vec<usize> = table
        .sources
        .iter()
        .map(|s| {
            plan.source_priority
                .iter()
                .chain(job_sources)
                .position(|x| x == s)
                .unwrap_or(usize::MAX)
        })
        .collect();
    let n_clusters = groups.len();
    let schema = schema(table, plan, job_sources);
    let mut fields = Vec::new();
    for (field, ty) in golden_fields(table, plan) {
        let col = table
            .column(&value_column(field, *ty))
            .ok_or_else(|| arrow(ArrowError::SchemaError(field.to_string())))?;
        fields.push(Golden {
            col,
            shown: match ty {
                FieldType::Address => table.raw.get(field),
                _ => None,
            },
            rule: plan
                .golden
                .get(field)
                .copied()
                .unwrap_or(Survivorship::MostFrequent),
            empty: col.null_count() == col.len(),
        });
    }
    // Clusters in blocks (one batch each), blocks in partitions (one read of the records each).
    let start = |c: usize| groups.start[c] as usize;
    let block = block.max(1);
    let blocks: Vec<Range<usize>> = (0..n_clusters)
        .step_by(block)
        .map(|a| a..(a + block).min(n_clusters))
        .collect();
    // The columns golden records read, in the order `Taken` keeps them.
    let mut cols: Vec<&StringArray> = vec![&table.record_id];
    cols.extend(table.column("updated_at"));
    for f in fields.iter().filter(|f| !f.empty) {
        cols.push(f.col);
        cols.extend(f.shown);
    }
    let partitions: Vec<Range<usize>> = match reads {
        Reads::Blocks => (0..blocks.len()).map(|k| k..k + 1).collect(),
        Reads::Partitions(limit) => {
            for col in &cols {
                crate::mem::read_ahead(col);
            }
            let per_record = bytes_per_record(&cols, table.len());
            let mut partitions: Vec<Range<usize>> = Vec::new();
            for (k, b) in blocks.iter().enumerate() {
                match partitions.last_mut() {
                    Some(p)
                        if (start(b.end) - start(blocks[p.start].start)) as u64 * per_record
                            <= limit =>
                    {
                        p.end = k + 1
                    }
                    _ => partitions.push(k..k + 1),
                }
            }
            partitions
        }
    };
    // With buckets, one sweep of each column hands every partition its members' values, in
    // row order, each partition's to files of its own, mapped back.
    let mut bucketed: Vec<Vec<StringArray>> = match (reads, buckets) {
        (Reads::Partitions(_), Some(spill)) if partitions.len() > 1 => {
            let first_cluster: Vec<usize> =
                partitions.iter().map(|p| blocks[p.start].start).collect();
            let part_of = |i: usize| {
                let c = groups.cluster_of[i] as usize;
                first_cluster.partition_point(|&f| f <= c).saturating_sub(1)
            };
            let per_column = cols
                .par_iter()
                .map(|col| to_buckets(col, partitions.len(), &part_of, spill))
                .collect::<crate::error::Result<Vec<Vec<StringArray>>>>()?;
            // Per partition, its columns in order.
            let mut per_part: Vec<Vec<StringArray>> = vec![Vec::new(); partitions.len()];
            for column in per_column {
                for (p, a) in column.into_iter().enumerate() {
                    per_part[p].push(a);
                }
            }
            per_part
        }
        _ => Vec::new(),
    };
    // In memory (no spill), a block is made while the one before is handed to `sink` (encoded
    // and written): the stretches where one of them leaves a core idle overlap. A spilled run
    // makes and hands on one block at a time (two blocks' rows would be its peak).
    let overlap = buckets.is_none();
    let mut made: Option<RecordBatch> = None;
    for (k, part) in partitions.into_iter().enumerate() {
        let blocks = &blocks[part];
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            continue;
        };
        let (from, to) = (start(first.start), start(last.end));
        let rows = &groups.member[from..to];
        let in_row_order = matches!(reads, Reads::Partitions(_));
        let read = bucketed.get_mut(k).map(std::mem::take);
        let make_taken = || match read {
            Some(read) => Taken::of_buckets(table, &fields, rows, read),
            None => Taken::read(table, &fields, rows, in_row_order),
        };
        let taken = hand_on_while(&mut made, sink, overlap, make_taken)?.map_err(arrow)?;
        for block in blocks {
            let make_rows = || {
                Block {
                    clusters: block.clone(),
                    groups,
                    from,
                    taken: &taken,
                }
                .rows(&fields, &rank, table, master_id, &schema)
            };
            let batch = hand_on_while(&mut made, sink, overlap, make_rows)?.map_err(arrow)?;
            made = Some(batch);
            if !overlap {
                hand_on_while(&mut made, sink, false, || ())?;
            }
        }
    }
    hand_on_while(&mut made, sink, false, || ())?;
    Ok(n_clusters as u64)
}

/// Hands the block `made` (if any) to `sink` and runs `work`: side by side when `overlap`,
/// else one after the other.
fn hand_on_while<T: Send>(
    made: &mut Option<RecordBatch>,
    sink: &mut (dyn FnMut(&RecordBatch) -> crate::error::Result<()> + Send),
    overlap: bool,
    work: impl FnOnce() -> T + Send,
) -> crate::error::Result<T> {
    let Some(batch) = made.take() else {
        return Ok(work());
    };
    let (done, sunk) = match overlap {
        true => rayon::join(work, || sink(&batch)),
        false => {
            let sunk = sink(&batch);
            (work(), sunk)
        }
    };
    sunk.map(|()| done)
}

/// A block of clusters of a partition whose records were read as `taken`, which starts at
/// `groups.member[from]`.
struct Block<'a> {
    clusters: Range<usize>,
    groups: &'a crate::cluster::Groups,
    from: usize,
    taken: &'a Taken,
}

impl Block<'_> {
    /// Where cluster `c`'s members are among the taken values, in record order.
    fn members_of(&self, c: usize) -> &[usize] {
        let (a, b) = (self.groups.start[c], self.groups.start[c + 1]);
        &self.taken.at[a as usize - self.from..b as usize - self.from]
    }

    /// The block's golden records.
    fn rows(
        &self,
        fields: &[Golden],
        rank: &[usize],
        table: &StdTable,
        master_id: &StringArray,
        schema: &Arc<Schema>,
    ) -> Result<RecordBatch, ArrowError> {
        let n = self.clusters.len();
        let clusters = || self.clusters.clone();
        let first = |c: usize| self.groups.members(c).first().map_or(0, |&i| i as usize);
        let taken = self.taken;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                clusters().map(|c| master_id.value(first(c))),
            )),
            Arc::new(UInt32Array::from_iter_values(
                clusters().map(|c| self.groups.members(c).len() as u32),
            )),
        ];
        let authority = |i: usize| rank[taken.source[i] as usize];
        let per_field: Vec<Result<[StringArray; 3], ArrowError>> = fields
            .par_iter()
            .zip(&taken.fields)
            .map(|(f, read)| {
                let Some((col, shown)) = read else {
                    return Ok(std::array::from_fn(|_| StringArray::new_null(n)));
                };
                let shown = shown.as_ref().unwrap_or(col);
                // The surviving member of each cluster, clusters in parallel chunks too:
                // fields differ in cost.
                let picks: Vec<Option<u32>> = clusters()
                    .into_par_iter()
                    .with_min_len(4096)
                    .map(|c| {
                        pick(
                            col,
                            taken.updated.as_ref(),
                            &authority,
                            self.members_of(c),
                            f.rule,
                        )
                        .map(|i| i as u32)
                    })
                    .collect();
                let value = |i: usize| {
                    if shown.is_valid(i) {
                        shown.value(i).trim()
                    } else {
                        col.value(i)
                    }
                };
                let from_source = |i: usize| table.sources[taken.source[i] as usize].as_str();
                let from_record = |i: usize| taken.record_id.value(i);
                Ok([
                    crate::mem::text_at(&picks, value)?,
                    crate::mem::text_at(&picks, from_source)?,
                    crate::mem::text_at(&picks, from_record)?,
                ])
            })
            .collect();
        for arrays in per_field {
            cols.extend(arrays?.into_iter().map(|a| Arc::new(a) as ArrayRef));
        }
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// The record whose value survives, among a cluster's members; `authority` gives a record's
/// source rank (lower is more authoritative).
fn pick(
    col: &StringArray,
    updated: Option<&StringArray>,
    authority: &dyn Fn(usize) -> usize,
    members: &[usize],
    rule: Survivorship,
) -> Option<usize> {
    let with_value = || members.iter().copied().filter(|&i| col.is_valid(i));
    let count = |i: usize| {
        with_value()
            .filter(|&j| col.value(j) == col.value(i))
            .count()
    };
    let stamp = |i: usize| updated.filter(|u| u.is_valid(i)).map(|u| u.value(i));
    // Keys sort ascending: the smallest key wins.
    match rule {
        Survivorship::MostFrequent => {
            with_value().min_by_key(|&i| (std::cmp::Reverse(count(i)), authority(i), i))
        }
        Survivorship::SourcePriority => {
            with_value().min_by_key(|&i| (authority(i), std::cmp::Reverse(count(i)), i))
        }
        Survivorship::MostRecent => {
            with_value().min_by_key(|&i| (std::cmp::Reverse(stamp(i)), authority(i), i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_give_the_rows_blocks_give() {
        use crate::config::{EntityKind, presets::preset};
        let Some(plan) = preset(EntityKind::Person) else {
            panic!("person preset");
        };
        let n = 60usize;
        let text = |f: &dyn Fn(usize) -> Option<String>| -> StringArray { (0..n).map(f).collect() };
        // Clusters of 1-4 records lying apart (record i is in cluster i % 23), values that
        // repeat, nulls, two sources.
        let label: Vec<u32> = (0..n).map(|i| (i % 23) as u32).collect();
        let table = StdTable {
            kind: EntityKind::Person,
            sources: vec!["a".into(), "b".into()],
            source: (0..n).map(|i| (i % 3 == 0) as u16).collect(),
            record_id: text(&|i| Some(format!("r{i}"))),
            columns: [
                ("name", text(&|i| Some(format!("名{}", i % 5)))),
                (
                    "address",
                    text(&|i| (i % 4 != 0).then(|| format!("路{}号", i % 7))),
                ),
                (
                    "updated_at",
                    text(&|i| Some(format!("2026-01-{:02}", 1 + i % 28))),
                ),
                ("id_number_valid", text(&|_| None)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            raw: [(
                "address".to_string(),
                text(&|i| Some(format!(" 路{}号 ", i % 7))),
            )]
            .into_iter()
            .collect(),
            stats: Default::default(),
        };
        let groups = crate::cluster::Groups::of(&label);
        let master_id = text(&|i| Some(format!("M{}", i % 23)));
        let sources = ["a".to_string(), "b".to_string()];
        let dir = std::env::temp_dir().join(format!("yiku-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let spill = crate::state::Spill::new(&dir, "t");
        let rows_with = |reads: Reads, buckets: Option<&crate::state::Spill>, block: usize| {
            let mut batches = Vec::new();
            golden_in_blocks(
                &table,
                &plan,
                &sources,
                &master_id,
                &groups,
                (reads, buckets),
                block,
                &mut |b| {
                    batches.push(b.clone());
                    Ok(())
                },
            )
            .map(|_| batches)
        };
        let Ok(one) = rows_with(Reads::Blocks, None, 1000) else {
            panic!("golden records in one block");
        };
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].num_rows(), 23);
        for reads in [
            Reads::Blocks,
            Reads::Partitions(1),
            Reads::Partitions(800),
            Reads::Partitions(2000),
            Reads::Partitions(1 << 30),
        ] {
            // Partitions read by sweeps of their own, or from buckets made in one sweep.
            for buckets in [None, Some(&spill)] {
                let Ok(got) = rows_with(reads, buckets, 5) else {
                    panic!("golden records {reads:?}");
                };
                // Batches of 5 clusters whatever the partitions, and the same rows.
                let case = format!("{reads:?}, buckets: {}", buckets.is_some());
                assert_eq!(got.len(), 5, "{case}");
                assert!(got[..4].iter().all(|b| b.num_rows() == 5), "{case}");
                let joined = arrow_select::concat::concat_batches(&one[0].schema(), &got);
                assert_eq!(joined.ok().as_ref(), Some(&one[0]), "{case}");
            }
        }
        // No bucket file is left behind.
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).ok(), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rules_pick_as_documented() {
        let col = StringArray::from(vec![Some("a"), Some("b"), Some("b"), None]);
        let upd = StringArray::from(vec![
            Some("2026-01-01"),
            Some("2020-01-01"),
            None,
            Some("2027-01-01"),
        ]);
        // Record 0 is from the most authoritative source.
        let authority = |i: usize| if i == 0 { 0 } else { 1 };
        let m = [0, 1, 2, 3];
        assert_eq!(
            pick(&col, Some(&upd), &authority, &m, Survivorship::MostFrequent),
            Some(1)
        );
        assert_eq!(
            pick(
                &col,
                Some(&upd),
                &authority,
                &m,
                Survivorship::SourcePriority
            ),
            Some(0)
        );
        assert_eq!(
            pick(&col, Some(&upd), &authority, &m, Survivorship::MostRecent),
            Some(0)
        );
        assert_eq!(
            pick(&col, None, &authority, &[3], Survivorship::MostFrequent),
            None
        );
    }
}
