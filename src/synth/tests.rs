//! Whole-generator tests: determinism across thread counts, validity of clean identifiers,
//! measured against configured noise, truth coverage, job file.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::standardise::ident::{id_is_valid, org_code_is_valid, uscc_is_valid};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synthdev-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Column name -> values, in file order.
fn read(path: &Path) -> BTreeMap<String, Vec<Option<String>>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let col = col.as_any().downcast_ref::<StringArray>().unwrap();
            out.entry(field.name().clone())
                .or_default()
                .extend((0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())));
        }
    }
    out
}

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        persons: 4_000,
        enterprises: 600,
        seed,
        ..SynthConfig::default()
    }
}

#[test]
fn same_bytes_with_one_and_two_threads() {
    let cfg = small(42);
    let dirs = [temp_dir("det1"), temp_dir("det2")];
    for (threads, dir) in [1, 2].into_iter().zip(&dirs) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| generate(&cfg, dir)).unwrap();
    }
    let mut names: Vec<_> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), Department::ALL.len() + 3);
    for name in names {
        let a = std::fs::read(dirs[0].join(&name)).unwrap();
        let b = std::fs::read(dirs[1].join(&name)).unwrap();
        assert!(a == b, "{name:?} differs between 1 and 2 threads");
    }
    // A different seed gives different data.
    let other = temp_dir("det3");
    generate(&small(43), &other).unwrap();
    let a = std::fs::read(dirs[0].join("public_security.parquet")).unwrap();
    let c = std::fs::read(other.join("public_security.parquet")).unwrap();
    assert_ne!(a, c);
    for d in dirs.iter().chain([&other]) {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn clean_identifiers_are_valid() {
    let cfg = SynthConfig {
        noise_scale: 0.0,
        ..small(5)
    };
    let dir = temp_dir("clean");
    let summary = generate(&cfg, &dir).unwrap();
    assert!(
        summary.noise.iter().all(|s| s.applied == 0),
        "noise at scale 0"
    );
    for dept in Department::ALL {
        let cols = read(&dir.join(format!("{}.parquet", dept.name())));
        for c in dept.spec().columns {
            let values = &cols[c.header];
            match c.canonical {
                "id_number" | "legal_rep_id" => {
                    for v in values {
                        let v = v.as_deref().unwrap();
                        assert!(id_is_valid(v), "{} {v}", dept.name());
                    }
                }
                "uscc" => {
                    for v in values {
                        let v = v.as_deref().unwrap();
                        assert!(uscc_is_valid(v), "{} {v}", dept.name());
                        assert!(org_code_is_valid(&v[8..17]), "{v}");
                        assert!(v.starts_with("91"));
                    }
                }
                "name" | "birth_date" | "gender" | "address" => {
                    assert!(
                        values.iter().all(Option::is_some),
                        "{} {}",
                        dept.name(),
                        c.header
                    );
                }
                _ => {}
            }
        }
    }
    let ps = read(&dir.join("public_security.parquet"));
    let ids: HashSet<_> = ps["公民身份号码"].iter().collect();
    assert_eq!(
        ids.len(),
        ps["公民身份号码"].len(),
        "no duplicates at scale 0"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn measured_noise_matches_configured_rates() {
    let cfg = SynthConfig {
        persons: 30_000,
        enterprises: 4_000,
        ..SynthConfig::default()
    };
    let dir = temp_dir("noise");
    let summary = generate(&cfg, &dir).unwrap();
    let mut checked = 0;
    for s in &summary.noise {
        assert_eq!(
            s.rate,
            cfg.rate(
                Department::ALL
                    .into_iter()
                    .find(|d| d.name() == s.department)
                    .unwrap(),
                s.kind
            )
        );
        if s.opportunities < 1_000 {
            continue;
        }
        let n = s.opportunities as f64;
        let tolerance = 4.0 * (s.rate * (1.0 - s.rate) / n).sqrt() + 0.002;
        assert!(
            (s.measured() - s.rate).abs() <= tolerance,
            "{} {}: measured {:.4} configured {:.4} (n = {n})",
            s.department,
            s.kind.name(),
            s.measured(),
            s.rate
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked}");

    // Independent of the counters: legacy IDs and missing IDs as seen in the files.
    let stat = |dept: &str, kind: NoiseKind| {
        summary
            .noise
            .iter()
            .find(|s| s.department == dept && s.kind == kind)
            .unwrap()
            .clone()
    };
    let civil = read(&dir.join("civil_affairs.parquet"));
    let legacy = civil["身份证号"]
        .iter()
        .flatten()
        .filter(|v| v.chars().count() == 15 && v.chars().all(|c| c.is_numeric()))
        .count();
    assert_eq!(
        legacy as u64,
        stat("civil_affairs", NoiseKind::IdLegacy15).applied
    );
    let health = read(&dir.join("health.parquet"));
    let missing = health["身份证号"].iter().filter(|v| v.is_none()).count();
    let share = missing as f64 / health["身份证号"].len() as f64;
    assert!((share - 0.6).abs() < 0.02, "health ids missing: {share}");
    let tax = read(&dir.join("tax_enterprises.parquet"));
    let legacy = tax["纳税人识别号"]
        .iter()
        .flatten()
        .filter(|v| v.len() == 15)
        .count();
    // A legacy number can itself be missing (`reg_number_missing`).
    let applied = stat("tax_enterprises", NoiseKind::UsccLegacy).applied;
    assert!(legacy as u64 <= applied && legacy as f64 >= 0.9 * applied as f64);
    let share = legacy as f64 / tax["纳税人识别号"].len() as f64;
    assert!((0.12..0.28).contains(&share), "legacy tax ids: {share}");
    assert!(
        summary.relations.iter().all(|&(_, n)| n > 0),
        "{:?}",
        summary.relations
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rate_overrides_and_scale() {
    let cfg = SynthConfig {
        noise_scale: 2.0,
        rate_overrides: vec![
            RateOverride {
                department: None,
                kind: NoiseKind::NamePinyin,
                rate: 0.5,
            },
            RateOverride {
                department: Some(Department::Health),
                kind: NoiseKind::IdMissing,
                rate: 0.0,
            },
        ],
        ..SynthConfig::default()
    };
    let d = Department::CivilAffairs;
    assert_eq!(
        cfg.rate(d, NoiseKind::IdTypo),
        2.0 * d.default_rate(NoiseKind::IdTypo)
    );
    assert_eq!(cfg.rate(d, NoiseKind::NamePinyin), 0.5);
    assert_eq!(cfg.rate(Department::Health, NoiseKind::IdMissing), 0.0);
    assert_eq!(
        cfg.rate(d, NoiseKind::IdMissing),
        2.0 * d.default_rate(NoiseKind::IdMissing)
    );
}

#[test]
fn truth_covers_every_record_once() {
    let cfg = small(9);
    let dir = temp_dir("truth");
    let summary = generate(&cfg, &dir).unwrap();
    let mut truth: Vec<(String, String)> = Vec::new();
    let mut entities: HashSet<String> = HashSet::new();
    for file in ["truth_persons.parquet", "truth_enterprises.parquet"] {
        let t = read(&dir.join(file));
        for ((s, r), e) in t["source"].iter().zip(&t["record_id"]).zip(&t["entity_id"]) {
            truth.push((s.clone().unwrap(), r.clone().unwrap()));
            entities.insert(e.clone().unwrap());
        }
    }
    let mut records: Vec<(String, String)> = Vec::new();
    for (dept, rows) in &summary.files {
        let spec = Department::ALL
            .into_iter()
            .find(|d| d.name() == dept)
            .unwrap()
            .spec();
        let cols = read(&dir.join(format!("{dept}.parquet")));
        let ids = &cols[spec.id_header];
        assert_eq!(ids.len(), *rows);
        records.extend(ids.iter().map(|r| (dept.clone(), r.clone().unwrap())));
    }
    let unique: HashSet<_> = records.iter().collect();
    assert_eq!(
        unique.len(),
        records.len(),
        "record ids unique within each file"
    );
    truth.sort();
    records.sort();
    assert_eq!(truth, records);
    // Duplicate registrations exist: fewer entities than records.
    assert!(entities.len() < records.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn job_file_describes_the_files() {
    let cfg = small(3);
    let dir = temp_dir("job");
    generate(&cfg, &dir).unwrap();
    let text = std::fs::read_to_string(dir.join("job.toml")).unwrap();
    assert!(
        text.starts_with(
            "# generated by `yiku generate --persons 4000 --enterprises 600 --seed 3`\n"
        )
    );
    let job: toml::Table = text.parse().unwrap();
    assert_eq!(job["job"]["mode"].as_str(), Some("both"));
    let sources = job["sources"].as_array().unwrap();
    assert_eq!(sources.len(), Department::ALL.len());
    for s in sources {
        let cols = read(&dir.join(s["path"].as_str().unwrap()));
        assert!(cols.contains_key(s["record_id"].as_str().unwrap()));
        for (column, canonical) in s["columns"].as_table().unwrap() {
            assert!(cols.contains_key(column), "{column}");
            let allowed: &[&str] = match s["kind"].as_str().unwrap() {
                "person" => &[
                    "name",
                    "id_number",
                    "gender",
                    "birth_date",
                    "phone",
                    "address",
                    "employer",
                ],
                _ => &[
                    "name",
                    "uscc",
                    "org_code",
                    "reg_number",
                    "legal_rep",
                    "legal_rep_id",
                    "address",
                    "phone",
                ],
            };
            assert!(
                allowed.contains(&canonical.as_str().unwrap()),
                "{canonical}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
