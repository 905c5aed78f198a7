//! Stage 2b, delta runs only: tonight's changes against the persistent index
//! ([`crate::store`]). Consumes: the previous run's store of one kind, tonight's standardised
//! new and changed records, the deleted records. Produces: a small table of every record
//! tonight touches — tonight's records, and every record in the same component as one they
//! replace or delete, as a block mate of one of them, or as a record a clerk's decision names
//! tonight — in the order a full load of the same data would give (so that every rule that
//! breaks ties by record order decides as a full run would), with the `focus` (tonight's
//! records, the only ones blocked and compared), the links that still hold among them, their
//! previous master ids, the sizes of the blocks too large to expand, and the term frequencies
//! over the whole index after tonight. Cost: binary searches in the mapped store and copies of
//! the touched records: O(delta), not O(index).
//!
//! A changed record replaces the stored one with the same source and record id; a deleted
//! record is dropped (deletion wins over a change sent the same night). A previous link that
//! touches a changed or deleted record is dropped: the changed record is compared afresh.
//! The table is a union of whole components of the index after tonight: a component of a
//! full run that holds a record of tonight, or a link of tonight, is in it whole, because
//! every link of tonight joins a record of tonight to a record the table holds with its whole
//! previous component.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use arrow_array::{Array, StringArray};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::Deletion;
use crate::score::tf::{Counts, value_hash};
use crate::standardise::StdTable;
use crate::state::Links;
use crate::store::{KindStore, Loc};

type Fast = foldhash::fast::FixedState;

/// What a delta did to one kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeltaStats {
    /// Records in the previous index.
    pub previous_records: u64,
    /// Records of the index tonight's records touched (see the module's notes), tonight's
    /// included: the table the run re-clusters.
    pub touched_records: u64,
    /// Components of the index they belonged to, replaced by tonight's layer.
    pub touched_components: u64,
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

/// The records of one kind that a delta night touches, ready for the stages.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Tonight's records and every record they touch, in (source, record id) order.
    pub table: StdTable,
    /// `true` for the records new or changed tonight.
    pub focus: Vec<bool>,
    /// Previous links among the table's records that still hold.
    pub links: Links,
    /// The master ids the table's records (and tonight's deleted ones) carried.
    pub previous: crate::master::Previous,
    /// Per record of the table: the master id it carried and the size of that cluster
    /// (`None`, 0 for a new record).
    pub old_id: Vec<Option<String>>,
    pub old_size: Vec<u32>,
    /// Records deleted tonight: (source, record id, the master id they carried), in order.
    pub removed: Vec<(String, String, String)>,
    /// Per blocking rule, the blocks of tonight's records too large to expand: key hash ->
    /// records in the block over the whole index.
    pub sizes: Vec<HashMap<u64, u64, Fast>>,
    /// Term frequencies over the whole index after tonight, by field.
    pub counts: BTreeMap<String, Counts>,
    /// Per term-frequency field of the store, tonight's net change: (value hash, change).
    pub tf_delta: Vec<Vec<(u64, i64)>>,
    /// Per record of the table: its component in the index, (segment, component) (a record
    /// sent tonight: that of the record it replaces).
    old_component: Vec<Option<(u32, u32)>>,
    /// Components of the index that lost a record tonight (replaced or deleted).
    dropped_components: HashSet<(u32, u32), Fast>,
    /// Stored rows replaced or deleted tonight.
    dropped: HashSet<Loc, Fast>,
    /// `focus`, kept here once the stages have taken it.
    tonight: Vec<bool>,
    /// (source, record id) of the stored rows replaced or deleted tonight.
    dropped_keys: HashSet<(String, String), Fast>,
    pub stats: DeltaStats,
    pub unapplied: Unapplied,
}

/// Where a record of the index stands after tonight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// In tonight's table, at this row.
    InTable(u32),
    /// In the index, untouched tonight.
    Untouched,
    /// Not in the index (never was, or deleted tonight).
    Gone,
}

impl Prepared {
    /// What tonight's layer holds, given each record's component after tonight
    /// (`components`, see [`crate::cluster::Clusters::components`]) and whether its row of the
    /// master index changed (`changed`: sent tonight, or its master id or cluster size moved,
    /// by clerks' decisions or rescored links as much as by tonight's records): the records
    /// of every component with such a record or from a component of the index that lost one
    /// (the others are exactly as the index has them and stay where they are), and the
    /// components of the index it replaces, sorted.
    pub fn layer(&self, components: &[u32], changed: &[bool]) -> (Vec<bool>, Vec<(u32, u32)>) {
        let changed: HashSet<u32, Fast> = (0..self.focus_len())
            .filter(|&i| {
                self.is_focus(i)
                    || changed.get(i).copied().unwrap_or(true)
                    || self.old_component[i].is_some_and(|c| self.dropped_components.contains(&c))
            })
            .filter_map(|i| components.get(i).copied())
            .collect();
        let keep: Vec<bool> = components.iter().map(|c| changed.contains(c)).collect();
        let mut tombstones: Vec<(u32, u32)> = keep
            .iter()
            .zip(&self.old_component)
            .filter(|(k, _)| **k)
            .filter_map(|(_, c)| *c)
            .chain(self.dropped_components.iter().copied())
            .collect();
        tombstones.sort_unstable();
        tombstones.dedup();
        (keep, tombstones)
    }

    /// The previous model links among the table's records as a full run would find them
    /// tonight, to be compared and scored again with tonight's term frequencies (a link keeps
    /// the weight it was scored with otherwise, and a full run rescores every pair): each
    /// pair with the first blocking rule whose key both records share in a block not over
    /// `max_block_size` (sized over the whole index after tonight). A pair no rule finds any
    /// more is left out, as a full run would not compare it. Clerks' must-links (weight +∞)
    /// are not in it: they hold whatever the weights.
    pub fn carried_candidates(
        &self,
        table: &StdTable,
        links: &Links,
        store: &KindStore,
        plan: &crate::config::KindPlan,
    ) -> crate::block::Candidates {
        let keys: Vec<Vec<u64>> = plan
            .blocking
            .par_iter()
            .map(|rule| crate::block::rule_keys(table, rule))
            .collect();
        // Tonight's records per (rule, key).
        let mut tonight: HashMap<(usize, u64), u64, Fast> = HashMap::default();
        for (r, k) in keys.iter().enumerate() {
            for (i, &h) in k.iter().enumerate() {
                if h != 0 && self.is_focus(i) {
                    *tonight.entry((r, h)).or_default() += 1;
                }
            }
        }
        let cap = plan.max_block_size as u64;
        let mut size: HashMap<(usize, u64), u64, Fast> = HashMap::default();
        let mut block_size = |r: usize, h: u64| -> u64 {
            *size.entry((r, h)).or_insert_with(|| {
                let tonight = tonight.get(&(r, h)).copied().unwrap_or(0);
                store.block_size(r, h, cap.saturating_sub(tonight), &self.dropped) + tonight
            })
        };
        let mut pairs: Vec<(u32, u32, u8, u32)> = Vec::new();
        for e in links.edges.iter().filter(|e| e.weight.is_finite()) {
            let (a, b) = (e.left as usize, e.right as usize);
            let mut agree = 0u32;
            for (r, k) in keys.iter().enumerate() {
                let (x, y) = (
                    k.get(a).copied().unwrap_or(0),
                    k.get(b).copied().unwrap_or(0),
                );
                if x != 0 && x == y && block_size(r, x) <= cap {
                    agree |= 1 << r;
                }
            }
            if agree != 0 {
                let pair = (e.left.min(e.right), e.left.max(e.right));
                pairs.push((pair.0, pair.1, agree.trailing_zeros() as u8, agree));
            }
        }
        pairs.sort_unstable();
        pairs.dedup_by_key(|p| (p.0, p.1));
        crate::block::Candidates {
            left: pairs.iter().map(|p| p.0).collect(),
            right: pairs.iter().map(|p| p.1).collect(),
            rule: pairs.iter().map(|p| p.2).collect(),
            agree: pairs.iter().map(|p| p.3).collect(),
            stats: Vec::new(),
        }
    }

    fn focus_len(&self) -> usize {
        self.old_component.len()
    }

    fn is_focus(&self, i: usize) -> bool {
        self.tonight.get(i).copied().unwrap_or(false)
    }

    /// [`Prepared::status`] of a record that was in the index before tonight (one of the
    /// earlier nights' review queue): without a search of the index.
    pub fn status_of_indexed(&self, table: &StdTable, source: &str, record_id: &str) -> Status {
        if self
            .dropped_keys
            .contains(&(source.to_string(), record_id.to_string()))
        {
            return Status::Gone;
        }
        match table.find(source, record_id) {
            Some(i) => Status::InTable(i),
            None => Status::Untouched,
        }
    }

    /// Where the record `source`:`record_id` stands after tonight; `table` is
    /// [`Prepared::table`] (the stages take it over).
    pub fn status(
        &self,
        table: &StdTable,
        store: &KindStore,
        source: &str,
        record_id: &str,
    ) -> Status {
        if let Some(i) = table.find(source, record_id) {
            return Status::InTable(i);
        }
        match store.find(source, record_id) {
            Some(l) if !self.dropped.contains(&l) => Status::Untouched,
            _ => Status::Gone,
        }
    }
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

/// A record of the table being built: a stored row, or row `j` of tonight's records.
#[derive(Debug, Clone, Copy)]
enum Row {
    Stored(Loc),
    Tonight(usize),
}

/// Prepares one kind's delta night: tonight's `changes` and `deletions` against the `store`
/// of the previous run `run`; `named` are the records tonight's clerks' decisions name (they
/// join the table, so that their decisions apply). Every column of the table is passed
/// through `keep` as it is made (see [`crate::state::Keep`]).
pub fn prepare(
    store: &KindStore,
    run: u64,
    changes: StdTable,
    deletions: &[Deletion],
    named: &[(String, String)],
    plan: &crate::config::KindPlan,
    keep: crate::state::Keep,
) -> Result<Prepared> {
    let kind = store.kind;
    let stored_columns = store.columns();
    let changed_job = |message: String| Error::Data {
        stage: "delta",
        message: format!(
            "the previous run's {} index {message}: the job changed since; run a full night first",
            kind.as_str()
        ),
    };
    if !changes.is_empty() {
        let tonight: Vec<String> = changes
            .columns
            .keys()
            .cloned()
            .chain(
                changes
                    .raw
                    .keys()
                    .map(|f| format!("{}{f}", crate::state::RAW_PREFIX)),
            )
            .collect();
        for name in &tonight {
            if !stored_columns.contains(name) {
                return Err(changed_job(format!("lacks column `{name}`")));
            }
        }
        for name in &stored_columns {
            if !tonight.contains(name) {
                return Err(changed_job(format!("has an extra column `{name}`")));
            }
        }
    }
    if store.entry.rules != plan.blocking {
        return Err(changed_job(format!(
            "was blocked by other rules ({:?})",
            store.entry.rules
        )));
    }
    let mut tf_fields: Vec<&str> = Vec::new();
    for c in plan.comparisons.iter().filter(|c| c.term_frequency) {
        if !store.entry.term_frequency.contains(&c.field) {
            return Err(changed_job(format!(
                "counted no term frequencies of `{}`",
                c.field
            )));
        }
        if !tf_fields.contains(&c.field.as_str()) {
            tf_fields.push(&c.field);
        }
    }
    let src = |j: usize| changes.sources[changes.source[j] as usize].as_str();
    let rid = |j: usize| changes.record_id.value(j);

    // Deletions, then tonight's records against the index.
    let mut unapplied = Unapplied::default();
    let mut stats = DeltaStats {
        previous_records: store.entry.live(),
        ..Default::default()
    };
    let mut deleted_keys: HashSet<(&str, &str), Fast> = HashSet::default();
    let mut deleted: Vec<Loc> = Vec::new();
    for d in deletions.iter().filter(|d| d.kind == kind) {
        let key = (d.source.as_str(), d.record_id.as_str());
        let first = deleted_keys.insert(key);
        let stored = store.find(key.0, key.1);
        let tonight = changes.find(key.0, key.1);
        if !first || (stored.is_none() && tonight.is_none()) {
            unapplied.deletions_not_found.push(d.clone());
            continue;
        }
        if let Some(l) = stored {
            deleted.push(l);
        }
    }
    stats.deleted = deleted.len() as u64;
    stats.deletions_not_found = unapplied.deletions_not_found.len() as u64;
    let mut replaced: Vec<Option<Loc>> = vec![None; changes.len()];
    let mut tonight_rows: Vec<usize> = Vec::with_capacity(changes.len());
    for (j, replaced_j) in replaced.iter_mut().enumerate() {
        if deleted_keys.contains(&(src(j), rid(j))) {
            unapplied
                .deleted_same_night
                .push((src(j).to_string(), rid(j).to_string()));
            continue;
        }
        *replaced_j = store.find(src(j), rid(j));
        match replaced_j {
            Some(_) => stats.changed += 1,
            None => stats.added += 1,
        }
        tonight_rows.push(j);
    }
    let dropped: HashSet<Loc, Fast> = deleted
        .iter()
        .copied()
        .chain(replaced.iter().flatten().copied())
        .collect();

    // Block mates of tonight's records, rule by rule; blocks too large are only counted.
    let mut touched: HashSet<Loc, Fast> = dropped.clone();
    let mut sizes = Vec::with_capacity(plan.blocking.len());
    for (r, rule) in plan.blocking.iter().enumerate() {
        let keys = crate::block::rule_keys(&changes, rule);
        let mut tonight: HashMap<u64, u64, Fast> = HashMap::default();
        for &j in &tonight_rows {
            if keys[j] != 0 {
                *tonight.entry(keys[j]).or_default() += 1;
            }
        }
        let mut hashes: Vec<(u64, u64)> = tonight.into_iter().collect();
        hashes.sort_unstable();
        let found: Vec<(u64, u64, Vec<Loc>)> = hashes
            .par_iter()
            .map(|&(h, count)| {
                let mut mates = store.block(r, h);
                mates.retain(|l| !dropped.contains(l));
                (h, count, mates)
            })
            .collect();
        let mut big: HashMap<u64, u64, Fast> = HashMap::default();
        for (h, count, mates) in found {
            let size = mates.len() as u64 + count;
            if size > plan.max_block_size as u64 {
                big.insert(h, size);
            } else {
                touched.extend(mates);
            }
        }
        sizes.push(big);
    }
    for (s, r) in named {
        if let Some(l) = store.find(s, r) {
            touched.insert(l);
        }
    }
    let mut components: Vec<(u32, u32)> = touched.iter().map(|&l| store.component(l)).collect();
    components.par_sort_unstable();
    components.dedup();
    let members: Vec<Loc> = components
        .par_iter()
        .flat_map_iter(|&c| store.members(c))
        .filter(|l| !dropped.contains(l))
        .collect();

    // The table: stored members and tonight's records, in (source, record id) order.
    let mut rows: Vec<Row> = members
        .iter()
        .map(|&l| Row::Stored(l))
        .chain(tonight_rows.iter().map(|&j| Row::Tonight(j)))
        .collect();
    let key_of = |r: &Row| -> (&str, &[u8]) {
        match *r {
            Row::Stored(l) => (store.source(l), store.record_id(l)),
            Row::Tonight(j) => (src(j), rid(j).as_bytes()),
        }
    };
    rows.par_sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    let n = rows.len();
    let mut sources: Vec<String> = rows.iter().map(|r| key_of(r).0.to_string()).collect();
    sources.extend(changes.sources.iter().cloned());
    sources.sort();
    sources.dedup();
    let source: Vec<u16> = rows
        .iter()
        .map(|r| {
            sources
                .binary_search_by(|x| x.as_str().cmp(key_of(r).0))
                .unwrap_or(0) as u16
        })
        .collect();
    let not_text = |column: &str, l: Loc| Error::Read {
        path: std::path::PathBuf::from(crate::store::DIR),
        message: format!(
            "{} index: column `{column}` of segment {} row {} is not UTF-8",
            kind.as_str(),
            l.seg,
            l.row
        ),
    };
    let column = |name: &str| -> Result<StringArray> {
        let tonight = match name {
            "record_id" => Some(&changes.record_id),
            n => match n.strip_prefix(crate::state::RAW_PREFIX) {
                Some(f) => changes.raw.get(f),
                None => changes.columns.get(n),
            },
        };
        let mut b = arrow_array::builder::StringBuilder::with_capacity(n, n * 8);
        for r in &rows {
            match *r {
                Row::Stored(l) => {
                    let v = match name {
                        "record_id" => Some(store.record_id(l)),
                        c => store.value(l, c),
                    };
                    match v {
                        None => b.append_null(),
                        Some(v) => {
                            b.append_value(std::str::from_utf8(v).map_err(|_| not_text(name, l))?)
                        }
                    }
                }
                Row::Tonight(j) => match tonight.filter(|a| a.is_valid(j)) {
                    Some(a) => b.append_value(a.value(j)),
                    None => b.append_null(),
                },
            }
        }
        keep(&[b.finish()])
    };
    let names: Vec<String> = std::iter::once("record_id".to_string())
        .chain(stored_columns.iter().cloned())
        .collect();
    let built: Vec<(String, StringArray)> = names
        .into_par_iter()
        .map(|c| Ok((c.clone(), column(&c)?)))
        .collect::<Result<_>>()?;
    let mut table = StdTable {
        kind,
        sources,
        source: source.into(),
        record_id: StringArray::new_null(0),
        columns: BTreeMap::new(),
        raw: BTreeMap::new(),
        stats: changes.stats.clone(),
    };
    for (c, a) in built {
        if c == "record_id" {
            table.record_id = a;
        } else if let Some(f) = c.strip_prefix(crate::state::RAW_PREFIX) {
            table.raw.insert(f.to_string(), a);
        } else {
            table.columns.insert(c, a);
        }
    }
    let focus: Vec<bool> = rows.iter().map(|r| matches!(r, Row::Tonight(_))).collect();
    let tonight = focus.clone();
    let old_component: Vec<Option<(u32, u32)>> = rows
        .iter()
        .map(|r| match *r {
            Row::Stored(l) => Some(store.component(l)),
            Row::Tonight(j) => replaced[j].map(|l| store.component(l)),
        })
        .collect();
    let dropped_keys: HashSet<(String, String), Fast> = dropped
        .iter()
        .map(|&l| {
            (
                store.source(l).to_string(),
                String::from_utf8_lossy(store.record_id(l)).into_owned(),
            )
        })
        .collect();
    let dropped_components: HashSet<(u32, u32), Fast> =
        dropped.iter().map(|&l| store.component(l)).collect();

    // Links among the stored members that still hold.
    let at: HashMap<Loc, u32, Fast> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match *r {
            Row::Stored(l) => Some((l, i as u32)),
            Row::Tonight(_) => None,
        })
        .collect();
    let mut links = Links::default();
    let mut dropped_links = 0u64;
    for l in members.iter().chain(dropped.iter()) {
        let Some(&i) = at.get(l) else {
            // A dropped record: its links go with it.
            dropped_links += store.links_of(*l).len() as u64;
            continue;
        };
        for (r, weight, by) in store.links_of(*l) {
            let Some(&j) = at.get(&r) else {
                dropped_links += u64::from(dropped.contains(&r));
                continue;
            };
            links.push(i, j, weight, by);
        }
    }
    stats.links_kept = (links.edges.len() + links.cannot_link.len()) as u64;
    stats.links_dropped = dropped_links;

    // What the records carried: master ids of the stored members and of the dropped records.
    let id_of = |l: Loc| -> Result<String> {
        let v = store.master_id(l).unwrap_or_default();
        std::str::from_utf8(v)
            .map(str::to_string)
            .map_err(|_| not_text("master_id", l))
    };
    let mut old_id: Vec<Option<String>> = Vec::with_capacity(n);
    for r in &rows {
        old_id.push(match *r {
            Row::Stored(l) => Some(id_of(l)?),
            Row::Tonight(j) => replaced[j].map(id_of).transpose()?,
        });
    }
    let mut removed = Vec::with_capacity(deleted.len());
    for &l in &deleted {
        let (s, r) = (
            store.source(l).to_string(),
            String::from_utf8_lossy(store.record_id(l)),
        );
        removed.push((s, r.into_owned(), id_of(l)?));
    }
    removed.sort();
    let mut size_of: HashMap<&str, u32, Fast> = HashMap::default();
    for id in old_id.iter().flatten().map(String::as_str) {
        *size_of.entry(id).or_default() += 1;
    }
    for (_, _, id) in &removed {
        *size_of.entry(id.as_str()).or_default() += 1;
    }
    // A replaced record counted once: as tonight's row, not again as dropped.
    let old_size: Vec<u32> = old_id
        .iter()
        .map(|id| {
            id.as_deref()
                .map_or(0, |id| size_of.get(id).copied().unwrap_or(0))
        })
        .collect();
    let (mut ps, mut pr, mut pm) = (Vec::new(), Vec::new(), Vec::new());
    for (i, id) in old_id.iter().enumerate() {
        if let Some(id) = id {
            ps.push(table.sources[table.source[i] as usize].clone());
            pr.push(table.record_id.value(i).to_string());
            pm.push(id.clone());
        }
    }
    for (s, r, id) in &removed {
        ps.push(s.clone());
        pr.push(r.clone());
        pm.push(id.clone());
    }
    let previous = crate::master::Previous::of_rows(
        run,
        kind,
        &StringArray::from(ps),
        &StringArray::from(pr),
        &StringArray::from(pm),
    );

    // Term frequencies: the index's counts, changed by tonight's records and drops.
    let mut counts = BTreeMap::new();
    let mut tf_delta = Vec::with_capacity(store.entry.term_frequency.len());
    for (fi, field) in store.entry.term_frequency.iter().enumerate() {
        let mut change: HashMap<u64, i64, Fast> = HashMap::default();
        let col = changes.columns.get(field);
        for &j in &tonight_rows {
            if let Some(c) = col.filter(|c| c.is_valid(j)) {
                *change.entry(value_hash(c.value(j))).or_default() += 1;
            }
        }
        for &l in &dropped {
            if let Some(v) = store
                .value(l, field)
                .and_then(|v| std::str::from_utf8(v).ok())
            {
                *change.entry(value_hash(v)).or_default() -= 1;
            }
        }
        if tf_fields.contains(&field.as_str()) {
            let mut of: HashMap<u64, u64, Fast> = HashMap::default();
            if let Some(col) = table.columns.get(field) {
                for i in 0..n {
                    if col.is_valid(i) {
                        let h = value_hash(col.value(i));
                        of.entry(h).or_insert_with(|| {
                            let c = store.tf_count(fi, h) + change.get(&h).copied().unwrap_or(0);
                            c.max(0) as u64
                        });
                    }
                }
            }
            let total = store.tf_total(fi) + change.values().sum::<i64>();
            counts.insert(
                field.clone(),
                Counts {
                    total: total.max(0) as u64,
                    of,
                },
            );
        }
        let mut list: Vec<(u64, i64)> = change.into_iter().filter(|x| x.1 != 0).collect();
        list.sort_unstable();
        tf_delta.push(list);
    }
    stats.touched_records = n as u64;
    stats.touched_components = components.len() as u64;
    Ok(Prepared {
        table,
        focus,
        links,
        previous,
        old_id,
        old_size,
        removed,
        sizes,
        counts,
        tf_delta,
        old_component,
        dropped_components,
        dropped,
        tonight,
        dropped_keys,
        stats,
        unapplied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EntityKind;
    use crate::store::{KindEntry, Manifest, Parts};

    fn table(rows: &[(&str, &str, &str)]) -> StdTable {
        StdTable::of_names(rows)
    }

    /// A person plan blocking and counting term frequencies on `name` only.
    fn plan() -> crate::config::KindPlan {
        let mut p = crate::config::presets::preset(EntityKind::Person).expect("preset");
        p.blocking = vec![vec!["name".to_string()]];
        p.comparisons.retain(|c| c.field == "name");
        for c in &mut p.comparisons {
            c.term_frequency = true;
        }
        p.max_block_size = 2;
        p
    }

    /// A base of a:1 and a:2 (张三, linked, P1), b:1 (李四, P2) and c:1..c:3 (赵六, P3..P5:
    /// a block of three, over the plan's cap of two).
    fn base(dir: &std::path::Path) -> KindStore {
        let _ = std::fs::remove_dir_all(dir);
        let t = table(&[
            ("a", "1", "张三"),
            ("a", "2", "张三"),
            ("b", "1", "李四"),
            ("c", "1", "赵六"),
            ("c", "2", "赵六"),
            ("c", "3", "赵六"),
        ]);
        let ids: StringArray = ["P1", "P1", "P2", "P3", "P4", "P5"]
            .iter()
            .map(|s| Some(*s))
            .collect();
        let links = Links {
            edges: vec![crate::cluster::Edge {
                left: 0,
                right: 1,
                weight: 9.0,
            }],
            cannot_link: vec![],
        };
        let p = plan();
        let fields = crate::store::tf_fields(&p);
        let seg = crate::store::write_segment(
            dir,
            EntityKind::Person,
            "R000001",
            &p.blocking,
            Parts {
                table: &t,
                master_id: &ids,
                components: crate::store::Components::Labels(&[0, 0, 2, 3, 4, 5]),
                links: &links,
                tf: crate::store::tf_lists(&t, &fields),
                tombstones: &[],
            },
            None,
        )
        .expect("base");
        let mut m = Manifest::new("R000001");
        m.kinds.insert(
            "person".into(),
            KindEntry {
                rules: p.blocking.clone(),
                term_frequency: fields,
                segments: vec![seg],
            },
        );
        m.write(dir).expect("manifest");
        KindStore::open(dir, EntityKind::Person)
            .expect("open")
            .expect("store")
    }

    fn del(source: &str, id: &str, row: u64) -> Deletion {
        Deletion {
            kind: EntityKind::Person,
            source: source.into(),
            record_id: id.into(),
            row,
        }
    }

    #[test]
    fn tonight_touches_whole_components_in_full_load_order() {
        let dir = std::env::temp_dir().join(format!("yiku-delta-a-{}", std::process::id()));
        let store = base(&dir);
        // a:2 renamed 李四 (changed), a:3 王五 (new); b:1 deleted; b:9 is not there.
        let changes = table(&[("a", "2", "李四"), ("a", "3", "王五")]);
        let p = prepare(
            &store,
            1,
            changes,
            &[del("b", "9", 1), del("b", "1", 2)],
            &[],
            &plan(),
            &crate::state::join,
        )
        .expect("prepared");
        let ids: Vec<&str> = p.table.record_id.iter().flatten().collect();
        // a:1 joins as the rest of a:2's component; b:1's component is gone with it.
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(p.focus, [false, true, true]);
        assert_eq!(p.table.columns["name"].value(1), "李四");
        assert!(p.links.edges.is_empty(), "a:1 ~ a:2 went with the old a:2");
        assert_eq!(p.stats.links_dropped, 1);
        let s = &p.stats;
        assert_eq!(
            (s.added, s.changed, s.deleted, s.deletions_not_found),
            (1, 1, 1, 1)
        );
        assert_eq!(p.old_id, [Some("P1".into()), Some("P1".into()), None]);
        assert_eq!(p.old_size, [2, 2, 0]);
        assert_eq!(p.removed, [("b".into(), "1".into(), "P2".into())]);
        // Term frequencies over the index after tonight: 张三 once, 李四 once (b:1 went,
        // a:2 came), 王五 once, of six names (赵六 three times).
        let c = &p.counts["name"];
        let of = |v: &str| c.of.get(&crate::score::tf::value_hash(v)).copied();
        assert_eq!(
            (of("张三"), of("李四"), of("王五"), c.total),
            (Some(1), Some(1), Some(1), 6)
        );
        // Every record is in a changed component: all go to the layer, replacing both
        // components of the base they came from.
        let (keep, tombstones) = p.layer(&[0, 1, 2], &[false, true, true]);
        assert_eq!(keep, [true, true, true]);
        assert_eq!(tombstones.len(), 2);
        assert_eq!(
            p.status(&p.table, &store, "b", "1"),
            Status::Gone,
            "deleted tonight"
        );
        assert_eq!(p.status(&p.table, &store, "c", "1"), Status::Untouched);
        assert_eq!(p.status(&p.table, &store, "a", "3"), Status::InTable(2));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn block_mates_join_and_oversized_blocks_are_only_counted() {
        let dir = std::env::temp_dir().join(format!("yiku-delta-b-{}", std::process::id()));
        let store = base(&dir);
        // d:1 张三 meets a:1 and a:2 (a block of three: over the cap of two, only counted);
        // d:2 李四 meets b:1 (a block of two: expanded).
        let changes = table(&[("d", "1", "张三"), ("d", "2", "李四")]);
        let p =
            prepare(&store, 1, changes, &[], &[], &plan(), &crate::state::join).expect("prepared");
        let ids: Vec<String> = (0..p.table.len())
            .map(|i| {
                format!(
                    "{}:{}",
                    p.table.sources[p.table.source[i] as usize],
                    p.table.record_id.value(i)
                )
            })
            .collect();
        assert_eq!(ids, ["b:1", "d:1", "d:2"]);
        let h = crate::block::key_hash(std::iter::once(Some("张三".as_bytes())));
        assert_eq!(p.sizes[0].get(&h), Some(&3));
        // b:1 did not change: if nothing links it tonight, its component stays where it is.
        let (keep, tombstones) = p.layer(&[0, 1, 2], &[false, true, true]);
        assert_eq!(keep, [false, true, true]);
        // Had b:1's row changed (a clerk's decision, a rescored link), its component goes too.
        let (keep, _) = p.layer(&[0, 1, 2], &[true, true, true]);
        assert_eq!(keep, [true, true, true]);
        assert!(tombstones.is_empty());
        // A job blocking otherwise is refused.
        let mut other = plan();
        other.blocking = vec![vec!["phone".to_string()]];
        let err = prepare(
            &store,
            1,
            table(&[("d", "1", "x")]),
            &[],
            &[],
            &other,
            &crate::state::join,
        )
        .expect_err("other rules");
        assert!(err.to_string().contains("full night"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
