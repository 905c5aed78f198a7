//! Nightly deltas from a generated folder, to exercise and measure delta runs. Every record
//! of every source falls, by a seeded hash of its source and record id, into one of:
//!
//! | share of records | night 1 (`night1/`)        | tonight's delta (`delta/`) | final data (`final/`) |
//! |------------------|----------------------------|----------------------------|-----------------------|
//! | `fraction / 2`   | absent (arrives tonight)   | new record                 | present               |
//! | `fraction / 4`   | name mistyped              | corrected record           | present, corrected    |
//! | `fraction / 4`   | present                    | in `deletions.csv`         | absent                |
//! | the rest         | present                    | —                          | present               |
//!
//! `night1/` and `final/` get the job file and truth files for their records, so a delta run
//! (`--previous night1/out --delta delta`) can be checked against a full run on `final/`.

use std::hash::BuildHasher;
use std::path::Path;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};

use crate::config::{Compression, Plan};
use crate::error::{Error, Result};

/// Records per part of a split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NightsSummary {
    pub night1: u64,
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Kept,
    Added,
    Changed,
    Deleted,
}

fn part(seed: u64, source: &str, record_id: &str, fraction: f64) -> Part {
    let h = foldhash::fast::FixedState::with_seed(seed ^ 0x6e69_6768_7473)
        .hash_one((source, record_id));
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < fraction / 2.0 {
        Part::Added
    } else if u < fraction * 0.75 {
        Part::Changed
    } else if u < fraction {
        Part::Deleted
    } else {
        Part::Kept
    }
}

/// A name as a clerk might have mistyped it: the last character replaced.
fn mistype(name: &str) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    match chars.last_mut() {
        Some(c) if *c != '某' => *c = '某',
        Some(c) => *c = '甲',
        None => chars.push('某'),
    }
    chars.into_iter().collect()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn filter(batch: &RecordBatch, keep: &[bool]) -> Result<RecordBatch> {
    arrow_select::filter::filter_record_batch(batch, &BooleanArray::from(keep.to_vec())).map_err(
        |e| Error::Data {
            stage: "generate",
            message: e.to_string(),
        },
    )
}

/// Splits the generated folder `dir` (with its `job.toml`) into `night1/`, `delta/` and
/// `final/` beneath it.
pub fn split_nights(dir: &Path, fraction: f64, seed: u64) -> Result<NightsSummary> {
    let plan = Plan::from_file(&dir.join("job.toml"))?;
    let (night1, delta, fin) = (dir.join("night1"), dir.join("delta"), dir.join("final"));
    for d in [&night1, &delta, &fin] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut summary = NightsSummary::default();
    let mut deletions = String::from("source,record_id\n");
    let mut parts: std::collections::HashMap<(String, String), Part> = Default::default();
    for src in &plan.sources {
        let batches = crate::state::read_parquet(&src.path, None)?;
        let Some(first) = batches.first() else {
            continue;
        };
        let batch =
            arrow_select::concat::concat_batches(&first.schema(), &batches).map_err(|e| {
                Error::Data {
                    stage: "generate",
                    message: e.to_string(),
                }
            })?;
        let ids = crate::state::text_column(std::slice::from_ref(&batch), &src.record_id)
            .ok_or_else(|| Error::Schema {
                path: src.path.clone(),
                column: src.record_id.clone(),
                message: "record id column not found".into(),
            })?;
        let p: Vec<Part> = (0..ids.len())
            .map(|i| part(seed, &src.name, ids.value(i), fraction))
            .collect();
        for (i, &x) in p.iter().enumerate() {
            parts.insert((src.name.clone(), ids.value(i).to_string()), x);
            match x {
                Part::Added => summary.added += 1,
                Part::Changed => summary.changed += 1,
                Part::Deleted => {
                    summary.deleted += 1;
                    deletions.push_str(&format!("{},{}\n", src.name, ids.value(i)));
                }
                Part::Kept => {}
            }
        }
        // Night 1 sees the changed records with their names mistyped.
        let name_col = src
            .columns
            .iter()
            .find(|(_, f)| f == "name")
            .map(|(c, _)| c.as_str());
        let mut first_night = batch.clone();
        if let Some(idx) = name_col.and_then(|c| batch.schema().index_of(c).ok()) {
            let names = crate::state::text_column(
                std::slice::from_ref(&batch),
                name_col.unwrap_or_default(),
            )
            .unwrap_or_else(|| StringArray::new_null(batch.num_rows()));
            let typed: StringArray = (0..names.len())
                .map(|i| {
                    (!names.is_null(i)).then(|| match p[i] {
                        Part::Changed => mistype(names.value(i)),
                        _ => names.value(i).to_string(),
                    })
                })
                .collect();
            let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
            cols[idx] = std::sync::Arc::new(typed);
            first_night = RecordBatch::try_new(batch.schema(), cols).map_err(|e| Error::Data {
                stage: "generate",
                message: e.to_string(),
            })?;
        }
        let keep1: Vec<bool> = p.iter().map(|&x| x != Part::Added).collect();
        let keep_delta: Vec<bool> = p
            .iter()
            .map(|&x| matches!(x, Part::Added | Part::Changed))
            .collect();
        let keep_final: Vec<bool> = p.iter().map(|&x| x != Part::Deleted).collect();
        summary.night1 += keep1.iter().filter(|&&k| k).count() as u64;
        let Some(file) = src.path.file_name() else {
            continue;
        };
        let schema = batch.schema();
        crate::output::write_parquet(
            &night1.join(file),
            schema.clone(),
            &[filter(&first_night, &keep1)?],
            Compression::Zstd,
        )?;
        crate::output::write_parquet(
            &delta.join(file),
            schema.clone(),
            &[filter(&batch, &keep_delta)?],
            Compression::Zstd,
        )?;
        crate::output::write_parquet(
            &fin.join(file),
            schema,
            &[filter(&batch, &keep_final)?],
            Compression::Zstd,
        )?;
    }
    std::fs::write(delta.join(crate::load::DELETIONS_FILE), deletions)
        .map_err(io(&delta.join(crate::load::DELETIONS_FILE)))?;
    // Job and truth files for night 1 and the final data.
    let job = std::fs::read_to_string(dir.join("job.toml")).map_err(io(&dir.join("job.toml")))?;
    for (d, absent) in [(&night1, Part::Added), (&fin, Part::Deleted)] {
        std::fs::write(d.join("job.toml"), &job).map_err(io(&d.join("job.toml")))?;
        for truth in ["truth_persons.parquet", "truth_enterprises.parquet"] {
            let path = dir.join(truth);
            if !path.exists() {
                continue;
            }
            let batches = crate::state::read_parquet(&path, None)?;
            let mut out = Vec::new();
            for b in &batches {
                let (Some(s), Some(r)) = (
                    crate::state::text_column(std::slice::from_ref(b), "source"),
                    crate::state::text_column(std::slice::from_ref(b), "record_id"),
                ) else {
                    continue;
                };
                let keep: Vec<bool> = (0..b.num_rows())
                    .map(|i| {
                        parts
                            .get(&(s.value(i).to_string(), r.value(i).to_string()))
                            .is_none_or(|&x| x != absent)
                    })
                    .collect();
                out.push(filter(b, &keep)?);
            }
            if let Some(b) = batches.first() {
                crate::output::write_parquet(&d.join(truth), b.schema(), &out, Compression::Zstd)?;
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_name_differs_in_its_last_character() {
        assert_eq!(mistype("张三丰"), "张三某");
        assert_eq!(mistype("王某"), "王甲");
    }

    #[test]
    fn parts_follow_the_fraction() {
        let n = 20_000;
        let added = (0..n)
            .filter(|i| part(7, "s", &i.to_string(), 0.1) == Part::Added)
            .count();
        assert!((800..1200).contains(&added), "{added}");
    }
}
