//! # yiku (一库): one master index from many departments' records
//!
//! yiku recognises the records that different government departments keep about the same
//! person or enterprise, and gives every input record a master id.
//!
//! ```text
//!  sources ──▶ load ──▶ standardise ──▶ block ──▶ compare ──▶ score ──▶ cluster ──▶ master ──▶ report
//!  (Parquet,   RawTable  StdTable        Candidates  levels     weights   labels     master id   run.json,
//!   IPC, CSV)  +quarantine                (pairs)    per pair   + model              per record  eval
//! ```
//!
//! | stage | module | consumes | produces |
//! |---|---|---|---|
//! | 1 load | [`load`] | job sources | [`load::RawTable`] per kind (rows sorted by source, record id), quarantine |
//! | 2 standardise | [`standardise`] | raw text | [`standardise::StdTable`]: standardised + derived columns (pinyin key, valid ID, name core, ...) |
//! | 2b delta | [`delta`] | previous run's state, tonight's changes | the records after the changes, which of them to compare, the links that still hold |
//! | 3 block | [`block`] | standardised keys, rules | [`block::Candidates`]: unique pairs, `left < right`, per-rule counts, skipped blocks |
//! | 4 compare | [`compare`] | Arrow batches of pairs | one level (`UInt8`) per comparison per pair |
//! | 5 score | [`score`] | levels | Fellegi-Sunter [`score::Model`] (u by sampling, m and λ by EM), weight and probability per pair |
//! | 6 cluster | [`cluster`] | pairs above the threshold | [`cluster::Clusters`]: parallel union-find, must-not-link respected; records grouped by cluster ([`cluster::Groups`]) |
//! | 7 master | [`master`] | cluster labels, previous run | [`master::MasterIndex`]: every record once, stable master ids, lineage events |
//! | 7b golden | [`golden`] | records + master ids | one golden record per master id, each value with its source record |
//! | 8 report | [`report`] | every stage's counts | `run.json`, evaluation against a truth file |
//! | 8b html | [`html`] | the run's output files, or the same facts from memory at the end of a run | `report.html`: the auditor's self-contained report, pairs near the threshold explained ([`score::explain`]) |
//!
//! Around them: [`config`] (the job file and presets), [`output`] (atomic output folder),
//! [`state`] (what a run keeps for the next: standardised records and links), [`store`] (the
//! persistent index a delta run starts from: a base and nightly layers), [`export`] (the whole
//! index of a run written out of its store),
//! [`pipeline`] (calls the stages), [`synth`] (departmental data with ground truth), [`mem`]
//! (memory hints the stages share).
//! Each kind (`person`, `enterprise`, `generic`) is matched on its own.

pub mod error;
pub mod config;
pub mod load;
pub mod standardise;
pub mod delta;
pub mod block;
pub mod compare;
pub mod score;
pub mod cluster;
pub mod master;
pub mod golden;
pub mod report;
pub mod html;
pub mod output;
pub mod state;
pub mod store;
pub mod export;
pub mod pipeline;
pub mod engine;
pub mod mask;
pub mod mem;
pub mod progress;
pub mod synth;

pub use config::Plan;
pub use error::{Error, Result};
pub use pipeline::{RunOptions, run};
