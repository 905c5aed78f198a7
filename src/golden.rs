//! Stage 7b: golden records. Consumes: the standardised records and their master ids.
//! Produces: one row per master id with the best value of every field, chosen by the field's
//! survivorship rule, and the source and record each value came from. Cost: O(records).
//!
//! Values are the standardised ones (simplified names, 18-digit IDs, ISO dates), but addresses
//! are shown as their source wrote them. ID numbers
//! and USCCs are taken only when their check digit passes. Ties go to the more authoritative
//! source (the kind's `source_priority`, then the job's source order), then to the record
//! that sorts first, so the result does not depend on thread count or input order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::config::{FieldType, KindPlan, Survivorship};
use crate::standardise::StdTable;

/// The column holding a field's usable values: the valid-only column for identifiers.
fn value_column(field: &str, ty: FieldType) -> String {
    match ty {
        FieldType::IdNumber | FieldType::Uscc => format!("{field}_valid"),
        _ => field.to_string(),
    }
}

/// Golden records of one kind. `job_sources` lists the kind's sources in job order.
pub fn golden_records(
    table: &StdTable,
    plan: &KindPlan,
    job_sources: &[String],
    master_id: &StringArray,
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
    // Members of each master id, in first-appearance order (the table's sorted order).
    let mut order: Vec<&str> = Vec::new();
    let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in master_id.iter().enumerate() {
        let m = m.unwrap_or_default();
        members
            .entry(m)
            .or_insert_with(|| {
                order.push(m);
                Vec::new()
            })
            .push(i);
    }
    let updated = table.column("updated_at");
    let mut schema = vec![
        Field::new("master_id", DataType::Utf8, false),
        Field::new("records", DataType::UInt32, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(order.iter().copied())),
        Arc::new(UInt32Array::from_iter_values(
            order.iter().map(|m| members[m].len() as u32),
        )),
    ];
    for (field, ty) in &plan.fields {
        if field == "updated_at" {
            continue;
        }
        let Some(col) = table.column(&value_column(field, *ty)) else {
            continue;
        };
        let rule = plan
            .golden
            .get(field)
            .copied()
            .unwrap_or(Survivorship::MostFrequent);
        // Addresses are chosen by their standardised form but shown as written.
        let shown = match ty {
            FieldType::Address => table.raw.get(field).unwrap_or(col),
            _ => col,
        };
        let (mut v, mut s, mut r) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for m in &order {
            let authority = |i: usize| rank[table.source[i] as usize];
            match pick(col, updated, &authority, &members[m], rule) {
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
        for (name, b) in [
            (field.clone(), &mut v),
            (format!("{field}_source"), &mut s),
            (format!("{field}_record_id"), &mut r),
        ] {
            schema.push(Field::new(name, DataType::Utf8, true));
            cols.push(Arc::new(b.finish()));
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
    let with_value: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| col.is_valid(i))
        .collect();
    let count = |i: usize| {
        with_value
            .iter()
            .filter(|&&j| col.value(j) == col.value(i))
            .count()
    };
    let stamp = |i: usize| updated.filter(|u| u.is_valid(i)).map(|u| u.value(i));
    let it = with_value.iter().copied();
    // Keys sort ascending: the smallest key wins.
    match rule {
        Survivorship::MostFrequent => {
            it.min_by_key(|&i| (std::cmp::Reverse(count(i)), authority(i), i))
        }
        Survivorship::SourcePriority => {
            it.min_by_key(|&i| (authority(i), std::cmp::Reverse(count(i)), i))
        }
        Survivorship::MostRecent => {
            it.min_by_key(|&i| (std::cmp::Reverse(stamp(i)), authority(i), i))
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
