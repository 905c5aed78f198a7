//! A whole index written out of a run folder's persistent index ([`crate::store`]): the
//! `master_index.parquet` and `golden_<kind>s.parquet` that a full run writes, for a folder of
//! a delta night (which writes only its changes). `yiku export`, or `yiku run --snapshot`. The
//! files are those a full run over the same records with the same ids writes, byte for byte:
//! the same rows in the same order, written in the same blocks. Cost: O(records).

use std::path::Path;

use crate::config::Plan;
use crate::error::{Error, Result};
use crate::output::{ParallelWriter, ROWS_PER_BLOCK};

/// What [`export`] wrote.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Exported {
    pub records: u64,
    pub master_ids: u64,
}

/// Writes the whole index of the run in `run_dir` (its store) into `out_dir`: the master index
/// and every kind's golden records; `plan` is the job (golden records follow its rules).
pub fn export(
    run_dir: &Path,
    plan: &Plan,
    out_dir: &Path,
    compression: crate::config::Compression,
) -> Result<Exported> {
    let manifest = crate::store::Manifest::read(run_dir)?.ok_or_else(|| Error::Data {
        stage: "export",
        message: format!(
            "{} has no persistent index (store/): not the output folder of a yiku run of this version",
            run_dir.display()
        ),
    })?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mi_path = out_dir.join(crate::output::MASTER_INDEX);
    let tmp = out_dir.join(".master_index.parquet.tmp");
    let mut master = ParallelWriter::create(&tmp, &crate::output::master_schema(), compression)?;
    let mut done = Exported::default();
    for kp in &plan.kinds {
        if !manifest.kinds.contains_key(kp.kind.as_str()) {
            continue;
        }
        let Some(store) = crate::store::KindStore::open(run_dir, kp.kind)? else {
            continue;
        };
        let merged = store.merged(&crate::state::join)?;
        drop(store);
        let groups = merged.groups();
        let sizes: Vec<u32> = (0..groups.len())
            .map(|c| groups.members(c).len() as u32)
            .collect();
        let cluster_size: Vec<u32> = groups
            .cluster_of
            .iter()
            .map(|&c| sizes[c as usize])
            .collect();
        let table = &merged.table;
        for from in (0..table.len()).step_by(ROWS_PER_BLOCK) {
            let to = (from + ROWS_PER_BLOCK).min(table.len());
            let rows =
                crate::output::master_batch(table, &merged.master_id, &cluster_size, from..to)
                    .map_err(|e| Error::write(&mi_path, e))?;
            master.write(std::slice::from_ref(&rows))?;
        }
        let job_sources = plan.source_names(kp.kind);
        let path = out_dir.join(format!("golden_{}s.parquet", kp.kind.as_str()));
        let mut file = ParallelWriter::create(
            &path,
            &crate::golden::schema(table, kp, &job_sources),
            compression,
        )?;
        done.master_ids += crate::golden::golden_records(
            table,
            kp,
            &job_sources,
            &merged.master_id,
            &groups,
            (crate::golden::Reads::Blocks, None),
            &mut |batch| file.write(std::slice::from_ref(batch)),
        )?;
        file.close()?;
        done.records += table.len() as u64;
    }
    master.close()?;
    std::fs::rename(&tmp, &mi_path).map_err(|e| Error::io(&mi_path, e))?;
    Ok(done)
}
