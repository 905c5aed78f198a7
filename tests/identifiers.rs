//! Check-digit and upgrade rules on the published examples.

use yiku::standardise::ident::*;

#[test]
fn id_card_published_example_and_upgrade() {
    assert!(id_is_valid("11010519491231002X"));
    assert_eq!(
        upgrade_id15("110105491231002").as_deref(),
        Some("11010519491231002X")
    );
    // Every single-digit change breaks the check.
    let id = b"11010519491231002X";
    for pos in 0..17 {
        let mut v = id.to_vec();
        v[pos] = if v[pos] == b'9' { b'0' } else { v[pos] + 1 };
        assert!(
            !id_is_valid(std::str::from_utf8(&v).expect("ascii")),
            "pos {pos}"
        );
    }
}

#[test]
fn uscc_and_org_code_published_example() {
    assert!(uscc_is_valid("91350100M000100Y43"));
    assert_eq!(uscc_org_code("91350100M000100Y43"), Some("M000100Y4"));
    assert!(org_code_is_valid("M000100Y4"));
    assert!(!uscc_is_valid("91350100M000100Y4I"));
}

#[test]
fn standardised_id_column_upgrades_and_fixes_case() {
    use yiku::config::{EntityKind, FieldType, KindPlan};
    use yiku::load::RawTable;
    let raw = RawTable {
        kind: EntityKind::Generic,
        sources: vec!["s".into()],
        source: vec![0; 4].into(),
        record_id: vec!["1", "2", "3", "4"].into(),
        fields: vec!["id".into()],
        columns: vec![
            vec![
                Some("110105491231002"),
                Some("11010519491231002x"),
                Some("１１０１０５１９４９１２３１００２Ｘ"),
                Some("不详"),
            ]
            .into(),
        ],
    };
    let plan = KindPlan {
        kind: EntityKind::Generic,
        fields: [("id".to_string(), FieldType::IdNumber)].into(),
        blocking: vec![vec!["id_valid".into()]],
        max_block_size: 10,
        comparisons: vec![],
        match_probability: 0.9,
        review_probability: 0.5,
        must_not_link: vec![],
        u_sample_pairs: 10,
        em_iterations: 1,
        golden: Default::default(),
        source_priority: vec![],
    };
    // Raw columns stay only for the fields asked for.
    let without = yiku::standardise::standardise(raw.clone(), &plan, &[]).expect("standardise");
    assert!(without.raw.is_empty());
    let t = yiku::standardise::standardise(raw, &plan, &["id".into()]).expect("standardise");
    assert_eq!(t.raw["id"].value(2), "１１０１０５１９４９１２３１００２Ｘ");
    let valid = t.column("id_valid").expect("derived column");
    for i in 0..3 {
        assert_eq!(valid.value(i), "11010519491231002X", "row {i}");
    }
    assert!(arrow_array::Array::is_null(valid, 3));
    assert_eq!(t.column("id_birth").expect("birth").value(0), "1949-12-31");
}
