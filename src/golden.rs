//! Stage 7b: golden records. Consumes: the standardised records and their master ids.
//! Produces: one row per master id with the best value of every field, chosen by the field's
//! survivorship rule, and the source and record each value came from. Cost: O(records).
//!
//! Values are the standardised ones (simplified names, 18-digit IDs, ISO dates), but addresses
//! are shown as their source wrote them. ID numbers
//! and USCCs are taken only when their check digit passes. Ties go to the more authoritative
//! source (the kind's `source_priority`, then the job's source order), then to the record
//! that sorts first, so the result does not depend on thread count or input order.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;

use crate::config::{FieldType, KindPlan, Survivorship};
use crate::standardise::StdTable;

/// The column holding a field's usable values: the valid-only column for identifiers.
fn value_column(field: &str, ty: FieldType) -> String {
    match ty {
        FieldType::IdNumber | FieldType::Uscc => format!("{field}_valid"),
        _ => field.to_string(),
    }
}

/// Golden records of one kind. `job_sources` lists the kind's sources in job order; `label`
/// is each record's cluster label (the cluster's smallest record index).
pub fn golden_records(
    table: &StdTable,
    plan: &KindPlan,
    job_sources: &[String],
    master_id: &StringArray,
    label: &[u32],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
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
    // Members of each cluster as ranges of one array, clusters in order of their first record.
    let n = label.len();
    let mut slot = vec![u32::MAX; n];
    let mut reps: Vec<usize> = Vec::new();
    for (i, &l) in label.iter().enumerate() {
        if slot[l as usize] == u32::MAX {
            slot[l as usize] = reps.len() as u32;
            reps.push(i);
        }
    }
    let mut start = vec![0usize; reps.len() + 1];
    for &l in label {
        start[slot[l as usize] as usize + 1] += 1;
    }
    for c in 0..reps.len() {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut flat = vec![0usize; n];
    for (i, &l) in label.iter().enumerate() {
        let c = slot[l as usize] as usize;
        flat[fill[c]] = i;
        fill[c] += 1;
    }
    let members = |c: usize| &flat[start[c]..start[c + 1]];
    let updated = table.column("updated_at");
    let mut schema = vec![
        Field::new("master_id", DataType::Utf8, false),
        Field::new("records", DataType::UInt32, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            reps.iter().map(|&i| master_id.value(i)),
        )),
        Arc::new(UInt32Array::from_iter_values(
            (0..reps.len()).map(|c| members(c).len() as u32),
        )),
    ];
    let fields: Vec<(&String, &FieldType)> = plan
        .fields
        .iter()
        .filter(|(f, _)| *f != "updated_at")
        .collect();
    let per_field: Vec<Option<[StringArray; 3]>> = fields
        .par_iter()
        .map(|(field, ty)| {
            let col = table.column(&value_column(field, **ty))?;
            let rule = plan
                .golden
                .get(*field)
                .copied()
                .unwrap_or(Survivorship::MostFrequent);
            // Addresses are chosen by their standardised form but shown as written.
            let shown = match ty {
                FieldType::Address => table.raw.get(*field).unwrap_or(col),
                _ => col,
            };
            let authority = |i: usize| rank[table.source[i] as usize];
            let (mut v, mut s, mut r) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            for c in 0..reps.len() {
                match pick(col, updated, &authority, members(c), rule) {
                    Some(i) => {
                        v.append_value(if shown.is_valid(i) {
                            shown.value(i).trim()
                        } else {
                            col.value(i)
                        });
                        s.append_value(&table.sources[table.source[i] as usize]);
                        r.append_value(table.record_id.value(i));
                    }
                    None => {
                        v.append_null();
                        s.append_null();
                        r.append_null();
                    }
                }
            }
            Some([v.finish(), s.finish(), r.finish()])
        })
        .collect();
    for ((field, _), arrays) in fields.iter().zip(per_field) {
        let Some(arrays) = arrays else { continue };
        let names = [
            field.to_string(),
            format!("{field}_source"),
            format!("{field}_record_id"),
        ];
        for (name, a) in names.into_iter().zip(arrays) {
            schema.push(Field::new(name, DataType::Utf8, true));
            cols.push(Arc::new(a));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema)), cols)
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
