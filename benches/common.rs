//! Seeded benchmark data shared by the stage benches: generated person records, loaded once.
#![allow(dead_code)]

use std::path::PathBuf;

use yiku::block::Candidates;
use yiku::config::{KindPlan, Plan};
use yiku::load::RawTable;
use yiku::standardise::StdTable;

/// Persons generated for the benches (about 2.6 records per person across departments).
pub const PERSONS: usize = 20_000;

/// The generated job and its person records, created under `target/bench-data` when missing.
pub fn persons() -> (Plan, KindPlan, RawTable) {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/p{PERSONS}"));
    if !dir.join("job.toml").exists() {
        let cfg = yiku::synth::SynthConfig {
            persons: PERSONS,
            enterprises: 0,
            seed: 7,
            ..Default::default()
        };
        yiku::synth::generate(&cfg, &dir).expect("generate bench data");
    }
    let plan = Plan::from_file(&dir.join("job.toml")).expect("job");
    let kp = plan
        .kind(yiku::config::EntityKind::Person)
        .expect("person kind")
        .clone();
    let mut loaded = yiku::load::load(&plan).expect("load");
    let raw = loaded.tables.remove(0);
    (plan, kp, raw)
}

/// The bench records standardised and blocked with the person preset.
pub fn blocked() -> (Plan, KindPlan, StdTable, Candidates) {
    let (plan, kp, raw) = persons();
    let table = yiku::standardise::standardise(raw, &kp, &[]).expect("standardise");
    let cands = yiku::block::block(&table, &kp.blocking, kp.max_block_size, plan.mode, None);
    (plan, kp, table, cands)
}
