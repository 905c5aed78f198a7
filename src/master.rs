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

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::cluster::Clusters;
use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::standardise::StdTable;

/// The master index of one kind, in the table's record order.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterIndex {
    pub master_id: arrow_array::StringArray,
    pub cluster_size: Vec<u32>,
    pub clusters: u64,
    pub events: Vec<Event>,
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

/// The previous run's master index.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// The previous run's number; this run is `run + 1`.
    pub run: u64,
    /// (kind, source, record id) -> master id.
    ids: HashMap<(String, String, String), String>,
}

impl Previous {
    /// Reads `master_index.parquet` and `run.json` of a previous run's output folder.
    pub fn load(dir: &Path) -> Result<Previous> {
        let mi = dir.join("master_index.parquet");
        let cols =
            crate::load::read_text_columns(&mi, &["kind", "source", "record_id", "master_id"])?;
        let [Some(k), Some(s), Some(r), Some(m)] =
            <[Option<Vec<Option<String>>>; 4]>::try_from(cols).unwrap_or([None, None, None, None])
        else {
            return Err(Error::Schema {
                path: mi,
                column: "kind/source/record_id/master_id".into(),
                message: "missing: --previous must name the output folder of an earlier yiku run"
                    .into(),
            });
        };
        let mut ids = HashMap::with_capacity(k.len());
        for i in 0..k.len() {
            if let (Some(k), Some(s), Some(r), Some(m)) = (&k[i], &s[i], &r[i], &m[i]) {
                ids.insert((k.clone(), s.clone(), r.clone()), m.clone());
            }
        }
        let run_json = dir.join("run.json");
        let text = std::fs::read_to_string(&run_json).map_err(|e| Error::io(&run_json, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Read {
            path: run_json.clone(),
            message: e.to_string(),
        })?;
        let run = v["run"].as_u64().ok_or_else(|| Error::Read {
            path: run_json,
            message: "no `run` number: not written by this version of yiku".into(),
        })?;
        Ok(Previous { run, ids })
    }

    /// Number of this run given the previous one (1 for a first run).
    pub fn next_run(previous: Option<&Previous>) -> u64 {
        previous.map_or(1, |p| p.run + 1)
    }
}

fn new_id(kind: EntityKind, run: u64, seq: u64) -> String {
    format!("{}{run:06}{seq:09}", kind.id_prefix())
}

/// Assigns master ids to clusters, keeping the previous run's ids where they still apply.
pub fn master_index(
    table: &StdTable,
    clusters: &Clusters,
    previous: Option<&Previous>,
    run: u64,
) -> MasterIndex {
    let n = table.len();
    let kind = table.kind.as_str();
    let key = |i: usize| {
        format!(
            "{}:{}",
            table.sources[table.source[i] as usize],
            table.record_id.value(i)
        )
    };
    // Clusters in order of their smallest record.
    let mut slot = vec![usize::MAX; n];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let l = clusters.label[i] as usize;
        if slot[l] == usize::MAX {
            slot[l] = members.len();
            members.push(Vec::new());
        }
        members[slot[l]].push(i);
    }
    let prev_of: Vec<Option<&String>> = (0..n)
        .map(|i| {
            previous.and_then(|p| {
                p.ids.get(&(
                    kind.to_string(),
                    table.sources[table.source[i] as usize].clone(),
                    table.record_id.value(i).to_string(),
                ))
            })
        })
        .collect();
    // Records of each previous id per cluster; each previous id goes to its largest part.
    let mut count: BTreeMap<(&String, usize), u64> = BTreeMap::new();
    for (c, ms) in members.iter().enumerate() {
        for &i in ms {
            if let Some(p) = prev_of[i] {
                *count.entry((p, c)).or_default() += 1;
            }
        }
    }
    let mut winner: BTreeMap<&String, (u64, usize)> = BTreeMap::new();
    for (&(p, c), &k) in &count {
        let w = winner.entry(p).or_insert((k, c));
        if k > w.0 {
            *w = (k, c);
        }
    }
    let mut won: Vec<Vec<&String>> = vec![Vec::new(); members.len()];
    for (p, &(_, c)) in &winner {
        won[c].push(p);
    }
    let mut events = Vec::new();
    let mut seq = 0u64;
    let mut id_of = Vec::with_capacity(members.len());
    for (c, ms) in members.iter().enumerate() {
        let mut candidates = won[c].clone();
        // Most records here first, then the oldest id.
        candidates.sort_by(|a, b| count[&(*b, c)].cmp(&count[&(*a, c)]).then(a.cmp(b)));
        let id = match candidates.first() {
            Some(&survivor) => {
                for &other in &candidates[1..] {
                    events.push(Event {
                        master_id: other.clone(),
                        event: "merged_into",
                        other_id: Some(survivor.clone()),
                        records: join(
                            ms.iter()
                                .filter(|&&i| prev_of[i] == Some(other))
                                .map(|&i| key(i)),
                        ),
                    });
                }
                survivor.clone()
            }
            None => {
                seq += 1;
                let id = new_id(table.kind, run, seq);
                let origins: Vec<&String> = {
                    let mut o: Vec<&String> = ms.iter().filter_map(|&i| prev_of[i]).collect();
                    o.sort();
                    o.dedup();
                    o
                };
                if origins.is_empty() {
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
                        other_id: Some(o.clone()),
                        records: join(
                            ms.iter()
                                .filter(|&&i| prev_of[i] == Some(o))
                                .map(|&i| key(i)),
                        ),
                    });
                }
                id
            }
        };
        id_of.push(id);
    }
    // Record-level changes under kept ids.
    if let Some(p) = previous {
        for (c, ms) in members.iter().enumerate() {
            if won[c].is_empty() {
                continue; // a new id: `created` or `split_from` already lists its records
            }
            let id = &id_of[c];
            let mut added = Vec::new();
            let mut moved: BTreeMap<&String, Vec<String>> = BTreeMap::new();
            for &i in ms {
                match prev_of[i] {
                    None => added.push(key(i)),
                    // Records of an id merged into this one are covered by `merged_into`.
                    Some(o) if o != id && !won[c].contains(&o) => {
                        moved.entry(o).or_default().push(key(i))
                    }
                    _ => {}
                }
            }
            if !added.is_empty() {
                events.push(Event {
                    master_id: id.clone(),
                    event: "record_added",
                    other_id: None,
                    records: join(added.into_iter()),
                });
            }
            for (o, recs) in moved {
                events.push(Event {
                    master_id: id.clone(),
                    event: "record_moved",
                    other_id: Some(o.clone()),
                    records: join(recs.into_iter()),
                });
            }
        }
        let present: std::collections::HashSet<String> = (0..n).map(key).collect();
        let mut removed: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for ((k, s, r), m) in &p.ids {
            let rec = format!("{s}:{r}");
            if k == kind && !present.contains(&rec) {
                removed.entry(m).or_default().push(rec);
            }
        }
        for (m, mut recs) in removed {
            recs.sort();
            events.push(Event {
                master_id: m.clone(),
                event: "record_removed",
                other_id: None,
                records: recs.join(";"),
            });
        }
    }
    events.sort();
    let mut cluster_of = vec![0u32; n];
    let mut cluster_size = vec![0u32; n];
    for (c, ms) in members.iter().enumerate() {
        for &i in ms {
            cluster_of[i] = c as u32;
            cluster_size[i] = ms.len() as u32;
        }
    }
    let master_id = arrow_array::StringArray::from_iter_values(
        cluster_of.iter().map(|&c| id_of[c as usize].as_str()),
    );
    MasterIndex {
        master_id,
        cluster_size,
        clusters: members.len() as u64,
        events,
    }
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
            source: vec![0; ids.len()],
            record_id: ids.to_vec().into(),
            columns: Default::default(),
            raw: Default::default(),
            stats: Default::default(),
        }
    }

    fn clusters(label: &[u32]) -> Clusters {
        Clusters {
            label: label.to_vec(),
            conflicts: 0,
            cut_edges: 0,
            edges: 0,
        }
    }

    fn previous(run: u64, pairs: &[(&str, &str)]) -> Previous {
        Previous {
            run,
            ids: pairs
                .iter()
                .map(|(r, m)| (("person".into(), "s".into(), r.to_string()), m.to_string()))
                .collect(),
        }
    }

    fn ids(mi: &MasterIndex) -> Vec<&str> {
        mi.master_id.iter().flatten().collect()
    }

    fn kinds(mi: &MasterIndex) -> Vec<&'static str> {
        mi.events.iter().map(|e| e.event).collect()
    }

    #[test]
    fn first_run_creates_ids_in_cluster_order() {
        let mi = master_index(&table(&["a", "b", "c"]), &clusters(&[0, 0, 2]), None, 1);
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
        );
        assert_eq!(ids(&mi), ["P1", "P1", "P2", "P2"]);
        assert_eq!(kinds(&mi), ["record_added"]);
        assert_eq!(mi.events[0].records, "s:d");
    }

    #[test]
    fn a_merge_keeps_the_larger_then_older_id() {
        let p = previous(1, &[("a", "P2"), ("b", "P2"), ("c", "P1")]);
        let mi = master_index(&table(&["a", "b", "c"]), &clusters(&[0, 0, 0]), Some(&p), 2);
        assert_eq!(ids(&mi), ["P2", "P2", "P2"]);
        assert_eq!(mi.events[0].event, "merged_into");
        assert_eq!(
            (
                mi.events[0].master_id.as_str(),
                mi.events[0].other_id.as_deref()
            ),
            ("P1", Some("P2"))
        );
        // Equal sizes: the older (smaller) id survives.
        let p = previous(1, &[("a", "P2"), ("c", "P1")]);
        let mi = master_index(&table(&["a", "c"]), &clusters(&[0, 0]), Some(&p), 2);
        assert_eq!(ids(&mi), ["P1", "P1"]);
    }

    #[test]
    fn a_split_gives_the_largest_part_the_id_and_new_ids_to_the_rest() {
        let p = previous(4, &[("a", "P1"), ("b", "P1"), ("c", "P1")]);
        let mi = master_index(&table(&["a", "b", "c"]), &clusters(&[0, 1, 1]), Some(&p), 5);
        assert_eq!(ids(&mi), ["P000005000000001", "P1", "P1"]);
        assert_eq!(kinds(&mi), ["split_from"]);
        assert_eq!(mi.events[0].other_id.as_deref(), Some("P1"));
    }

    #[test]
    fn removed_records_are_recorded() {
        let p = previous(1, &[("a", "P1"), ("b", "P1")]);
        let mi = master_index(&table(&["a"]), &clusters(&[0]), Some(&p), 2);
        assert_eq!(ids(&mi), ["P1"]);
        assert_eq!(kinds(&mi), ["record_removed"]);
        assert_eq!(mi.events[0].records, "s:b");
    }
}
