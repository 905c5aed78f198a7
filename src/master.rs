//! Stage 7: master index. Consumes: cluster labels, and the previous run's master index when
//! there is one. Produces: a [`MasterIndex`] with every input record exactly once, a master id
//! per cluster that stays stable from run to run, and the lineage events that explain every
//! change. Cost: O(records).
//!
//! Stable ids. A cluster keeps the previous id that its records carried. When a cluster
//! gathers records of several previous ids (a merge), each previous id goes to the cluster
//! holding most of its records, and a cluster that won several keeps the one with the most
//! records in it, then the oldest; the others are recorded as merged into it. When the
//! records of one previous id end up in several clusters (a split), the largest part keeps the
//! id and the other parts get new ids, recorded as split from it.
//! Ids are `<kind prefix><run number, 6 digits><sequence, 9 digits>` (`P000002000000017`): an id
//! is never reused, and comparing two ids as text tells which is older.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::builder::{ArrayBuilder, StringBuilder};
use arrow_array::{Array, StringArray};
use rayon::prelude::*;
use serde::Serialize;

use crate::cluster::Clusters;
use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::standardise::StdTable;

/// The master index of one kind, in the table's record order.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterIndex {
    pub master_id: arrow_array::StringArray,
    pub cluster_size: arrow_buffer::ScalarBuffer<u32>,
    pub clusters: u64,
    /// Lineage events in runs that follow one another in [`Event`] order (a first run's
    /// events come in cluster order and are not copied into one run).
    pub events: Vec<Events>,
}

/// A change to the master index, for auditors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Event {
    pub master_id: String,
    /// `created`, `merged_into`, `split_from`, `record_added`, `record_moved`, `record_removed`.
    pub event: &'static str,
    /// The other master id involved (the survivor of a merge, the origin of a split or move).
    pub other_id: Option<String>,
    /// The records involved, `source:record_id` joined by `;`.
    pub records: String,
}

/// The names an [`Event`] may carry.
pub const EVENT_NAMES: [&str; 6] = [
    "created",
    "merged_into",
    "split_from",
    "record_added",
    "record_moved",
    "record_removed",
];

/// Lineage events as columns, one row per [`Event`], sorted as [`Event`]s sort (master id,
/// event, other id, records). Columns, not structs: a first run creates one event per
/// cluster, and as structs with their own strings they took ~190 bytes each.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub master_id: StringArray,
    pub event: StringArray,
    /// Null where the event involves no other id.
    pub other_id: StringArray,
    pub records: StringArray,
}

impl Default for Events {
    fn default() -> Self {
        Events::of(&[])
    }
}

impl Events {
    /// The events in the order given.
    pub fn of(rows: &[Event]) -> Events {
        Events {
            master_id: rows.iter().map(|e| Some(e.master_id.as_str())).collect(),
            event: rows.iter().map(|e| Some(e.event)).collect(),
            other_id: rows.iter().map(|e| e.other_id.as_deref()).collect(),
            records: rows.iter().map(|e| Some(e.records.as_str())).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.master_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `offset..offset + len`.
    pub fn slice(&self, offset: usize, len: usize) -> Events {
        Events {
            master_id: self.master_id.slice(offset, len),
            event: self.event.slice(offset, len),
            other_id: self.other_id.slice(offset, len),
            records: self.records.slice(offset, len),
        }
    }

    /// Row `i` as an [`Event`] (an event name not in [`EVENT_NAMES`] reads as `""`).
    pub fn row(&self, i: usize) -> Event {
        let event = self.event.value(i);
        Event {
            master_id: self.master_id.value(i).to_string(),
            event: EVENT_NAMES
                .iter()
                .find(|n| **n == event)
                .copied()
                .unwrap_or(""),
            other_id: self.key(i).2.map(str::to_string),
            records: self.records.value(i).to_string(),
        }
    }

    /// Every row as an [`Event`].
    pub fn rows(&self) -> Vec<Event> {
        (0..self.len()).map(|i| self.row(i)).collect()
    }

    fn key(&self, i: usize) -> (&str, &str, Option<&str>, &str) {
        (
            self.master_id.value(i),
            self.event.value(i),
            self.other_id.is_valid(i).then(|| self.other_id.value(i)),
            self.records.value(i),
        )
    }

    /// Rows of several runs one after another, as one run.
    pub fn concat(runs: &[Events]) -> Result<Events> {
        let column = |f: &dyn Fn(&Events) -> &StringArray| -> Result<StringArray> {
            crate::state::join(&runs.iter().map(|e| f(e).clone()).collect::<Vec<_>>())
        };
        Ok(Events {
            master_id: column(&|e| &e.master_id)?,
            event: column(&|e| &e.event)?,
            other_id: column(&|e| &e.other_id)?,
            records: column(&|e| &e.records)?,
        })
    }

    /// The events of every part in order: the parts themselves when they follow one another
    /// in order already (a first run's), else one sorted run.
    fn sorted(parts: Vec<Events>) -> Result<Vec<Events>> {
        let parts: Vec<Events> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let in_order = parts
            .iter()
            .all(|p| (1..p.len()).all(|i| p.key(i - 1) <= p.key(i)))
            && parts
                .windows(2)
                .all(|w| w[0].key(w[0].len() - 1) <= w[1].key(0));
        if in_order {
            return Ok(parts);
        }
        let mut order: Vec<(usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(p, e)| (0..e.len()).map(move |i| (p, i)))
            .collect();
        let key = |&(p, i): &(usize, usize)| parts[p].key(i);
        order.par_sort_by(|a, b| key(a).cmp(&key(b)));
        let column = |f: &(dyn Fn(&Events) -> &StringArray + Sync)| -> Result<StringArray> {
            let arrays: Vec<&dyn Array> = parts.iter().map(|e| f(e) as &dyn Array).collect();
            arrow_select::interleave::interleave(&arrays, &order)
                .ok()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(too_large)
        };
        Ok(vec![Events {
            master_id: column(&|e| &e.master_id)?,
            event: column(&|e| &e.event)?,
            other_id: column(&|e| &e.other_id)?,
            records: column(&|e| &e.records)?,
        }])
    }
}

fn too_large() -> Error {
    Error::Data {
        stage: "master",
        message: "lineage events do not fit one column".into(),
    }
}

/// One kind's rows of the previous master index, sorted by (source, record id).
#[derive(Debug, Clone)]
struct PreviousKind {
    source: StringArray,
    record_id: StringArray,
    master_id: StringArray,
}

/// The previous run's master index.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// The previous run's number; this run is `run + 1`.
    pub run: u64,
    kinds: BTreeMap<String, PreviousKind>,
}

impl Previous {
    /// Reads the master index and `run.json` of a previous run's output folder: its
    /// `master_index.parquet`, or where a delta night wrote only its changes, the index its
    /// store holds ([`crate::store::index_rows`]).
    pub fn load(dir: &Path) -> Result<Previous> {
        let run = Previous::run_of(dir)?;
        let mi = dir.join("master_index.parquet");
        if !mi.is_file()
            && let Some(kinds) = crate::store::index_rows(dir)?
        {
            let mut kinds_map = BTreeMap::new();
            for (kind, [s, r, m]) in kinds {
                let k: StringArray = std::iter::repeat_n(Some(kind.as_str()), s.len()).collect();
                kinds_map.extend(Previous::by_kind(&k, &s, &r, &m));
            }
            return Ok(Previous {
                run,
                kinds: kinds_map,
            });
        }
        let batches =
            crate::state::read_parquet(&mi, Some(&["kind", "source", "record_id", "master_id"]))?;
        let col = |n: &str| crate::state::text_column(&batches, n);
        let (Some(k), Some(s), Some(r), Some(m)) = (
            col("kind"),
            col("source"),
            col("record_id"),
            col("master_id"),
        ) else {
            return Err(Error::Schema {
                path: mi,
                column: "kind/source/record_id/master_id".into(),
                message: "missing: --previous must name the output folder of an earlier yiku run"
                    .into(),
            });
        };
        Ok(Previous {
            run,
            kinds: Previous::by_kind(&k, &s, &r, &m),
        })
    }

    /// The run number in a run folder's `run.json`.
    pub fn run_of(dir: &Path) -> Result<u64> {
        let run_json = dir.join("run.json");
        let text = std::fs::read_to_string(&run_json).map_err(|e| Error::io(&run_json, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Read {
            path: run_json.clone(),
            message: e.to_string(),
        })?;
        v["run"].as_u64().ok_or_else(|| Error::Read {
            path: run_json,
            message: "no `run` number: not written by this version of yiku".into(),
        })
    }

    /// The previous index of one kind given as rows (sorted here by source, record id): what
    /// a delta run knows of the records it re-clusters.
    pub fn of_rows(
        run: u64,
        kind: EntityKind,
        source: &StringArray,
        record_id: &StringArray,
        master_id: &StringArray,
    ) -> Previous {
        let k: StringArray = std::iter::repeat_n(Some(kind.as_str()), source.len()).collect();
        Previous {
            run,
            kinds: Previous::by_kind(&k, source, record_id, master_id),
        }
    }

    /// Groups rows by kind, each kind sorted by (source, record id); rows with a null go.
    fn by_kind(
        k: &StringArray,
        s: &StringArray,
        r: &StringArray,
        m: &StringArray,
    ) -> BTreeMap<String, PreviousKind> {
        let mut rows: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for i in 0..k.len() {
            if k.is_valid(i) && s.is_valid(i) && r.is_valid(i) && m.is_valid(i) {
                rows.entry(k.value(i)).or_default().push(i as u32);
            }
        }
        rows.into_iter()
            .map(|(kind, mut idx)| {
                let key = |i: u32| (s.value(i as usize), r.value(i as usize));
                // Written sorted; sort only what is not.
                if !idx.windows(2).all(|w| key(w[0]) <= key(w[1])) {
                    idx.par_sort_by(|&a, &b| key(a).cmp(&key(b)));
                }
                // Rows of one kind are written together: then the kind's rows are a slice.
                let contiguous = idx.windows(2).all(|w| w[1] == w[0] + 1);
                let take = |a: &StringArray| -> StringArray {
                    match idx.first() {
                        Some(&first) if contiguous => a.slice(first as usize, idx.len()),
                        _ => idx.iter().map(|&i| Some(a.value(i as usize))).collect(),
                    }
                };
                (
                    kind.to_string(),
                    PreviousKind {
                        source: take(s),
                        record_id: take(r),
                        master_id: take(m),
                    },
                )
            })
            .collect()
    }

    /// Kinds of the previous master index and their rows.
    pub fn kinds(&self) -> Vec<(&str, u64)> {
        self.kinds
            .iter()
            .map(|(k, v)| (k.as_str(), v.source.len() as u64))
            .collect()
    }

    /// Rows of the previous master index (of every kind).
    pub fn records(&self) -> u64 {
        self.kinds.values().map(|k| k.source.len() as u64).sum()
    }

    /// Number of this run given the previous one (1 for a first run).
    pub fn next_run(previous: Option<&Previous>) -> u64 {
        previous.map_or(1, |p| p.run + 1)
    }
}

fn new_id(kind: EntityKind, run: u64, seq: u64) -> String {
    // As `format!("{prefix}{run:06}{seq:09}")`, without the formatting machinery: a first
    // run makes one per entity.
    let mut id = String::with_capacity(16);
    id.push_str(kind.id_prefix());
    for (v, width) in [(run, 6), (seq, 9)] {
        let mut digits = [b'0'; 20];
        let (mut at, mut v) = (digits.len(), v);
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let at = at.min(digits.len() - width);
        id.extend(digits[at..].iter().map(|&d| char::from(d)));
    }
    id
}

/// The previous ids of one kind matched to a table's records.
struct Matched<'p> {
    /// Distinct previous master ids, sorted (so older first).
    ids: Vec<&'p str>,
    /// Per record: index into `ids` of its previous master id (empty when there are no
    /// previous ids: see `prev_of_at`).
    of_record: Vec<Option<u32>>,
    /// Previous rows no record matched: (source, record id, id index).
    removed: Vec<(&'p str, &'p str, u32)>,
}

/// Record `i`'s previous id in [`Matched::of_record`] (none when the list is empty).
fn prev_of_at(of_record: &[Option<u32>], i: u32) -> Option<u32> {
    of_record.get(i as usize).copied().flatten()
}

/// Matches the previous rows of the table's kind to its records: both are sorted by (source,
/// record id), so one merge pass does it.
fn match_previous<'p>(table: &StdTable, prev: Option<&'p PreviousKind>) -> Matched<'p> {
    let n = table.len();
    let Some(p) = prev else {
        return Matched {
            ids: Vec::new(),
            // No previous ids: none to look up (not `None` for every record, 8 bytes each).
            of_record: Vec::new(),
            removed: Vec::new(),
        };
    };
    // Number the distinct ids as met, then renumber them in sorted order.
    let mut seen: std::collections::HashMap<&str, u32, foldhash::fast::FixedState> =
        std::collections::HashMap::with_capacity_and_hasher(
            p.master_id.len() / 2,
            Default::default(),
        );
    let met: Vec<u32> = (0..p.master_id.len())
        .map(|i| {
            let next = seen.len() as u32;
            *seen.entry(p.master_id.value(i)).or_insert(next)
        })
        .collect();
    let mut by_text: Vec<(&str, u32)> = seen.into_iter().collect();
    by_text.par_sort_unstable();
    let mut renumber = vec![0u32; by_text.len()];
    for (new, &(_, old)) in by_text.iter().enumerate() {
        renumber[old as usize] = new as u32;
    }
    let ids: Vec<&str> = by_text.into_iter().map(|(t, _)| t).collect();
    let id_of_row: Vec<u32> = met.par_iter().map(|&m| renumber[m as usize]).collect();
    let mut of_record = vec![None; n];
    let mut removed = Vec::new();
    let rec = |i: usize| {
        (
            table.sources[table.source[i] as usize].as_str(),
            table.record_id.value(i),
        )
    };
    let old = |j: usize| (p.source.value(j), p.record_id.value(j));
    let (mut i, mut j) = (0, 0);
    while j < p.source.len() {
        match (i < n).then(|| rec(i).cmp(&old(j))) {
            Some(std::cmp::Ordering::Less) => i += 1,
            Some(std::cmp::Ordering::Equal) => {
                of_record[i] = Some(id_of_row[j]);
                i += 1;
                j += 1;
            }
            _ => {
                removed.push((p.source.value(j), p.record_id.value(j), id_of_row[j]));
                j += 1;
            }
        }
    }
    Matched {
        ids,
        of_record,
        removed,
    }
}

/// Assigns master ids to clusters, keeping the previous run's ids where they still apply.
pub fn master_index(
    table: &StdTable,
    clusters: &Clusters,
    previous: Option<&Previous>,
    run: u64,
) -> Result<MasterIndex> {
    master_index_with(table, clusters, previous, run, None, None)
}

/// Where [`master_index_with`] hands the lineage events.
pub type EventsTo<'a> = dyn FnMut(&[Events]) -> Result<()> + 'a;

/// [`master_index`], the lineage events handed to `events_to` (then not kept in
/// [`MasterIndex::events`]) as soon as they are made, before the master ids are written out:
/// the two are the largest things the stage makes (at 10M records ~0.2 GB each). With a
/// `spill`, the master ids go to disk a stretch of records at a time as they are made and
/// come back mapped ([`crate::state::SpillText`]), never held whole.
pub fn master_index_with(
    table: &StdTable,
    clusters: &Clusters,
    previous: Option<&Previous>,
    run: u64,
    events_to: Option<&mut EventsTo>,
    spill: Option<&crate::state::Spill>,
) -> Result<MasterIndex> {
    let key = |i: u32| {
        let i = i as usize;
        format!(
            "{}:{}",
            table.sources[table.source[i] as usize],
            table.record_id.value(i)
        )
    };
    let Matched {
        ids: prev_ids,
        of_record: prev_of,
        removed,
    } = match_previous(
        table,
        previous.and_then(|p| p.kinds.get(table.kind.as_str())),
    );
    // Clusters in order of their smallest record, members listed contiguously.
    let groups = &clusters.groups;
    let cluster_of = &groups.cluster_of;
    let members = |c: usize| groups.members(c);
    let n_clusters = groups.len();
    // No previous ids (a first run, or the first of this kind): every cluster gets a new id,
    // numbered in cluster order, and nothing per cluster is kept while settling (the lists
    // below stay empty: ~24 bytes a cluster, the peak of a spilled first run).
    let fresh = prev_ids.is_empty();
    // Per-cluster lists are kept flat (a list per cluster would cost 24 bytes per cluster
    // even when empty, as on a first run): `start[c]..start[c + 1]` of `data`.
    const BLOCK_BITS: u32 = 14;
    const BLOCK: usize = 1 << BLOCK_BITS;
    let blocks = n_clusters.div_ceil(BLOCK);
    let clusters_of = |b: usize| b * BLOCK..((b + 1) * BLOCK).min(n_clusters);
    // Records of each previous id per cluster: (id, count), by id.
    let (count_start, count_data) = flat(
        (0..if fresh { 0 } else { blocks })
            .into_par_iter()
            .map(|b| {
                let mut lens = Vec::with_capacity(BLOCK);
                let mut out: Vec<(u32, u64)> = Vec::new();
                let mut v: Vec<u32> = Vec::new();
                for c in clusters_of(b) {
                    v.clear();
                    v.extend(members(c).iter().filter_map(|&i| prev_of_at(&prev_of, i)));
                    v.sort_unstable();
                    let before = out.len();
                    for &p in &v {
                        match out[before..].last_mut() {
                            Some((q, k)) if *q == p => *k += 1,
                            _ => out.push((p, 1)),
                        }
                    }
                    lens.push((out.len() - before) as u32);
                }
                (lens, out)
            })
            .collect(),
    );
    let counts = |c: usize| match count_start.get(c..c + 2) {
        Some(&[a, b]) => &count_data[a as usize..b as usize],
        _ => &[],
    };
    let count_in = |c: usize, p: u32| {
        let cs = counts(c);
        cs.binary_search_by_key(&p, |x| x.0).map_or(0, |k| cs[k].1)
    };
    // Each previous id goes to the cluster holding most of its records (the first on a tie).
    let mut best: Vec<(u64, u32)> = vec![(0, u32::MAX); prev_ids.len()];
    for c in 0..n_clusters {
        for &(p, k) in counts(c) {
            if k > best[p as usize].0 {
                best[p as usize] = (k, c as u32);
            }
        }
    }
    // The previous ids each cluster won, ascending: a counting sort of `best` by cluster.
    let mut won_start = vec![0u32; if fresh { 0 } else { n_clusters + 1 }];
    for &(_, c) in &best {
        if c != u32::MAX {
            won_start[c as usize + 1] += 1;
        }
    }
    for c in 0..won_start.len().saturating_sub(1) {
        won_start[c + 1] += won_start[c];
    }
    let mut won_data = vec![0u32; won_start.last().map_or(0, |&w| w as usize)];
    let mut fill: Vec<u32> = won_start[..won_start.len().saturating_sub(1)].to_vec();
    for (p, &(_, c)) in best.iter().enumerate() {
        if c != u32::MAX {
            won_data[fill[c as usize] as usize] = p as u32;
            fill[c as usize] += 1;
        }
    }
    drop(fill);
    let won = |c: usize| match won_start.get(c..c + 2) {
        Some(&[a, b]) => &won_data[a as usize..b as usize],
        _ => &[],
    };
    // New ids are numbered in cluster order: a prefix count over the clusters that won none
    // (with no previous ids, cluster `c`'s is `c + 1`).
    let mut seq_of = vec![0u32; if fresh { 0 } else { n_clusters }];
    let mut seq = 0u32;
    for (c, s) in seq_of.iter_mut().enumerate() {
        if won(c).is_empty() {
            seq += 1;
            *s = seq;
        }
    }
    let seq_at = |c: usize| seq_of.get(c).map_or(c as u64 + 1, |&s| u64::from(s));
    // Each cluster's id and events depend on that cluster alone: settled in parallel blocks
    // of clusters, in order, each block with its own list of events.
    // A new id is appended to `new` as it is made.
    let settle = |c: usize, events: &mut Vec<Event>, new: &mut StringBuilder| -> Id {
        let ms = members(c);
        let mut candidates = won(c).to_vec();
        // Most records here first, then the oldest id.
        candidates.sort_by(|&a, &b| count_in(c, b).cmp(&count_in(c, a)).then(a.cmp(&b)));
        let survivor = match candidates.first() {
            Some(&survivor) => {
                for &other in &candidates[1..] {
                    events.push(Event {
                        master_id: prev_ids[other as usize].to_string(),
                        event: "merged_into",
                        other_id: Some(prev_ids[survivor as usize].to_string()),
                        records: join(
                            ms.iter()
                                .filter(|&&i| prev_of_at(&prev_of, i) == Some(other))
                                .map(|&i| key(i)),
                        ),
                    });
                }
                survivor
            }
            None => {
                let id = new_id(table.kind, run, seq_at(c));
                // The block's `k`-th new id.
                let k = new.len() as u32;
                new.append_value(&id);
                let origins = counts(c).iter().map(|x| x.0);
                if counts(c).is_empty() {
                    // On a first run the master index itself lists the records.
                    let records = match previous {
                        Some(_) => join(ms.iter().map(|&i| key(i))),
                        None => String::new(),
                    };
                    events.push(Event {
                        master_id: id.clone(),
                        event: "created",
                        other_id: None,
                        records,
                    });
                }
                for o in origins {
                    events.push(Event {
                        master_id: id.clone(),
                        event: "split_from",
                        other_id: Some(prev_ids[o as usize].to_string()),
                        records: join(
                            ms.iter()
                                .filter(|&&i| prev_of_at(&prev_of, i) == Some(o))
                                .map(|&i| key(i)),
                        ),
                    });
                }
                return Id::New(k);
            }
        };
        let id = prev_ids[survivor as usize];
        // Record-level changes under a kept id (a new id's `created` or `split_from`
        // already lists its records).
        let mut added = Vec::new();
        let mut moved: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for &i in ms {
            match prev_of_at(&prev_of, i) {
                None => added.push(key(i)),
                // Records of an id merged into this one are covered by `merged_into`.
                Some(o) if prev_ids[o as usize] != id && !won(c).contains(&o) => {
                    moved.entry(o).or_default().push(key(i))
                }
                _ => {}
            }
        }
        if !added.is_empty() {
            events.push(Event {
                master_id: id.to_string(),
                event: "record_added",
                other_id: None,
                records: join(added.into_iter()),
            });
        }
        for (o, recs) in moved {
            events.push(Event {
                master_id: id.to_string(),
                event: "record_moved",
                other_id: Some(prev_ids[o as usize].to_string()),
                records: join(recs.into_iter()),
            });
        }
        Id::Previous(survivor)
    };
    // Each block's events turned into columns as soon as the block is settled, and its new
    // ids written out as text.
    let settle_block = |b: usize| {
        let mut events = Vec::new();
        let mut new = StringBuilder::new();
        let ids: Vec<Id> = clusters_of(b)
            .map(|c| match settle(c, &mut events, &mut new) {
                Id::New(k) => Id::New(((b as u32) << BLOCK_BITS) | k),
                kept => kept,
            })
            .collect();
        (ids, Events::of(&events), new.finish())
    };
    // A first run's events are one `created` per cluster, in cluster order, its new ids
    // ascending (of one width while under 10^9): already sorted, so they are handed out a wave
    // of blocks at a time as settled instead of all held (~45 bytes a cluster).
    let mut events_to = events_to;
    let streamed = previous.is_none() && events_to.is_some() && n_clusters < 1_000_000_000;
    let wave = match streamed {
        true => 4 * rayon::current_num_threads().max(1),
        false => blocks.max(1),
    };
    // Each cluster's id (with no previous ids, cluster `c`'s is the `c`-th new id: not kept).
    let mut id_of: Vec<Id> = Vec::with_capacity(if fresh { 0 } else { n_clusters });
    let mut parts = Vec::new();
    // Every block's new ids one after another (~24 bytes a cluster: to disk as made when
    // spilled): `Id::New(b << BLOCK_BITS | k)` is `new_ids.value(new_start[b] + k)`.
    let to = match spill {
        Some(spill) => crate::state::Columns::Disk(spill),
        None => crate::state::Columns::Heap,
    };
    let mut new_text = to.parts()?;
    let mut new_start: Vec<usize> = Vec::with_capacity(blocks);
    let mut made = 0;
    for first in (0..blocks).step_by(wave) {
        let settled: Vec<(Vec<Id>, Events, StringArray)> = (first..(first + wave).min(blocks))
            .into_par_iter()
            .map(settle_block)
            .collect();
        let mut evs = Vec::with_capacity(settled.len());
        for (ids, e, new) in settled {
            if !fresh {
                id_of.extend(ids);
            }
            evs.push(e);
            new_start.push(made);
            made += new.len();
            new_text.push(new)?;
        }
        match (&mut events_to, streamed) {
            (Some(to), true) => to(&evs)?,
            _ => parts.extend(evs),
        }
    }
    // What only settling needed goes before the master ids are written out.
    drop((
        prev_of,
        count_start,
        count_data,
        won_start,
        won_data,
        seq_of,
        best,
    ));
    let mut events = Vec::new();
    if previous.is_some() {
        let mut gone: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (s, r, m) in removed {
            gone.entry(m).or_default().push(format!("{s}:{r}"));
        }
        for (m, recs) in gone {
            events.push(Event {
                master_id: prev_ids[m as usize].to_string(),
                event: "record_removed",
                other_id: None,
                records: join(recs.into_iter()),
            });
        }
    }
    parts.push(Events::of(&events));
    drop(events);
    let mut events = Events::sorted(parts)?;
    if let Some(to) = events_to {
        to(&events)?;
        events = Vec::new();
    }
    let size_of = |i: &u32| members(*i as usize).len() as u32;
    let cluster_size: arrow_buffer::ScalarBuffer<u32> = match spill {
        None => cluster_of
            .par_iter()
            .map(size_of)
            .collect::<Vec<_>>()
            .into(),
        // On disk, ~1M records at a time.
        Some(spill) => {
            let mut out = spill.words::<u32>(1 << 20)?;
            for some in cluster_of.chunks(1 << 20) {
                out.push(&some.par_iter().map(size_of).collect::<Vec<_>>())?;
            }
            out.finish()?
        }
    };
    let new_ids = new_text.finish()?;
    let text_of = |id: Id| match id {
        Id::Previous(p) => prev_ids[p as usize],
        Id::New(s) => {
            new_ids.value(new_start[(s >> BLOCK_BITS) as usize] + (s & (BLOCK as u32 - 1)) as usize)
        }
    };
    let too_long = |e: arrow_schema::ArrowError| Error::Data {
        stage: "master",
        message: format!("master ids do not fit one column: {e}"),
    };
    let id_of_record = |i: usize| {
        let c = cluster_of[i];
        text_of(match fresh {
            true => Id::New(c),
            false => id_of[c as usize],
        })
    };
    let n = cluster_of.len();
    let master_id = match spill {
        None => crate::mem::par_text_of(n, id_of_record).map_err(too_long)?,
        Some(spill) => {
            // A stretch of ~1M records' ids (~24 MB) at a time.
            const STRETCH: usize = 1 << 20;
            let mut ids = spill.text()?;
            for start in (0..n).step_by(STRETCH) {
                let len = STRETCH.min(n - start);
                let part =
                    crate::mem::par_text_of(len, |j| id_of_record(start + j)).map_err(too_long)?;
                ids.push(&part)?;
            }
            ids.finish()?
        }
    };
    Ok(MasterIndex {
        master_id,
        cluster_size,
        clusters: n_clusters as u64,
        events,
    })
}

/// A cluster's master id: a previous one (index into the sorted previous ids) or a new one
/// of this run (while settling, its place in its block's new ids; then block and place).
#[derive(Debug, Clone, Copy)]
enum Id {
    Previous(u32),
    New(u32),
}

/// Per-block lists joined: (start of each list, ending with the total; the items).
fn flat<T>(blocks: Vec<(Vec<u32>, Vec<T>)>) -> (Vec<u32>, Vec<T>) {
    let n: usize = blocks.iter().map(|b| b.0.len()).sum();
    let mut start = Vec::with_capacity(n + 1);
    let mut data = Vec::with_capacity(blocks.iter().map(|b| b.1.len()).sum());
    start.push(0u32);
    let mut at = 0u32;
    for (lens, items) in blocks {
        for len in lens {
            at += len;
            start.push(at);
        }
        data.extend(items);
    }
    (start, data)
}

fn join(it: impl Iterator<Item = String>) -> String {
    let mut v: Vec<String> = it.collect();
    v.sort();
    v.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standardise::StdTable;

    fn table(ids: &[&str]) -> StdTable {
        StdTable {
            kind: EntityKind::Person,
            sources: vec!["s".into()],
            source: vec![0; ids.len()].into(),
            record_id: ids.to_vec().into(),
            columns: Default::default(),
            raw: Default::default(),
            stats: Default::default(),
        }
    }

    fn clusters(label: &[u32]) -> Clusters {
        Clusters {
            groups: crate::cluster::Groups::of(label),
            conflicts: 0,
            cut_edges: 0,
            edges: 0,
            component: None,
        }
    }

    fn previous(run: u64, pairs: &[(&str, &str)]) -> Previous {
        let col = |f: &dyn Fn(&(&str, &str)) -> String| -> StringArray {
            pairs.iter().map(|p| Some(f(p))).collect()
        };
        Previous {
            run,
            kinds: Previous::by_kind(
                &col(&|_| "person".into()),
                &col(&|_| "s".into()),
                &col(&|p| p.0.into()),
                &col(&|p| p.1.into()),
            ),
        }
    }

    fn ids(mi: &MasterIndex) -> Vec<&str> {
        mi.master_id.iter().flatten().collect()
    }

    fn kinds(mi: &MasterIndex) -> Vec<&'static str> {
        events(mi).iter().map(|e| e.event).collect()
    }

    fn events(mi: &MasterIndex) -> Vec<Event> {
        mi.events.iter().flat_map(Events::rows).collect()
    }

    #[test]
    fn new_ids_are_zero_padded_as_formatted() {
        for (run, seq) in [
            (1, 1),
            (0, 0),
            (123456, 999_999_999),
            (1_234_567, 1_000_000_000),
            (42, 7),
        ] {
            for kind in [EntityKind::Person, EntityKind::Enterprise] {
                assert_eq!(
                    new_id(kind, run, seq),
                    format!("{}{run:06}{seq:09}", kind.id_prefix())
                );
            }
        }
    }

    #[test]
    fn first_run_creates_ids_in_cluster_order() {
        let mi = master_index(&table(&["a", "b", "c"]), &clusters(&[0, 0, 2]), None, 1).unwrap();
        assert_eq!(
            ids(&mi),
            ["P000001000000001", "P000001000000001", "P000001000000002"]
        );
        assert_eq!(mi.cluster_size, [2, 2, 1]);
        assert_eq!(kinds(&mi), ["created", "created"]);
    }

    #[test]
    fn unchanged_clusters_keep_their_ids_and_new_records_join() {
        let p = previous(1, &[("a", "P1"), ("b", "P1"), ("c", "P2")]);
        let mi = master_index(
            &table(&["a", "b", "c", "d"]),
            &clusters(&[0, 0, 2, 2]),
            Some(&p),
            2,
        )
        .unwrap();
        assert_eq!(ids(&mi), ["P1", "P1", "P2", "P2"]);
        assert_eq!(kinds(&mi), ["record_added"]);
        assert_eq!(events(&mi)[0].records, "s:d");
    }

    #[test]
    fn a_merge_keeps_the_larger_then_older_id() {
        let p = previous(1, &[("a", "P2"), ("b", "P2"), ("c", "P1")]);
        let mi =
            master_index(&table(&["a", "b", "c"]), &clusters(&[0, 0, 0]), Some(&p), 2).unwrap();
        assert_eq!(ids(&mi), ["P2", "P2", "P2"]);
        assert_eq!(events(&mi)[0].event, "merged_into");
        assert_eq!(
            (
                events(&mi)[0].master_id.as_str(),
                events(&mi)[0].other_id.as_deref()
            ),
            ("P1", Some("P2"))
        );
        // Equal sizes: the older (smaller) id survives.
        let p = previous(1, &[("a", "P2"), ("c", "P1")]);
        let mi = master_index(&table(&["a", "c"]), &clusters(&[0, 0]), Some(&p), 2).unwrap();
        assert_eq!(ids(&mi), ["P1", "P1"]);
    }

    #[test]
    fn a_split_gives_the_largest_part_the_id_and_new_ids_to_the_rest() {
        let p = previous(4, &[("a", "P1"), ("b", "P1"), ("c", "P1")]);
        let mi =
            master_index(&table(&["a", "b", "c"]), &clusters(&[0, 1, 1]), Some(&p), 5).unwrap();
        assert_eq!(ids(&mi), ["P000005000000001", "P1", "P1"]);
        assert_eq!(kinds(&mi), ["split_from"]);
        assert_eq!(events(&mi)[0].other_id.as_deref(), Some("P1"));
    }

    #[test]
    fn events_in_columns_sort_as_the_structs_do() {
        let e = |m: &str, event: &'static str, other: Option<&str>, records: &str| Event {
            master_id: m.into(),
            event,
            other_id: other.map(String::from),
            records: records.into(),
        };
        let a = vec![
            e("P2", "record_added", None, "s:b"),
            e("P1", "split_from", Some("P9"), "s:c"),
        ];
        let b = vec![
            e("P1", "split_from", None, "s:a"),
            e("P1", "created", None, ""),
            e("P2", "record_added", None, "s:a"),
        ];
        let mut want: Vec<Event> = a.iter().chain(&b).cloned().collect();
        want.sort();
        let sorted = Events::sorted(vec![Events::of(&a), Events::of(&b)]).unwrap();
        assert_eq!(sorted.len(), 1);
        assert_eq!(sorted[0].rows(), want);
        assert_eq!(sorted[0].slice(1, 2).rows(), want[1..3].to_vec());
        // Runs already in order are kept as they are (empty ones dropped); joined they are
        // the sorted rows.
        let runs = vec![
            Events::of(&want[..2]),
            Events::default(),
            Events::of(&want[2..]),
        ];
        let kept = Events::sorted(runs).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(Events::concat(&kept).unwrap().rows(), want);
        assert!(Events::concat(&[]).unwrap().is_empty());
        assert!(Events::default().is_empty());
    }

    #[test]
    fn removed_records_are_recorded() {
        let p = previous(1, &[("a", "P1"), ("b", "P1")]);
        let mi = master_index(&table(&["a"]), &clusters(&[0]), Some(&p), 2).unwrap();
        assert_eq!(ids(&mi), ["P1"]);
        assert_eq!(kinds(&mi), ["record_removed"]);
        assert_eq!(events(&mi)[0].records, "s:b");
    }
}
