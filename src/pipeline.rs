//! The run: calls the stages in order, per entity kind, and writes the outputs. Nothing else.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::Plan;
use crate::error::{Error, Result};
use crate::output::{self, OutputDir, PairsLayout};
use crate::progress::Progress;
use crate::report::{KindSummary, RunSummary, StageStats};
use crate::score::model::ModelFile;
use crate::state::{self, Links};
use crate::{block, cluster, compare, delta, golden, load, master, score, standardise, store};

/// Stages' names, seconds and counts, as a branch that runs beside another times them.
type Timings = Vec<(&'static str, f64, u64)>;

/// The base of a full run's persistent index: written, being written (beside golden records),
/// or none (a delta night writes a layer instead).
enum Base {
    Written(store::KindEntry),
    Writing(std::thread::JoinHandle<Result<store::KindEntry>>),
    None,
}

/// A delta night's records as the change files need them, with their master ids `mi`; `None`
/// for a full run.
fn delta_changes<'a>(
    prepared: Option<&'a delta::Prepared>,
    table: &'a standardise::StdTable,
    focus: Option<&'a [bool]>,
    mi: &'a master::MasterIndex,
) -> Option<output::Changes<'a>> {
    prepared.map(|a| output::Changes {
        table,
        focus: focus.unwrap_or_default(),
        master_id: &mi.master_id,
        cluster_size: &mi.cluster_size,
        old_id: &a.old_id,
        old_size: &a.old_size,
        removed: &a.removed,
    })
}

/// What the index's branch of a kind hands on: its master ids, the store's base and the
/// master index rows written.
struct IndexDone {
    mi: master::MasterIndex,
    base: Base,
    written: u64,
}

/// How a run is carried out (beyond the job file).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reuse a saved model instead of training.
    pub model: Option<PathBuf>,
    /// Write here instead of the job's output folder.
    pub output: Option<PathBuf>,
    /// Thread count; overrides the job's.
    pub threads: Option<usize>,
    pub quiet: bool,
    /// The output folder of the previous run, whose master ids this run keeps.
    pub previous: Option<PathBuf>,
    /// Clerks' decisions (a filled-in review.parquet) applied as must-link / cannot-link.
    pub labels: Option<PathBuf>,
    /// A folder of new, changed and deleted records to apply to the `previous` run's index
    /// (only they are compared; the previous model is reused unless `model` is given).
    pub delta: Option<PathBuf>,
    /// A delta night writes its changes; with this it also writes the whole index
    /// (`master_index.parquet`, golden records), at the cost of the index's size.
    pub snapshot: bool,
}

/// Runs a job end to end and returns its summary; outputs land in the output folder.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunSummary> {
    let threads = opts.threads.unwrap_or(plan.threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Data {
            stage: "setup",
            message: format!("cannot start {threads} threads: {e}"),
        })?;
    pool.install(|| run_in_pool(plan, opts, pool.current_num_threads()))
}

fn run_in_pool(plan: &Plan, opts: &RunOptions, threads: usize) -> Result<RunSummary> {
    let start = Instant::now();
    let p = Progress::new(opts.quiet);
    if opts.delta.is_some() && opts.previous.is_none() {
        return Err(Error::Data {
            stage: "setup",
            message: "a delta run needs --previous: the output folder the delta applies to".into(),
        });
    }
    // A delta run scores with the previous run's model unless told otherwise.
    let model_path = opts.model.clone().or_else(|| {
        opts.delta
            .as_ref()
            .and(opts.previous.as_ref())
            .map(|p| p.join("model.json"))
    });
    let saved = model_path.as_deref().map(ModelFile::load).transpose()?;
    // A delta night starts from the previous run's persistent index; a full run with
    // --previous from its master index.
    let delta_from = opts.delta.as_ref().and(opts.previous.as_deref());
    let manifest = match delta_from {
        Some(dir) => Some(store::Manifest::read(dir)?.ok_or_else(|| Error::Data {
            stage: "setup",
            message: format!(
                "{} has no persistent index (store/): it was written by an earlier version of \
                 yiku; run a full night with --previous {0} first, then deltas from that",
                dir.display()
            ),
        })?),
        None => None,
    };
    let (previous, previous_secs) = p.stage("read previous master index", || {
        match (&opts.previous, delta_from) {
            (Some(dir), None) => master::Previous::load(dir).map(Some),
            _ => Ok(None),
        }
    });
    let previous = previous?;
    let previous_kinds: Vec<(String, u64)> = match (&previous, &manifest) {
        (Some(prev), _) => prev
            .kinds()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        (None, Some(m)) => m.kinds.iter().map(|(k, e)| (k.clone(), e.live())).collect(),
        _ => Vec::new(),
    };
    // Records of a kind this job no longer matches would leave the index unrecorded.
    if let Some(dir) = &opts.previous {
        for (kind, rows) in previous_kinds.iter().map(|(k, n)| (k.as_str(), *n)) {
            let has_sources = plan.sources.iter().any(|s| s.kind.as_str() == kind);
            if rows > 0 && !has_sources {
                return Err(Error::Data {
                    stage: "setup",
                    message: format!(
                        "{} indexed {rows} {kind} records, and this job has no {kind} source: \
                         --previous must be an earlier run of the same job (or run without it to \
                         start a new index)",
                        dir.display()
                    ),
                });
            }
        }
    }
    let run = match delta_from {
        Some(dir) => master::Previous::run_of(dir)? + 1,
        None => master::Previous::next_run(previous.as_ref()),
    };
    let run_id = format!("R{run:06}");
    // Clerks' decisions: the previous run's, then tonight's (a new decision on a pair
    // replaces the old one); they stay in effect from run to run.
    let carried = match &opts.previous {
        Some(dir) if dir.join(load::DECISIONS_FILE).is_file() => {
            load::load_labels(&dir.join(load::DECISIONS_FILE))?
        }
        _ => Vec::new(),
    };
    let new_labels = match &opts.labels {
        Some(path) => load::load_labels(path)?,
        None => Vec::new(),
    };
    let first_new = carried.len();
    let labels: Vec<load::Label> = carried
        .into_iter()
        .chain(new_labels.into_iter().map(|l| load::Label {
            decided_in: run_id.clone(),
            ..l
        }))
        .collect();
    let mut labels_resolved = vec![false; labels.len()];
    let target = opts.output.clone().unwrap_or_else(|| plan.output.clone());
    let out = OutputDir::create(&target, plan.compression)?;
    let mut stages = Vec::new();
    let mut stage = |name: &str, kind: &str, secs: f64, count: u64| {
        stages.push(StageStats {
            stage: name.into(),
            kind: kind.into(),
            seconds: secs,
            count,
        })
    };

    if opts.previous.is_some() {
        let rows = previous_kinds.iter().map(|k| k.1).sum();
        stage("previous", "all", previous_secs, rows);
    }
    // The run's records, counted when there is a limit to size them against.
    let mut limited_records = 0u64;
    let memory = match plan.memory_limit {
        Some(limit) => {
            // A delta run maps the previous index; what it holds grows with the delta, and
            // is sized here (with a margin) by the index it touches.
            let records = match &manifest {
                Some(m) => m.kinds.values().map(store::KindEntry::live).sum(),
                None => load::count_records(plan)?,
            };
            limited_records = records;
            load::memory_mode(plan, limit, records)?
        }
        None => load::MemoryMode::InMemory,
    };
    if memory.mapped() {
        p.note(match memory {
            load::MemoryMode::Spilled => {
                "memory_limit: records are written to disk as they are standardised and mapped \
                 from there instead of held in memory"
            }
            _ => "memory_limit: records are mapped from the state file instead of held in memory",
        });
        crate::mem::return_freed_blocks();
    }
    let _trimming = memory.mapped().then(crate::mem::TrimEvery::start);
    // Spilled: the loaded records go to disk as they are decoded, like the standardised ones.
    let load_spill = state::Spill::new(out.dir(), "load");
    let (loaded, secs) = p.stage("load", || match &opts.delta {
        Some(dir) => load::load_delta(plan, dir),
        None => load::load_with(
            plan,
            (memory == load::MemoryMode::Spilled).then_some(&load_spill),
        )
        .map(|l| (l, Vec::new())),
    });
    let (loaded, deletions) = loaded?;
    for s in loaded.stats.iter().filter(|s| s.rows_read == 0) {
        p.note(&format!(
            "source `{}` ({}) has no records{}",
            s.source,
            s.path,
            if opts.delta.is_some() { " tonight" } else { "" }
        ));
    }
    let records_loaded: u64 = loaded.tables.iter().map(|t| t.len() as u64).sum();
    stage("load", "all", secs, records_loaded);
    let mut records_in = 0u64;
    // Tonight's deletions and records a delta could not apply: quarantined with their reason.
    let mut unapplied = Vec::new();

    let mut kinds = Vec::new();
    let mut models = Vec::new();
    let mut in_master = 0u64;
    let mut level_fields: Vec<String> = Vec::new();
    for kp in &plan.kinds {
        for c in &kp.comparisons {
            if !level_fields.contains(&c.field) {
                level_fields.push(c.field.clone());
            }
        }
    }
    // Each kind's rows are written as soon as they are ready and then freed: memory holds
    // one kind's working set, not every output of the run.
    let mut files = output::RunFiles::create(&out, &level_fields, &run_id, delta_from.is_some())?;
    // The persistent index this run leaves: one entry per kind.
    let mut stored = store::Manifest::new(&run_id);
    let tonight_named: Vec<(String, String)> = labels
        .get(first_new..)
        .unwrap_or_default()
        .iter()
        .flat_map(|l| {
            [
                (l.source_l.clone(), l.record_id_l.clone()),
                (l.source_r.clone(), l.record_id_r.clone()),
            ]
        })
        .collect();
    let mut facts = crate::html::RunFacts::default();
    let pairs_path = out.file("pairs.parquet");
    for raw in loaded.tables {
        let kp = plan.kind(raw.kind).ok_or_else(|| Error::Data {
            stage: "plan",
            message: format!("no settings for kind {}", raw.kind.as_str()),
        })?;
        let k = kp.kind.as_str();
        // Of the raw columns, golden records need only some: the table (and state) keeps those.
        // Spilled: every column is moved to disk as soon as it is made (the heap would
        // otherwise hold the loaded and the standardised records together).
        let spill = state::Spill::new(out.dir(), k);
        let to = match memory {
            load::MemoryMode::Spilled => state::Columns::Disk(&spill),
            _ => state::Columns::Heap,
        };
        let (table, secs) = p.stage(&format!("{k}: standardise"), || {
            standardise::standardise_with(raw, kp, &golden::raw_fields(kp), to)
        });
        let table = table?;
        stage("standardise", k, secs, table.len() as u64);
        if memory.mapped() {
            // Standardising frees millions of small blocks that glibc keeps for reuse: ~0.8 GB
            // at 10M records, held through blocking and comparing otherwise.
            crate::mem::trim_heap();
        }

        let kstore = match delta_from {
            Some(prev) => Some(match store::KindStore::open(prev, kp.kind)? {
                Some(s) => s,
                None => store::KindStore::empty(kp.kind, kp.blocking.clone(), store::tf_fields(kp)),
            }),
            None => None,
        };
        let (table, focus, carried, mut prepared) = match &kstore {
            Some(ks) => {
                let (applied, secs) = p.stage(&format!("{k}: apply delta"), || {
                    delta::prepare(
                        ks,
                        run - 1,
                        table,
                        &deletions,
                        &tonight_named,
                        kp,
                        &|parts| to.keep(parts),
                    )
                });
                let mut a = applied?;
                stage("delta", k, secs, a.table.len() as u64);
                unapplied.extend(delta::quarantine_rows(&a.unapplied));
                let table = std::mem::replace(
                    &mut a.table,
                    standardise::StdTable {
                        kind: kp.kind,
                        sources: Vec::new(),
                        source: Vec::new().into(),
                        record_id: arrow_array::StringArray::new_null(0),
                        columns: Default::default(),
                        raw: Default::default(),
                        stats: Default::default(),
                    },
                );
                let (focus, links) = (std::mem::take(&mut a.focus), std::mem::take(&mut a.links));
                (table, Some(focus), links, Some(a))
            }
            None => (table, None, Links::default(), None),
        };
        records_in += match &prepared {
            Some(a) => a.stats.previous_records + a.stats.added - a.stats.deleted,
            None => table.len() as u64,
        };
        let mut table = table;
        // A full run's records are its state file (and its store's base); a delta night's
        // go into its store's layer with their master ids.
        let mut state_file = match prepared {
            None => Some(state::write_standardised(out.dir(), &table)?),
            Some(_) => None,
        };
        // Whether the records are mapped from a file the page cache cannot hold: then compare
        // and golden records read them in sweeps, front to back.
        let mut sweeps = false;
        if memory.mapped() && prepared.is_none() {
            if let Some(writing) = state_file.take() {
                stage("write state", k, writing.wait()?, table.len() as u64);
            }
            let file_bytes = std::fs::metadata(state::standardised_path(out.dir(), kp.kind))
                .map(|m| m.len())
                .unwrap_or(0);
            sweeps = plan.memory_limit.is_some_and(|limit| {
                load::reads_in_sweeps(limit, limited_records, memory, file_bytes)
            });
            if sweeps {
                p.note(&format!(
                    "{k}: memory_limit leaves the page cache less room than the records' \
                     file ({:.1} GB): compare, the review queue and golden records read them in \
                     sweeps, front to back",
                    file_bytes as f64 / 1e9
                ));
            }
            state::map_standardised(out.dir(), &mut table)?;
        }
        let sizes = |r: usize, h: u64| {
            prepared
                .as_ref()
                .and_then(|a| a.sizes.get(r)?.get(&h).copied())
        };
        // A full run's key lists go to its store's base as blocking makes them, written by a
        // thread of their own while blocking goes on (one list waits at most).
        let keys_file = match prepared {
            None => Some(store::KeysFile::create(out.dir(), kp.kind, &run_id)?),
            Some(_) => None,
        };
        let (to_keys, keys_in) = std::sync::mpsc::sync_channel::<(
            arrow_buffer::ScalarBuffer<u32>,
            arrow_buffer::ScalarBuffer<u32>,
        )>(1);
        let keys_writer = keys_file.map(|mut f| {
            std::thread::spawn(move || -> Result<()> {
                // After an error the lists are still taken, so that blocking never waits.
                let mut written = Ok(());
                for (tags, rows) in keys_in {
                    if written.is_ok() {
                        written = f.write(tags, rows);
                    }
                }
                written.and_then(|()| f.finish())
            })
        });
        let mut write_keys = |tags: arrow_buffer::ScalarBuffer<u32>,
                              rows: arrow_buffer::ScalarBuffer<u32>| {
            let _ = to_keys.send((tags, rows));
        };
        // A full run under a limit that spills blocks in partitions by key hash; a delta run
        // (blocks sized over the whole index, a focus) and a run in memory block at once.
        let partitioned =
            memory == load::MemoryMode::Spilled && prepared.is_none() && focus.is_none();
        let (cands, secs) = p.stage(&format!("{k}: block"), || match partitioned {
            true => block::block_spilled(
                &table,
                &kp.blocking,
                kp.max_block_size,
                plan.mode,
                &spill,
                keys_writer.is_some().then_some(&mut write_keys),
            ),
            false => Ok(block::block_with(
                &table,
                &kp.blocking,
                kp.max_block_size,
                plan.mode,
                focus.as_deref(),
                block::Options {
                    sizes: prepared.is_some().then_some(&sizes),
                    keyed: keys_writer.is_some().then_some(&mut write_keys),
                    spill: (memory == load::MemoryMode::Spilled).then_some(&spill),
                },
            )),
        });
        drop(to_keys);
        if let Some(w) = keys_writer {
            w.join().map_err(|_| Error::Data {
                stage: "write",
                message: "the thread writing the key lists stopped".into(),
            })??;
        }
        let mut cands = cands?;
        stage("block", k, secs, cands.len() as u64);
        for r in &cands.stats {
            p.note(&format!(
                "{k}: {:>12} pairs from rule {} ({} skipped blocks)",
                r.pairs,
                r.rule,
                r.skipped.len()
            ));
        }

        let decisions = cluster::Decisions::resolve(&table, &labels);
        for &k in &decisions.resolved {
            labels_resolved[k] = true;
        }
        // A delta run compares only the records in tonight's pairs (and clerks' must-links).
        // A delta night compares its previous links among the table's records again, as a
        // full run would score them tonight.
        let rescored = match (&prepared, &kstore) {
            (Some(a), Some(ks)) => a.carried_candidates(&table, &carried, ks, kp),
            _ => block::Candidates::default(),
        };
        let needed = focus.as_ref().map(|_| {
            let mut n = vec![false; table.len()];
            let pairs = cands.left.iter().zip(&cands.right);
            let again = rescored.left.iter().zip(&rescored.right);
            for (&l, &r) in pairs
                .chain(again)
                .chain(decisions.must_link.iter().map(|(l, r)| (l, r)))
            {
                for i in [l, r] {
                    if let Some(x) = n.get_mut(i as usize) {
                        *x = true;
                    }
                }
            }
            n
        });
        let (compared, secs) = p.stage(&format!("{k}: compare"), || {
            // Spilled, a first run compares one comparison at a time (fingerprints of one
            // comparison held, not of all side by side); under a cap with the right-hand
            // values taken front to back too.
            let (comparators, reads) = match memory == load::MemoryMode::Spilled && focus.is_none()
            {
                true => (
                    compare::comparators_to_sweep(&table, &kp.comparisons)?,
                    compare::Reads::Windows(compare::WINDOW),
                ),
                false => (
                    compare::comparators_for(&table, &kp.comparisons, needed.as_deref())?,
                    compare::Reads::Pairs,
                ),
            };
            let levels_to = (memory == load::MemoryMode::Spilled).then_some(&spill);
            let compared =
                compare::compare_in(&comparators, &kp.comparisons, &cands, reads, levels_to)?;
            let again = compare::compare(&comparators, &kp.comparisons, &rescored)?;
            Ok::<_, Error>((comparators, compared, again))
        });
        let (comparators, compared, compared_again) = compared?;
        // The levels are made: the fingerprints (8 bytes per record and comparison, ~0.5 GB
        // at 10M records) are needed neither to train nor to score.
        let comparators = comparators.into_list();
        stage("compare", k, secs, cands.len() as u64);

        let reused = saved.as_ref().and_then(|m| m.model(kp.kind)).cloned();
        let model_reused = reused.is_some();
        if saved.is_some() && !model_reused && opts.delta.is_none() {
            p.note(&format!(
                "{k}: the saved model has no {k} model: training one in this run"
            ));
        }
        let mut model = match reused {
            Some(m) => m.adopt(kp)?,
            None if opts.delta.is_some() => {
                return Err(Error::Data {
                    stage: "score",
                    message: format!(
                        "a delta run scores with a saved model, and {} has none for {k} records",
                        model_path
                            .as_deref()
                            .unwrap_or(std::path::Path::new("model.json"))
                            .display()
                    ),
                });
            }
            None => {
                let (m, secs) = p.stage(&format!("{k}: train (u sample + EM)"), || {
                    score::train(
                        kp,
                        &comparators,
                        &table.source,
                        &compared,
                        &cands.agree,
                        plan.mode,
                        plan.seed,
                    )
                });
                stage("train", k, secs, m.trained_on_pairs);
                m
            }
        };
        // A model trained tonight learns from every decision in effect; a saved one already
        // learnt from the earlier ones, so only from tonight's.
        let learn_from = if model_reused {
            match labels.get(first_new..) {
                Some(new) if !new.is_empty() => cluster::Decisions::resolve(&table, new).must_link,
                _ => Vec::new(),
            }
        } else {
            decisions.must_link.clone()
        };
        score::refine_with_labels(&mut model, &comparators, &learn_from);
        // The compared batches carry both records of every pair: of the candidates, only the
        // rule that found each pair and the per-rule counts are still needed (~12 bytes a
        // pair let go before scoring).
        let candidate_pairs = cands.len() as u64;
        let (rules, blocking) = (
            std::mem::take(&mut cands.rule),
            std::mem::take(&mut cands.stats),
        );
        drop(cands);
        let no_counts = Default::default();
        let counts = prepared.as_ref().map_or(&no_counts, |a| &a.counts);
        // Spilled: the scored pairs (~30 bytes a pair) go to disk a few batches at a time as
        // they are scored, the compared ones let go meanwhile, and are read from there from
        // here on, front to back (clustering, pair rows) or a few rows (the report's samples).
        let (scored, secs) = p.stage(&format!("{k}: score"), || match memory {
            load::MemoryMode::Spilled => {
                let mut out = spill.batches(&score::scored_schema(&compared.schema))?;
                score::score_in_chunks(
                    &model,
                    &comparators,
                    compared,
                    counts,
                    Some(&spill),
                    &mut |b| out.push(b),
                )?;
                out.finish()
            }
            _ => score::score_with(&model, &comparators, &compared, counts),
        });
        let scored = scored?;
        // The previous model links, rescored: those still at or above the threshold hold,
        // with tonight's weight; clerks' must-links hold as they are.
        let carried = if rescored.is_empty() {
            carried
        } else {
            let again = score::score_with(&model, &comparators, &compared_again, counts)?;
            let mut edges: Vec<cluster::Edge> = carried
                .edges
                .into_iter()
                .filter(|e| !e.weight.is_finite())
                .collect();
            edges.extend(cluster::edges(&again, model.match_probability));
            Links {
                edges,
                cannot_link: carried.cannot_link,
            }
        };
        stage("score", k, secs, candidate_pairs);
        drop((comparators, compared_again));

        let mnl: Vec<&arrow_array::StringArray> = kp
            .must_not_link
            .iter()
            .filter_map(|c| table.column(c))
            .collect();
        // A spilled full run with the model's links alone (no clerk's decisions) keeps its
        // edges as columns on disk, clusters from them and writes them as its links file.
        let model_links_only = memory == load::MemoryMode::Spilled
            && prepared.is_none()
            && carried == Links::default()
            && decisions.must_link.is_empty()
            && decisions.cannot_link.is_empty();
        let (clustered, secs) = p.stage(&format!("{k}: cluster"), || {
            if model_links_only {
                let columns = cluster::edge_columns(&scored, model.match_probability, &spill)?;
                let clusters = cluster::cluster_edges(
                    table.len(),
                    cluster::Edges::Columns(&columns),
                    &mnl,
                    &[],
                    Some(&spill),
                )?;
                return Ok((clusters, Links::default(), Some(columns)));
            }
            let mut edges = cluster::edges(&scored, model.match_probability);
            edges.extend(carried.edges);
            let edges = decisions.edges(edges);
            let mut cannot_link = carried.cannot_link;
            cannot_link.extend(&decisions.cannot_link);
            cannot_link.sort_unstable();
            cannot_link.dedup();
            Ok::<_, Error>((
                cluster::cluster(table.len(), &edges, &mnl, &cannot_link)?,
                Links { edges, cannot_link },
                None,
            ))
        });
        let (mut clusters, links, edge_columns) = clustered?;
        // (Clustered from the edges on disk, the groups are on mapped files already.)
        if memory == load::MemoryMode::Spilled && edge_columns.is_none() {
            clusters.spill(&spill)?;
        }
        stage("cluster", k, secs, clusters.edges);
        let matches = clusters.edges;
        if let Some(writing) = state_file.take() {
            let secs = writing.wait()?;
            p.note(&format!(
                "{k}: state written in the background in {secs:.2} s"
            ));
            stage("write state", k, secs, table.len() as u64);
        }
        // A full run's links go to their file (the store's base links it) and are let go; only
        // a delta night's layer needs them again (~16 bytes a link: ~115 MB at 10M records).
        let links = match prepared {
            None => {
                let (written, secs) =
                    p.stage(&format!("{k}: write links"), || match edge_columns {
                        Some(columns) => {
                            state::write_edge_columns(out.dir(), kp.kind, &columns, &spill)
                        }
                        None => state::write_links_once(out.dir(), kp.kind, links),
                    });
                written?;
                stage("write", k, secs, matches);
                Links::default()
            }
            Some(_) => links,
        };

        let rule_names: Vec<String> = kp.blocking.iter().map(|r| block::rule_name(r)).collect();
        let kind_fields: Vec<String> = kp.comparisons.iter().map(|c| c.field.clone()).collect();
        let layout = PairsLayout {
            table: &table,
            rule_names: &rule_names,
            level_fields: &level_fields,
            kind_fields: &kind_fields,
        };
        let join_base = |w: std::thread::JoinHandle<Result<store::KindEntry>>| {
            w.join().map_err(|_| Error::Data {
                stage: "write",
                message: "the thread writing the persistent index stopped".into(),
            })?
        };
        // Two branches that need nothing of each other: the pairs' outputs (pairs file, report
        // facts, review queue) and the index's (master ids, golden records, master index). In
        // memory they run side by side, each filling the cores the other leaves idle (rayon
        // shares its threads between them); mapped or spilled (runs short of memory), one after
        // the other, the scored pairs let go before the master ids are made (their working
        // memory would add up).
        let side_by_side = memory == load::MemoryMode::InMemory;
        let beside = p.beside();
        let pairs_branch = || -> Result<(Timings, u64)> {
            let mut timings = Timings::new();
            // Every pair goes to pairs.parquet as its rows are made, and to the report's
            // tally; the review queue is kept.
            let mut tally = crate::html::PairTally::new(std::slice::from_ref(&model), &pairs_path);
            let (rows, secs) = beside.stage(&format!("{k}: pair rows"), || {
                output::write_pair_rows(
                    &layout,
                    &scored,
                    &rules,
                    (model.review_probability, model.match_probability),
                    &|l, r| decisions.decided(l, r),
                    &mut files.pairs,
                    &mut |b| tally.add(b),
                    (memory == load::MemoryMode::Spilled).then_some(&spill),
                )
            });
            let (mut review, pairs_written) = rows?;
            // A delta run compares tonight's pairs only: the earlier nights' open queue stays.
            if let (Some(prev), Some(a), Some(focus)) = (delta_from, &prepared, focus.as_deref()) {
                let status = |s: &str, r: &str| match a.status_of_indexed(&table, s, r) {
                    delta::Status::InTable(i) => (!focus[i as usize]).then_some(Some(i)),
                    delta::Status::Untouched => Some(None),
                    delta::Status::Gone => None,
                };
                let carried = output::carried_review(
                    &prev.join("review.parquet"),
                    k,
                    &status,
                    &|l, r| decisions.decided(l, r),
                    &output::pairs_schema(&level_fields, true),
                )?;
                review.splice(0..0, carried);
            }
            timings.push(("pair rows", secs, candidate_pairs));
            // What the report needs from these records and pairs, while they are in memory.
            let (noted, secs) = beside.stage(&format!("{k}: report facts"), || {
                facts.add_pairs(
                    &model,
                    &table,
                    tally,
                    &|rows| output::pair_rows_at(&layout, &scored, &rules, rows, &pairs_path),
                    out.dir(),
                )
            });
            noted?;
            timings.push(("report facts", secs, pairs_written));
            let review_pairs = output::rows(&review);
            drop((scored, rules));
            let (written, secs) = beside.stage(&format!("{k}: write review"), || {
                files.review.write(&std::mem::take(&mut review))
            });
            written?;
            timings.push(("write", secs, review_pairs));
            Ok((timings, review_pairs))
        };
        let mut index_branch = || -> Result<(Timings, IndexDone)> {
            let mut timings = Timings::new();
            let (mi, secs) = p.stage(&format!("{k}: master index"), || {
                let previous = match &prepared {
                    Some(a) => Some(&a.previous),
                    None => previous.as_ref(),
                };
                // Its events go to their file before the master ids are made.
                let mut write_events = |runs: &[master::Events]| files.index.write_events(k, runs);
                // Spilled: the master ids (~24 bytes a record) go to disk as they are made
                // and are read from there from here on.
                let ids_to = (memory == load::MemoryMode::Spilled).then_some(&spill);
                let events_to = Some(&mut write_events as &mut master::EventsTo);
                master::master_index_with(&table, &clusters, previous, run, events_to, ids_to)
            });
            let mi = mi?;
            files.index.flush_events(k)?;
            timings.push(("master", secs, mi.clusters));
            let changes = delta_changes(prepared.as_ref(), &table, focus.as_deref(), &mi);
            // A full run's base of the persistent index is written while golden records are
            // made: its records and links are the state files already written, the rest is
            // small.
            let base_file = prepared.is_none().then(|| {
                let (dir, kind, run_id, rules) = (
                    out.dir().to_path_buf(),
                    kp.kind,
                    run_id.clone(),
                    kp.blocking.clone(),
                );
                let tf_fields = store::tf_fields(kp);
                let (table, master_id) = (table.clone(), mi.master_id.clone());
                // Nothing after this reads a full run's components: moved, not copied; when
                // none were cut they are the clusters, grouped already (shared, not copied).
                let (component, groups) = (clusters.component.take(), clusters.groups.clone());
                let spilled = memory == load::MemoryMode::Spilled;
                std::thread::spawn(move || -> Result<store::KindEntry> {
                    // Spilled: the components grouped and the term-frequency hashes sorted
                    // on mapped files (a number or two a record).
                    let spill = spilled.then(|| state::Spill::new(&dir, "base"));
                    let zeroed = |len: usize| state::Scratch::<u32>::zeroed(len, spill.as_ref());
                    let grouped = match (&component, &spill) {
                        (Some(c), Some(_)) => {
                            let mut label = zeroed(c.len())?;
                            label.copy_from_slice(c);
                            Some(cluster::Groups::of_in(label, zeroed)?)
                        }
                        _ => None,
                    };
                    let tf = store::tf_lists_with(&table, &tf_fields, |len| {
                        state::Scratch::zeroed(len, spill.as_ref())
                    })?;
                    let base = store::write_segment(
                        &dir,
                        kind,
                        &run_id,
                        &rules,
                        store::Parts {
                            table: &table,
                            master_id: &master_id,
                            components: match (&grouped, &component) {
                                (Some(g), _) => store::Components::Grouped(g),
                                (None, Some(c)) => store::Components::Labels(c),
                                (None, None) => store::Components::Grouped(&groups),
                            },
                            links: &Links::default(),
                            tf,
                            tombstones: &[],
                        },
                        Some((
                            &state::standardised_path(&dir, kind),
                            &state::links_path(&dir, kind),
                        )),
                    )?;
                    Ok(store::KindEntry {
                        rules,
                        term_frequency: tf_fields,
                        segments: vec![base],
                    })
                })
            });
            // Spilled: the base is written before golden records, not beside them: its
            // working memory (the components grouped, term-frequency hashes: ~20 bytes a
            // record for a moment) would add to golden records' own.
            let base = match (memory, base_file) {
                (load::MemoryMode::Spilled, Some(w)) => {
                    let (written, secs) =
                        p.stage(&format!("{k}: write store base"), || join_base(w));
                    timings.push(("write", secs, table.len() as u64));
                    Base::Written(written?)
                }
                (_, Some(w)) => Base::Writing(w),
                (_, None) => Base::None,
            };
            // A delta night writes the golden records of the clusters it changed.
            let golden_file = match changes {
                None => format!("golden_{k}s.parquet"),
                Some(_) => format!("golden_{k}s_changes.parquet"),
            };
            // Golden rows go to their file a block at a time, as they are made.
            let (golden, secs) = p.stage(&format!("{k}: golden records"), || -> Result<u64> {
                let job_sources = plan.source_names(kp.kind);
                let schema = golden::schema(&table, kp, &job_sources);
                let changed = changes
                    .as_ref()
                    .map(|c| c.changed_clusters(&clusters.groups));
                let mut file = output::ParallelWriter::create(
                    &out.file(&golden_file),
                    &match changes {
                        None => schema.clone(),
                        Some(_) => output::with_change(&schema),
                    },
                    out.compression,
                )?;
                let mut first = 0usize;
                let path = out.file(&golden_file);
                let reads = match sweeps {
                    true => golden::Reads::Partitions(
                        table.len() as u64 * golden::PARTITION_BYTES_PER_RECORD,
                    ),
                    false => golden::Reads::Blocks,
                };
                let rows = golden::golden_records(
                    &table,
                    kp,
                    &job_sources,
                    &mi.master_id,
                    &clusters.groups,
                    // Spilled: smaller blocks; under a cap, each partition's values from
                    // bucket files made in one sweep.
                    (
                        reads,
                        (memory == load::MemoryMode::Spilled).then_some(&spill),
                    ),
                    &mut |batch| match &changed {
                        None => file.write(std::slice::from_ref(batch)),
                        Some(changed) => {
                            let kept = output::golden_changes(batch, first, changed)
                                .map_err(|e| Error::write(&path, e))?;
                            first += batch.num_rows();
                            file.write(std::slice::from_ref(&kept))
                        }
                    },
                )?;
                if let Some(c) = &changes {
                    let retired = output::golden_retired(&schema, &c.retired())
                        .map_err(|e| Error::write(&path, e))?;
                    file.write(std::slice::from_ref(&retired))?;
                }
                file.close()?;
                Ok(rows)
            });
            golden?;
            timings.push(("golden", secs, mi.clusters));
            let (written, secs) =
                p.stage(&format!("{k}: write master index"), || -> Result<u64> {
                    match &changes {
                        None => files
                            .index
                            .write_master(&table, &mi.master_id, &mi.cluster_size),
                        Some(c) => files.index.write_master_changes(c),
                    }
                });
            let written = written?;
            timings.push(("write", secs, written));
            Ok((timings, IndexDone { mi, base, written }))
        };
        let (pairs_done, index_done) = match side_by_side {
            true => rayon::join(pairs_branch, index_branch),
            false => {
                let pairs_done = pairs_branch();
                (pairs_done, index_branch())
            }
        };
        let ((pair_timings, review_pairs), (index_timings, done)) = (pairs_done?, index_done?);
        for (name, secs, count) in pair_timings.into_iter().chain(index_timings) {
            stage(name, k, secs, count);
        }
        let IndexDone { mi, base, written } = done;
        let changes = delta_changes(prepared.as_ref(), &table, focus.as_deref(), &mi);
        let (noted, secs) = p.stage(&format!("{k}: report index"), || {
            match (&changes, &prepared) {
                (Some(c), Some(a)) => facts.add_changes(c, &a.counts),
                _ => {
                    facts.add_index(&table, &mi.master_id, &clusters.groups);
                    Ok(())
                }
            }
        });
        noted?;
        stage("report index", k, secs, mi.clusters);
        // The persistent index: a full run's base, a delta night's layer over the previous
        // segments.
        let (entry, secs) = p.stage(
            &format!("{k}: write store"),
            || -> Result<store::KindEntry> {
                match (&prepared, &kstore, delta_from) {
                    (Some(a), Some(ks), Some(prev)) => {
                        let changed: Vec<bool> = match &changes {
                            Some(c) => (0..table.len()).map(|i| c.row_changed(i)).collect(),
                            None => vec![true; table.len()],
                        };
                        let components = clusters.components();
                        let (keep, tombstones) = a.layer(&components, &changed);
                        let (t, ids, comps, l) =
                            store::subset(&table, &mi.master_id, &components, &links, &keep)?;
                        let layer = store::write_segment(
                            out.dir(),
                            kp.kind,
                            &run_id,
                            &kp.blocking,
                            store::Parts {
                                table: &t,
                                master_id: &ids,
                                components: store::Components::Labels(&comps),
                                links: &l,
                                tf: a.tf_delta.clone(),
                                tombstones: &tombstones,
                            },
                            None,
                        )?;
                        store::carry(prev, out.dir(), kp.kind, &ks.entry)?;
                        Ok(store::after_layer(ks, &tombstones, layer))
                    }
                    _ => match base {
                        Base::Written(entry) => Ok(entry),
                        Base::Writing(w) => join_base(w),
                        Base::None => Err(Error::Data {
                            stage: "write",
                            message: "internal: a full run without its base".into(),
                        }),
                    },
                }
            },
        );
        let entry = entry?;
        stage("write", k, secs, entry.live());
        in_master += match &prepared {
            Some(_) => entry.live(),
            None => written,
        };
        stored.kinds.insert(k.to_string(), entry);
        drop(links);
        // Decisions on records outside tonight's table still hold while both records do.
        if let (Some(a), Some(ks)) = (&prepared, &kstore) {
            for (i, l) in labels.iter().enumerate() {
                let exists = |s: &str, r: &str| a.status(&table, ks, s, r) != delta::Status::Gone;
                if !labels_resolved[i]
                    && exists(&l.source_l, &l.record_id_l)
                    && exists(&l.source_r, &l.record_id_r)
                {
                    labels_resolved[i] = true;
                }
            }
        }
        let delta_stats = prepared.take().map(|a| a.stats);
        kinds.push(KindSummary {
            kind: k.into(),
            records: match &delta_stats {
                Some(d) => d.previous_records + d.added - d.deleted,
                None => table.len() as u64,
            },
            candidate_pairs,
            blocking,
            standardise: table.stats.clone(),
            matches,
            review_pairs,
            clusters: mi.clusters,
            must_not_link_conflicts: clusters.conflicts,
            cut_edges: clusters.cut_edges,
            model_reused,
            decisions_applied: decisions.applied(),
            delta: delta_stats,
            lambda: model.lambda,
        });
        models.push(model);
    }

    // The persistent index, compacted into a new base where a delta night's layers have
    // grown past their share.
    stored.write(out.dir())?;
    let due: Vec<String> = stored
        .kinds
        .iter()
        .filter(|(_, e)| delta_from.is_some() && e.due_for_compaction(plan.compact_after))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &due {
        let Some(kind) = crate::config::EntityKind::parse(k) else {
            continue;
        };
        let spill = state::Spill::new(out.dir(), "compact");
        let keep = |parts: &[arrow_array::StringArray]| match memory {
            load::MemoryMode::Spilled => spill.keep(parts),
            _ => state::join(parts),
        };
        let (entry, secs) = p.stage(&format!("{k}: compact store"), || {
            store::compact(out.dir(), kind, &run_id, &keep)
        });
        let entry = entry?;
        stage("compact", k, secs, entry.live());
        stored.kinds.insert(k.clone(), entry);
        stored.write(out.dir())?;
    }

    if delta_from.is_some() && opts.snapshot {
        let (written, secs) = p.stage("write snapshot", || {
            crate::export::export(out.dir(), plan, out.dir(), out.compression)
        });
        stage("snapshot", "all", secs, written?.records);
    }

    // Decisions in effect: the last one on each pair whose records this run has. Tonight's
    // labels naming a record it does not have go to the quarantine; carried ones whose
    // record was deleted lapse.
    let mut ledger: std::collections::BTreeMap<_, &load::Label> = Default::default();
    for (k, l) in labels.iter().enumerate() {
        if labels_resolved[k] {
            ledger.insert(l.key(), l);
        } else if k >= first_new {
            unapplied.push(load::QuarantineRow {
                source: opts
                    .labels
                    .as_deref()
                    .and_then(|p| p.file_name())
                    .map_or_else(|| "labels".into(), |n| n.to_string_lossy().into_owned()),
                row: l.row,
                record_id: Some(l.record_id_l.clone()),
                reason: format!(
                    "the decision names {}:{} ~ {}:{}, not two records of one kind in this run",
                    l.source_l, l.record_id_l, l.source_r, l.record_id_r
                ),
                raw: format!(
                    "source_l={}; record_id_l={}; source_r={}; record_id_r={}; decision={}",
                    l.source_l,
                    l.record_id_l,
                    l.source_r,
                    l.record_id_r,
                    if l.is_match { "match" } else { "non_match" }
                ),
            });
        }
    }
    let ledger: Vec<&load::Label> = ledger.into_values().collect();
    let mut quarantine = loaded.quarantine;
    quarantine.extend(unapplied);
    quarantine.sort();
    let (written, secs) = p.stage("write outputs", || -> Result<()> {
        let q = output::quarantine_batch(&quarantine)
            .map_err(|e| Error::write(out.file("quarantine.parquet"), e))?;
        let dec = output::decisions_batch(&ledger)
            .map_err(|e| Error::write(out.file(load::DECISIONS_FILE), e))?;
        files.close()?;
        output::write_parquets(
            &[
                (
                    out.file("quarantine.parquet"),
                    output::quarantine_schema(),
                    std::slice::from_ref(&q),
                ),
                (
                    out.file(load::DECISIONS_FILE),
                    output::decisions_schema(),
                    std::slice::from_ref(&dec),
                ),
            ],
            out.compression,
        )?;
        output::write_json(
            &out.file("model.json"),
            &ModelFile {
                yiku_version: env!("CARGO_PKG_VERSION").into(),
                run_id: run_id.clone(),
                models,
            },
        )
    });
    written?;
    stage("write", "all", secs, in_master);
    let summary = RunSummary {
        yiku_version: env!("CARGO_PKG_VERSION").into(),
        job: plan.name.clone(),
        run,
        run_id: run_id.clone(),
        previous: opts.previous.as_ref().map(|p| p.display().to_string()),
        delta: opts.delta.as_ref().map(|p| p.display().to_string()),
        model: match &model_path {
            Some(m) => m.display().to_string(),
            None => "trained in this run (model.json)".into(),
        },
        threads,
        memory,
        sources: loaded.stats,
        kinds,
        stages,
        quarantined: quarantine.len() as u64,
        records_in,
        records_in_master_index: in_master,
        conservation_ok: records_in == in_master,
        total_seconds: start.elapsed().as_secs_f64(),
        peak_rss_mb: crate::report::peak_rss_mb(),
    };
    output::write_json(&out.file("run.json"), &summary)?;
    if !summary.conservation_ok {
        return Err(Error::Data {
            stage: "master",
            message: format!("{records_in} records in but {in_master} in the master index"),
        });
    }
    if let Some(dir) = out.file("report.html").parent() {
        crate::html::write_report_with(dir, &crate::html::ReportOptions::default(), Some(facts))?;
    }
    out.commit()?;
    Ok(summary)
}
