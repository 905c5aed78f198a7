//! Defaults for the `person` and `enterprise` kinds: fields, blocking rules, comparisons and
//! thresholds that work for Chinese departmental data without tuning. A job overrides any of
//! them in its `[person]` / `[enterprise]` section.

use std::collections::BTreeMap;

use super::{ComparisonSpec, EntityKind, FieldType, KindPlan, Method, Survivorship};

fn cmp(field: &str, method: Method, term_frequency: bool) -> ComparisonSpec {
    ComparisonSpec {
        field: field.into(),
        method,
        thresholds: Vec::new(),
        term_frequency,
    }
}

fn rules(r: &[&[&str]]) -> Vec<Vec<String>> {
    r.iter()
        .map(|rule| rule.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// The preset of a kind; `None` for `generic`, which names everything in its job file.
pub fn preset(kind: EntityKind) -> Option<KindPlan> {
    use FieldType as T;
    use Method as M;
    match kind {
        EntityKind::Person => Some(KindPlan {
            kind,
            fields: BTreeMap::from([
                ("name".into(), T::PersonName),
                ("id_number".into(), T::IdNumber),
                ("gender".into(), T::Gender),
                ("birth_date".into(), T::Date),
                ("phone".into(), T::Phone),
                ("address".into(), T::Address),
                ("employer".into(), T::EnterpriseName),
                ("updated_at".into(), T::Date),
            ]),
            blocking: rules(&[
                &["id_number_valid"],
                &["birth_date", "name_pinyin"],
                &["phone"],
                &["name", "address"],
            ]),
            max_block_size: 1000,
            comparisons: vec![
                cmp("name", M::PersonName, true),
                cmp("id_number", M::IdNumber, false),
                cmp("birth_date", M::Date, false),
                cmp("gender", M::Exact, false),
                cmp("phone", M::Phone, false),
                cmp("address", M::Address, false),
            ],
            match_probability: 0.5,
            review_probability: 0.1,
            must_not_link: vec!["id_number_valid".into()],
            u_sample_pairs: 300_000,
            em_iterations: 25,
            golden: BTreeMap::from([
                ("name".into(), Survivorship::SourcePriority),
                ("id_number".into(), Survivorship::SourcePriority),
                ("address".into(), Survivorship::MostRecent),
                ("phone".into(), Survivorship::MostRecent),
            ]),
            source_priority: Vec::new(),
        }),
        EntityKind::Enterprise => Some(KindPlan {
            kind,
            fields: BTreeMap::from([
                ("name".into(), T::EnterpriseName),
                ("uscc".into(), T::Uscc),
                ("org_code".into(), T::OrgCode),
                ("reg_number".into(), T::Text),
                ("legal_rep".into(), T::PersonName),
                ("legal_rep_id".into(), T::IdNumber),
                ("address".into(), T::Address),
                ("phone".into(), T::Phone),
                ("updated_at".into(), T::Date),
            ]),
            blocking: rules(&[
                &["uscc_valid"],
                &["org_code"],
                &["reg_number"],
                &["name_core"],
                &["phone"],
            ]),
            max_block_size: 1000,
            comparisons: vec![
                cmp("name_core", M::EnterpriseName, true),
                cmp("org_code", M::Exact, false),
                cmp("reg_number", M::Exact, false),
                cmp("name_region", M::Exact, false),
                cmp("legal_rep", M::PersonName, false),
                cmp("address", M::Address, false),
                cmp("phone", M::Phone, false),
            ],
            match_probability: 0.5,
            review_probability: 0.1,
            must_not_link: vec!["uscc_valid".into()],
            u_sample_pairs: 300_000,
            em_iterations: 25,
            golden: BTreeMap::from([
                ("name".into(), Survivorship::SourcePriority),
                ("uscc".into(), Survivorship::SourcePriority),
                ("address".into(), Survivorship::MostRecent),
                ("phone".into(), Survivorship::MostRecent),
            ]),
            source_priority: Vec::new(),
        }),
        EntityKind::Generic => None,
    }
}
