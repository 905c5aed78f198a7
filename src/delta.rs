//! Stage 2b, delta runs only: tonight's changes applied to the previous index. Consumes: the
//! previous run's standardised records and links of one kind ([`crate::state`]), tonight's
//! standardised new and changed records, and the deleted records. Produces: the kind's
//! records after the changes — in the order a full load of the same data would give, so
//! that a delta run and a full run number records alike — the `focus` (records new or changed
//! tonight, the only ones blocked and compared), and the previous links that still hold.
//! Cost: O(records) copying of columns, no string comparison beyond the merge.
//!
//! A changed record replaces the stored one with the same source and record id; a deleted
//! record is dropped (deletion wins over a change sent the same night). A previous link that
//! touches a changed or deleted record is dropped: the changed record is compared afresh.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rayon::prelude::*;

use arrow_array::{Array, StringArray};
use serde::Serialize;

use crate::cluster::Edge;
use crate::error::{Error, Result};
use crate::load::Deletion;
use crate::standardise::StdTable;
use crate::state::Links;

/// What a delta did to one kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeltaStats {
    /// Records in the previous index.
    pub previous_records: u64,
    /// New records (no stored record with their source and record id).
    pub added: u64,
    /// Changed records (replacing a stored one).
    pub changed: u64,
    /// Stored records deleted.
    pub deleted: u64,
    /// Deletions of records the index did not have.
    pub deletions_not_found: u64,
    /// Previous links kept (both records unchanged).
    pub links_kept: u64,
    /// Previous links dropped because a record changed or was deleted.
    pub links_dropped: u64,
}

/// Tonight's inputs that did not make it into the index, each with its reason (they go to
/// the quarantine, so that no input vanishes without a trace).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unapplied {
    /// Deletions of records the index does not have.
    pub deletions_not_found: Vec<Deletion>,
    /// Tonight's new or changed records that `deletions.csv` deleted the same night (the
    /// deletion wins): (source, record id).
    pub deleted_same_night: Vec<(String, String)>,
}

/// The records of one kind after a delta.
#[derive(Debug, Clone)]
pub struct Applied {
    pub table: StdTable,
    /// `true` for the records new or changed tonight.
    pub focus: Vec<bool>,
    /// Previous links between unchanged records, renumbered.
    pub links: Links,
    pub stats: DeltaStats,
    pub unapplied: Unapplied,
}

/// The quarantine's rows for what a delta could not apply.
pub fn quarantine_rows(u: &Unapplied) -> Vec<crate::load::QuarantineRow> {
    let not_found = u
        .deletions_not_found
        .iter()
        .map(|d| crate::load::QuarantineRow {
            source: crate::load::DELETIONS_FILE.into(),
            row: d.row,
            record_id: Some(d.record_id.clone()),
            reason: format!(
                "deletes record `{}` of source `{}`, which the index does not have",
                d.record_id, d.source
            ),
            raw: format!("source={}; record_id={}", d.source, d.record_id),
        });
    let same_night =
        u.deleted_same_night
            .iter()
            .map(|(source, record_id)| crate::load::QuarantineRow {
                source: source.clone(),
                row: 0,
                record_id: Some(record_id.clone()),
                reason: format!(
                    "sent tonight and deleted by {} the same night (the deletion wins)",
                    crate::load::DELETIONS_FILE
                ),
                raw: String::new(),
            });
    not_found.chain(same_night).collect()
}

fn key<'a>(t: &'a StdTable, map: &[u16], i: usize) -> (u16, &'a str) {
    (map[t.source[i] as usize], t.record_id.value(i))
}

/// Applies tonight's `changes` and `deletions` to the records and links that the run in
/// `previous_dir` kept ([`crate::state`]).
/// Every merged column is passed through `keep` as it is made (see
/// [`crate::standardise::Keep`]).
pub fn apply_to_previous(
    previous_dir: &std::path::Path,
    changes: StdTable,
    deletions: &[Deletion],
    keep: crate::standardise::Keep,
) -> Result<Applied> {
    let kind = changes.kind;
    let missing = |what: &str| Error::Data {
        stage: "delta",
        message: format!(
            "{} has no {what} for {} records: a delta applies to the output folder of an earlier yiku run of the same job",
            previous_dir.display(),
            kind.as_str()
        ),
    };
    let previous = crate::state::read_standardised(previous_dir, kind, None)?
        .ok_or_else(|| missing("standardised_<kind>.arrow"))?;
    let links = crate::state::read_links(previous_dir, kind)?
        .ok_or_else(|| missing("links_<kind>.arrow"))?;
    apply_with(previous, links, changes, deletions, keep)
}

/// Applies tonight's `changes` and `deletions` (of this kind) to the `previous` records.
pub fn apply(
    previous: StdTable,
    previous_links: Links,
    changes: StdTable,
    deletions: &[Deletion],
) -> Result<Applied> {
    apply_with(
        previous,
        previous_links,
        changes,
        deletions,
        &crate::state::join,
    )
}

/// [`apply`], every merged column passed through `keep` as it is made.
pub fn apply_with(
    previous: StdTable,
    previous_links: Links,
    changes: StdTable,
    deletions: &[Deletion],
    keep: crate::standardise::Keep,
) -> Result<Applied> {
    let mismatch = |what: &str, name: &str| Error::Data {
        stage: "delta",
        message: format!(
            "the previous run's {} records {what} column `{name}`: the job changed since; run a full night first",
            previous.kind.as_str()
        ),
    };
    for name in changes.columns.keys() {
        if !previous.columns.contains_key(name) {
            return Err(mismatch("lack", name));
        }
    }
    for name in previous.columns.keys() {
        if !changes.columns.contains_key(name) {
            return Err(mismatch("have an extra", name));
        }
    }
    let mut sources: Vec<String> = previous.sources.clone();
    sources.extend(changes.sources.iter().cloned());
    sources.sort();
    sources.dedup();
    let remap = |t: &StdTable| -> Vec<u16> {
        t.sources
            .iter()
            .map(|s| sources.binary_search(s).unwrap_or(0) as u16)
            .collect()
    };
    let (prev_src, new_src) = (remap(&previous), remap(&changes));
    // Deleted keys in ascending order, walked by one cursor as the merge visits keys in order.
    let of_kind: Vec<&Deletion> = deletions
        .iter()
        .filter(|d| d.kind == previous.kind)
        .collect();
    // (source, record id, index into `of_kind`), by key.
    let mut deleted: Vec<(u16, &str, usize)> = of_kind
        .iter()
        .enumerate()
        .filter_map(|(k, d)| {
            let s = sources.binary_search(&d.source).ok()? as u16;
            Some((s, d.record_id.as_str(), k))
        })
        .collect();
    deleted.sort_unstable();
    deleted.dedup_by(|b, a| (a.0, a.1) == (b.0, b.1));
    let mut hit = vec![false; of_kind.len()];
    let mut cursor = 0usize;
    let mut is_deleted = |k: (u16, &str)| -> bool {
        while cursor < deleted.len() && (deleted[cursor].0, deleted[cursor].1) < k {
            cursor += 1;
        }
        match deleted.get(cursor) {
            Some(&(s, r, at)) if (s, r) == k => {
                hit[at] = true;
                true
            }
            _ => false,
        }
    };
    let mut unapplied = Unapplied::default();
    let name_of = |t: &StdTable, map: &[u16], i: usize| {
        let (s, r) = key(t, map, i);
        (sources[s as usize].clone(), r.to_string())
    };

    // Merge two sorted runs of records; `take` is (0 = previous / 1 = changes, row).
    let (np, nc) = (previous.len(), changes.len());
    let mut take: Vec<(usize, usize)> = Vec::with_capacity(np + nc);
    let mut old_to_new: Vec<u32> = vec![u32::MAX; np];
    let mut stats = DeltaStats {
        previous_records: np as u64,
        ..Default::default()
    };
    let (mut i, mut j) = (0, 0);
    let mut found_deleted = 0u64;
    while i < np || j < nc {
        let order = match (i < np, j < nc) {
            (true, true) => key(&previous, &prev_src, i).cmp(&key(&changes, &new_src, j)),
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                if is_deleted(key(&previous, &prev_src, i)) {
                    found_deleted += 1;
                } else {
                    old_to_new[i] = take.len() as u32;
                    take.push((0, i));
                }
                i += 1;
            }
            Ordering::Equal => {
                // A changed record: the stored one is replaced (or both go, if deleted).
                if is_deleted(key(&previous, &prev_src, i)) {
                    found_deleted += 1;
                    unapplied
                        .deleted_same_night
                        .push(name_of(&changes, &new_src, j));
                } else {
                    stats.changed += 1;
                    take.push((1, j));
                }
                i += 1;
                j += 1;
            }
            Ordering::Greater => {
                if is_deleted(key(&changes, &new_src, j)) {
                    unapplied
                        .deleted_same_night
                        .push(name_of(&changes, &new_src, j));
                } else {
                    stats.added += 1;
                    take.push((1, j));
                }
                j += 1;
            }
        }
    }
    unapplied.deletions_not_found = of_kind
        .iter()
        .zip(&hit)
        .filter(|(_, h)| !**h)
        .map(|(d, _)| (*d).clone())
        .collect();
    stats.deleted = found_deleted;
    stats.deletions_not_found = unapplied.deletions_not_found.len() as u64;

    let gather = |a: &StringArray, b: &StringArray| -> Result<StringArray> {
        keep(&[crate::load::interleave_strings(
            &[a as &dyn Array, b],
            &take,
        )?])
    };
    let merge_map = |p: &BTreeMap<String, StringArray>,
                     c: &BTreeMap<String, StringArray>|
     -> Result<BTreeMap<String, StringArray>> {
        let mut names: Vec<&String> = p.keys().chain(c.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_par_iter()
            .map(|n| {
                let (a, b) = (
                    p.get(n)
                        .cloned()
                        .unwrap_or_else(|| StringArray::new_null(np)),
                    c.get(n)
                        .cloned()
                        .unwrap_or_else(|| StringArray::new_null(nc)),
                );
                Ok((n.clone(), gather(&a, &b)?))
            })
            .collect()
    };
    let table = StdTable {
        kind: previous.kind,
        source: take
            .iter()
            .map(|&(t, r)| match t {
                0 => prev_src[previous.source[r] as usize],
                _ => new_src[changes.source[r] as usize],
            })
            .collect(),
        record_id: gather(&previous.record_id, &changes.record_id)?,
        columns: merge_map(&previous.columns, &changes.columns)?,
        raw: merge_map(&previous.raw, &changes.raw)?,
        stats: changes.stats.clone(),
        sources,
    };
    let focus: Vec<bool> = take.iter().map(|&(t, _)| t == 1).collect();

    // Previous links between records that are still there, unchanged.
    let n_prev = previous_links.edges.len() + previous_links.cannot_link.len();
    let renumber = |a: u32, b: u32| -> Option<(u32, u32)> {
        let (x, y) = (*old_to_new.get(a as usize)?, *old_to_new.get(b as usize)?);
        (x != u32::MAX && y != u32::MAX).then_some((x.min(y), x.max(y)))
    };
    let links = Links {
        edges: previous_links
            .edges
            .iter()
            .filter_map(|e| {
                renumber(e.left, e.right).map(|(left, right)| Edge {
                    left,
                    right,
                    weight: e.weight,
                })
            })
            .collect(),
        cannot_link: previous_links
            .cannot_link
            .iter()
            .filter_map(|&(a, b)| renumber(a, b))
            .collect(),
    };
    stats.links_kept = (links.edges.len() + links.cannot_link.len()) as u64;
    stats.links_dropped = n_prev as u64 - stats.links_kept;
    Ok(Applied {
        table,
        focus,
        links,
        stats,
        unapplied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EntityKind;

    fn table(rows: &[(&str, &str, &str)]) -> StdTable {
        let mut sources: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        sources.sort();
        sources.dedup();
        StdTable {
            kind: EntityKind::Person,
            source: rows
                .iter()
                .map(|r| sources.iter().position(|s| s == r.0).unwrap_or(0) as u16)
                .collect(),
            sources,
            record_id: rows.iter().map(|r| Some(r.1)).collect(),
            columns: [("name".to_string(), rows.iter().map(|r| Some(r.2)).collect())]
                .into_iter()
                .collect(),
            raw: Default::default(),
            stats: Default::default(),
        }
    }

    fn edge(left: u32, right: u32) -> Edge {
        Edge {
            left,
            right,
            weight: 1.0,
        }
    }

    #[test]
    fn changes_replace_add_and_delete_in_full_load_order() {
        let prev = table(&[("a", "1", "张三"), ("a", "2", "李四"), ("b", "1", "王五")]);
        let links = Links {
            edges: vec![edge(0, 2), edge(1, 2)],
            cannot_link: vec![],
        };
        let changes = table(&[("a", "2", "李思"), ("a", "3", "赵六"), ("c", "9", "钱七")]);
        let deletions = vec![Deletion {
            kind: EntityKind::Person,
            source: "b".into(),
            record_id: "1".into(),
            row: 1,
        }];
        let d = apply(prev, links, changes, &deletions).unwrap();
        let ids: Vec<(String, &str)> = (0..d.table.len())
            .map(|i| {
                (
                    d.table.sources[d.table.source[i] as usize].clone(),
                    d.table.record_id.value(i),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("a".into(), "1"),
                ("a".into(), "2"),
                ("a".into(), "3"),
                ("c".into(), "9")
            ]
        );
        assert_eq!(d.table.columns["name"].value(1), "李思");
        assert_eq!(d.focus, vec![false, true, true, true]);
        // Both links touched b:1, which was deleted.
        assert!(d.links.edges.is_empty());
        assert_eq!(d.stats.links_dropped, 2);
        assert_eq!((d.stats.added, d.stats.changed, d.stats.deleted), (2, 1, 1));
    }

    #[test]
    fn deletions_that_apply_to_nothing_and_records_deleted_the_same_night_are_named() {
        let prev = table(&[("a", "1", "x")]);
        let changes = table(&[("a", "2", "y")]);
        let del = |source: &str, id: &str, row: u64| Deletion {
            kind: EntityKind::Person,
            source: source.into(),
            record_id: id.into(),
            row,
        };
        let deletions = vec![del("a", "2", 1), del("a", "9", 2), del("z", "1", 3)];
        let d = apply(prev, Links::default(), changes, &deletions).unwrap();
        assert_eq!(d.table.len(), 1);
        assert_eq!(
            d.unapplied.deleted_same_night,
            vec![("a".to_string(), "2".to_string())]
        );
        assert_eq!(
            d.unapplied.deletions_not_found,
            vec![del("a", "9", 2), del("z", "1", 3)]
        );
        assert_eq!(d.stats.deletions_not_found, 2);
        let rows = quarantine_rows(&d.unapplied);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].reason.contains("`9`"), "{}", rows[0].reason);
        assert_eq!(rows[0].row, 2);
    }

    #[test]
    fn links_between_unchanged_records_are_renumbered() {
        let prev = table(&[("a", "1", "x"), ("a", "3", "y"), ("a", "5", "z")]);
        let links = Links {
            edges: vec![edge(1, 2)],
            cannot_link: vec![(0, 2)],
        };
        let changes = table(&[("a", "0", "w")]);
        let d = apply(prev, links, changes, &[]).unwrap();
        assert_eq!(d.links.edges, vec![edge(2, 3)]);
        assert_eq!(d.links.cannot_link, vec![(1, 3)]);
        assert_eq!(d.stats.deletions_not_found, 0);
    }

    #[test]
    fn a_job_with_other_columns_is_refused() {
        let prev = table(&[("a", "1", "x")]);
        let mut changes = table(&[("a", "2", "y")]);
        changes
            .columns
            .insert("phone".into(), vec![Some("1")].into());
        let err = apply(prev, Links::default(), changes, &[]).unwrap_err();
        assert!(err.to_string().contains("phone"), "{err}");
    }
}
