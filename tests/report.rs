//! The auditor's report and explanations: self-contained, masked, and adding up.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
