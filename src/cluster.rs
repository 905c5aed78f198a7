//! Stage 6: cluster. Consumes: scored pairs and the match threshold, plus must-not-link columns
//! (valid ID numbers, valid USCCs). Produces: [`Clusters`], a cluster label for every record.
//! Cost: a parallel lock-free union-find over the edges, then a greedy re-clustering of only
//! the components that hold a conflict.
//!
//! Must-not-link: two records with different non-null values in a must-not-link column never
//! share a cluster. Inside a conflicting component the edges are re-applied strongest first
//! and an edge that would join two different values is cut, so the weakest links go.
//! INVARIANT: a record's label is the smallest record index of its cluster, so labels do not
//! depend on the order in which threads applied the edges.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow_array::{Array, StringArray};
use arrow_buffer::ScalarBuffer;
use rayon::prelude::*;

use crate::state::Scratch;

/// The result of clustering one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// Components that linked records with different must-not-link values.
    pub conflicts: u64,
    /// Edges cut to resolve them.
    pub cut_edges: u64,
    /// Edges at or above the threshold.
    pub edges: u64,
    /// The records of each cluster, for the stages that walk clusters.
    pub groups: Groups,
    /// The smallest record of each record's connected component over all the edges, before
    /// must-not-link cut any: `None` when it is the cluster's ([`Clusters::label`]: nothing was
    /// cut). A cluster lies within one component; components are what a delta run re-clusters
    /// whole.
    pub component: Option<ScalarBuffer<u32>>,
}

impl Clusters {
    /// The smallest record of each record's cluster, made from the groups when asked for (not
    /// kept beside them: 4 bytes a record).
    pub fn label(&self) -> Vec<u32> {
        self.groups.labels()
    }

    /// The groups and components written to disk and mapped back (the page cache's to keep:
    /// ~14 bytes a record not held from clustering to the end of a spilled run).
    pub fn spill(&mut self, spill: &crate::state::Spill) -> crate::error::Result<()> {
        let to_disk = |v: &ScalarBuffer<u32>| -> crate::error::Result<ScalarBuffer<u32>> {
            let mut w = spill.words::<u32>(1 << 20)?;
            w.push(v)?;
            w.finish()
        };
        let g = &self.groups;
        self.groups = Groups {
            start: to_disk(&g.start)?,
            member: to_disk(&g.member)?,
            cluster_of: to_disk(&g.cluster_of)?,
        };
        if let Some(c) = &self.component {
            self.component = Some(to_disk(c)?);
        }
        Ok(())
    }

    /// The smallest record of each record's component (see [`Clusters::component`]).
    pub fn components(&self) -> std::borrow::Cow<'_, [u32]> {
        match &self.component {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(self.label()),
        }
    }
}

/// Records grouped by cluster: clusters in order of their smallest record (their label),
/// members in record order. Master ids and golden records both walk clusters this way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    /// `member[start[c]..start[c + 1]]` are the records of cluster `c`.
    pub start: ScalarBuffer<u32>,
    pub member: ScalarBuffer<u32>,
    /// The cluster of each record.
    pub cluster_of: ScalarBuffer<u32>,
}

impl Groups {
    /// Groups records by `label` (each record's smallest fellow member). Cluster numbers are
    /// ranks of the records that are their own label. A label above its record (not a
    /// smallest member) starts a cluster of its own.
    pub fn of(label: &[u32]) -> Groups {
        Groups::of_owned(label.to_vec())
    }

    /// [`Groups::of`], each record's cluster made in place of its label (no second list of a
    /// record each while the groups are made).
    pub fn of_owned(label: Vec<u32>) -> Groups {
        let Ok(groups) = Groups::of_in(Scratch::heap(label), |len| {
            Ok::<_, std::convert::Infallible>(Scratch::heap(vec![0; len]))
        });
        groups
    }

    /// [`Groups::of_owned`], the members and the starts made in lists from `zeroed` (on a
    /// mapped file in a spilled run: the groups then hold no memory of their own).
    pub fn of_in<E>(
        label: Scratch<u32>,
        zeroed: impl Fn(usize) -> Result<Scratch<u32>, E>,
    ) -> Result<Groups, E> {
        // Each record's cluster in one pass: a label is never above its record, so a
        // record's label's cluster is known when the record is reached (no list of ranks);
        // `cluster_of[l]` for `l < i` is already a cluster when record `i` reads it.
        let mut cluster_of = label;
        let mut clusters = 0u32;
        for i in 0..cluster_of.len() {
            let l = cluster_of[i] as usize;
            cluster_of[i] = match cluster_of.get(l) {
                Some(&c) if l < i => c,
                _ => {
                    clusters += 1;
                    clusters - 1
                }
            };
        }
        let clusters = clusters as usize;
        let mut start = zeroed(clusters + 1)?;
        for &c in cluster_of.iter() {
            start[c as usize + 1] += 1;
        }
        for c in 0..clusters {
            start[c + 1] += start[c];
        }
        // Each cluster's start serves as its fill cursor, then takes its place back: at the
        // end it is the next cluster's start, so all move up one (no copy of the starts).
        let mut member = zeroed(cluster_of.len())?;
        for (i, &c) in cluster_of.iter().enumerate() {
            member[start[c as usize] as usize] = i as u32;
            start[c as usize] += 1;
        }
        start.copy_within(0..clusters, 1);
        if let Some(s) = start.first_mut() {
            *s = 0;
        }
        Ok(Groups {
            start: start.into_buffer(),
            member: member.into_buffer(),
            cluster_of: cluster_of.into_buffer(),
        })
    }

    /// The smallest record of each record's cluster (its first member: members are in record
    /// order), the label [`Groups::of`] was given.
    pub fn labels(&self) -> Vec<u32> {
        self.cluster_of
            .par_iter()
            .map(|&c| self.members(c as usize).first().copied().unwrap_or(0))
            .collect()
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records of cluster `c`, in record order.
    pub fn members(&self, c: usize) -> &[u32] {
        &self.member[self.start[c] as usize..self.start[c + 1] as usize]
    }
}

/// A scored edge between two records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub left: u32,
    pub right: u32,
    pub weight: f64,
}

/// Lock-free union-find whose roots are the smallest index of their set, over a list of
/// parents it borrows (on the heap or a mapped file, [`Scratch`]).
struct AtomicUnionFind<'p> {
    parent: &'p [AtomicU32],
}

impl<'p> AtomicUnionFind<'p> {
    /// Every record its own set: `parent` made `0, 1, 2, ...` and borrowed as atomics.
    fn new(parent: &'p mut [u32]) -> Self {
        parent
            .par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (k, p) in chunk.iter_mut().enumerate() {
                    *p = ((c << 16) + k) as u32;
                }
            });
        // SAFETY: `AtomicU32` has the size and alignment of `u32`, and the list is borrowed
        // mutably for as long as the atomics are (no other reference to it exists).
        let parent = unsafe { &*(parent as *mut [u32] as *const [AtomicU32]) };
        AtomicUnionFind { parent }
    }

    fn find(&self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize].load(Ordering::Acquire);
            if p == x {
                return x;
            }
            let gp = self.parent[p as usize].load(Ordering::Acquire);
            // Path halving; losing this race is harmless.
            let _ = self.parent[x as usize].compare_exchange(
                p,
                gp,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            x = gp;
        }
    }

    fn union(&self, a: u32, b: u32) {
        let (mut a, mut b) = (a, b);
        loop {
            a = self.find(a);
            b = self.find(b);
            if a == b {
                return;
            }
            let (lo, hi) = (a.min(b), a.max(b));
            if self.parent[hi as usize]
                .compare_exchange(hi, lo, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// The root of every record, made in place of the union-find's parents (no second list): a
/// parent is never above its child (a set's root is its smallest record, and halving only
/// moves a record nearer it), so in record order each parent already holds its root.
fn roots_in_place(parent: &mut [u32]) {
    for i in 0..parent.len() {
        let p = parent[i] as usize;
        if p < i {
            parent[i] = parent[p];
        }
    }
}

/// Plain union-find for the small conflicting components.
struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }
}

/// A scored batch's `left`, `right`, `match_weight` and `match_probability` columns.
fn scored_columns(
    b: &arrow_array::RecordBatch,
) -> Option<(
    &arrow_array::UInt32Array,
    &arrow_array::UInt32Array,
    &arrow_array::Float64Array,
    &arrow_array::Float64Array,
)> {
    use arrow_array::{Float64Array, UInt32Array};
    let get = |n: &str| b.column_by_name(n).map(|c| c.as_any());
    Some((
        get("left")?.downcast_ref::<UInt32Array>()?,
        get("right")?.downcast_ref::<UInt32Array>()?,
        get("match_weight")?.downcast_ref::<Float64Array>()?,
        get("match_probability")?.downcast_ref::<Float64Array>()?,
    ))
}

/// The edges of scored batches: pairs whose probability reaches the threshold.
pub fn edges(scored: &[arrow_array::RecordBatch], threshold: f64) -> Vec<Edge> {
    use arrow_array::Float64Array;
    // Counted first: the list is made exactly as long as needed (~16 bytes an edge).
    let reached = |b: &arrow_array::RecordBatch| {
        b.column_by_name("match_probability")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .map_or(0, |p| {
                p.values().iter().filter(|&&v| v >= threshold).count()
            })
    };
    let mut out = Vec::with_capacity(scored.par_iter().map(reached).sum());
    for b in scored {
        let Some((l, r, w, p)) = scored_columns(b) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if p.value(i) >= threshold {
                out.push(Edge {
                    left: l.value(i),
                    right: r.value(i),
                    weight: w.value(i),
                });
            }
        }
    }
    out
}

/// Clerks' decisions resolved to records of one table: `match` pairs as must-link edges,
/// `non_match` pairs as cannot-link pairs. Decisions on records of other kinds, or on records
/// not in this run, are not applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decisions {
    pub must_link: Vec<(u32, u32)>,
    pub cannot_link: Vec<(u32, u32)>,
    /// Indices of the labels that named two records of the table.
    pub resolved: Vec<usize>,
}

impl Decisions {
    pub fn resolve(
        table: &crate::standardise::StdTable,
        labels: &[crate::load::Label],
    ) -> Decisions {
        let mut d = Decisions::default();
        if labels.is_empty() {
            return d;
        }
        let index: HashMap<(&str, &str), u32> = (0..table.len())
            .map(|i| {
                (
                    (
                        table.sources[table.source[i] as usize].as_str(),
                        table.record_id.value(i),
                    ),
                    i as u32,
                )
            })
            .collect();
        for (k, l) in labels.iter().enumerate() {
            let a = index.get(&(l.source_l.as_str(), l.record_id_l.as_str()));
            let b = index.get(&(l.source_r.as_str(), l.record_id_r.as_str()));
            if let (Some(&a), Some(&b)) = (a, b) {
                d.resolved.push(k);
                let pair = (a.min(b), a.max(b));
                if l.is_match {
                    d.must_link.push(pair);
                } else {
                    d.cannot_link.push(pair);
                }
            }
        }
        d.must_link.sort_unstable();
        d.cannot_link.sort_unstable();
        d
    }

    pub fn applied(&self) -> u64 {
        (self.must_link.len() + self.cannot_link.len()) as u64
    }

    /// Whether a clerk decided on the pair of records `a`, `b` (either order).
    pub fn decided(&self, a: u32, b: u32) -> bool {
        let pair = (a.min(b), a.max(b));
        self.must_link.binary_search(&pair).is_ok() || self.cannot_link.binary_search(&pair).is_ok()
    }

    /// Model edges plus must-link edges (strongest of all), minus edges a clerk rejected.
    pub fn edges(&self, mut edges: Vec<Edge>) -> Vec<Edge> {
        if !self.cannot_link.is_empty() {
            edges.retain(|e| self.cannot_link.binary_search(&(e.left, e.right)).is_err());
        }
        edges.extend(self.must_link.iter().map(|&(left, right)| Edge {
            left,
            right,
            weight: f64::INFINITY,
        }));
        edges
    }
}

/// The edges of scored batches as columns written to disk as they are found and mapped back
/// ([`edges`] for a run under a `memory_limit` that spills: the page cache's to keep, not 16
/// bytes an edge held). The same edges in the same order.
pub fn edge_columns(
    scored: &[arrow_array::RecordBatch],
    threshold: f64,
    spill: &crate::state::Spill,
) -> crate::error::Result<EdgeColumns> {
    const BUFFER: usize = 1 << 18;
    let (mut left, mut right) = (spill.words::<u32>(BUFFER)?, spill.words::<u32>(BUFFER)?);
    let mut weight = spill.words::<f64>(BUFFER)?;
    for b in scored {
        let Some((l, r, w, p)) = scored_columns(b) else {
            continue;
        };
        let rows: Vec<usize> = (0..b.num_rows())
            .filter(|&i| p.value(i) >= threshold)
            .collect();
        left.push(&rows.iter().map(|&i| l.value(i)).collect::<Vec<_>>())?;
        right.push(&rows.iter().map(|&i| r.value(i)).collect::<Vec<_>>())?;
        weight.push(&rows.iter().map(|&i| w.value(i)).collect::<Vec<_>>())?;
    }
    Ok(EdgeColumns {
        left: left.finish()?,
        right: right.finish()?,
        weight: weight.finish()?,
    })
}

/// Edges as three columns ([`edge_columns`]).
#[derive(Debug, Clone, Default)]
pub struct EdgeColumns {
    pub left: arrow_buffer::ScalarBuffer<u32>,
    pub right: arrow_buffer::ScalarBuffer<u32>,
    pub weight: arrow_buffer::ScalarBuffer<f64>,
}

/// The edges clustering takes: a list, or columns.
#[derive(Clone, Copy)]
pub enum Edges<'a> {
    Rows(&'a [Edge]),
    Columns(&'a EdgeColumns),
}

impl Edges<'_> {
    pub fn len(&self) -> usize {
        match self {
            Edges::Rows(e) => e.len(),
            Edges::Columns(c) => c.left.len().min(c.right.len()).min(c.weight.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Edge `i` (below [`Edges::len`]).
    fn at(&self, i: usize) -> Edge {
        match self {
            Edges::Rows(e) => e[i],
            Edges::Columns(c) => Edge {
                left: c.left[i],
                right: c.right[i],
                weight: c.weight[i],
            },
        }
    }
}

/// Clusters `n` records from the edges (pairs at or above the threshold).
pub fn cluster(
    n: usize,
    edges: &[Edge],
    must_not_link: &[&StringArray],
    cannot_link: &[(u32, u32)],
) -> crate::error::Result<Clusters> {
    cluster_edges(n, Edges::Rows(edges), must_not_link, cannot_link, None)
}

/// [`cluster`], the edges a list or columns; with a `spill`, every list of a number per
/// record (the union-find's parents, the groups, the components when cuts make them differ
/// from the clusters) on a mapped file as it is made ([`Scratch`]), so that clustering holds
/// no memory per record of its own.
pub fn cluster_edges(
    n: usize,
    edges: Edges,
    must_not_link: &[&StringArray],
    cannot_link: &[(u32, u32)],
    spill: Option<&crate::state::Spill>,
) -> crate::error::Result<Clusters> {
    let zeroed = |len: usize| Scratch::<u32>::zeroed(len, spill);
    let mut parent = zeroed(n)?;
    {
        let uf = AtomicUnionFind::new(&mut parent);
        (0..edges.len())
            .into_par_iter()
            .with_min_len(1 << 12)
            .for_each(|i| {
                let e = edges.at(i);
                uf.union(e.left, e.right)
            });
    }
    roots_in_place(&mut parent);
    // Each record's cluster made in place of its label; a record's label is then the first
    // member of its cluster (`root`), not a list of its own (4 bytes a record less).
    let mut groups = Groups::of_in(parent, zeroed)?;
    // Clusters whose records disagree on a must-not-link column (by their label): in memory
    // checked cluster by cluster in parallel; spilled, in one pass over the records in order
    // per column (the column's values read front to back: a page cache that cannot hold the
    // column is not read at random).
    let mut conflicted: Vec<u32> = match spill {
        None => (0..groups.len())
            .into_par_iter()
            .filter_map(|c| {
                let members = groups.members(c);
                let clash = members.len() > 1
                    && must_not_link.iter().any(|col| {
                        let mut values = members
                            .iter()
                            .filter(|&&i| col.is_valid(i as usize))
                            .map(|&i| col.value(i as usize));
                        values
                            .next()
                            .is_some_and(|first| values.any(|v| v != first))
                    });
                clash.then(|| members[0])
            })
            .collect(),
        Some(_) => conflicted_in_sweeps(&groups, must_not_link, spill)?,
    };
    let root = |g: &Groups, i: u32| -> u32 {
        g.cluster_of
            .get(i as usize)
            .and_then(|&c| g.members(c as usize).first().copied())
            .unwrap_or(i)
    };
    for &(a, b) in cannot_link {
        let (ca, cb) = (
            groups.cluster_of.get(a as usize),
            groups.cluster_of.get(b as usize),
        );
        if ca.is_some() && ca == cb {
            conflicted.push(root(&groups, a));
        }
    }
    conflicted.sort_unstable();
    conflicted.dedup();
    let mut cut_edges = 0u64;
    // On disk when a spill is given (in memory should writing it fail).
    // (Made a million records at a time from the groups when written to disk.)
    let component = (!conflicted.is_empty()).then(|| {
        let on_disk = spill.map(|s| {
            let mut w = s.words::<u32>(1 << 20)?;
            for first in (0..n).step_by(1 << 20) {
                let labels: Vec<u32> = (first..(first + (1 << 20)).min(n))
                    .into_par_iter()
                    .map(|i| root(&groups, i as u32))
                    .collect();
                w.push(&labels)?;
            }
            w.finish()
        });
        match on_disk {
            Some(Ok(c)) => c,
            _ => ScalarBuffer::from(groups.labels()),
        }
    });
    if !conflicted.is_empty() {
        // The conflicted cluster of each label (a record's index): a map of the few, not a
        // list over every record.
        let slot: HashMap<u32, u32, foldhash::fast::FixedState> = conflicted
            .iter()
            .enumerate()
            .map(|(k, &r)| (r, k as u32))
            .collect();
        let slot_of = |i: u32| slot.get(&root(&groups, i)).map(|&k| k as usize);
        let mut comp_edges: Vec<Vec<Edge>> = vec![Vec::new(); conflicted.len()];
        // Every edge looked up on every thread, the few of conflicted clusters kept in order.
        let kept: Vec<(usize, Edge)> = (0..edges.len())
            .into_par_iter()
            .with_min_len(1 << 12)
            .filter_map(|i| {
                let e = edges.at(i);
                slot_of(e.left).map(|k| (k, e))
            })
            .collect();
        for (k, e) in kept {
            comp_edges[k].push(e);
        }
        let members: Vec<&[u32]> = conflicted
            .iter()
            .map(|&root| groups.members(groups.cluster_of[root as usize] as usize))
            .collect();
        let mut comp_cannot: Vec<Vec<(u32, u32)>> = vec![Vec::new(); conflicted.len()];
        for &(a, b) in cannot_link {
            if let Some(k) = slot_of(a) {
                comp_cannot[k].push((a, b));
            }
        }
        // Every conflicted member's must-not-link values, read once each in row order (a
        // sweep of each column, not a read at random per member).
        let all: Vec<u32> = members.iter().flat_map(|m| m.iter().copied()).collect();
        let (rows, at) = crate::mem::in_row_order(&all);
        drop(all);
        let taken = must_not_link
            .iter()
            .map(|col| crate::mem::gather(col, &rows))
            .collect::<Result<Vec<StringArray>, _>>()
            .map_err(|e| crate::error::Error::Data {
                stage: "cluster",
                message: e.to_string(),
            })?;
        drop(rows);
        let mut from = 0usize;
        let places: Vec<&[u32]> = members
            .iter()
            .map(|m| {
                let p = &at[from..from + m.len()];
                from += m.len();
                p
            })
            .collect();
        let results: Vec<(Vec<(u32, u32)>, u64)> = comp_edges
            .into_par_iter()
            .zip(members.into_par_iter())
            .zip(places.into_par_iter())
            .zip(comp_cannot.par_iter())
            .map(|(((es, ms), at), cl)| recluster(ms, es, (&taken, at), cl))
            .collect();
        drop(taken);
        drop(slot);
        // Each record's label made in place of its cluster (the groups' own list, no second
        // list of a record each beside them: 4 bytes a record less at the stage's peak).
        let Groups {
            start,
            member,
            cluster_of,
        } = std::mem::take(&mut groups);
        // (Mapped groups are written again into a list of their own, mapped too.)
        let mut label = match cluster_of.into_inner().into_vec::<u32>() {
            Ok(list) => Scratch::heap(list),
            Err(shared) => {
                let shared = ScalarBuffer::<u32>::from(shared);
                let mut list = zeroed(shared.len())?;
                list.copy_from_slice(&shared);
                list
            }
        };
        label.par_iter_mut().with_min_len(1 << 14).for_each(|l| {
            *l = start
                .get(*l as usize)
                .and_then(|&at| member.get(at as usize))
                .copied()
                .unwrap_or(0);
        });
        for (relabels, cut) in results {
            cut_edges += cut;
            for (i, l) in relabels {
                label[i as usize] = l;
            }
        }
        // The old groups go before the new are made (~12 bytes a record each).
        drop((start, member));
        groups = Groups::of_in(label, zeroed)?;
    }
    Ok(Clusters {
        groups,
        conflicts: conflicted.len() as u64,
        cut_edges,
        edges: edges.len() as u64,
        component,
    })
}

/// The first record of every cluster whose records hold two different values of a
/// must-not-link column, in cluster order: each column read once, front to back, each value
/// told apart by a 64-bit hash and kept in its cluster's slot (on a mapped file with `spill`).
fn conflicted_in_sweeps(
    groups: &Groups,
    must_not_link: &[&StringArray],
    spill: Option<&crate::state::Spill>,
) -> crate::error::Result<Vec<u32>> {
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::FixedState::with_seed(0x006d_6e6c);
    let clusters = groups.len();
    let mut clash = vec![0u64; clusters.div_ceil(64)];
    for col in must_not_link {
        // A cluster's first value's hash (never 0), 0 while it has none.
        let mut first = Scratch::<u64>::zeroed(clusters, spill)?;
        for (i, &c) in groups.cluster_of.iter().enumerate() {
            if !col.is_valid(i) {
                continue;
            }
            let h = hasher.hash_one(col.value(i)).max(1);
            let c = c as usize;
            match first.get_mut(c) {
                Some(slot) if *slot == 0 => *slot = h,
                Some(slot) if *slot != h => clash[c / 64] |= 1 << (c % 64),
                _ => {}
            }
        }
    }
    Ok((0..clusters)
        .filter(|&c| clash[c / 64] >> (c % 64) & 1 == 1)
        .filter_map(|c| groups.members(c).first().copied())
        .collect())
}

/// Greedy strongest-first clustering of one component that respects must-not-link; returns
/// (record, new label) and the number of edges cut.
/// `values`: the must-not-link columns' values of the conflicted members, and where each of
/// `members`' is among them.
fn recluster(
    members: &[u32],
    mut edges: Vec<Edge>,
    (taken, at): (&[StringArray], &[u32]),
    cannot_link: &[(u32, u32)],
) -> (Vec<(u32, u32)>, u64) {
    // Weights equal to 9 decimals are a tie, broken by record order: weights that differ
    // only in the last bits (term frequencies of a slightly different population, summation
    // order) must not decide which of two equally good links survives.
    let q = |w: f64| if w.is_finite() { (w * 1e9).round() } else { w };
    edges.sort_by(|a, b| {
        q(b.weight)
            .total_cmp(&q(a.weight))
            .then(a.left.cmp(&b.left))
            .then(a.right.cmp(&b.right))
    });
    let local: HashMap<u32, u32> = members
        .iter()
        .enumerate()
        .map(|(k, &i)| (i, k as u32))
        .collect();
    let mut uf = UnionFind {
        parent: (0..members.len() as u32).collect(),
    };
    // Values each local set holds, per must-not-link column: each member's value numbered
    // among the component's values (compared as numbers from then on, not as text read again
    // at every edge).
    let mut numbers: Vec<HashMap<&str, u32>> = vec![HashMap::new(); taken.len()];
    let mut vals: Vec<Vec<Option<u32>>> = at
        .iter()
        .map(|&p| {
            let p = p as usize;
            taken
                .iter()
                .zip(numbers.iter_mut())
                .map(|(c, numbered)| {
                    c.is_valid(p).then(|| {
                        let next = numbered.len() as u32;
                        *numbered.entry(c.value(p)).or_insert(next)
                    })
                })
                .collect()
        })
        .collect();
    drop(numbers);
    let mut cut = 0u64;
    for e in edges {
        let (Some(&a), Some(&b)) = (local.get(&e.left), local.get(&e.right)) else {
            continue;
        };
        let (ra, rb) = (uf.find(a), uf.find(b));
        if ra == rb {
            continue;
        }
        let clash = vals[ra as usize]
            .iter()
            .zip(&vals[rb as usize])
            .any(|(x, y)| matches!((x, y), (Some(x), Some(y)) if x != y));
        let clash = clash
            || cannot_link.iter().any(|(x, y)| {
                let (Some(&x), Some(&y)) = (local.get(x), local.get(y)) else {
                    return false;
                };
                let (fx, fy) = (uf.find(x), uf.find(y));
                (fx == ra && fy == rb) || (fx == rb && fy == ra)
            });
        if clash {
            cut += 1;
            continue;
        }
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        uf.parent[hi as usize] = lo;
        let merged: Vec<Option<u32>> = vals[lo as usize]
            .iter()
            .zip(&vals[hi as usize])
            .map(|(x, y)| x.or(*y))
            .collect();
        vals[lo as usize] = merged;
    }
    // Members are in ascending order, so a local root (smallest local index) maps to the
    // smallest record index of its set.
    let out = (0..members.len() as u32)
        .map(|k| (members[k as usize], members[uf.find(k) as usize]))
        .collect();
    (out, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn e(left: u32, right: u32, weight: f64) -> Edge {
        Edge {
            left,
            right,
            weight,
        }
    }

    #[test]
    fn groups_list_clusters_by_smallest_member() {
        let g = Groups::of(&[0, 1, 0, 1, 4, 0]);
        assert_eq!(g.len(), 3);
        assert_eq!(g.members(0), &[0, 2, 5]);
        assert_eq!(g.members(1), &[1, 3]);
        assert_eq!(g.members(2), &[4]);
        assert_eq!(g.cluster_of, vec![0, 1, 0, 1, 2, 0]);
        assert_eq!(g.labels(), vec![0, 1, 0, 1, 4, 0]);
        // Across chunk boundaries: every record its own cluster but pairs (i, i + 70000).
        let n = 140_000u32;
        let label: Vec<u32> = (0..n)
            .map(|i| if i >= 70_000 { i - 70_000 } else { i })
            .collect();
        let g = Groups::of(&label);
        assert_eq!(g.len(), 70_000);
        assert_eq!(g.members(69_999), &[69_999, 139_999]);
        assert_eq!(g.labels(), label);
        assert!(Groups::of(&[]).is_empty());
    }

    #[test]
    fn components_are_labelled_by_their_smallest_member() {
        let c = cluster(5, &[e(3, 4, 5.0), e(1, 3, 5.0)], &[], &[]).expect("clusters");
        assert_eq!(c.label(), vec![0, 1, 2, 1, 1]);
        assert_eq!(c.conflicts, 0);
    }

    #[test]
    fn weakest_link_between_different_ids_is_cut() {
        let ids = StringArray::from(vec![Some("A"), None, Some("B")]);
        // 0 -(9)- 1 -(2)- 2 : record 1 joins A, the weaker link to B is cut.
        let c = cluster(3, &[e(0, 1, 9.0), e(1, 2, 2.0)], &[&ids], &[]).expect("clusters");
        assert_eq!(c.label(), vec![0, 0, 2]);
        assert_eq!(c.conflicts, 1);
        assert_eq!(c.cut_edges, 1);
    }

    #[test]
    fn edges_as_columns_on_disk_cluster_as_the_list_and_make_the_same_links_file() {
        use arrow_array::{Float64Array, RecordBatch, UInt32Array};
        // Scored batches of pairs in (left, right) order, some under the threshold, and ID
        // numbers that clash inside some components (cuts).
        let n = 2000u32;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut pairs: Vec<(u32, u32)> = (0..3000)
            .map(|_| {
                let a = next(u64::from(n)) as u32;
                let b = (a + 1 + next(6) as u32).min(n - 1);
                (a.min(b), a.max(b))
            })
            .filter(|(a, b)| a < b)
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let weights: Vec<f64> = pairs
            .iter()
            .map(|_| next(200) as f64 / 10.0 - 5.0)
            .collect();
        let batch = |from: usize, to: usize| {
            let w = &weights[from..to];
            RecordBatch::try_from_iter([
                (
                    "left",
                    Arc::new(UInt32Array::from_iter_values(
                        pairs[from..to].iter().map(|p| p.0),
                    )) as arrow_array::ArrayRef,
                ),
                (
                    "right",
                    Arc::new(UInt32Array::from_iter_values(
                        pairs[from..to].iter().map(|p| p.1),
                    )),
                ),
                ("match_weight", Arc::new(Float64Array::from(w.to_vec()))),
                (
                    "match_probability",
                    Arc::new(Float64Array::from_iter_values(
                        w.iter().map(|&v| 1.0 / (1.0 + (-v).exp2())),
                    )),
                ),
            ])
            .expect("a batch")
        };
        let half = pairs.len() / 2;
        let scored = [batch(0, half), batch(half, half), batch(half, pairs.len())];
        let ids = StringArray::from_iter((0..n).map(|i| (i % 7 == 0).then(|| (i % 3).to_string())));
        let dir = std::env::temp_dir().join(format!("yiku-edges-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).expect("a scratch folder");
        }
        let spill = crate::state::Spill::new(&dir, "t");
        let list = edges(&scored, 0.5);
        let columns = edge_columns(&scored, 0.5, &spill).expect("edges on disk");
        assert!(list.len() > 100 && list.len() < pairs.len());
        let by_list = cluster(n as usize, &list, &[&ids], &[]).expect("clusters");
        let by_columns = cluster_edges(
            n as usize,
            Edges::Columns(&columns),
            &[&ids],
            &[],
            Some(&spill),
        )
        .expect("clusters on disk");
        assert!(by_list.cut_edges > 0);
        assert_eq!(by_columns, by_list);
        // The components (before cuts) are each record's smallest fellow over the kept edges,
        // written to disk from the groups: checked against a plain union-find.
        let mut parent: Vec<u32> = (0..n).collect();
        fn top(parent: &mut [u32], mut x: u32) -> u32 {
            while parent[x as usize] != x {
                x = parent[x as usize];
            }
            x
        }
        for e in &list {
            let (a, b) = (top(&mut parent, e.left), top(&mut parent, e.right));
            parent[a.max(b) as usize] = a.min(b);
        }
        let smallest: Vec<u32> = (0..n).map(|i| top(&mut parent, i)).collect();
        assert_eq!(by_columns.components().as_ref(), smallest.as_slice());
        assert_eq!(by_list.components().as_ref(), smallest.as_slice());
        // Groups and components on disk are the same.
        let mut spilled = by_columns.clone();
        spilled.spill(&spill).expect("groups on disk");
        assert!(spilled.component.is_some());
        assert_eq!(spilled, by_list);
        let kind = crate::config::EntityKind::Person;
        let links = crate::state::Links {
            edges: list,
            cannot_link: Vec::new(),
        };
        crate::state::write_links_once(&a, kind, links).expect("links written");
        crate::state::write_edge_columns(&b, kind, &columns, &spill).expect("links written");
        let read = |d: &std::path::Path| {
            std::fs::read(crate::state::links_path(d, kind)).expect("a links file")
        };
        assert_eq!(read(&a), read(&b));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_clerks_non_match_splits_the_weakest_link() {
        // 0 -(9)- 1 -(3)- 2, and a clerk said 0 and 2 are different.
        let c = cluster(3, &[e(0, 1, 9.0), e(1, 2, 3.0)], &[], &[(0, 2)]).expect("clusters");
        assert_eq!(c.label(), vec![0, 0, 2]);
        assert_eq!(c.cut_edges, 1);
    }
}
