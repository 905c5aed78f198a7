//! The job file (TOML) and its validation into a [`Plan`]: every user-supplied value is checked
//! here, so later stages can trust what they are given. Presets for the `person` and
//! `enterprise` kinds fill in whatever a job leaves out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What kind of entity a source describes. Each kind is matched separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Person,
    Enterprise,
    Generic,
}

impl EntityKind {
    pub const ALL: [EntityKind; 3] = [
        EntityKind::Person,
        EntityKind::Enterprise,
        EntityKind::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Enterprise => "enterprise",
            EntityKind::Generic => "generic",
        }
    }

    /// The kind a name (as [`EntityKind::as_str`] gives it) stands for.
    pub fn parse(name: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Prefix of master ids of this kind.
    pub fn id_prefix(self) -> &'static str {
        match self {
            EntityKind::Person => "P",
            EntityKind::Enterprise => "E",
            EntityKind::Generic => "G",
        }
    }
}

/// Which pairs are candidates: within one source, across sources, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dedupe,
    Link,
    #[default]
    Both,
}

/// How a field's raw text is standardised (and so which derived columns it gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// NFKC, trimmed, lower-case, whitespace collapsed.
    Text,
    /// NFKC and trimmed only.
    Exact,
    PersonName,
    IdNumber,
    Date,
    Gender,
    Phone,
    Address,
    EnterpriseName,
    Uscc,
    OrgCode,
}

/// How two values of a field are compared, giving an ordered level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Exact,
    JaroWinkler,
    Levenshtein,
    Damerau,
    PersonName,
    EnterpriseName,
    IdNumber,
    Date,
    Phone,
    Address,
}

/// One comparison of the model: a field, a method and its thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonSpec {
    /// The standardised column compared (a canonical field or a derived column).
    pub field: String,
    pub method: Method,
    /// Similarity thresholds (Jaro-Winkler, highest first) or edit distances (lowest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f64>,
    /// Adjust the exact-match weight by how common the value is.
    #[serde(default)]
    pub term_frequency: bool,
}

/// Matching settings of one entity kind; every key is optional and falls back to the preset.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettings {
    /// Standardisation type per canonical field (required for `generic`, preset otherwise).
    pub fields: Option<BTreeMap<String, FieldType>>,
    /// Blocking rules: each an equality on one or more standardised columns.
    pub blocking: Option<Vec<Vec<String>>>,
    /// Blocks with more records than this are skipped and reported.
    pub max_block_size: Option<usize>,
    pub comparisons: Option<Vec<ComparisonSpec>>,
    /// Pairs at or above this probability are merged.
    pub match_probability: Option<f64>,
    /// Pairs at or above this probability, but below `match_probability`, go to clerical review.
    pub review_probability: Option<f64>,
    /// Columns on which two records with different (valid) values must never be merged.
    pub must_not_link: Option<Vec<String>>,
    /// Record pairs drawn at random to estimate u.
    pub u_sample_pairs: Option<usize>,
    pub em_iterations: Option<usize>,
    /// Survivorship rule per field for the golden records (default: `most_frequent`, IDs and
    /// codes valid only).
    pub golden: Option<BTreeMap<String, Survivorship>>,
    /// Sources in order of authority for golden records (default: the job's source order).
    pub source_priority: Option<Vec<String>>,
}

/// How a golden record picks a field's value among a cluster's records. Ties go to the more
/// authoritative source, then to the first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Survivorship {
    /// The value most records agree on.
    MostFrequent,
    /// The value of the most authoritative source that has one.
    SourcePriority,
    /// The value of the record with the latest `updated_at`.
    MostRecent,
}

/// `[job]` of a job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    output: Option<PathBuf>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    memory_limit: Option<String>,
    #[serde(default)]
    compression: Option<Compression>,
    #[serde(default)]
    compact_after: Option<f64>,
}

/// How the run's Parquet outputs are compressed (`[job] compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Fast to write and read, read by every Parquet reader: the default for a nightly run.
    #[default]
    Snappy,
    /// About half the size, a few tenths of a second more per million records.
    Zstd,
    /// LZ4 (the `LZ4_RAW` codec): like snappy; older readers lack it.
    Lz4,
    /// Uncompressed.
    None,
}

/// File formats a source can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Ipc,
    Csv,
}

/// `[[sources]]` of a job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    name: String,
    kind: EntityKind,
    path: PathBuf,
    #[serde(default)]
    format: Option<Format>,
    record_id: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    #[serde(default)]
    job: Option<JobSection>,
    #[serde(default)]
    sources: Vec<SourceSection>,
    #[serde(default)]
    person: Option<KindSettings>,
    #[serde(default)]
    enterprise: Option<KindSettings>,
    #[serde(default)]
    generic: Option<KindSettings>,
}

/// One source, validated: its path resolved against the job file's folder.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub name: String,
    pub kind: EntityKind,
    pub path: PathBuf,
    pub format: Format,
    pub record_id: String,
    /// (source column, canonical field), sorted by field.
    pub columns: Vec<(String, String)>,
}

/// Complete settings of one kind after presets are applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindPlan {
    pub kind: EntityKind,
    pub fields: BTreeMap<String, FieldType>,
    pub blocking: Vec<Vec<String>>,
    pub max_block_size: usize,
    pub comparisons: Vec<ComparisonSpec>,
    pub match_probability: f64,
    pub review_probability: f64,
    pub must_not_link: Vec<String>,
    pub u_sample_pairs: usize,
    pub em_iterations: usize,
    /// Survivorship rule per field (fields not named use `most_frequent`).
    pub golden: BTreeMap<String, Survivorship>,
    /// Source names in order of authority (empty: the job's source order).
    pub source_priority: Vec<String>,
}

/// [`Plan::compact_after`] unless the job sets it: measured on a 1M-record index, a 1% delta
/// touches ~3% of the records, so a compaction (a full night's write) comes every ~15 nights.
pub const DEFAULT_COMPACT_AFTER: f64 = 0.5;

/// A validated job.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub job_path: PathBuf,
    pub output: PathBuf,
    pub mode: Mode,
    /// 0 means all cores.
    pub threads: usize,
    pub seed: u64,
    /// Peak memory the run may need, in bytes (`memory_limit`): a run estimated to need more
    /// is refused before it starts.
    pub memory_limit: Option<u64>,
    /// Compression of the Parquet outputs.
    pub compression: Compression,
    /// A delta night writes a new base of the persistent index instead of a layer when the
    /// layers would hold more than this share of the base's records (`compact_after`).
    pub compact_after: f64,
    pub sources: Vec<Source>,
    /// One entry per kind that has sources, in kind order.
    pub kinds: Vec<KindPlan>,
}

impl Plan {
    /// Reads and validates a job file.
    pub fn from_file(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Plan::from_toml(&text, path)
    }

    /// Validates a job given as TOML text; `path` locates relative source paths and names the
    /// file in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Plan> {
        let cfg_err = |key: &str, message: String| Error::Config {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let file: JobFile = toml::from_str(text).map_err(|e| {
            // The key the message names, else where in the file it went wrong; the message
            // keeps its lines (toml shows the line with a caret under the spot).
            let line = e.span().map(|r| {
                let upto = &text.as_bytes()[..r.start.min(text.len())];
                upto.iter().filter(|&&b| b == b'\n').count() + 1
            });
            let named = e.message().split('`').nth(1).filter(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
            });
            let key = match (named, line) {
                (Some(k), _) => k.to_string(),
                (None, Some(l)) => format!("line {l}"),
                (None, None) => "(syntax)".to_string(),
            };
            cfg_err(&key, format!("\n{}", e.to_string().trim_end()))
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let job = file.job.clone().unwrap_or(JobSection {
            name: None,
            output: None,
            mode: Mode::Both,
            threads: None,
            seed: None,
            memory_limit: None,
            compression: None,
            compact_after: None,
        });
        let compact_after = match job.compact_after {
            None => DEFAULT_COMPACT_AFTER,
            Some(x) if x.is_finite() && x > 0.0 => x,
            Some(x) => {
                return Err(cfg_err(
                    "job.compact_after",
                    format!(
                        "{x} is not a share: expected a number above 0, such as 0.5 (compact the \
                         index when its nightly layers hold half as many records as its base)"
                    ),
                ));
            }
        };
        let memory_limit = match &job.memory_limit {
            Some(text) => Some(parse_size(text).ok_or_else(|| {
                cfg_err(
                    "job.memory_limit",
                    format!("`{text}` is not a size: expected a number and a unit, such as \"4GB\" or \"512MB\""),
                )
            })?),
            None => None,
        };
        if file.sources.is_empty() {
            return Err(cfg_err(
                "sources",
                "no [[sources]]: name at least one source file".into(),
            ));
        }
        let mut sources = Vec::with_capacity(file.sources.len());
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in file.sources.iter().enumerate() {
            let key = format!("sources[{i}]");
            if s.name.trim().is_empty() {
                return Err(cfg_err(&format!("{key}.name"), "must not be empty".into()));
            }
            if !names.insert(s.name.clone()) {
                return Err(cfg_err(
                    &format!("{key}.name"),
                    format!(
                        "source name `{}` is used twice; names must be unique",
                        s.name
                    ),
                ));
            }
            let full = if s.path.is_absolute() {
                s.path.clone()
            } else {
                base.join(&s.path)
            };
            let format = match s.format {
                Some(f) => f,
                None => format_from_extension(&full).ok_or_else(|| {
                    cfg_err(
                        &format!("{key}.format"),
                        format!(
                            "cannot tell the format of `{}` from its extension; set format = \"parquet\", \"ipc\" or \"csv\"",
                            s.path.display()
                        ),
                    )
                })?,
            };
            let mut columns: Vec<(String, String)> = s
                .columns
                .iter()
                .map(|(col, field)| (col.clone(), field.clone()))
                .collect();
            columns.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            for w in columns.windows(2) {
                if w[0].1 == w[1].1 {
                    return Err(cfg_err(
                        &format!("{key}.columns"),
                        format!(
                            "columns `{}` and `{}` both map to field `{}`; map one column per field",
                            w[0].0, w[1].0, w[0].1
                        ),
                    ));
                }
            }
            sources.push(Source {
                name: s.name.clone(),
                kind: s.kind,
                path: full,
                format,
                record_id: s.record_id.clone(),
                columns,
            });
        }
        let mut kinds = Vec::new();
        for kind in EntityKind::ALL {
            let kind_sources: Vec<&Source> = sources.iter().filter(|s| s.kind == kind).collect();
            if kind_sources.is_empty() {
                continue;
            }
            let settings = match kind {
                EntityKind::Person => file.person.clone(),
                EntityKind::Enterprise => file.enterprise.clone(),
                EntityKind::Generic => file.generic.clone(),
            }
            .unwrap_or_default();
            let plan = KindPlan::resolve(kind, settings).map_err(|(k, m)| cfg_err(&k, m))?;
            for s in &kind_sources {
                for (col, field) in &s.columns {
                    if !plan.fields.contains_key(field) {
                        let known: Vec<&str> = plan.fields.keys().map(String::as_str).collect();
                        return Err(cfg_err(
                            &format!("sources.{}.columns.{col}", s.name),
                            format!(
                                "`{field}` is not a {} field; fields are: {}",
                                kind.as_str(),
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            for s in &plan.source_priority {
                if !kind_sources.iter().any(|x| &x.name == s) {
                    return Err(cfg_err(
                        &format!("{}.source_priority", kind.as_str()),
                        format!("`{s}` is not a {} source of this job", kind.as_str()),
                    ));
                }
            }
            kinds.push(plan);
        }
        let output = match job.output {
            Some(o) if o.is_absolute() => o,
            Some(o) => base.join(o),
            None => base.join("out"),
        };
        Ok(Plan {
            name: job.name.unwrap_or_else(|| "job".into()),
            job_path: path.to_path_buf(),
            output,
            mode: job.mode,
            threads: job.threads.unwrap_or(0),
            seed: job.seed.unwrap_or(42),
            memory_limit,
            compression: job.compression.unwrap_or_default(),
            compact_after,
            sources,
            kinds,
        })
    }

    /// The names of a kind's sources, in job order.
    pub fn source_names(&self, kind: EntityKind) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn kind(&self, kind: EntityKind) -> Option<&KindPlan> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// A size such as `4GB`, `512 MB`, `2GiB` or `1000000` (bytes), in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

fn format_from_extension(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "parquet" | "pq" => Some(Format::Parquet),
        "arrow" | "ipc" | "feather" => Some(Format::Ipc),
        "csv" | "txt" => Some(Format::Csv),
        _ => None,
    }
}

/// Derived columns a field type adds beside the field itself (`name` -> `name_pinyin`, ...).
pub fn derived_columns(field: &str, ty: FieldType) -> Vec<String> {
    let suffixes: &[&str] = match ty {
        FieldType::PersonName => &["pinyin", "surname"],
        FieldType::IdNumber => &["valid", "birth", "gender", "region"],
        FieldType::EnterpriseName => &["core", "region"],
        FieldType::Uscc => &["valid", "org_code", "reg_number", "region"],
        _ => &[],
    };
    suffixes.iter().map(|s| format!("{field}_{s}")).collect()
}

impl KindPlan {
    /// Applies the preset of `kind` to what the job file set, and checks the result.
    fn resolve(
        kind: EntityKind,
        s: KindSettings,
    ) -> std::result::Result<KindPlan, (String, String)> {
        let k = kind.as_str();
        let preset = crate::config::presets::preset(kind);
        let fields = match (s.fields, &preset) {
            (Some(f), _) => f,
            (None, Some(p)) => p.fields.clone(),
            (None, None) => {
                return Err((
                    format!("{k}.fields"),
                    "the generic kind needs its fields and their types, e.g. fields = { surname = \"text\", dob = \"date\" }".into(),
                ));
            }
        };
        let need = |name: &str| {
            (
                format!("{k}.{name}"),
                format!("the generic kind has no preset: set `{name}` in [{k}]"),
            )
        };
        let blocking = match (s.blocking, &preset) {
            (Some(b), _) => b,
            (None, Some(p)) => p.blocking.clone(),
            (None, None) => return Err(need("blocking")),
        };
        let comparisons = match (s.comparisons, &preset) {
            (Some(c), _) => c,
            (None, Some(p)) => p.comparisons.clone(),
            (None, None) => return Err(need("comparisons")),
        };
        let p = preset.as_ref();
        let plan = KindPlan {
            kind,
            blocking,
            comparisons,
            max_block_size: s
                .max_block_size
                .or(p.map(|p| p.max_block_size))
                .unwrap_or(1000),
            match_probability: s
                .match_probability
                .or(p.map(|p| p.match_probability))
                .unwrap_or(0.9),
            review_probability: s
                .review_probability
                .or(p.map(|p| p.review_probability))
                .unwrap_or(0.5),
            must_not_link: s
                .must_not_link
                .or(p.map(|p| p.must_not_link.clone()))
                .unwrap_or_default(),
            u_sample_pairs: s
                .u_sample_pairs
                .or(p.map(|p| p.u_sample_pairs))
                .unwrap_or(300_000),
            em_iterations: s.em_iterations.unwrap_or(25),
            golden: s.golden.or(p.map(|p| p.golden.clone())).unwrap_or_default(),
            source_priority: s.source_priority.unwrap_or_default(),
            fields,
        };
        plan.check()?;
        Ok(plan)
    }

    /// Every column a blocking rule, comparison or constraint may name.
    pub fn known_columns(&self) -> Vec<String> {
        let mut cols = Vec::new();
        for (f, ty) in &self.fields {
            cols.push(f.clone());
            cols.extend(derived_columns(f, *ty));
        }
        cols.sort();
        cols.dedup();
        cols
    }

    fn check(&self) -> std::result::Result<(), (String, String)> {
        let k = self.kind.as_str();
        let known = self.known_columns();
        let unknown = |key: String, col: &str| {
            (
                key,
                format!(
                    "`{col}` is not a column of this job; columns are: {}",
                    known.join(", ")
                ),
            )
        };
        if self.blocking.is_empty() || self.blocking.len() > 32 {
            return Err((
                format!("{k}.blocking"),
                "needs between 1 and 32 rules".into(),
            ));
        }
        for (i, rule) in self.blocking.iter().enumerate() {
            if rule.is_empty() {
                return Err((
                    format!("{k}.blocking[{i}]"),
                    "a rule needs at least one column".into(),
                ));
            }
            for c in rule {
                if !known.contains(c) {
                    return Err(unknown(format!("{k}.blocking[{i}]"), c));
                }
            }
        }
        if self.comparisons.is_empty() || self.comparisons.len() > 16 {
            return Err((
                format!("{k}.comparisons"),
                "needs between 1 and 16 comparisons".into(),
            ));
        }
        for (i, c) in self.comparisons.iter().enumerate() {
            let key = format!("{k}.comparisons[{i}]");
            if !known.contains(&c.field) {
                return Err(unknown(key, &c.field));
            }
            match c.method {
                Method::JaroWinkler if c.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) => {
                    return Err((
                        format!("{key}.thresholds"),
                        "Jaro-Winkler thresholds must be between 0 and 1".into(),
                    ));
                }
                Method::Levenshtein | Method::Damerau
                    if c.thresholds.iter().any(|t| *t < 1.0 || t.fract() != 0.0) =>
                {
                    return Err((
                        format!("{key}.thresholds"),
                        "edit-distance thresholds must be whole numbers >= 1".into(),
                    ));
                }
                _ => {}
            }
            if c.thresholds.len() > 4 {
                return Err((format!("{key}.thresholds"), "at most 4 thresholds".into()));
            }
        }
        for c in &self.must_not_link {
            if !known.contains(c) {
                return Err(unknown(format!("{k}.must_not_link"), c));
            }
        }
        let prob = |v: f64| v > 0.0 && v < 1.0;
        if !prob(self.match_probability) {
            return Err((
                format!("{k}.match_probability"),
                format!(
                    "must be between 0 and 1 (exclusive), got {}",
                    self.match_probability
                ),
            ));
        }
        if !prob(self.review_probability) || self.review_probability > self.match_probability {
            return Err((
                format!("{k}.review_probability"),
                format!(
                    "must be between 0 and match_probability ({}), got {}",
                    self.match_probability, self.review_probability
                ),
            ));
        }
        if self.max_block_size < 2 {
            return Err((format!("{k}.max_block_size"), "must be at least 2".into()));
        }
        for f in self.golden.keys() {
            if !self.fields.contains_key(f) {
                return Err((
                    format!("{k}.golden.{f}"),
                    format!("`{f}` is not a field of this kind"),
                ));
            }
        }
        if self.em_iterations == 0 {
            return Err((format!("{k}.em_iterations"), "must be at least 1".into()));
        }
        Ok(())
    }
}

pub mod presets;
