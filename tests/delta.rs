//! Three nights of a master index: a full first night, a generated delta (new people,
//! corrected typos, deleted records), then a delta that forces a merge and a split.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};

use crate::common::{columns, scratch};

/// A changed record: record id and canonical field -> value.
type Row = (String, BTreeMap<String, String>);

fn run(
    job: &Path,
    out: &Path,
    previous: Option<&Path>,
    delta: Option<&Path>,
    model: Option<&Path>,
) -> yiku::report::RunSummary {
    let plan = yiku::Plan::from_file(job).expect("valid job");
    let opts = yiku::RunOptions {
        output: Some(out.to_path_buf()),
        threads: Some(2),
        quiet: true,
        previous: previous.map(Path::to_path_buf),
        delta: delta.map(Path::to_path_buf),
        model: model.map(Path::to_path_buf),
        ..Default::default()
    };
    yiku::run(&plan, &opts).expect("run succeeds")
}

/// (kind, source, record id) -> master id, from a run folder's persistent index (a delta
/// night writes only its changes); a full run's must be its master_index.parquet.
fn index(dir: &Path) -> BTreeMap<(String, String, String), String> {
    let kinds = yiku::store::index_rows(dir)
        .expect("readable store")
        .expect("a store");
    let from_store: BTreeMap<_, _> = kinds
        .iter()
        .flat_map(|(kind, [s, r, m])| {
            (0..s.len()).map(move |i| {
                (
                    (kind.clone(), s.value(i).to_string(), r.value(i).to_string()),
                    m.value(i).to_string(),
                )
            })
        })
        .collect();
    if dir.join("master_index.parquet").exists() {
        let c = columns(
            &dir.join("master_index.parquet"),
            &["kind", "source", "record_id", "master_id"],
        );
        let file: BTreeMap<_, _> = (0..c[0].len())
            .map(|i| {
                let v = |k: usize| c[k][i].clone().expect("no nulls in the master index");
                ((v(0), v(1), v(2)), v(3))
            })
            .collect();
        assert_eq!(file, from_store, "the store holds the master index");
    }
    from_store
}

/// Two indexes are the same; otherwise the first records that differ.
fn same_index(
    a: &BTreeMap<(String, String, String), String>,
    b: &BTreeMap<(String, String, String), String>,
    what: &str,
) {
    let differ: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, b.get(k)))
        .take(5)
        .collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "{what}: {} and {} records, differing: {differ:?}",
        a.len(),
        b.len()
    );
}

/// (event, master id, other id) of a run.
fn events(dir: &Path) -> Vec<(String, String, Option<String>, String)> {
    let c = columns(
        &dir.join("events.parquet"),
        &["event", "master_id", "other_id", "records"],
    );
    (0..c[0].len())
        .map(|i| {
            (
                c[0][i].clone().unwrap_or_default(),
                c[1][i].clone().unwrap_or_default(),
                c[2][i].clone(),
                c[3][i].clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Checks a night against the one before: ids of records that stayed are kept unless an event
/// explains the change, and new ids are this run's own.
fn check_lineage(before: &Path, after: &Path, run: u64) {
    let (a, b) = (index(before), index(after));
    let ev = events(after);
    let old_ids: BTreeSet<&String> = a.values().collect();
    for (rec, id) in &b {
        if !old_ids.contains(id) {
            assert!(
                id[1..].starts_with(&format!("{run:06}")),
                "{id} is neither an earlier id nor one of run {run}"
            );
        }
        let Some(old) = a.get(rec) else { continue };
        if old != id {
            let explained = ev.iter().any(|(e, m, o, _)| {
                (e == "merged_into" && m == old && o.as_ref() == Some(id))
                    || (e == "split_from" && m == id && o.as_ref() == Some(old))
                    || (e == "record_moved" && m == id && o.as_ref() == Some(old))
            });
            assert!(
                explained,
                "{rec:?} moved from {old} to {id} without an event"
            );
        }
    }
}

/// Writes `rows` (record id -> canonical field -> value) as the changed records of one source.
fn write_changes(plan: &yiku::Plan, source: &str, rows: &[Row], dir: &Path) {
    let src = plan
        .sources
        .iter()
        .find(|s| s.name == source)
        .expect("source");
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        src.record_id.clone(),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
    )];
    for (col, field) in &src.columns {
        let a: StringArray = rows
            .iter()
            .map(|r| r.1.get(field).map(String::as_str))
            .collect();
        cols.push((col.clone(), Arc::new(a)));
    }
    let batch = RecordBatch::try_from_iter(cols).expect("batch");
    let file = dir.join(src.path.file_name().expect("file name"));
    yiku::output::write_parquet(
        &file,
        batch.schema(),
        &[batch],
        yiku::config::Compression::default(),
    )
    .expect("write");
}

#[test]
fn three_nights_keep_ids_record_lineage_and_match_a_full_run() {
    let dir = scratch("nights");
    let cfg = yiku::synth::SynthConfig {
        persons: 1500,
        enterprises: 150,
        seed: 31,
        ..Default::default()
    };
    yiku::synth::generate(&cfg, &dir).expect("generate");
    let split = yiku::synth::nights::split_nights(&dir, 0.06, 31).expect("split");
    assert!(
        split.added > 0 && split.changed > 0 && split.deleted > 0,
        "{split:?}"
    );

    // Night 1: everything known so far.
    let n1 = dir.join("n1");
    let s1 = run(&dir.join("night1/job.toml"), &n1, None, None, None);

    // Night 2: the generated delta, against a full run of the final data with the same model.
    let n2 = dir.join("n2");
    let s2 = run(
        &dir.join("night1/job.toml"),
        &n2,
        Some(&n1),
        Some(&dir.join("delta")),
        None,
    );
    // The same delta under a memory_limit that only spilling fits: the same bytes.
    {
        use yiku::load::{MemoryMode, estimated_peak_bytes};
        let mut plan = yiku::Plan::from_file(&dir.join("night1/job.toml")).expect("valid job");
        // A delta run is sized by the previous index.
        let records = s1.records_in;
        plan.memory_limit = Some(
            (estimated_peak_bytes(records, MemoryMode::Mapped)
                + estimated_peak_bytes(records, MemoryMode::Spilled))
                / 2,
        );
        let spilled = dir.join("n2-spilled");
        let opts = yiku::RunOptions {
            output: Some(spilled.clone()),
            threads: Some(2),
            quiet: true,
            previous: Some(n1.clone()),
            delta: Some(dir.join("delta")),
            ..Default::default()
        };
        let s = yiku::run(&plan, &opts).expect("spilled delta run succeeds");
        assert_eq!(s.memory, MemoryMode::Spilled);
        for f in [
            "master_index_changes.parquet",
            "golden_persons_changes.parquet",
            "store/manifest.json",
            "store/person/R000002/records.arrow",
            "store/person/R000002/links.arrow",
            "store/person/R000002/index.arrow",
            "store/person/R000002/tombstones.arrow",
        ] {
            assert!(
                std::fs::read(n2.join(f)).ok() == std::fs::read(spilled.join(f)).ok(),
                "{f} differs when spilled"
            );
        }
    }
    let full2 = dir.join("full2");
    run(
        &dir.join("final/job.toml"),
        &full2,
        Some(&n1),
        None,
        Some(&n1.join("model.json")),
    );
    let person = &s2.kinds[0];
    let d = person.delta.as_ref().expect("delta stats");
    assert!(d.added > 0 && d.changed > 0 && d.deleted > 0, "{d:?}");
    assert!(
        person.candidate_pairs * 5
            < columns(&full2.join("pairs.parquet"), &["kind"])[0].len() as u64,
        "a delta compares only tonight's records"
    );
    same_index(&index(&n2), &index(&full2), "delta and full run");
    assert_eq!(events(&n2), events(&full2));
    // The open review queue: the earlier night's undecided pairs still valid plus tonight's
    // make the full run's queue.
    let queue = |d: &Path| {
        let c = columns(
            &d.join("review.parquet"),
            &["kind", "source_l", "record_id_l", "source_r", "record_id_r"],
        );
        (0..c[0].len())
            .map(|i| c.iter().map(|col| col[i].clone()).collect::<Vec<_>>())
            .collect::<BTreeSet<_>>()
    };
    assert!(!queue(&full2).is_empty());
    assert_eq!(
        queue(&n2),
        queue(&full2),
        "delta and full run queue the same pairs"
    );
    // The night wrote its changes; the whole index exported from its store is the full
    // run's, byte for byte.
    let n2x = dir.join("n2-export");
    let plan1 = yiku::Plan::from_file(&dir.join("night1/job.toml")).expect("plan");
    yiku::export::export(&n2, &plan1, &n2x, plan1.compression).expect("export");
    for f in [
        "master_index.parquet",
        "golden_persons.parquet",
        "golden_enterprises.parquet",
    ] {
        assert!(
            std::fs::read(n2x.join(f)).ok() == std::fs::read(full2.join(f)).ok(),
            "{f} of the delta night's export differs from the full run's"
        );
    }
    // Its changes are the rows that differ from night 1, and every record sent tonight.
    let changes = columns(
        &n2.join("master_index_changes.parquet"),
        &["kind", "source", "record_id", "master_id", "change"],
    );
    let (a, b) = (index(&n1), index(&full2));
    let mut listed = BTreeSet::new();
    let change_rows: Vec<Vec<String>> = (0..changes[0].len())
        .map(|i| {
            changes
                .iter()
                .map(|c| c[i].clone().unwrap_or_default())
                .collect()
        })
        .collect();
    for v in &change_rows {
        let key = (v[0].clone(), v[1].clone(), v[2].clone());
        match v[4].as_str() {
            "removed" => assert!(a.contains_key(&key) && !b.contains_key(&key), "{key:?}"),
            "added" => assert!(!a.contains_key(&key) && b.get(&key) == Some(&v[3])),
            "updated" | "relinked" => assert_eq!(b.get(&key), Some(&v[3]), "{key:?}"),
            other => panic!("change {other}"),
        }
        assert!(listed.insert(key), "a record listed twice");
    }
    for (r, id) in &b {
        if a.get(r) != Some(id) {
            assert!(listed.contains(r), "{r:?} changed but is not listed");
        }
    }
    for r in a.keys().filter(|r| !b.contains_key(*r)) {
        assert!(listed.contains(r), "{r:?} deleted but not listed");
    }
    let sent = d.added + d.changed;
    let updated = (0..changes[0].len())
        .filter(|&i| {
            changes[0][i].as_deref() == Some("person")
                && matches!(changes[4][i].as_deref(), Some("added" | "updated"))
        })
        .count() as u64;
    assert_eq!(updated, sent, "every record sent tonight is listed");
    let f1 = |run: &Path| {
        yiku::report::evaluate_run(&dir.join("final/truth_persons.parquet"), run)
            .expect("eval")
            .pairwise
            .f1
    };
    assert_eq!(f1(&n2), f1(&full2));
    assert!(f1(&n2) > 0.95, "F1 {}", f1(&n2));
    check_lineage(&n1, &n2, 2);
    let kinds: BTreeSet<String> = events(&n2).into_iter().map(|e| e.0).collect();
    for k in ["record_added", "record_removed"] {
        assert!(kinds.contains(k), "night 2 has no {k}: {kinds:?}");
    }
    // Unchanged entities keep their ids: most records of night 1 still carry theirs.
    let (a, b) = (index(&n1), index(&n2));
    let kept = a.iter().filter(|(r, id)| b.get(*r) == Some(*id)).count();
    assert!(kept as f64 > 0.9 * a.len() as f64, "{kept} of {}", a.len());

    // Night 3: one record of a multi-record person becomes a stranger (a split), and a
    // person's only record becomes a copy of another person's record (a merge).
    let plan = yiku::Plan::from_file(&dir.join("night1/job.toml")).expect("plan");
    let merged = yiku::store::KindStore::open(&n2, yiku::config::EntityKind::Person)
        .expect("read")
        .expect("a person store")
        .merged(&yiku::state::join)
        .expect("merged");
    let groups = merged.groups();
    let table = &merged.table;
    let size = |r: usize| groups.members(groups.cluster_of[r] as usize).len() as u32;
    let id_of = |r: usize| merged.master_id.value(r).to_string();
    let valid = table.column("id_number_valid").expect("valid ids");
    // Split: a record (without a valid ID) of a cluster of three or more.
    let leaver = (0..table.len())
        .find(|&r| size(r) >= 3 && valid.is_null(r))
        .expect("a cluster of three");
    // Merge: a single-record person takes the fields of a record of another cluster.
    let single = (0..table.len())
        .find(|&r| size(r) == 1 && r != leaver)
        .expect("a singleton");
    let model = (0..table.len())
        .find(|&r| size(r) >= 2 && valid.is_valid(r) && id_of(r) != id_of(leaver))
        .expect("a cluster with a valid ID");
    // A record's fields as a department could send them: its standardised values (the state
    // keeps only the raw values golden records show).
    let person_fields: Vec<String> = plan
        .kind(yiku::config::EntityKind::Person)
        .expect("person settings")
        .fields
        .keys()
        .cloned()
        .collect();
    let raw_fields = |r: usize| -> BTreeMap<String, String> {
        person_fields
            .iter()
            .filter_map(|f| Some((f, table.column(f)?)))
            .filter(|(_, a)| a.is_valid(r))
            .map(|(f, a)| (f.clone(), a.value(r).to_string()))
            .collect()
    };
    let src = |r: usize| table.sources[table.source[r] as usize].clone();
    let rid = |r: usize| table.record_id.value(r).to_string();
    let stranger: BTreeMap<String, String> = [("name".to_string(), "欧阳测试甲".to_string())]
        .into_iter()
        .collect();
    let delta3 = dir.join("delta3");
    std::fs::create_dir_all(&delta3).expect("mkdir");
    let mut by_source: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    by_source
        .entry(src(leaver))
        .or_default()
        .push((rid(leaver), stranger));
    by_source
        .entry(src(single))
        .or_default()
        .push((rid(single), raw_fields(model)));
    for (s, rows) in &by_source {
        let mut rows = rows.clone();
        rows.sort();
        write_changes(&plan, s, &rows, &delta3);
    }
    let n3 = dir.join("n3");
    run(
        &dir.join("night1/job.toml"),
        &n3,
        Some(&n2),
        Some(&delta3),
        None,
    );
    check_lineage(&n2, &n3, 3);
    // Night 3 has its own layer over night 2's and the base; the same night compacted
    // (a new base of every record) gives the same whole index.
    let segments = |d: &Path| {
        let m = yiku::store::Manifest::read(d)
            .expect("manifest")
            .expect("a store");
        m.kinds["person"].segments.len()
    };
    assert_eq!(segments(&n3), 3);
    let mut compacting = yiku::Plan::from_file(&dir.join("night1/job.toml")).expect("plan");
    compacting.compact_after = 1e-9;
    let n3c = dir.join("n3-compacted");
    yiku::run(
        &compacting,
        &yiku::RunOptions {
            output: Some(n3c.clone()),
            threads: Some(1),
            quiet: true,
            previous: Some(n2.clone()),
            delta: Some(delta3.clone()),
            ..Default::default()
        },
    )
    .expect("compacting run");
    assert_eq!(segments(&n3c), 1);
    same_index(&index(&n3c), &index(&n3), "compacted and layered");
    let (x, y) = (dir.join("n3-export"), dir.join("n3c-export"));
    for (from, to) in [(&n3, &x), (&n3c, &y)] {
        yiku::export::export(from, &plan, to, plan.compression).expect("export");
    }
    for f in ["master_index.parquet", "golden_persons.parquet"] {
        assert!(
            std::fs::read(x.join(f)).ok() == std::fs::read(y.join(f)).ok(),
            "{f} differs once compacted"
        );
    }
    let ev = events(&n3);
    let (leaver_id, single_id, model_id) = (id_of(leaver), id_of(single), id_of(model));
    assert!(
        ev.iter().any(|(e, m, o, _)| e == "split_from"
            && o.as_deref() == Some(leaver_id.as_str())
            && m.starts_with("P000003")),
        "no split from {leaver_id}: {ev:?}"
    );
    assert!(
        ev.iter().any(|(e, m, o, _)| e == "merged_into"
            && m == &single_id
            && o.as_deref() == Some(model_id.as_str())),
        "{single_id} not merged into {model_id}: {ev:?}"
    );
    let b3 = index(&n3);
    let key = |r: usize| ("person".to_string(), src(r), rid(r));
    assert_eq!(b3.get(&key(single)), Some(&model_id));
    assert_ne!(b3.get(&key(leaver)), Some(&leaver_id));
    // Everyone else in the leaver's cluster kept its id.
    for (r, id) in &b {
        if id == &leaver_id && r != &key(leaver) {
            assert_eq!(b3.get(r), Some(&leaver_id), "{r:?}");
        }
    }
}

#[test]
fn clerks_decisions_on_a_delta_night_do_what_they_do_on_a_full_run() {
    let job = crate::common::root().join("datasets/demo/job.toml");
    let plan = yiku::Plan::from_file(&job).expect("plan");
    let n1 = scratch("dlabels-n1");
    run(&job, &n1, None, None, None);
    let (m, r) = crate::demo::pairs_to_decide(&n1);
    let labels = n1.join("labels.parquet");
    crate::demo::write_labels(
        &labels,
        &[
            [&m[0], &m[1], &m[2], &m[3], "non_match"],
            [&r[0], &r[1], &r[2], &r[3], "match"],
        ],
    );
    // A night with no records sent, only the clerks' decisions; and a full run with them.
    let empty = scratch("dlabels-delta");
    let with = |out: &Path, delta: Option<&Path>, model: Option<&Path>| {
        let opts = yiku::RunOptions {
            output: Some(out.to_path_buf()),
            threads: Some(2),
            quiet: true,
            previous: Some(n1.clone()),
            delta: delta.map(Path::to_path_buf),
            model: model.map(Path::to_path_buf),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        yiku::run(&plan, &opts).expect("run with decisions")
    };
    let (d, f) = (scratch("dlabels-n2"), scratch("dlabels-full"));
    let s = with(&d, Some(&empty), None);
    with(&f, None, Some(&n1.join("model.json")));
    assert_eq!(s.kinds.iter().map(|k| k.decisions_applied).sum::<u64>(), 2);
    let (x, y) = (index(&d), index(&f));
    assert_eq!(
        x, y,
        "the delta night and the full run apply the decisions alike"
    );
    let id = |i: &BTreeMap<(String, String, String), String>, s: &str, r: &str| {
        i.iter()
            .find(|(k, _)| k.1 == s && k.2 == r)
            .map(|(_, v)| v.clone())
    };
    assert_ne!(id(&x, &m[0], &m[1]), id(&x, &m[2], &m[3]), "split");
    assert_eq!(id(&x, &r[0], &r[1]), id(&x, &r[2], &r[3]), "joined");
    let ledger = |dir: &Path| columns(&dir.join("decisions.parquet"), &["decision", "decided_in"]);
    assert_eq!(ledger(&d), ledger(&f));
    // The next night keeps them in effect: the decided pairs stay as decided.
    let n3 = scratch("dlabels-n3");
    run(&job, &n3, Some(&d), Some(&empty), None);
    same_index(&index(&n3), &x, "decisions the next night");
    assert_eq!(ledger(&n3)[0].len(), 2);
}
