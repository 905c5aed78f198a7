//! The auditor's report and explanations: self-contained, masked, and adding up.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::Array;

use crate::common::*;

/// The demo run with its standardised records kept (shared by the tests of this file).
fn demo_with_standardised() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch("report-std");
        let plan = yiku::Plan::from_file(&root().join("datasets/demo/job.toml")).expect("plan");
        let opts = yiku::RunOptions {
            output: Some(out.clone()),
            threads: Some(2),
            quiet: true,
            ..Default::default()
        };
        yiku::run(&plan, &opts).expect("demo run");
        out
    })
}

/// Runs of `len` characters where `ok(i, c)` holds for every position.
fn find_runs(text: &str, len: usize, ok: impl Fn(usize, char) -> bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut hits = Vec::new();
    for s in 0..chars.len().saturating_sub(len - 1) {
        if (0..len).all(|i| ok(i, chars[s + i])) {
            hits.push(chars[s..s + len].iter().collect());
        }
    }
    hits
}

#[test]
fn the_default_report_is_self_contained_and_masks_ids_and_phones() {
    let out = scratch("report-default");
    run_job(&root().join("datasets/demo/job.toml"), &out, 2);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html written");
    let lower = html.to_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "<script src",
        "url(http",
        "@import",
    ] {
        assert!(!lower.contains(bad), "report refers outside itself: {bad}");
    }
    for section in [
        "Run summary",
        "One database",
        "Blocking",
        "Model",
        "Match weights",
        "Clusters",
        "Pairs near the match threshold",
    ] {
        assert!(html.contains(section), "missing section {section}");
    }
    assert!(html.contains("<svg"), "no charts");
    // An 18-character ID number: 17 digits then a digit or X.
    let ids = find_runs(&html, 18, |i, c| {
        c.is_ascii_digit() || (i == 17 && (c == 'X' || c == 'x'))
    });
    assert!(
        ids.is_empty(),
        "unmasked ID numbers in the report: {:?}",
        &ids[..ids.len().min(5)]
    );
    // A mobile phone: 1, then 3-9, then 9 digits.
    let phones = find_runs(&html, 11, |i, c| match i {
        0 => c == '1',
        1 => ('3'..='9').contains(&c),
        _ => c.is_ascii_digit(),
    });
    assert!(
        phones.is_empty(),
        "unmasked phones in the report: {:?}",
        &phones[..phones.len().min(5)]
    );
    assert!(
        !html.contains("show personal data unmasked") && !html.contains("unmasked (--show-pii)")
    );
}

#[test]
fn show_pii_says_so_at_the_top_and_truth_adds_curves() {
    let out = demo_with_standardised();
    let copy = scratch("report-pii");
    for f in [
        "run.json",
        "model.json",
        "master_index.parquet",
        "pairs.parquet",
        "quarantine.parquet",
        "standardised_person.arrow",
        "standardised_enterprise.arrow",
    ] {
        std::fs::copy(out.join(f), copy.join(f)).expect("copy");
    }
    let opts = yiku::html::ReportOptions {
        show_pii: true,
        truth: Some(root().join("datasets/demo/truth_persons.parquet")),
    };
    yiku::html::write_report(&copy, &opts).expect("report");
    assert!(
        !copy.join("report.html").exists(),
        "the unmasked report has its own name"
    );
    let html = std::fs::read_to_string(copy.join("report-pii.html")).expect("report");
    let banner = html.find("unmasked (--show-pii)").expect("banner");
    assert!(
        banner < html.find("<main>").expect("main"),
        "the banner is not at the top"
    );
    assert!(html.contains("Against the truth") && html.contains("<polyline"));
}

#[test]
fn waterfalls_add_up_to_the_stored_match_weight() {
    let out = demo_with_standardised();
    let p = columns(
        &out.join("pairs.parquet"),
        &[
            "source_l",
            "record_id_l",
            "source_r",
            "record_id_r",
            "match_weight",
        ],
    );
    let n = p[0].len();
    assert!(n > 1000);
    let mut checked = 0;
    for i in (0..n).step_by(n / 40) {
        let get = |c: usize| p[c][i].clone().expect("value");
        let (sl, rl, sr, rr) = (get(0), get(1), get(2), get(3));
        let w: f64 = get(4).parse().expect("weight");
        let e = yiku::score::explain::explain(out, (&sl, &rl), (&sr, &rr)).expect("explain");
        assert!(e.stored.is_some(), "pair {sl}:{rl} ~ {sr}:{rr} not found");
        let wf = &e.waterfall;
        let sum: f64 = wf.prior + wf.steps.iter().map(|s| s.weight).sum::<f64>();
        assert!(
            (sum - w).abs() < 1e-9,
            "{sl}:{rl} ~ {sr}:{rr}: terms sum to {sum}, stored {w}"
        );
        assert!(
            (wf.total - w).abs() < 1e-9,
            "total {} vs stored {w}",
            wf.total
        );
        let stored = e.stored.as_ref().expect("stored");
        let levels: Vec<u8> = wf.steps.iter().map(|s| s.level).collect();
        assert_eq!(levels, stored.levels, "levels differ from pairs.parquet");
        // The levels-only explanation (no standardised records) agrees too.
        let rule = wf.rule.expect("candidate");
        let lv = yiku::score::explain::from_levels(&e.model, &stored.levels, rule, w);
        let lsum: f64 = lv.prior + lv.steps.iter().map(|s| s.weight).sum::<f64>();
        assert!(
            (lsum - w).abs() < 1e-9,
            "levels-only terms sum to {lsum}, stored {w}"
        );
        for (a, b) in lv.steps.iter().zip(&wf.steps) {
            assert!(
                (a.weight - b.weight).abs() < 1e-9,
                "{}: {} vs {}",
                a.field,
                a.weight,
                b.weight
            );
        }
        checked += 1;
    }
    assert!(checked >= 40);
}

#[test]
fn explain_says_a_non_candidate_pair_was_not_compared_and_names_the_missed_rules() {
    let out = demo_with_standardised().display().to_string();
    let (a, b) = ("civil_affairs:MZ00000001", "civil_affairs:MZ00000002");
    let (code, stdout, stderr) = yiku(&["explain", "--run", &out, a, b]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("NOT COMPARED"), "{stdout}");
    assert!(stdout.contains("missed rule `id_number_valid`"), "{stdout}");
    assert!(
        stdout.contains("missed rule `birth_date+name_pinyin`"),
        "{stdout}"
    );
    assert!(stdout.contains("probability"), "{stdout}");
    assert!(
        find_runs(&stdout, 18, |_, c| c.is_ascii_digit() || c == 'X').is_empty(),
        "{stdout}"
    );
    let (code, _, stderr) = yiku(&["explain", "--run", &out, a, "nowhere:1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not in"), "{stderr}");
}

#[test]
fn the_report_a_run_writes_from_memory_equals_the_one_read_back_from_its_files() {
    let out = demo_with_standardised();
    let written = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    let reread = yiku::html::render(out, &yiku::html::ReportOptions::default()).expect("render");
    // The footers say where the figures came from and how long the page took.
    let body = |html: &str| {
        html.split("<footer>")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(written.contains("from its records in memory"));
    assert!(reread.contains("from the files of"));
    assert!(body(&written).len() > 10_000);
    assert_eq!(body(&written), body(&reread));
}

/// A generated job of three person departments, a full first night and a delta night after
/// it (shared by the tests of this file): (the delta night's folder, the generated folder).
fn delta_night() -> &'static (PathBuf, PathBuf) {
    static OUT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir = scratch("report-delta");
        let cfg = yiku::synth::SynthConfig {
            persons: 3000,
            enterprises: 100,
            seed: 17,
            ..Default::default()
        };
        yiku::synth::generate(&cfg, &dir).expect("generate");
        // The first three departments only (all of persons).
        let job = std::fs::read_to_string(dir.join("job.toml")).expect("job.toml");
        let parts: Vec<&str> = job.split("\n[[sources]]").take(4).collect();
        std::fs::write(dir.join("job.toml"), parts.join("\n[[sources]]")).expect("job.toml");
        let split = yiku::synth::nights::split_nights(&dir, 0.05, 17).expect("split");
        assert!(
            split.added > 0 && split.changed > 0 && split.deleted > 0,
            "{split:?}"
        );
        let job = dir.join("night1/job.toml");
        let plan = yiku::Plan::from_file(&job).expect("valid job");
        assert_eq!(plan.sources.len(), 3);
        assert!(
            plan.sources
                .iter()
                .all(|s| s.kind == yiku::config::EntityKind::Person)
        );
        let (n1, n2) = (dir.join("n1"), dir.join("n2"));
        run_job(&job, &n1, 2);
        let opts = yiku::RunOptions {
            output: Some(n2.clone()),
            threads: Some(2),
            quiet: true,
            previous: Some(n1),
            delta: Some(dir.join("delta")),
            ..Default::default()
        };
        yiku::run(&plan, &opts).expect("delta night");
        assert!(!n2.join("master_index.parquet").exists());
        assert!(n2.join("master_index_changes.parquet").exists());
        (n2, dir)
    })
}

/// 1,234.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

#[test]
fn a_delta_nights_report_says_it_covers_the_nights_changes() {
    let (night, dir) = delta_night();
    let copy = scratch("report-delta-copy");
    // `yiku report` on a copy of the folder (the run's own report.html stays as written).
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", night.display()))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    std::fs::remove_file(copy.join("report.html")).expect("remove the run's report");
    let (code, stdout, stderr) = yiku(&["report", "--run", &copy.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("report.html"), "{stdout}");
    let html = std::fs::read_to_string(copy.join("report.html")).expect("report.html");
    let top = html.find("<section id=summary>").expect("summary");
    let notice = html
        .find("this page covers the night's changes")
        .expect("the page says it covers the night's changes");
    assert!(notice < top, "the notice is not at the top");
    assert!(html.contains("yiku export"), "names the export");
    // The counts of each change, as master_index_changes.parquet has them.
    let c = columns(
        &night.join("master_index_changes.parquet"),
        &["kind", "change"],
    );
    let count = |what: &str| c[1].iter().filter(|v| v.as_deref() == Some(what)).count();
    let (added, updated, relinked, removed) = (
        count("added"),
        count("updated"),
        count("relinked"),
        count("removed"),
    );
    assert!(added > 0 && updated > 0 && removed > 0);
    let row = format!(
        "<tr><td>person</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
        thousands(added),
        thousands(updated),
        thousands(relinked),
        thousands(removed)
    );
    assert!(html.contains(&row), "no row {row}");
    let changed = added + updated + relinked;
    assert!(
        html.contains(&format!(
            "person: {} records changed tonight",
            thousands(changed)
        )),
        "the index figures are not the night's"
    );
    // Data quality of the records sent tonight, and tonight's pairs explained with their
    // values from the store, adding up to their stored weights.
    assert!(html.contains("empty values per department, records sent tonight"));
    assert!(!html.contains("lacks: it was written by an older yiku"));
    assert!(html.contains("merged, just above the threshold"));
    assert!(!html.contains("no standardised records"));
    assert!(
        !html.contains("differs from the stored weight"),
        "a waterfall does not add up"
    );
    // With a truth file: the whole index's true pairs, from the store.
    let opts = yiku::html::ReportOptions {
        show_pii: false,
        truth: Some(dir.join("final/truth_persons.parquet")),
    };
    let html = yiku::html::render(&copy, &opts).expect("report with truth");
    assert!(html.contains("Against the truth") && html.contains("<polyline"));
    assert!(html.contains("recall counts the true pairs with a record sent tonight"));
    // The report the run wrote says so too.
    let written = std::fs::read_to_string(night.join("report.html")).expect("report.html");
    assert!(written.contains("this page covers the night's changes"));
    let reread = yiku::html::render(night, &yiku::html::ReportOptions::default()).expect("render");
    let body = |h: &str| h.split("<footer>").next().unwrap_or_default().to_string();
    assert_eq!(
        body(&written),
        body(&reread),
        "the run's page and the re-read page differ"
    );
}

#[test]
fn explain_finds_a_delta_nights_records_in_its_store() {
    let (night, _) = delta_night();
    let run = night.display().to_string();
    // Master ids of the whole index, from the store.
    let mut master = std::collections::HashMap::new();
    for (_, [s, r, m]) in yiku::store::index_rows(night)
        .expect("readable store")
        .expect("a store")
    {
        for i in 0..s.len() {
            master.insert(
                format!("{}:{}", s.value(i), r.value(i)),
                m.value(i).to_string(),
            );
        }
    }
    // Tonight's merged pairs whose records share a master id.
    let p = columns(
        &night.join("pairs.parquet"),
        &[
            "source_l",
            "record_id_l",
            "source_r",
            "record_id_r",
            "match_weight",
            "match_probability",
        ],
    );
    let mut checked = 0;
    let rows: Vec<Vec<String>> = (0..p[0].len())
        .map(|i| p.iter().map(|c| c[i].clone().expect("value")).collect())
        .collect();
    for row in &rows {
        let get = |c: usize| row[c].clone();
        let probability: f64 = get(5).parse().expect("probability");
        let (a, b) = (
            format!("{}:{}", get(0), get(1)),
            format!("{}:{}", get(2), get(3)),
        );
        if probability < 0.5 || !master.contains_key(&a) || master.get(&a) != master.get(&b) {
            continue;
        }
        let e = yiku::score::explain::explain(night, (&get(0), &get(1)), (&get(2), &get(3)))
            .expect("explain");
        let w: f64 = get(4).parse().expect("weight");
        assert!(
            (e.waterfall.total - w).abs() < 1e-9,
            "{a} ~ {b}: total {} vs stored {w}",
            e.waterfall.total
        );
        assert!(e.waterfall.steps.iter().all(|s| s.values.is_some()));
        if checked == 0 {
            let (code, stdout, stderr) = yiku(&["explain", "--run", &run, &a, &b]);
            assert_eq!(code, 0, "{stderr}");
            assert!(stdout.contains("(same master entity)"), "{stdout}");
            assert!(
                stdout.contains("candidate pair: found by blocking rule"),
                "{stdout}"
            );
            assert!(stdout.contains("probability"), "{stdout}");
            assert!(!stdout.contains("values unavailable"), "{stdout}");
            let (code, _, stderr) = yiku(&["explain", "--run", &run, &a, "nowhere:1"]);
            assert_eq!(code, 1);
            assert!(stderr.contains("nowhere:1 is not in the index"), "{stderr}");
        }
        checked += 1;
        if checked == 10 {
            break;
        }
    }
    assert!(checked > 0, "no merged pair tonight");
    // A folder with neither a master index nor a store: the message names both.
    let bare = scratch("explain-bare");
    std::fs::copy(night.join("model.json"), bare.join("model.json")).expect("copy");
    let (code, _, stderr) = yiku(&[
        "explain",
        "--run",
        &bare.display().to_string(),
        "a:1",
        "b:2",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("master_index.parquet") && stderr.contains("store/"),
        "{stderr}"
    );
}
