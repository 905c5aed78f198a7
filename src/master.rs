//! Stage 7: master index. Consumes: cluster labels. Produces: a [`MasterIndex`] with every
//! input record exactly once and a master id per cluster. Cost: O(records).
//!
//! A master id is the kind's prefix and a hash of the (source, record id) of the cluster's
//! first record, so it does not depend on thread count or input row order.

use std::hash::BuildHasher;

use crate::cluster::Clusters;
use crate::standardise::StdTable;

/// The master index of one kind, in the table's record order.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterIndex {
    pub master_id: Vec<String>,
    pub cluster_size: Vec<u32>,
    pub clusters: u64,
}

/// Assigns master ids to clusters.
pub fn master_index(table: &StdTable, clusters: &Clusters) -> MasterIndex {
    let n = table.len();
    let mut size = vec![0u32; n];
    for &l in &clusters.label {
        size[l as usize] += 1;
    }
    let hasher = foldhash::fast::FixedState::with_seed(0x6d61_7374);
    let prefix = table.kind.id_prefix();
    let id_of = |rep: usize| {
        let key = format!(
            "{}\u{1f}{}",
            table.sources[table.source[rep] as usize],
            table.record_id.value(rep)
        );
        format!("{prefix}{:016x}", hasher.hash_one(key))
    };
    let ids: Vec<Option<String>> = (0..n)
        .map(|i| (clusters.label[i] as usize == i).then(|| id_of(i)))
        .collect();
    let master_id = (0..n)
        .map(|i| ids[clusters.label[i] as usize].clone().unwrap_or_default())
        .collect();
    MasterIndex {
        master_id,
        cluster_size: clusters.label.iter().map(|&l| size[l as usize]).collect(),
        clusters: ids.iter().filter(|x| x.is_some()).count() as u64,
    }
}
