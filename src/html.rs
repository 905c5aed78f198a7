//! The auditor's report: `report.html`, one self-contained file (inline CSS and SVG, no
//! scripts, no network) that shows what a run did and why: the run summary, the "one
//! database" picture across departments, data quality, blocking, the model, the match
//! weights, the clusters, explanations of pairs near the threshold and, with a truth file,
//! precision and recall by threshold.
//!
//! `yiku report` reads only the run's output folder; a run hands over what it gathered from
//! memory ([`RunFacts`]) so as not to read its own big files back, and the page is the same.
//! Personal data (names, ID numbers, phones, addresses, every record value) is masked unless
//! [`ReportOptions::show_pii`] is set. Cost from the files: one streaming pass over
//! `master_index.parquet` and two over `pairs.parquet` (a few columns each), the standardised
//! records' validity bits; the page holds samples and capped tables only.
//!
//! A delta night's folder holds its changes, not the whole index, and so does its page: the
//! index figures come from the rows of `master_index_changes.parquet` that are not `removed`
//! (grouped by master id, as the rows of `master_index.parquet` are), data quality from the
//! records sent that night, the values of the explained pairs from the persistent index
//! (`store/`, looked up by record), and the page says so at the top. Its cost follows the
//! delta, except with a truth file (the whole index is read for the true pairs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray};
use serde_json::Value;

use crate::config::EntityKind;
use crate::error::{Error, Result};
use crate::mask::mask;
use crate::score::explain::{self, StoredPair, Waterfall};
use crate::score::model::{Model, ModelFile};
use crate::score::tf::{Counts, TermFrequencies, value_hash};
use crate::score::weight_of_probability;

/// How the report is written.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Show personal data unmasked (the report says so at the top).
    pub show_pii: bool,
    /// A truth file (`source`, `record_id`, `entity_id`) for precision and recall.
    pub truth: Option<PathBuf>,
}

/// Pairs explained on each side of the match threshold, per kind.
const NEAR: usize = 4;
/// Largest clusters listed, per kind.
const LARGEST: usize = 10;
/// Members listed per large cluster.
const MEMBERS: usize = 12;
/// Rows of capped tables (quarantine samples, skipped blocks).
const ROWS: usize = 20;

/// Writes `report.html` into a run's output folder, from its files.
pub fn write_report(out_dir: &Path, opts: &ReportOptions) -> Result<()> {
    write_report_with(out_dir, opts, None)
}

/// The report's file name: `report.html`, or `report-pii.html` with personal data shown, so
/// that the masked report the auditors share is never overwritten by an unmasked one.
pub fn report_file(opts: &ReportOptions) -> &'static str {
    if opts.show_pii {
        "report-pii.html"
    } else {
        "report.html"
    }
}

/// Writes `report.html` (see [`report_file`]) into a run's output folder; `facts` (gathered by the run while its
/// records were in memory) stand in for the master index, pairs and standardised records,
/// which are then not read back.
pub fn write_report_with(
    out_dir: &Path,
    opts: &ReportOptions,
    facts: Option<RunFacts>,
) -> Result<()> {
    let html = render_with(out_dir, opts, facts)?;
    let path = out_dir.join(report_file(opts));
    std::fs::write(&path, html).map_err(|e| Error::io(&path, e))
}

/// The report of a run's output folder as HTML text.
pub fn render(out_dir: &Path, opts: &ReportOptions) -> Result<String> {
    render_with(out_dir, opts, None)
}

/// [`render`], with the run's own [`RunFacts`] when it has them.
fn render_with(out_dir: &Path, opts: &ReportOptions, facts: Option<RunFacts>) -> Result<String> {
    let start = Instant::now();
    let run_path = out_dir.join("run.json");
    let text = std::fs::read_to_string(&run_path).map_err(|e| Error::io(&run_path, e))?;
    let run: Value = serde_json::from_str(&text).map_err(|e| Error::Read {
        path: run_path.clone(),
        message: format!("not a yiku run summary: {e}"),
    })?;
    let models = ModelFile::load(&out_dir.join("model.json"))?;
    // Where the page's figures come from, for its footer.
    let origin = match facts {
        Some(_) => "at the end of the run, from its records in memory,".to_string(),
        None => format!(
            "from the files of <code>{}</code>",
            esc(&out_dir.display().to_string())
        ),
    };
    let (index, pairs, stds) = match facts {
        Some(mut f) => {
            let stds = models
                .models
                .iter()
                .map(|m| f.std.remove(m.kind.as_str()))
                .collect();
            (f.index, f.pairs, stds)
        }
        None => read_facts(out_dir, &models)?,
    };
    let quarantine = read_quarantine(out_dir)?;
    let empty = KindPairs::default();
    let mut kinds = Vec::new();
    for (model, std) in models.models.iter().zip(stds) {
        let k = model.kind.as_str();
        let Some(ix) = index.get(k) else { continue };
        let pk = pairs.get(k).unwrap_or(&empty);
        kinds.push((model, ix, pk, std));
    }
    let truth = match &opts.truth {
        Some(t) => Some(truth_curves(t, out_dir, &models)?),
        None => None,
    };
    // A delta night's page describes the night's changes (see the module's notes).
    let night = run["delta"].is_string();
    let mut p = Page {
        html: String::with_capacity(256 * 1024),
        show_pii: opts.show_pii,
        night,
    };
    p.head(&run);
    if night {
        p.night(&run, &index);
    }
    p.summary(&run, &quarantine);
    p.one_database(&kinds);
    p.quality(&run, &kinds, &quarantine);
    p.blocking(&run);
    p.model(&models);
    p.weights(&kinds);
    p.clusters(&run, &kinds);
    p.near_threshold(&kinds);
    if let Some(t) = &truth {
        p.truth(t, opts.truth.as_deref());
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = write!(
        p.html,
        "<footer>Written by yiku {} {origin} in {secs:.2} s. \
         Regenerate with <code>yiku report --run OUT [--truth FILE] [--show-pii]</code>; \
         explain any two records with <code>yiku explain --run OUT SOURCE:ID SOURCE:ID</code>.</footer>\
         </main></body></html>",
        esc(env!("CARGO_PKG_VERSION")),
    );
    p.html.push('\n');
    Ok(p.html)
}

// ---------------------------------------------------------------------------------------
// Reading the run's files.

/// Per kind: the master index's picture, the pairs' weights and samples, the standardised
/// records' quality (in model order), read from the output files.
type Facts = (
    BTreeMap<String, KindIndex>,
    BTreeMap<String, KindPairs>,
    Vec<Option<Standardised>>,
);

fn read_facts(out_dir: &Path, models: &ModelFile) -> Result<Facts> {
    // A delta night's folder: its changes stand in for the master index.
    let changes = read_changes(out_dir)?;
    let no_rows = Vec::new();
    // The master index on one side; the pairs, then the records they explain, on the other.
    let (index, pairs_std) = rayon::join(
        || match &changes {
            Some(c) => Ok(c
                .iter()
                .map(|(k, rows)| (k.clone(), index_of_changes(&borrowed(rows))))
                .collect()),
            None => read_index(out_dir),
        },
        || -> Result<_> {
            let pairs = read_pairs(out_dir, models)?;
            let empty = KindPairs::default();
            let std = models
                .models
                .iter()
                .map(|model| {
                    let pk = pairs.get(model.kind.as_str()).unwrap_or(&empty);
                    match &changes {
                        Some(c) => {
                            let rows = c.get(model.kind.as_str()).unwrap_or(&no_rows);
                            standardised_of_night(out_dir, model, pk, rows)
                        }
                        None => standardised(out_dir, model, pk),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((pairs, std))
        },
    );
    let (index, (pairs, stds)) = (index?, pairs_std?);
    Ok((index, pairs, stds))
}

/// Members of a cluster: (source, record id).
type Members = Vec<(String, String)>;
/// A large cluster: master id, size, members.
type Largest = (String, u64, Members);
/// Per source: (source, records, nulls per field, invalid ids, invalid usccs).
type QualityRow = (String, u64, Vec<u64>, Option<u64>, Option<u64>);
/// (threshold, precision, recall, F1).
type PrfPoint = (f64, f64, f64, f64);
/// A fast, fixed hasher (the report hashes every master id).
type Fast = foldhash::fast::FixedState;

/// What the report needs from a run's large files (master index, pairs, standardised
/// records), gathered by the run from memory as each kind finishes
/// ([`RunFacts::add_pairs`], then [`RunFacts::add_index`], or on a delta night
/// [`RunFacts::add_changes`]): its report then reads none of them back. `yiku report` reads
/// the files instead; both give the same page.
#[derive(Default)]
pub struct RunFacts {
    index: BTreeMap<String, KindIndex>,
    pairs: BTreeMap<String, KindPairs>,
    std: BTreeMap<String, Standardised>,
    /// The models [`RunFacts::add_pairs`] was given, by kind: a delta night's
    /// [`RunFacts::add_changes`] explains the sampled pairs again with them.
    models: BTreeMap<String, Model>,
    /// The run's output folder (named in messages).
    out_dir: PathBuf,
}

impl RunFacts {
    /// One kind's index: its records' master ids (by record) and clusters.
    pub fn add_index(
        &mut self,
        table: &crate::standardise::StdTable,
        master_id: &StringArray,
        groups: &crate::cluster::Groups,
    ) {
        if !table.is_empty() {
            self.index.insert(
                table.kind.as_str().to_string(),
                index_of_run(table, master_id, groups),
            );
        }
    }

    /// One kind's pairs and records: its records (as written to the state file) and scored
    /// pairs: `tally`, fed every pair as written to `pairs.parquet` (in its order), and
    /// `fetch`, which gives rows of `pairs.parquet` (by number within the kind, sorted) in
    /// full. Needs no master ids: the scored pairs can go before the
    /// master index is made.
    pub fn add_pairs(
        &mut self,
        model: &Model,
        table: &crate::standardise::StdTable,
        tally: PairTally,
        fetch: &dyn Fn(&[usize]) -> Result<Vec<RecordBatch>>,
        out_dir: &Path,
    ) -> Result<()> {
        let k = model.kind.as_str();
        let mut pk = tally.finish(|rows, _| fetch(rows))?;
        let pk = pk.remove(k).unwrap_or_default();
        let path = crate::state::standardised_path(out_dir, model.kind);
        let std = standardised_of_table(model, &pk, table, None, None, &path)?;
        self.std.insert(k.to_string(), std);
        self.models.insert(k.to_string(), model.clone());
        self.out_dir = out_dir.to_path_buf();
        if pk.weights.count > 0 {
            self.pairs.insert(k.to_string(), pk);
        }
        Ok(())
    }

    /// One kind's changes on a delta night, in place of [`RunFacts::add_index`]: the index
    /// figures of the rows `master_index_changes.parquet` gets (those not `removed`, grouped
    /// by master id), and, after [`RunFacts::add_pairs`] with the same table, the data
    /// quality of the records sent tonight and the sampled pairs explained with `counts`,
    /// the term frequencies over the whole index the night scored its pairs with
    /// ([`crate::delta::Prepared::counts`]): what `yiku report` reads back from the folder.
    pub fn add_changes(
        &mut self,
        changes: &crate::output::Changes,
        counts: &BTreeMap<String, Counts>,
    ) -> Result<()> {
        let t = changes.table;
        let k = t.kind.as_str();
        let rows = change_rows(changes);
        if !rows.is_empty() {
            self.index.insert(k.to_string(), index_of_changes(&rows));
        }
        let Some(model) = self.models.get(k) else {
            return Ok(());
        };
        let empty = KindPairs::default();
        let pk = self.pairs.get(k).unwrap_or(&empty);
        let tonight: Vec<bool> = (0..t.len())
            .map(|i| changes.focus.get(i).copied().unwrap_or(false))
            .collect();
        let path = self.out_dir.join(crate::store::DIR);
        let std = standardised_of_table(model, pk, t, Some(&tonight), Some(counts), &path)?;
        self.std.insert(k.to_string(), std);
        Ok(())
    }
}

/// [`Standardised`] from a kind's records in memory (`quality`, `counts`: see
/// [`standardised_from`]).
fn standardised_of_table(
    model: &Model,
    pk: &KindPairs,
    table: &crate::standardise::StdTable,
    quality: Option<&[bool]>,
    counts: Option<&BTreeMap<String, Counts>>,
    path: &Path,
) -> Result<Standardised> {
    let (_, want) = report_columns(model);
    let cols = Cols::Text(
        want.iter()
            .filter_map(|n| Some((n.clone(), table.columns.get(n)?.clone())))
            .collect(),
    );
    // Sources as the state file gives them back: those with records, in order of first
    // appearance.
    let mut code = vec![u16::MAX; table.sources.len()];
    let mut sources = Vec::new();
    let source = table
        .source
        .iter()
        .map(|&s| {
            let c = &mut code[usize::from(s)];
            if *c == u16::MAX {
                *c = sources.len() as u16;
                sources.push(table.sources[usize::from(s)].clone());
            }
            *c
        })
        .collect();
    let records = crate::standardise::StdTable {
        kind: table.kind,
        sources,
        source,
        record_id: table.record_id.clone(),
        columns: Default::default(),
        raw: Default::default(),
        stats: Default::default(),
    };
    standardised_from(model, pk, &records, &cols, path, quality, counts)
}

/// What a row of `master_index_changes.parquet` says happened to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// New tonight.
    Added,
    /// Sent again tonight.
    Updated,
    /// Not sent, but its master id or its cluster's size changed.
    Relinked,
    /// Deleted tonight (the row has the master id it carried).
    Removed,
}

impl Change {
    const ALL: [Change; 4] = [
        Change::Added,
        Change::Updated,
        Change::Relinked,
        Change::Removed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Updated => "updated",
            Change::Relinked => "relinked",
            Change::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The record was sent tonight.
    fn sent(self) -> bool {
        matches!(self, Change::Added | Change::Updated)
    }
}

/// A row of `master_index_changes.parquet` of one kind: source, record id, master id, change.
type ChangeRow = (String, String, String, Change);
/// The same, borrowed.
type ChangeRef<'a> = (&'a str, &'a str, &'a str, Change);

fn borrowed(rows: &[ChangeRow]) -> Vec<ChangeRef<'_>> {
    rows.iter()
        .map(|(s, r, m, c)| (s.as_str(), r.as_str(), m.as_str(), *c))
        .collect()
}

/// The rows a delta night writes to `master_index_changes.parquet` for one kind, in its
/// order: those of [`crate::output::IndexFiles::write_master_changes`], which this follows.
fn change_rows<'a>(c: &'a crate::output::Changes) -> Vec<ChangeRef<'a>> {
    let t = c.table;
    let mut rows: Vec<ChangeRef<'a>> = Vec::new();
    for i in 0..t.len() {
        let change = match (c.focus.get(i).copied().unwrap_or(false), &c.old_id[i]) {
            (true, None) => Change::Added,
            (true, Some(_)) => Change::Updated,
            (false, _) if c.row_changed(i) => Change::Relinked,
            _ => continue,
        };
        rows.push((
            t.sources[usize::from(t.source[i])].as_str(),
            t.record_id.value(i),
            c.master_id.value(i),
            change,
        ));
    }
    rows.extend(
        c.removed
            .iter()
            .map(|(s, r, id)| (s.as_str(), r.as_str(), id.as_str(), Change::Removed)),
    );
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    rows
}

/// A delta night's `master_index_changes.parquet`, per kind in file order; `Ok(None)` when
/// the folder has none (a full run's).
fn read_changes(out_dir: &Path) -> Result<Option<BTreeMap<String, Vec<ChangeRow>>>> {
    let path = out_dir.join(crate::output::MASTER_CHANGES);
    if !path.is_file() {
        return Ok(None);
    }
    let mut out: BTreeMap<String, Vec<ChangeRow>> = BTreeMap::new();
    let cols = ["kind", "source", "record_id", "master_id", "change"];
    for b in crate::state::read_parquet(&path, Some(&cols))? {
        let (kind, src, rid, mid, change) = (
            str_col(&b, "kind", &path)?,
            str_col(&b, "source", &path)?,
            str_col(&b, "record_id", &path)?,
            str_col(&b, "master_id", &path)?,
            str_col(&b, "change", &path)?,
        );
        for i in 0..b.num_rows() {
            let c = Change::parse(change.value(i)).ok_or_else(|| Error::Schema {
                path: path.clone(),
                column: "change".into(),
                message: format!(
                    "`{}` in row {i} of a batch: not added, updated, relinked or removed",
                    change.value(i)
                ),
            })?;
            out.entry(kind.value(i).to_string()).or_default().push((
                src.value(i).to_string(),
                rid.value(i).to_string(),
                mid.value(i).to_string(),
                c,
            ));
        }
    }
    Ok(Some(out))
}

/// [`KindIndex`] of a delta night's changes of one kind (rows as in
/// `master_index_changes.parquet`): the rows not `removed`, grouped by master id, as
/// [`read_index`] groups a whole index; and how many rows of each change.
fn index_of_changes(rows: &[ChangeRef]) -> KindIndex {
    let mut ix = KindIndex::default();
    let mut changes = [0u64; 4];
    // Per master id: its departments, records and first members, in order of first row.
    let mut entity: HashMap<&str, usize, Fast> = HashMap::default();
    let mut per: Vec<(&str, u64, u64, Members)> = Vec::new();
    for &(s, r, m, c) in rows {
        changes[c as usize] += 1;
        if c == Change::Removed {
            continue;
        }
        let si = match ix.sources.iter().position(|x| x == s) {
            Some(si) => si,
            None => {
                ix.sources.push(s.to_string());
                ix.records.push(0);
                ix.sources.len() - 1
            }
        };
        ix.records[si] += 1;
        let e = *entity.entry(m).or_insert_with(|| {
            per.push((m, 0, 0, Vec::new()));
            per.len() - 1
        });
        let (_, mask, size, members) = &mut per[e];
        if si < 64 {
            *mask |= 1 << si;
        }
        *size += 1;
        if members.len() < MEMBERS {
            members.push((s.to_string(), r.to_string()));
        }
    }
    ix.changes = Some(changes);
    let mut by_set: HashMap<u64, u64, Fast> = HashMap::default();
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for &(_, mask, size, _) in &per {
        *sizes.entry(size).or_default() += 1;
        *by_set.entry(mask).or_default() += 1;
    }
    let floor = tally(&mut ix, sizes, &by_set);
    ix.largest = largest(
        per.into_iter()
            .map(|(m, _, size, members)| (m.to_string(), size, members)),
        floor,
    );
    ix
}

/// [`KindIndex`] from a kind's records in memory: what [`read_index`] finds in the file.
fn index_of_run(
    table: &crate::standardise::StdTable,
    master_id: &StringArray,
    groups: &crate::cluster::Groups,
) -> KindIndex {
    use rayon::prelude::*;
    let mut ix = KindIndex::default();
    // Sources in order of first appearance, as in the master index file.
    let mut counts = vec![0u64; table.sources.len()];
    for &s in &table.source {
        counts[usize::from(s)] += 1;
    }
    let mut place = vec![usize::MAX; table.sources.len()];
    for &s in &table.source {
        let s = usize::from(s);
        if place[s] == usize::MAX {
            place[s] = ix.sources.len();
            ix.sources.push(table.sources[s].clone());
            ix.records.push(counts[s]);
            if ix.sources.len() == table.sources.len() {
                break;
            }
        }
    }
    // Per cluster: its size and set of departments, counted as the clusters are walked (no
    // list of a pair of numbers a cluster: ~8 bytes a record).
    let clusters = groups.start.len().saturating_sub(1);
    let departments = |c: usize| {
        let mut mask = 0u64;
        for &r in groups.members(c) {
            let at = place[usize::from(table.source[r as usize])];
            if at < 64 {
                mask |= 1 << at;
            }
        }
        mask
    };
    type Counted = (BTreeMap<u64, u64>, HashMap<u64, u64, Fast>);
    let (sizes, by_set) = (0..clusters)
        .into_par_iter()
        .with_min_len(1 << 12)
        .fold(Counted::default, |(mut sizes, mut by_set), c| {
            *sizes.entry(groups.members(c).len() as u64).or_default() += 1;
            *by_set.entry(departments(c)).or_default() += 1;
            (sizes, by_set)
        })
        .reduce(Counted::default, |(mut sizes, mut by_set), (s, b)| {
            for (k, v) in s {
                *sizes.entry(k).or_default() += v;
            }
            for (k, v) in b {
                *by_set.entry(k).or_default() += v;
            }
            (sizes, by_set)
        });
    let floor = tally(&mut ix, sizes, &by_set);
    let big = (0..clusters)
        .filter(|&c| groups.members(c).len() as u64 >= floor)
        .filter_map(|c| {
            let members = groups.members(c);
            let size = members.len() as u64;
            let first = *members.first()? as usize;
            let listed = members
                .iter()
                .take(MEMBERS)
                .map(|&r| {
                    let r = r as usize;
                    (
                        table.sources[usize::from(table.source[r])].clone(),
                        table.record_id.value(r).to_string(),
                    )
                })
                .collect();
            Some((master_id.value(first).to_string(), size, listed))
        });
    ix.largest = largest(big, floor);
    ix
}

/// What the master index (a delta night: its changes) says about one kind.
#[derive(Default, Debug, PartialEq)]
struct KindIndex {
    sources: Vec<String>,
    records: Vec<u64>,
    /// Master entities with at least one record in the source.
    entities: Vec<u64>,
    /// `in_k[k]`: entities with records in exactly k departments.
    in_k: Vec<u64>,
    /// `overlap[a][b]`: entities with records in both departments.
    overlap: Vec<Vec<u64>>,
    /// Cluster size -> clusters of that size.
    sizes: BTreeMap<u64, u64>,
    clusters: u64,
    /// The largest clusters: master id, size, members (source, record id).
    largest: Vec<Largest>,
    /// A delta night's: rows of `master_index_changes.parquet` per [`Change`], in
    /// [`Change::ALL`] order (`None`: a whole index).
    changes: Option<[u64; 4]>,
}

fn str_col<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Schema {
            path: path.to_path_buf(),
            column: name.into(),
            message: "missing or not text".into(),
        })
}

fn read_index(out_dir: &Path) -> Result<BTreeMap<String, KindIndex>> {
    use rayon::prelude::*;
    let path = out_dir.join("master_index.parquet");
    let batches = crate::state::read_parquet(
        &path,
        Some(&["kind", "source", "master_id", "cluster_size"]),
    )?;
    let hasher = Fast::with_seed(0x7969_6b75);
    // Per batch, in parallel: the (kind, source) pairs met, and per row a 64-bit hash of its
    // master id (a collision is a 1 in 10^7 event at a million entities, and would only blur
    // the report's counts) with the index of its (kind, source) in that batch.
    type Seen = (Vec<(String, String)>, Vec<(u64, u16)>);
    let seen: Vec<Seen> = batches
        .par_iter()
        .map(|b| -> Result<Seen> {
            let (kind, src, mid) = (
                str_col(b, "kind", &path)?,
                str_col(b, "source", &path)?,
                str_col(b, "master_id", &path)?,
            );
            let mut names: Vec<(String, String)> = Vec::new();
            let mut rows = Vec::with_capacity(b.num_rows());
            // Rows come sorted by kind and source: look them up only when they change.
            let mut last: Option<(&str, &str, u16)> = None;
            for i in 0..b.num_rows() {
                let (k, s) = (kind.value(i), src.value(i));
                let ks = match last {
                    Some((lk, ls, ks)) if lk == k && ls == s => ks,
                    _ => {
                        let ks = match names.iter().position(|(nk, ns)| nk == k && ns == s) {
                            Some(ks) => ks,
                            None => {
                                names.push((k.to_string(), s.to_string()));
                                names.len() - 1
                            }
                        };
                        let ks = u16::try_from(ks).unwrap_or(u16::MAX);
                        last = Some((k, s, ks));
                        ks
                    }
                };
                rows.push((hasher.hash_one(mid.value(i)), ks));
            }
            Ok((names, rows))
        })
        .collect::<Result<_>>()?;
    // Kinds and their sources in order of first appearance; (kind, source index) per pair.
    let mut out: BTreeMap<String, KindIndex> = BTreeMap::new();
    let mut kind_names: Vec<String> = Vec::new();
    let mut place = |k: &str, s: &str| -> (usize, usize) {
        let ki = match kind_names.iter().position(|x| x == k) {
            Some(ki) => ki,
            None => {
                kind_names.push(k.to_string());
                kind_names.len() - 1
            }
        };
        let ix = out.entry(k.to_string()).or_default();
        let si = match ix.sources.iter().position(|x| x == s) {
            Some(si) => si,
            None => {
                ix.sources.push(s.to_string());
                ix.records.push(0);
                ix.sources.len() - 1
            }
        };
        (ki, si)
    };
    let mut rows: Vec<(usize, u64, usize)> = Vec::new();
    for (names, batch_rows) in &seen {
        let at: Vec<(usize, usize)> = names.iter().map(|(k, s)| place(k, s)).collect();
        rows.extend(batch_rows.iter().filter_map(|&(h, ks)| {
            let &(ki, si) = at.get(usize::from(ks))?;
            Some((ki, h, si))
        }));
    }
    drop(seen);
    for &(ki, _, si) in &rows {
        if let Some(ix) = kind_names.get(ki).and_then(|k| out.get_mut(k)) {
            ix.records[si] += 1;
        }
    }
    // Entities: runs of one (kind, master id hash) once sorted; their sets of departments.
    rows.par_sort_unstable();
    let mut by_set: Vec<HashMap<u64, u64, Fast>> = vec![HashMap::default(); kind_names.len()];
    let mut sizes: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); kind_names.len()];
    let mut r = 0;
    while r < rows.len() {
        let (ki, h, _) = rows[r];
        let (mut mask, mut size) = (0u64, 0u64);
        while r < rows.len() && rows[r].0 == ki && rows[r].1 == h {
            if rows[r].2 < 64 {
                mask |= 1 << rows[r].2;
            }
            size += 1;
            r += 1;
        }
        *sizes[ki].entry(size).or_default() += 1;
        *by_set[ki].entry(mask).or_default() += 1;
    }
    drop(rows);
    // Per kind: the smallest cluster size the list of largest clusters can hold.
    let mut floor_of: HashMap<String, u64> = HashMap::new();
    for (ki, k) in kind_names.iter().enumerate() {
        let Some(ix) = out.get_mut(k) else { continue };
        let floor = tally(ix, std::mem::take(&mut sizes[ki]), &by_set[ki]);
        floor_of.insert(k.clone(), floor);
    }
    // The largest clusters and their members: only rows of clusters that large are read.
    let mut wanted_rows = Vec::new();
    let mut row = 0usize;
    for b in &batches {
        let kind = str_col(b, "kind", &path)?;
        let size = b
            .column_by_name("cluster_size")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt32Array>());
        for i in 0..b.num_rows() {
            let floor = floor_of.get(kind.value(i)).copied().unwrap_or(u64::MAX);
            if size.is_none_or(|s| u64::from(s.value(i)) >= floor) {
                wanted_rows.push(row + i);
            }
        }
        row += b.num_rows();
    }
    drop(batches);
    let big = if wanted_rows.is_empty() {
        Vec::new()
    } else {
        explain::read_parquet_rows(
            &path,
            &["kind", "source", "record_id", "master_id"],
            &wanted_rows,
        )?
    };
    // Per kind: master id -> (size, members in file order).
    let mut groups: BTreeMap<String, HashMap<String, (u64, Members)>> = BTreeMap::new();
    for b in &big {
        let (kind, src, rid, mid) = (
            str_col(b, "kind", &path)?,
            str_col(b, "source", &path)?,
            str_col(b, "record_id", &path)?,
            str_col(b, "master_id", &path)?,
        );
        for i in 0..b.num_rows() {
            let e = groups
                .entry(kind.value(i).to_string())
                .or_default()
                .entry(mid.value(i).to_string())
                .or_default();
            e.0 += 1;
            if e.1.len() < MEMBERS {
                e.1.push((src.value(i).to_string(), rid.value(i).to_string()));
            }
        }
    }
    for (k, ix) in out.iter_mut() {
        let floor = floor_of.get(k).copied().unwrap_or(u64::MAX);
        ix.largest = largest(
            groups
                .remove(k)
                .unwrap_or_default()
                .into_iter()
                .map(|(m, (size, members))| (m, size, members)),
            floor,
        );
    }
    Ok(out)
}

/// Fills a kind's entity counts from its cluster sizes (size -> clusters) and department
/// sets (bit `s`: a record in source `s` -> clusters); returns the smallest cluster size the
/// list of largest clusters can hold.
fn tally(ix: &mut KindIndex, sizes: BTreeMap<u64, u64>, by_set: &HashMap<u64, u64, Fast>) -> u64 {
    let n = ix.sources.len();
    ix.entities = vec![0; n];
    ix.in_k = vec![0; n + 1];
    ix.overlap = vec![vec![0; n]; n];
    ix.sizes = sizes;
    ix.clusters = ix.sizes.values().sum();
    for (&m, &count) in by_set {
        let set: Vec<usize> = (0..n.min(64)).filter(|&s| m >> s & 1 == 1).collect();
        ix.in_k[set.len()] += count;
        for (x, &a) in set.iter().enumerate() {
            ix.entities[a] += count;
            for &b in &set[x..] {
                ix.overlap[a][b] += count;
                if a != b {
                    ix.overlap[b][a] += count;
                }
            }
        }
    }
    let mut floor = 0;
    let mut at_least = 0;
    for (&size, &count) in ix.sizes.iter().rev() {
        floor = size;
        at_least += count;
        if at_least >= LARGEST as u64 {
            break;
        }
    }
    floor.max(2)
}

/// The [`LARGEST`] clusters of at least `floor` records, largest first (ties by master id).
fn largest(clusters: impl Iterator<Item = Largest>, floor: u64) -> Vec<Largest> {
    let mut big: Vec<Largest> = clusters.filter(|(_, size, _)| *size >= floor).collect();
    big.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    big.truncate(LARGEST);
    big
}

/// The scored pairs of one kind: their weights summed up, and samples near the match
/// threshold.
#[derive(Default)]
struct KindPairs {
    weights: Weights,
    above: Vec<StoredPair>,
    below: Vec<StoredPair>,
}

impl KindPairs {
    /// The records of the sampled pairs (above and below the threshold), as (source, record id).
    fn sampled_records(&self) -> impl Iterator<Item = (&str, &str)> {
        self.above.iter().chain(&self.below).flat_map(|p| {
            [
                (p.left.0.as_str(), p.left.1.as_str()),
                (p.right.0.as_str(), p.right.1.as_str()),
            ]
        })
    }
}

fn read_pairs(out_dir: &Path, models: &ModelFile) -> Result<BTreeMap<String, KindPairs>> {
    let path = out_dir.join("pairs.parquet");
    let mut tally = PairTally::new(&models.models, &path);
    crate::state::scan_parquet(
        &path,
        &["kind", "match_weight", "match_probability"],
        &mut |b| tally.add(b),
    )?;
    // Only the sampled rows' pages are decoded.
    tally.finish(|rows, cols| explain::read_parquet_rows(&path, cols, rows))
}

/// The first pass of the report's pair facts, fed the scored pairs batch by batch in file
/// order (`kind`, `match_weight`, `match_probability`; batches without `kind` hold pairs of
/// the first model's kind): per model, a summary of every pair's weight and the rows nearest
/// the threshold on each side. Holds nothing per pair, so the pairs need not be kept for it.
pub struct PairTally {
    models: Vec<Model>,
    weights: Vec<Weights>,
    near: Vec<[Nearest; 2]>,
    row: usize,
    path: PathBuf,
}

impl PairTally {
    /// A tally of pairs scored by `models`, read from (or written to) `path` (named in errors).
    pub fn new(models: &[Model], path: &Path) -> PairTally {
        PairTally {
            models: models.to_vec(),
            weights: models.iter().map(Weights::of_model).collect(),
            near: vec![Default::default(); models.len()],
            row: 0,
            path: path.to_path_buf(),
        }
    }

    /// The next batch of pairs, in file order.
    pub fn add(&mut self, b: &RecordBatch) -> Result<()> {
        let path = &self.path;
        let first_kind = self.models.first().map(|m| m.kind.as_str());
        // `Err(kind)`: a batch of that one kind's pairs.
        let kind: std::result::Result<&StringArray, &str> =
            match (b.column_by_name("kind"), first_kind) {
                (None, Some(only)) => Err(only),
                _ => Ok(str_col(b, "kind", path)?),
            };
        let f = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .ok_or_else(|| Error::Schema {
                    path: path.to_path_buf(),
                    column: n.into(),
                    message: "missing or not Float64".into(),
                })
        };
        let (w, p) = (f("match_weight")?, f("match_probability")?);
        // Rows come in runs of one kind: the model is looked up when the kind changes.
        let mut last: Option<(&str, Option<usize>)> = None;
        for i in 0..b.num_rows() {
            let k = match kind {
                Ok(column) => column.value(i),
                Err(only) => only,
            };
            let m = match last {
                Some((lk, m)) if lk == k => m,
                _ => {
                    let m = self.models.iter().position(|m| m.kind.as_str() == k);
                    last = Some((k, m));
                    m
                }
            };
            let Some(m) = m else { continue };
            let weight = w.value(i);
            self.weights[m].add(weight);
            if p.value(i) >= self.models[m].match_probability {
                self.near[m][0].offer(weight, self.row + i);
            } else {
                self.near[m][1].offer(-weight, self.row + i);
            }
        }
        self.row += b.num_rows();
        Ok(())
    }

    /// The second pass: `fetch` gives the sampled rows (sorted row numbers) with the columns
    /// named, from which the samples are explained.
    fn finish(
        self,
        fetch: impl FnOnce(&[usize], &[&str]) -> Result<Vec<RecordBatch>>,
    ) -> Result<BTreeMap<String, KindPairs>> {
        let models = &self.models;
        let mut out: BTreeMap<String, KindPairs> = BTreeMap::new();
        let mut want: HashMap<usize, (String, bool)> = HashMap::new();
        for (m, ([mut above, mut below], weights)) in
            self.near.into_iter().zip(self.weights).enumerate()
        {
            if weights.count == 0 {
                continue;
            }
            let k = models[m].kind.as_str();
            out.entry(k.to_string()).or_default().weights = weights;
            keep_smallest(&mut above.0);
            keep_smallest(&mut below.0);
            for (_, r) in above.0 {
                want.insert(r, (k.to_string(), true));
            }
            for (_, r) in below.0 {
                want.insert(r, (k.to_string(), false));
            }
        }
        if want.is_empty() {
            return Ok(out);
        }
        // The sampled rows in full.
        let mut rows: Vec<usize> = want.keys().copied().collect();
        rows.sort_unstable();
        let mut cols: Vec<String> = Vec::new();
        for m in models {
            for c in explain::pair_columns(m) {
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
        }
        let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        let mut at = 0usize;
        for b in fetch(&rows, &refs)? {
            for m in models {
                let k = m.kind.as_str();
                let mut sides = Vec::new();
                let got = explain::stored_pairs(m, &b, |i, kind, _, _| {
                    match rows.get(at + i).and_then(|r| want.get(r)) {
                        Some((wk, up)) if wk == k && kind == k => {
                            sides.push(*up);
                            true
                        }
                        _ => false,
                    }
                });
                if let Some(kp) = out.get_mut(k) {
                    for (p, up) in got.into_iter().zip(sides) {
                        if up {
                            kp.above.push(p);
                        } else {
                            kp.below.push(p);
                        }
                    }
                }
            }
            at += b.num_rows();
        }
        for kp in out.values_mut() {
            kp.above
                .sort_by(|a, b| a.match_weight.total_cmp(&b.match_weight));
            kp.below
                .sort_by(|a, b| b.match_weight.total_cmp(&a.match_weight));
        }
        Ok(out)
    }
}

/// Every pair's match weight, summed up for the report without a value per pair: how many
/// pairs, how many at or above the match and the review weight, the least and the greatest
/// weight, and how many fall in each whole unit of weight (the chart's bins are whole units,
/// or whole multiples of a unit, so it counts from these exactly as from every weight).
#[derive(Debug, Clone, Default, PartialEq)]
struct Weights {
    count: u64,
    matched: u64,
    review: u64,
    min: f64,
    max: f64,
    /// The match and the review weight of the model.
    lines: (f64, f64),
    /// Pairs per unit of weight, by `floor(weight)`.
    units: BTreeMap<i64, u64>,
}

impl Weights {
    fn of_model(m: &Model) -> Weights {
        Weights {
            lines: (
                weight_of_probability(m.match_probability),
                weight_of_probability(m.review_probability),
            ),
            ..Weights::default()
        }
    }

    fn add(&mut self, w: f64) {
        if self.count == 0 {
            (self.min, self.max) = (w, w);
        } else {
            (self.min, self.max) = (self.min.min(w), self.max.max(w));
        }
        self.count += 1;
        let (tm, tr) = self.lines;
        if w >= tm {
            self.matched += 1;
        } else if w >= tr {
            self.review += 1;
        }
        // Clamped far beyond any weight a model gives, so that a stray value cannot overflow.
        let unit = w.floor().clamp(-1e15, 1e15) as i64;
        *self.units.entry(unit).or_default() += 1;
    }

    /// (a unit of weight, pairs in it), in order.
    fn units(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.units.iter().map(|(&u, &n)| (u as f64, n))
    }
}

/// The [`NEAR`] rows of smallest key (ties by row) among those offered in row order; rows
/// that cannot make it are turned away without being stored.
#[derive(Default, Clone)]
struct Nearest(Vec<(f64, usize)>, Option<f64>);

impl Nearest {
    fn offer(&mut self, key: f64, row: usize) {
        // A later row ties with a kept one only to lose.
        if self.1.is_some_and(|cut| key.total_cmp(&cut).is_ge()) {
            return;
        }
        self.0.push((key, row));
        if self.0.len() >= 64 * NEAR {
            keep_smallest(&mut self.0);
            self.1 = self.0.last().map(|&(k, _)| k);
        }
    }
}

/// Keeps the `NEAR` entries with the smallest key (ties by row).
fn keep_smallest(v: &mut Vec<(f64, usize)>) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.truncate(NEAR);
}

/// Quarantined rows: per source and reason, and a few samples (source, row, record id, reason).
#[derive(Default)]
struct Quarantine {
    counts: BTreeMap<(String, String), u64>,
    samples: Vec<(String, u64, Option<String>, String)>,
}

fn read_quarantine(out_dir: &Path) -> Result<Quarantine> {
    let path = out_dir.join("quarantine.parquet");
    let mut q = Quarantine::default();
    if !path.exists() {
        return Ok(q);
    }
    for b in crate::state::read_parquet(&path, Some(&["source", "row", "record_id", "reason"]))? {
        let (src, reason) = (str_col(&b, "source", &path)?, str_col(&b, "reason", &path)?);
        let rid = b
            .column_by_name("record_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let row = b
            .column_by_name("row")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>());
        for i in 0..b.num_rows() {
            *q.counts
                .entry((src.value(i).to_string(), reason.value(i).to_string()))
                .or_default() += 1;
            if q.samples.len() < ROWS {
                q.samples.push((
                    src.value(i).to_string(),
                    row.map_or(0, |r| r.value(i)),
                    rid.filter(|r| r.is_valid(i))
                        .map(|r| r.value(i).to_string()),
                    reason.value(i).to_string(),
                ));
            }
        }
    }
    Ok(q)
}

/// What the standardised records (when the run kept them) add: null rates per source and
/// field, invalid identifier rates, and waterfalls computed from the values.
struct Standardised {
    /// Columns whose null rates are shown.
    fields: Vec<String>,
    /// Per source: (source, records, nulls per field, invalid ids, invalid usccs).
    rows: Vec<QualityRow>,
    /// Waterfalls of the sampled pairs, in the order above then below.
    above: Vec<Waterfall>,
    below: Vec<Waterfall>,
}

/// A kind's standardised columns as the report reads them: bytes from the state file (looked
/// at as text only where a value is shown) or the run's own text columns.
enum Cols {
    Bytes(BTreeMap<String, arrow_array::BinaryArray>),
    Text(BTreeMap<String, StringArray>),
}

impl Cols {
    fn get(&self, name: &str) -> Option<&dyn Array> {
        match self {
            Cols::Bytes(m) => m.get(name).map(|a| a as &dyn Array),
            Cols::Text(m) => m.get(name).map(|a| a as &dyn Array),
        }
    }

    fn names(&self) -> Vec<&String> {
        match self {
            Cols::Bytes(m) => m.keys().collect(),
            Cols::Text(m) => m.keys().collect(),
        }
    }

    /// Column `name` (at `rows`, or whole) as text; `None` when there is no such column.
    fn text(
        &self,
        name: &str,
        rows: Option<&arrow_array::UInt32Array>,
        not_text: &dyn Fn(&str) -> Error,
    ) -> Result<Option<StringArray>> {
        let taken = |col: &dyn Array| -> Result<arrow_array::ArrayRef> {
            match rows {
                Some(r) => arrow_select::take::take(col, r, None).map_err(|_| not_text(name)),
                None => Ok(arrow_array::make_array(col.to_data())),
            }
        };
        match self {
            Cols::Bytes(m) => {
                let Some(col) = m.get(name) else {
                    return Ok(None);
                };
                let col = taken(col)?
                    .as_any()
                    .downcast_ref::<arrow_array::BinaryArray>()
                    .cloned()
                    .ok_or_else(|| not_text(name))?;
                StringArray::try_from_binary(col)
                    .map(Some)
                    .map_err(|_| not_text(name))
            }
            Cols::Text(m) => {
                let Some(col) = m.get(name) else {
                    return Ok(None);
                };
                taken(col)?
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| not_text(name))
            }
        }
    }
}

/// The standardised columns the report looks at, for a kind's model.
fn report_columns(model: &Model) -> (Vec<&'static str>, Vec<String>) {
    let canonical: &[&'static str] = match model.kind {
        EntityKind::Person => &[
            "name",
            "id_number",
            "gender",
            "birth_date",
            "phone",
            "address",
            "employer",
        ],
        EntityKind::Enterprise => &[
            "name",
            "uscc",
            "org_code",
            "reg_number",
            "legal_rep",
            "legal_rep_id",
            "address",
            "phone",
        ],
        EntityKind::Generic => &[],
    };
    let mut want: Vec<String> = canonical.iter().map(|s| s.to_string()).collect();
    for c in &model.comparisons {
        for f in [c.spec.field.clone(), format!("{}_pinyin", c.spec.field)] {
            if !want.contains(&f) {
                want.push(f);
            }
        }
    }
    want.extend(["id_number_valid".to_string(), "uscc_valid".to_string()]);
    (canonical.to_vec(), want)
}

fn standardised(out_dir: &Path, model: &Model, pk: &KindPairs) -> Result<Option<Standardised>> {
    let (_, want) = report_columns(model);
    let refs: Vec<&str> = want.iter().map(String::as_str).collect();
    // Nulls are counted over every record, values looked at for the sampled pairs only: the
    // columns come as bytes, and only those records' values are read and checked as text.
    let Some((table, bytes)) = crate::state::read_standardised_bytes(out_dir, model.kind, &refs)?
    else {
        return Ok(None);
    };
    let path = crate::state::standardised_path(out_dir, model.kind);
    standardised_from(model, pk, &table, &Cols::Bytes(bytes), &path, None, None).map(Some)
}

/// [`Standardised`] of a delta night's folder, from its persistent index (`store/`): the
/// records sent tonight (`rows`: the kind's rows of `master_index_changes.parquet`) for the
/// data quality, and the sampled pairs' records, each looked up by record; the term
/// frequencies are the store's counts over the whole index, as the night scored with.
/// `None` when the folder has no store of the kind.
fn standardised_of_night(
    out_dir: &Path,
    model: &Model,
    pk: &KindPairs,
    rows: &[ChangeRow],
) -> Result<Option<Standardised>> {
    let Some(store) = crate::store::KindStore::open(out_dir, model.kind)? else {
        return Ok(None);
    };
    let path = out_dir.join(crate::store::DIR);
    // Tonight's records (counted for the data quality) and the sampled pairs' records, in
    // (source, record id) order as a table of the index has them: a pair's left record is
    // the one that comes first.
    let mut keys: Vec<((&str, &str), bool)> = rows
        .iter()
        .filter(|r| r.3.sent())
        .map(|r| ((r.0.as_str(), r.1.as_str()), true))
        .collect();
    let pair_keys: Vec<(&str, &str)> = pk.sampled_records().collect();
    keys.extend(pair_keys.iter().map(|&k| (k, false)));
    // A record both sent tonight and in a pair is counted (`true` sorts last).
    keys.sort_unstable();
    keys.dedup_by(|b, a| {
        let same = a.0 == b.0;
        a.1 |= same && b.1;
        same
    });
    let (keys, quality): (Vec<(&str, &str)>, Vec<bool>) = keys.into_iter().unzip();
    let mut locs = Vec::with_capacity(keys.len());
    for &(s, r) in &keys {
        let at = store.find(s, r).ok_or_else(|| Error::Read {
            path: path.clone(),
            message: format!(
                "{s}:{r}, named by {} or pairs.parquet, is not in the index",
                crate::output::MASTER_CHANGES
            ),
        })?;
        locs.push(at);
    }
    let mut sources: Vec<String> = keys.iter().map(|k| k.0.to_string()).collect();
    sources.sort_unstable();
    sources.dedup();
    let records = crate::standardise::StdTable {
        kind: model.kind,
        source: keys
            .iter()
            .map(|k| {
                sources
                    .binary_search_by(|x| x.as_str().cmp(k.0))
                    .unwrap_or(0) as u16
            })
            .collect(),
        sources,
        record_id: keys.iter().map(|k| Some(k.1)).collect(),
        columns: Default::default(),
        raw: Default::default(),
        stats: Default::default(),
    };
    let (_, want) = report_columns(model);
    let have = store.columns();
    let cols = Cols::Text(
        want.iter()
            .filter(|n| have.contains(n))
            .map(|n| Ok((n.clone(), store.gather(n, &locs)?)))
            .collect::<Result<_>>()?,
    );
    // The store's counts of the sampled pairs' values.
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for c in model.comparisons.iter().filter(|c| c.spec.term_frequency) {
        let field = &c.spec.field;
        let Some(fi) = store.entry.term_frequency.iter().position(|f| f == field) else {
            continue;
        };
        let mut of: HashMap<u64, u64, Fast> = HashMap::default();
        for &(s, r) in &pair_keys {
            let value = store
                .find(s, r)
                .and_then(|l| store.value(l, field))
                .and_then(|v| std::str::from_utf8(v).ok());
            if let Some(v) = value {
                let h = value_hash(v);
                of.insert(h, store.tf_count(fi, h).max(0) as u64);
            }
        }
        let total = store.tf_total(fi).max(0) as u64;
        counts.insert(field.clone(), Counts { total, of });
    }
    standardised_from(
        model,
        pk,
        &records,
        &cols,
        &path,
        Some(&quality),
        Some(&counts),
    )
    .map(Some)
}

/// Term frequencies of the values of `col` from counts over a whole index: the u a delta
/// night scored them with (its records are part of the index).
fn tf_of_counts(col: &StringArray, counts: &Counts) -> TermFrequencies {
    let mut values: Vec<&str> = col.iter().flatten().collect();
    values.sort_unstable();
    values.dedup();
    let mut known: Vec<Option<&str>> = Vec::with_capacity(values.len() + 1);
    let mut n: Vec<i64> = Vec::with_capacity(values.len() + 1);
    for v in values {
        if let Some(&c) = counts.of.get(&value_hash(v)) {
            known.push(Some(v));
            n.push(c as i64);
        }
    }
    // The other values of the index, as one null row: `from_counts` divides by the sum of
    // every count, which must be the index's total.
    let rest = counts.total as i64 - n.iter().sum::<i64>();
    known.push(None);
    n.push(rest);
    TermFrequencies::from_counts(&StringArray::from(known), &n)
}

/// [`Standardised`] from a kind's records (`table`: sources and record ids) and its columns.
/// `quality`: the records whose nulls are counted (`None`: all; with it, departments with
/// none of them are left out). `counts`: term frequencies over the whole index, for a table
/// that holds part of it (`None`: shares among the table's own values).
fn standardised_from(
    model: &Model,
    pk: &KindPairs,
    table: &crate::standardise::StdTable,
    bytes: &Cols,
    path: &Path,
    quality: Option<&[bool]>,
    counts: Option<&BTreeMap<String, Counts>>,
) -> Result<Standardised> {
    let (canonical, _) = report_columns(model);
    let mut fields: Vec<String> = canonical
        .iter()
        .map(|s| s.to_string())
        .filter(|f| bytes.get(f).is_some())
        .collect();
    for c in &model.comparisons {
        if !fields.contains(&c.spec.field) && bytes.get(&c.spec.field).is_some() {
            fields.push(c.spec.field.clone());
        }
    }
    let ns = table.sources.len();
    // Records come in runs of one source (sorted by source, as a rule): nulls are counted a
    // run at a time over the columns' validity bits (of the records counted).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &s) in table.source.iter().enumerate() {
        if quality.is_some_and(|q| !q.get(i).copied().unwrap_or(false)) {
            continue;
        }
        match runs.last_mut() {
            Some((rs, from, len)) if *rs == usize::from(s) && *from + *len == i => *len += 1,
            _ => runs.push((usize::from(s), i, 1)),
        }
    }
    let valid_bits = |col: &dyn Array| -> arrow_buffer::BooleanBuffer {
        match col.logical_nulls() {
            Some(n) => n.into_inner(),
            None => arrow_buffer::BooleanBuffer::new_set(col.len()),
        }
    };
    let per_source = |bits: &arrow_buffer::BooleanBuffer| -> Vec<u64> {
        let mut n = vec![0u64; ns];
        for &(s, from, len) in &runs {
            n[s] += bits.slice(from, len).count_set_bits() as u64;
        }
        n
    };
    let mut records = vec![0u64; ns];
    for &(s, _, len) in &runs {
        records[s] += len as u64;
    }
    let mut nulls = vec![vec![0u64; fields.len()]; ns];
    for (f, name) in fields.iter().enumerate() {
        if let Some(col) = bytes.get(name) {
            for (s, valid) in per_source(&valid_bits(col)).into_iter().enumerate() {
                nulls[s][f] = records[s] - valid;
            }
        }
    }
    // Values present whose check failed: valid raw bits without valid check bits.
    let invalid = |raw: &str, valid: &str| -> Option<Vec<u64>> {
        let (r, v) = (bytes.get(raw)?, bytes.get(valid)?);
        Some(per_source(&(&valid_bits(r) & &!&valid_bits(v))))
    };
    let (bad_id, bad_uscc) = (
        invalid("id_number", "id_number_valid"),
        invalid("uscc", "uscc_valid"),
    );
    let rows = (0..ns)
        .filter(|&s| quality.is_none() || records[s] > 0)
        .map(|s| {
            (
                table.sources[s].clone(),
                records[s],
                nulls[s].clone(),
                bad_id.as_ref().map(|v| v[s]),
                bad_uscc.as_ref().map(|v| v[s]),
            )
        })
        .collect();
    // Waterfalls of the sampled pairs, from the values.
    let specs: Vec<_> = model.comparisons.iter().map(|c| c.spec.clone()).collect();
    let (mut above, mut below) = (Vec::new(), Vec::new());
    let mut idx: HashMap<(&str, &str), usize> = HashMap::new();
    let wanted: HashSet<(&str, &str), Fast> = pk.sampled_records().collect();
    // Every record looked at, in parallel: a handful are wanted.
    let found: Vec<((&str, &str), usize)> = {
        use rayon::prelude::*;
        (0..table.len())
            .into_par_iter()
            .with_min_len(1 << 14)
            .filter_map(|i| {
                let key = (
                    table.sources[table.source[i] as usize].as_str(),
                    table.record_id.value(i),
                );
                wanted.get(&key).map(|w| (*w, i))
            })
            .collect()
    };
    idx.extend(found);
    // The sampled pairs' records only, in table order, with their values as text.
    let mut picked: Vec<usize> = idx.values().copied().collect();
    picked.sort_unstable();
    let at = |i: usize| picked.binary_search(&i).ok();
    let indices = arrow_array::UInt32Array::from_iter_values(picked.iter().map(|&i| i as u32));
    let not_text = |name: &str| Error::Read {
        path: path.to_path_buf(),
        message: format!("column {name}: not UTF-8 text"),
    };
    let mut few = crate::standardise::StdTable {
        kind: table.kind,
        sources: table.sources.clone(),
        source: picked.iter().map(|&i| table.source[i]).collect(),
        record_id: picked
            .iter()
            .map(|&i| Some(table.record_id.value(i)))
            .collect(),
        columns: Default::default(),
        raw: Default::default(),
        stats: Default::default(),
    };
    for name in bytes.names() {
        if let Some(col) = bytes.text(name, Some(&indices), &not_text)? {
            few.columns.insert(name.clone(), col);
        }
    }
    // Term frequencies are shares among every record's values: the table's, or the
    // index's counts.
    let mut tfs = Vec::with_capacity(model.comparisons.len());
    for c in &model.comparisons {
        let field = &c.spec.field;
        tfs.push(match (c.spec.term_frequency, counts) {
            (false, _) => None,
            (true, None) => bytes
                .text(field, None, &not_text)?
                .map(|col| TermFrequencies::of(&col, &picked)),
            (true, Some(counts)) => few
                .columns
                .get(field)
                .zip(counts.get(field))
                .map(|(col, c)| tf_of_counts(col, c)),
        });
    }
    if let Ok(comparators) = crate::compare::comparators_for(&few, &specs, None) {
        for (side, out) in [(&pk.above, &mut above), (&pk.below, &mut below)] {
            for p in side {
                let (Some(a), Some(b)) = (
                    idx.get(&(p.left.0.as_str(), p.left.1.as_str()))
                        .and_then(|&i| at(i)),
                    idx.get(&(p.right.0.as_str(), p.right.1.as_str()))
                        .and_then(|&i| at(i)),
                ) else {
                    continue;
                };
                let rule = explain::rule_index(model, &p.blocking_rule);
                out.push(explain::from_records(model, &comparators, &tfs, a, b, rule));
            }
        }
    }
    Ok(Standardised {
        fields,
        rows,
        above,
        below,
    })
}

/// Precision, recall and F1 of the scored pairs by match-weight threshold, per kind.
struct TruthCurves {
    /// kind -> (threshold, precision, recall, F1) points, and the true pairs in the run.
    curves: BTreeMap<String, (Vec<PrfPoint>, u64)>,
    eval: Option<crate::report::Evaluation>,
    /// A delta night's: its pairs are those with a record sent tonight, and so are the true
    /// pairs its recall counts.
    night: bool,
}

fn truth_curves(truth: &Path, out_dir: &Path, models: &ModelFile) -> Result<TruthCurves> {
    let t = crate::load::read_text_columns(truth, &["source", "record_id", "entity_id"])?;
    let (Some(rid), Some(ent)) = (&t[1], &t[2]) else {
        return Err(Error::Schema {
            path: truth.to_path_buf(),
            column: "record_id/entity_id".into(),
            message: "not found; a truth file has `record_id`, `entity_id` and optionally `source`"
                .into(),
        });
    };
    let has_source = t[0].is_some();
    let key = |s: &str, r: &str| {
        if has_source {
            format!("{s}\u{1f}{r}")
        } else {
            r.to_string()
        }
    };
    let mut entity: HashMap<String, &str> = HashMap::new();
    for i in 0..rid.len() {
        if let (Some(r), Some(e)) = (&rid[i], &ent[i]) {
            let s = t[0].as_ref().and_then(|v| v[i].as_deref()).unwrap_or("");
            entity.insert(key(s, r), e.as_str());
        }
    }
    // A delta night scored only the pairs with a record sent tonight: those are the true
    // pairs its recall counts.
    let sent: Option<HashSet<(String, String)>> = read_changes(out_dir)?.map(|c| {
        c.into_iter()
            .flat_map(|(k, rows)| {
                rows.into_iter()
                    .filter(|r| r.3.sent())
                    .map(move |r| (k.clone(), key(&r.0, &r.1)))
            })
            .collect()
    });
    // True pairs among the run's records, per kind: per entity, its records and those sent
    // tonight.
    let mut per_entity: HashMap<(String, &str), (u64, u64)> = HashMap::new();
    let mut count = |k: &str, s: &str, r: &str| {
        let rk = key(s, r);
        if let Some(e) = entity.get(&rk) {
            let n = per_entity.entry((k.to_string(), *e)).or_default();
            n.0 += 1;
            if sent
                .as_ref()
                .is_none_or(|t| t.contains(&(k.to_string(), rk)))
            {
                n.1 += 1;
            }
        }
    };
    let mi_path = out_dir.join(crate::output::MASTER_INDEX);
    if mi_path.is_file() {
        for b in crate::state::read_parquet(&mi_path, Some(&["kind", "source", "record_id"]))? {
            let (k, s, r) = (
                str_col(&b, "kind", &mi_path)?,
                str_col(&b, "source", &mi_path)?,
                str_col(&b, "record_id", &mi_path)?,
            );
            for i in 0..b.num_rows() {
                count(k.value(i), s.value(i), r.value(i));
            }
        }
    } else {
        // A delta night's folder: its whole index is in its store.
        let kinds = crate::store::index_rows(out_dir)?.ok_or_else(|| Error::Data {
            stage: "report",
            message: format!(
                "{} has neither {} nor a persistent index (store/): the true pairs cannot be counted",
                out_dir.display(),
                crate::output::MASTER_INDEX
            ),
        })?;
        for (k, [s, r, _]) in &kinds {
            for i in 0..s.len() {
                count(k, s.value(i), r.value(i));
            }
        }
    }
    // Pairs of an entity's n records with at least one of its t sent tonight: all but those
    // among the n - t others.
    let pairs = |n: u64| n * n.saturating_sub(1) / 2;
    let mut true_pairs: BTreeMap<String, u64> = BTreeMap::new();
    for ((k, _), (n, t)) in &per_entity {
        *true_pairs.entry(k.clone()).or_default() += pairs(*n) - pairs(n - t);
    }
    // Scored pairs with a label.
    let path = out_dir.join("pairs.parquet");
    let mut labelled: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    let cols = [
        "kind",
        "source_l",
        "record_id_l",
        "source_r",
        "record_id_r",
        "match_weight",
    ];
    for b in crate::state::read_parquet(&path, Some(&cols))? {
        let w = b
            .column_by_name("match_weight")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .ok_or_else(|| Error::Schema {
                path: path.clone(),
                column: "match_weight".into(),
                message: "missing".into(),
            })?;
        let (k, sl, rl, sr, rr) = (
            str_col(&b, "kind", &path)?,
            str_col(&b, "source_l", &path)?,
            str_col(&b, "record_id_l", &path)?,
            str_col(&b, "source_r", &path)?,
            str_col(&b, "record_id_r", &path)?,
        );
        for i in 0..b.num_rows() {
            let (Some(x), Some(y)) = (
                entity.get(&key(sl.value(i), rl.value(i))),
                entity.get(&key(sr.value(i), rr.value(i))),
            ) else {
                continue;
            };
            labelled
                .entry(k.value(i).to_string())
                .or_default()
                .push((w.value(i), x == y));
        }
    }
    let mut curves = BTreeMap::new();
    for (k, mut v) in labelled {
        let total = true_pairs.get(&k).copied().unwrap_or(0);
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (lo, hi) = (
            v.last().map_or(0.0, |x| x.0).max(-40.0),
            v.first().map_or(0.0, |x| x.0).min(60.0),
        );
        let steps = 80;
        let mut pts = Vec::new();
        let (mut at, mut tp) = (0usize, 0u64);
        for s in 0..=steps {
            let t = hi - (hi - lo) * s as f64 / steps as f64;
            while at < v.len() && v[at].0 >= t {
                tp += v[at].1 as u64;
                at += 1;
            }
            let pred = at as u64;
            let p = if pred > 0 {
                tp as f64 / pred as f64
            } else {
                1.0
            };
            let r = if total > 0 {
                tp as f64 / total as f64
            } else {
                1.0
            };
            let f = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            pts.push((t, p, r, f));
        }
        pts.reverse();
        if models.models.iter().any(|m| m.kind.as_str() == k) {
            curves.insert(k, (pts, total));
        }
    }
    let eval = crate::report::evaluate_run(truth, out_dir).ok();
    Ok(TruthCurves {
        curves,
        eval,
        night: sent.is_some(),
    })
}

// ---------------------------------------------------------------------------------------
// Writing the page.

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// 1,234,567.
fn int(n: u64) -> String {
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

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

fn signed(w: f64) -> String {
    if w >= 0.0 {
        format!("+{w:.2}")
    } else {
        format!("−{:.2}", -w)
    }
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1d2330;font:14px/1.5 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","WenQuanYi Micro Hei","PingFang SC","Microsoft YaHei",sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
header.top{background:#1d2b45;color:#fff;padding:18px 24px}
header.top .in{max-width:1180px;margin:0 auto;padding:0 24px}
header.top h1{margin:0;font-size:22px;font-weight:600}
header.top .sub{opacity:.8;font-size:13px}
nav{margin-top:10px;font-size:13px}
nav a{color:#c9d6f2;margin-right:14px;text-decoration:none}
.pii{background:#b00020;color:#fff;font-weight:700;padding:12px 24px;font-size:16px;text-align:center}
.masked{background:#e7f0e7;color:#1e5a2a;padding:6px 24px;font-size:13px;text-align:center}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px;color:#1d2b45}
h3{font-size:15px;margin:16px 0 6px;color:#33405a}
p.note{color:#5b6478;font-size:13px;margin:4px 0 10px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin-bottom:12px}
.card{border:1px solid #e1e4ea;border-radius:6px;padding:8px 12px;background:#fafbfc}
.card .v{font-size:20px;font-weight:600}
.card .l{font-size:12px;color:#5b6478}
.ok{color:#1e7a34}.bad{color:#b00020}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:middle}
th{background:#f6f7f9;font-weight:600;color:#33405a}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.grid2>div{min-width:0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#f1f3f6;padding:1px 4px;border-radius:3px}
.wf{border:1px solid #e1e4ea;border-radius:6px;padding:8px 12px;margin:10px 0}
.wf .t{font-weight:600}
.wf table{width:100%;table-layout:fixed}
.wf col.f{width:100px}.wf col.v{width:190px}.wf col.l{width:170px}.wf col.a{width:170px}.wf col.b{width:262px}
.wf td{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.wf td.v{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.muted{color:#8a93a6}
section.night{border:2px solid #dd8452;background:#fff8f0}
svg text{font-family:inherit}
footer{color:#5b6478;font-size:12px;margin-top:20px}
"#;

struct Page {
    html: String,
    show_pii: bool,
    /// A delta night's page: it describes the night's changes.
    night: bool,
}

impl Page {
    /// A record value: masked unless personal data is shown.
    fn val(&self, v: Option<&str>) -> String {
        match v {
            None => "<span class=muted>null</span>".into(),
            Some(s) if self.show_pii => esc(s),
            Some(s) => esc(&mask(s)),
        }
    }

    /// A record id: shown, unless it looks like a personal identifier (11+ digits in a row).
    fn rid(&self, s: &str) -> String {
        let mut run = 0;
        let mut longest = 0;
        for c in s.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        if self.show_pii || longest < 11 {
            esc(s)
        } else {
            esc(&mask(s))
        }
    }

    fn w(&mut self, s: &str) {
        self.html.push_str(s);
    }

    fn head(&mut self, run: &Value) {
        let title = format!(
            "yiku report — {} {}",
            run["job"].as_str().unwrap_or(""),
            run["run_id"].as_str().unwrap_or("")
        );
        let _ = write!(
            self.html,
            "<!DOCTYPE html><html lang=zh><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width,initial-scale=1\">\
             <title>{}</title><style>{CSS}</style></head><body>",
            esc(&title)
        );
        if self.show_pii {
            self.w("<div class=pii>⚠ This report shows personal data unmasked (--show-pii): names, ID numbers, phones and addresses. Handle it as personal data.</div>");
        }
        let _ = write!(
            self.html,
            "<header class=top><div class=in><h1>{}</h1><div class=sub>yiku {} · {} threads · {}</div>\
             <nav>{}<a href=#summary>Summary</a><a href=#one>One database</a><a href=#quality>Data quality</a>\
             <a href=#blocking>Blocking</a><a href=#model>Model</a><a href=#weights>Match weights</a>\
             <a href=#clusters>Clusters</a><a href=#near>Near the threshold</a><a href=#truth>Truth</a></nav></div></header>",
            esc(&title),
            esc(run["yiku_version"].as_str().unwrap_or("")),
            run["threads"].as_u64().unwrap_or(0),
            esc(run["model"].as_str().unwrap_or("")),
            if self.night {
                "<a href=#night>Tonight's changes</a>"
            } else {
                ""
            },
        );
        if !self.show_pii {
            self.w("<div class=masked>Personal data is masked (ID <code>110105********002X</code>, phone <code>138****5678</code>, name <code>张*</code>, dates <code>****-**-**</code>).</div>");
        }
        self.w("<main>");
    }

    /// A delta night's page says first that it shows the night's changes, how many, and
    /// where the whole index is.
    fn night(&mut self, run: &Value, index: &BTreeMap<String, KindIndex>) {
        let _ = write!(
            self.html,
            "<section id=night class=night><h2>Tonight's changes: this page covers the night's changes, not the whole index</h2>\
             <p>A delta night: the changes in <code>{}</code> applied to the index of <code>{}</code>. \
             The night wrote only what changed (<code>{}</code>, <code>golden_&lt;kind&gt;s_changes.parquet</code>), \
             and this page describes the same: records added, updated, relinked (not sent, but their master id or their cluster's size changed) and removed.</p>\
             <table><tr><th>kind</th>",
            esc(run["delta"].as_str().unwrap_or("")),
            esc(run["previous"].as_str().unwrap_or("")),
            crate::output::MASTER_CHANGES,
        );
        for c in Change::ALL {
            let _ = write!(self.html, "<th class=n>records {}</th>", c.as_str());
        }
        self.w("</tr>");
        for (k, ix) in index {
            let n = ix.changes.unwrap_or_default();
            let _ = write!(self.html, "<tr><td>{}</td>", esc(k));
            for v in n {
                let _ = write!(self.html, "<td class=n>{}</td>", int(v));
            }
            self.w("</tr>");
        }
        if index.is_empty() {
            self.w("<tr><td colspan=5 class=muted>no records changed</td></tr>");
        }
        self.w("</table><p class=note><b>One database</b> and <b>Clusters</b> count the records added, updated or relinked tonight, grouped by master id: an entity is counted by its changed records only. \
                <b>Data quality</b> counts the records sent tonight (added or updated); <b>Match weights</b> and the pairs near the threshold are tonight's pairs \
                (those with a record sent tonight). The whole index is in the folder's <code>store/</code>: \
                <code>yiku export JOB --run DIR [--out DIR]</code> writes it as <code>master_index.parquet</code> and <code>golden_&lt;kind&gt;s.parquet</code>.</p></section>");
    }

    fn summary(&mut self, run: &Value, q: &Quarantine) {
        self.w("<section id=summary><h2>Run summary</h2><div class=cards>");
        let ok = run["conservation_ok"].as_bool().unwrap_or(false);
        let records_in = run["records_in"].as_u64().unwrap_or(0);
        let in_mi = run["records_in_master_index"].as_u64().unwrap_or(0);
        let clusters: u64 = run["kinds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k["clusters"].as_u64().unwrap_or(0))
            .sum();
        let cards = [
            (
                esc(run["run_id"].as_str().unwrap_or("")),
                "run id".to_string(),
            ),
            (int(records_in), "records in".into()),
            (
                int(clusters),
                match self.night {
                    // run.json counts the clusters of the records the night re-clustered.
                    true => "master entities re-clustered tonight".into(),
                    false => "master entities".into(),
                },
            ),
            (
                format!(
                    "<span class={}>{}</span>",
                    if ok { "ok" } else { "bad" },
                    if ok {
                        "✓ conserved"
                    } else {
                        "✗ NOT conserved"
                    }
                ),
                format!("{} in = {} in master index", int(records_in), int(in_mi)),
            ),
            (
                int(run["quarantined"].as_u64().unwrap_or(0)),
                "rows quarantined".into(),
            ),
            (
                format!("{:.2} s", run["total_seconds"].as_f64().unwrap_or(0.0)),
                format!(
                    "wall time · peak {:.0} MB",
                    run["peak_rss_mb"].as_f64().unwrap_or(0.0)
                ),
            ),
        ];
        for (v, l) in cards {
            let _ = write!(
                self.html,
                "<div class=card><div class=v>{v}</div><div class=l>{}</div></div>",
                esc(&l)
            );
        }
        self.w("</div><div class=grid2><div><h3>Sources</h3><table><tr><th>department</th><th>kind</th><th class=n>rows read</th><th class=n>records</th><th class=n>quarantined</th></tr>");
        for s in run["sources"].as_array().into_iter().flatten() {
            let _ = write!(
                self.html,
                "<tr><td title=\"{}\">{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                esc(s["path"].as_str().unwrap_or("")),
                esc(s["source"].as_str().unwrap_or("")),
                esc(s["kind"].as_str().unwrap_or("")),
                int(s["rows_read"].as_u64().unwrap_or(0)),
                int(s["records"].as_u64().unwrap_or(0)),
                int(s["quarantined"].as_u64().unwrap_or(0)),
            );
        }
        self.w("</table>");
        if !q.counts.is_empty() {
            let _ = write!(
                self.html,
                "<p class=note>{} rows quarantined; see Data quality.</p>",
                int(q.counts.values().sum())
            );
        }
        self.w("</div><div><h3>Stage timings</h3>");
        // Seconds per stage, summed over kinds, in run order.
        let mut order: Vec<String> = Vec::new();
        let mut secs: HashMap<String, f64> = HashMap::new();
        for s in run["stages"].as_array().into_iter().flatten() {
            let name = s["stage"].as_str().unwrap_or("").to_string();
            if !order.contains(&name) {
                order.push(name.clone());
            }
            *secs.entry(name).or_default() += s["seconds"].as_f64().unwrap_or(0.0);
        }
        let rows: Vec<(String, Vec<f64>)> = order
            .iter()
            .map(|n| (n.clone(), vec![secs.get(n).copied().unwrap_or(0.0)]))
            .collect();
        self.w(&hbars(&rows, &[("seconds", "#4c72b0")], |v| {
            format!("{v:.2} s")
        }));
        self.w("</div></div></section>");
    }

    fn one_database(&mut self, kinds: &[(&Model, &KindIndex, &KindPairs, Option<Standardised>)]) {
        self.w("<section id=one><h2>One database</h2><p class=note>Every record gets one master id; a master entity is a person or enterprise as recognised across departments.");
        if self.night {
            self.w(" Tonight's changes only: the records added, updated or relinked tonight, and the master entities they belong to.");
        }
        self.w("</p>");
        let changed = if self.night { " changed tonight" } else { "" };
        for (model, ix, _, _) in kinds {
            let total: u64 = ix.records.iter().sum();
            let _ = write!(
                self.html,
                "<h3>{}: {} records{changed} → {} master entities</h3><div class=grid2><div>",
                esc(model.kind.as_str()),
                int(total),
                int(ix.clusters)
            );
            let rows: Vec<(String, Vec<f64>)> = ix
                .sources
                .iter()
                .enumerate()
                .map(|(s, n)| (n.clone(), vec![ix.records[s] as f64, ix.entities[s] as f64]))
                .collect();
            self.w(&hbars(
                &rows,
                &[("records", "#4c72b0"), ("master entities", "#55a868")],
                |v| int(v as u64),
            ));
            self.w("</div><div><p class=note>Master entities by the number of departments they appear in</p>");
            let bins: Vec<(String, f64)> = ix
                .in_k
                .iter()
                .enumerate()
                .skip(1)
                .map(|(k, n)| (k.to_string(), *n as f64))
                .collect();
            self.w(&vbars(&bins, "#8172b2", false, "departments"));
            self.w("</div></div>");
            // Overlap matrix.
            let n = ix.sources.len();
            let max = ix
                .overlap
                .iter()
                .enumerate()
                .flat_map(|(a, r)| r.iter().enumerate().filter(move |(b, _)| *b != a))
                .map(|(_, v)| *v)
                .max()
                .unwrap_or(0)
                .max(1);
            self.w("<p class=note>Shared master entities between departments (diagonal: the department's own entities).</p><table><tr><th></th>");
            for s in &ix.sources {
                let _ = write!(self.html, "<th class=n>{}</th>", esc(s));
            }
            self.w("</tr>");
            for a in 0..n {
                let _ = write!(self.html, "<tr><th>{}</th>", esc(&ix.sources[a]));
                for b in 0..n {
                    let v = ix.overlap[a][b];
                    let style = if a == b {
                        "background:#eef0f4;font-weight:600".to_string()
                    } else {
                        let t = v as f64 / max as f64;
                        format!(
                            "background:rgba(76,114,176,{:.2});color:{}",
                            0.08 + 0.85 * t,
                            if t > 0.55 { "#fff" } else { "#1d2330" }
                        )
                    };
                    let _ = write!(self.html, "<td class=n style=\"{style}\">{}</td>", int(v));
                }
                self.w("</tr>");
            }
            self.w("</table>");
        }
        self.w("</section>");
    }

    fn quality(
        &mut self,
        run: &Value,
        kinds: &[(&Model, &KindIndex, &KindPairs, Option<Standardised>)],
        q: &Quarantine,
    ) {
        self.w("<section id=quality><h2>Data quality</h2>");
        for (model, _, _, std) in kinds {
            let k = model.kind.as_str();
            let _ = write!(
                self.html,
                "<h3>{}: empty values per department{}</h3>",
                esc(k),
                if self.night {
                    ", records sent tonight"
                } else {
                    ""
                }
            );
            match std {
                Some(st) => {
                    self.w("<table><tr><th>department</th><th class=n>records</th>");
                    for f in &st.fields {
                        let _ = write!(self.html, "<th class=n>{}</th>", esc(f));
                    }
                    let (has_id, has_uscc) = (
                        st.rows.iter().any(|r| r.3.is_some()),
                        st.rows.iter().any(|r| r.4.is_some()),
                    );
                    if has_id {
                        self.w("<th class=n>invalid ID</th>");
                    }
                    if has_uscc {
                        self.w("<th class=n>invalid USCC</th>");
                    }
                    self.w("</tr>");
                    for (src, n, nulls, bad_id, bad_uscc) in &st.rows {
                        let _ = write!(
                            self.html,
                            "<tr><td>{}</td><td class=n>{}</td>",
                            esc(src),
                            int(*n)
                        );
                        for &z in nulls {
                            let t = if *n > 0 { z as f64 / *n as f64 } else { 0.0 };
                            let cell = if t >= 0.999 {
                                "<td class=\"n muted\" title=\"not mapped or always empty\">—</td>".to_string()
                            } else {
                                format!(
                                    "<td class=n style=\"background:rgba(221,132,82,{:.2})\">{}</td>",
                                    0.75 * t,
                                    pct(z, *n)
                                )
                            };
                            self.w(&cell);
                        }
                        for (show, v) in [(has_id, bad_id), (has_uscc, bad_uscc)] {
                            if show {
                                let _ = write!(
                                    self.html,
                                    "<td class=n>{}</td>",
                                    v.map_or("–".into(), |v| pct(v, *n))
                                );
                            }
                        }
                        self.w("</tr>");
                    }
                    self.w("</table><p class=note>Share of records with no usable value after standardisation; — : no record of the department has a value for the field. A field the department does not send can still have values: gender and birth date are read from valid ID numbers. Invalid: present but failing the check digit.</p>");
                }
                None => self.w("<p class=note>Null rates per field need the standardised records (<code>standardised_&lt;kind&gt;.arrow</code>), which this output folder lacks: it was written by an older yiku or the file was removed.</p>"),
            }
            // Standardisation counters from run.json.
            if let Some(kv) = run["kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["kind"].as_str() == Some(k))
                && let Some(m) = kv["standardise"].as_object()
                && !m.is_empty()
            {
                self.w("<p class=note>Standardisation (all departments): ");
                let parts: Vec<String> = m
                    .iter()
                    .map(|(name, v)| {
                        format!(
                            "{} <b>{}</b>",
                            esc(&name.replace('_', " ")),
                            int(v.as_u64().unwrap_or(0))
                        )
                    })
                    .collect();
                self.w(&parts.join(" · "));
                self.w("</p>");
            }
        }
        self.w("<h3>Quarantine</h3>");
        if q.counts.is_empty() {
            self.w("<p class=note>No rows were quarantined.</p>");
        } else {
            self.w("<div class=grid2><div><table><tr><th>department</th><th>reason</th><th class=n>rows</th></tr>");
            for ((s, r), n) in &q.counts {
                let _ = write!(
                    self.html,
                    "<tr><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                    esc(s),
                    esc(r),
                    int(*n)
                );
            }
            self.w("</table></div><div><table><tr><th>department</th><th class=n>row</th><th>record id</th><th>reason</th></tr>");
            for (s, row, rid, reason) in &q.samples {
                let rid = rid
                    .as_deref()
                    .map_or("<span class=muted>none</span>".into(), |r| self.rid(r));
                let _ = write!(
                    self.html,
                    "<tr><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(s),
                    row,
                    rid,
                    esc(reason)
                );
            }
            let _ = write!(
                self.html,
                "</table><p class=note>First {ROWS} quarantined rows; their raw text is in <code>quarantine.parquet</code>.</p></div></div>"
            );
        }
        self.w("</section>");
    }

    fn blocking(&mut self, run: &Value) {
        self.w("<section id=blocking><h2>Blocking</h2><p class=note>Candidate pairs are the record pairs that agree exactly on all columns of at least one rule; each pair counts for the first rule that finds it. Blocks larger than the cap are skipped (and listed) so that one common value cannot explode the work.</p>");
        for kv in run["kinds"].as_array().into_iter().flatten() {
            let rules: Vec<&Value> = kv["blocking"].as_array().into_iter().flatten().collect();
            if rules.is_empty() {
                continue;
            }
            let _ = write!(
                self.html,
                "<h3>{}: {} candidate pairs</h3><div class=grid2><div><table><tr><th>rule</th><th class=n>pairs</th><th class=n>blocks</th><th class=n>largest block</th><th class=n>skipped blocks</th></tr>",
                esc(kv["kind"].as_str().unwrap_or("")),
                int(kv["candidate_pairs"].as_u64().unwrap_or(0))
            );
            let mut skipped = Vec::new();
            for r in &rules {
                let sk = r["skipped"].as_array().map_or(0, |v| v.len());
                let _ = write!(
                    self.html,
                    "<tr><td><code>{}</code></td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    esc(r["rule"].as_str().unwrap_or("")),
                    int(r["pairs"].as_u64().unwrap_or(0)),
                    int(r["blocks"].as_u64().unwrap_or(0)),
                    int(r["largest_block"].as_u64().unwrap_or(0)),
                    sk
                );
                skipped.extend(r["skipped"].as_array().into_iter().flatten());
            }
            self.w("</table></div><div>");
            let bars: Vec<(String, Vec<f64>)> = rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or("").to_string(),
                        vec![r["pairs"].as_u64().unwrap_or(0) as f64],
                    )
                })
                .collect();
            self.w(&hbars(&bars, &[("pairs", "#4c72b0")], |v| int(v as u64)));
            self.w("</div></div>");
            if !skipped.is_empty() {
                self.w("<table><tr><th>rule</th><th>key (masked)</th><th class=n>records</th><th class=n>pairs not formed</th></tr>");
                for s in skipped.iter().take(ROWS) {
                    let key = s["key"].as_str().unwrap_or("");
                    let _ = write!(
                        self.html,
                        "<tr><td><code>{}</code></td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                        esc(s["rule"].as_str().unwrap_or("")),
                        esc(key),
                        int(s["records"].as_u64().unwrap_or(0)),
                        int(s["pairs"].as_u64().unwrap_or(0))
                    );
                }
                let _ = write!(
                    self.html,
                    "</table><p class=note>{} skipped blocks{}.</p>",
                    skipped.len(),
                    if skipped.len() > ROWS {
                        format!(", first {ROWS} shown")
                    } else {
                        String::new()
                    }
                );
            }
        }
        self.w("</section>");
    }

    fn model(&mut self, models: &ModelFile) {
        self.w("<section id=model><h2>Model</h2><p class=note>Fellegi-Sunter: for each comparison level, m = P(level | same entity) and u = P(level | different entities); the level adds log2(m/u) to the match weight. A pair starts from the prior of the blocking rule that found it, and the comparisons of that rule's own fields are not counted (its pairs agree on them by construction).</p>");
        for m in &models.models {
            let _ = write!(
                self.html,
                "<h3>{}: overall λ = {:.4}, merge at probability ≥ {} (weight ≥ {:.2}), review from {} (weight ≥ {:.2})</h3><div class=grid2><div>",
                esc(m.kind.as_str()),
                m.lambda,
                m.match_probability,
                weight_of_probability(m.match_probability),
                m.review_probability,
                weight_of_probability(m.review_probability)
            );
            let rows: Vec<(String, f64)> = m
                .comparisons
                .iter()
                .flat_map(|c| {
                    (1..c.m.len()).map(move |l| {
                        (
                            format!(
                                "{} · {}",
                                c.spec.field,
                                c.levels.get(l).map_or("?", String::as_str)
                            ),
                            c.weight(l as u8),
                        )
                    })
                })
                .collect();
            self.w(&diverging(&rows));
            self.w("</div><div><table><tr><th>rule</th><th class=n>λ</th><th class=n>prior weight</th><th>not counted</th></tr>");
            let counted = m.counted();
            for (r, rule) in m.blocking.iter().enumerate() {
                let skip: Vec<String> = m
                    .comparisons
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| {
                        !counted
                            .get(r)
                            .and_then(|c| c.get(*k))
                            .copied()
                            .unwrap_or(true)
                    })
                    .map(|(_, c)| c.spec.field.clone())
                    .collect();
                let _ = write!(
                    self.html,
                    "<tr><td><code>{}</code></td><td class=n>{:.4}</td><td class=n>{}</td><td>{}</td></tr>",
                    esc(&crate::block::rule_name(rule)),
                    m.lambda_by_rule.get(r).copied().unwrap_or(m.lambda),
                    signed(m.prior_weight(r)),
                    esc(&skip.join(", "))
                );
            }
            self.w("</table><table><tr><th>comparison · level</th><th class=n>m</th><th class=n>u</th><th class=n>weight</th></tr>");
            for c in &m.comparisons {
                for l in 1..c.m.len() {
                    let _ = write!(
                        self.html,
                        "<tr><td>{} · {}{}</td><td class=n>{:.4}</td><td class=n>{:.5}</td><td class=n>{}</td></tr>",
                        esc(&c.spec.field),
                        esc(c.levels.get(l).map_or("?", String::as_str)),
                        if c.spec.term_frequency && l + 1 == c.m.len() {
                            " <span class=muted>(tf)</span>"
                        } else {
                            ""
                        },
                        c.m[l],
                        c.u.get(l).copied().unwrap_or(0.0),
                        signed(c.weight(l as u8))
                    );
                }
            }
            self.w("</table><p class=note>(tf): exact agreement is weighed by the frequency of the agreed value instead of u.</p></div></div>");
        }
        self.w("</section>");
    }

    fn weights(&mut self, kinds: &[(&Model, &KindIndex, &KindPairs, Option<Standardised>)]) {
        self.w("<section id=weights><h2>Match weights</h2><p class=note>Every candidate pair by its match weight (log scale). Pairs at or above the match line are merged; between the review and the match line they go to the clerical review queue.</p>");
        for (m, _, pk, _) in kinds {
            let (tm, tr) = (
                weight_of_probability(m.match_probability),
                weight_of_probability(m.review_probability),
            );
            let w = &pk.weights;
            let _ = write!(
                self.html,
                "<h3>{}: {} pairs — {} merged, {} for review, {} below</h3>",
                esc(m.kind.as_str()),
                int(w.count),
                int(w.matched),
                int(w.review),
                int(w.count - w.matched - w.review)
            );
            self.w(&histogram(w, tr, tm));
        }
        self.w("</section>");
    }

    fn clusters(
        &mut self,
        run: &Value,
        kinds: &[(&Model, &KindIndex, &KindPairs, Option<Standardised>)],
    ) {
        self.w("<section id=clusters><h2>Clusters</h2>");
        for (m, ix, _, _) in kinds {
            let k = m.kind.as_str();
            let _ = match self.night {
                false => write!(
                    self.html,
                    "<h3>{}: {} master entities</h3><div class=grid2><div><p class=note>Clusters by size (log scale)</p>",
                    esc(k),
                    int(ix.clusters)
                ),
                true => write!(
                    self.html,
                    "<h3>{}: {} master entities with a record changed tonight</h3><div class=grid2><div><p class=note>Clusters by their records changed tonight (log scale); sizes below count those records only</p>",
                    esc(k),
                    int(ix.clusters)
                ),
            };
            let mut bins: Vec<(String, f64)> = Vec::new();
            let mut big = 0u64;
            for (&s, &n) in &ix.sizes {
                if s <= 12 {
                    bins.push((s.to_string(), n as f64));
                } else {
                    big += n;
                }
            }
            if big > 0 {
                bins.push(("13+".into(), big as f64));
            }
            self.w(&vbars(&bins, "#4c72b0", true, "records in the cluster"));
            if let Some(kv) = run["kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["kind"].as_str() == Some(k))
            {
                let _ = write!(
                    self.html,
                    "<p><b>Must-not-link:</b> {} components would have joined records with different valid identifiers; {} of their weakest links were cut so that they were not merged.</p>",
                    int(kv["must_not_link_conflicts"].as_u64().unwrap_or(0)),
                    int(kv["cut_edges"].as_u64().unwrap_or(0))
                );
                if let Some(d) = kv["decisions_applied"].as_u64() {
                    let _ = write!(
                        self.html,
                        "<p><b>Clerical review:</b> {} decisions from clerks applied as must-link / must-not-link.</p>",
                        int(d)
                    );
                }
            }
            self.w("</div><div><table><tr><th>master id</th><th class=n>size</th><th>records (department:id)</th></tr>");
            for (mid, size, members) in &ix.largest {
                let list: Vec<String> = members
                    .iter()
                    .map(|(s, r)| format!("{}:{}", esc(s), self.rid(r)))
                    .collect();
                let more = if (*size as usize) > members.len() {
                    " …"
                } else {
                    ""
                };
                let _ = write!(
                    self.html,
                    "<tr><td><code>{}</code></td><td class=n>{}</td><td style=\"font-size:12px\">{}{more}</td></tr>",
                    esc(mid),
                    size,
                    list.join(", ")
                );
            }
            self.w("</table></div></div>");
        }
        self.w("</section>");
    }

    fn near_threshold(&mut self, kinds: &[(&Model, &KindIndex, &KindPairs, Option<Standardised>)]) {
        self.w("<section id=near><h2>Pairs near the match threshold</h2><p class=note>The pairs whose weight is closest to the merge threshold on either side, each explained: the prior of the rule that found it, then what each comparison added. Green adds evidence for a match, red against; the dashed line is the threshold. <code>yiku explain</code> gives the same for any two records.</p>");
        for (m, _, pk, std) in kinds {
            let k = m.kind.as_str();
            let t = weight_of_probability(m.match_probability);
            if std.is_none() && !(pk.above.is_empty() && pk.below.is_empty()) {
                self.w("<p class=note>This output folder has no standardised records (an older yiku, or the file was removed), so the explanations show levels without values, and the term-frequency adjustment is read off the stored weight.</p>");
            }
            for (label, side, wfs) in [
                (
                    "merged, just above",
                    &pk.above,
                    std.as_ref().map(|s| &s.above),
                ),
                (
                    "not merged, just below",
                    &pk.below,
                    std.as_ref().map(|s| &s.below),
                ),
            ] {
                if side.is_empty() {
                    continue;
                }
                let _ = write!(self.html, "<h3>{}: {label} the threshold</h3>", esc(k));
                for (n, p) in side.iter().enumerate() {
                    let wf = match wfs.and_then(|w| w.get(n)) {
                        Some(w) => w.clone(),
                        None => {
                            let rule = explain::rule_index(m, &p.blocking_rule).unwrap_or(0);
                            explain::from_levels(m, &p.levels, rule, p.match_weight)
                        }
                    };
                    self.waterfall(m, p, &wf, t);
                }
            }
        }
        self.w("</section>");
    }

    fn waterfall(&mut self, m: &Model, p: &StoredPair, wf: &Waterfall, threshold: f64) {
        let _ = write!(
            self.html,
            "<div class=wf><div><span class=t>{}:{} ~ {}:{}</span> · rule <code>{}</code> · weight <b>{}</b> · probability <b>{:.4}</b></div>",
            esc(&p.left.0),
            self.rid(&p.left.1),
            esc(&p.right.0),
            self.rid(&p.right.1),
            esc(&wf.rule_name(m)),
            signed(wf.total),
            wf.probability
        );
        if (wf.total - p.match_weight).abs() > 1e-9 {
            let _ = write!(
                self.html,
                "<p class=bad>The explanation's total differs from the stored weight {:.6}.</p>",
                p.match_weight
            );
        }
        // Running totals for the bars.
        let mut cum = vec![(0.0, wf.prior)];
        let mut at = wf.prior;
        for s in &wf.steps {
            cum.push((at, at + s.weight));
            at += s.weight;
        }
        let lo = cum
            .iter()
            .flat_map(|c| [c.0, c.1])
            .fold(threshold.min(0.0), f64::min);
        let hi = cum
            .iter()
            .flat_map(|c| [c.0, c.1])
            .fold(threshold.max(0.0), f64::max);
        let bar = |a: f64, b: f64, color: &str| wf_bar(a, b, lo, hi, threshold, color);
        self.w("<table><colgroup><col class=f><col class=v><col class=v><col class=l><col class=a><col class=b></colgroup><tr><th>term</th><th>left</th><th>right</th><th>level</th><th class=n>adds</th><th>running total</th></tr>");
        let _ = write!(
            self.html,
            "<tr><td>prior</td><td colspan=3 class=muted>λ = {:.4} of the rule that found the pair</td><td class=n>{}</td><td>{}</td></tr>",
            wf.lambda,
            signed(wf.prior),
            bar(
                0.0,
                wf.prior,
                if wf.prior >= 0.0 {
                    "#55a868"
                } else {
                    "#c44e52"
                }
            )
        );
        for (s, c) in wf.steps.iter().zip(&cum[1..]) {
            let (l, r) = match &s.values {
                Some((a, b)) => (self.val(a.as_deref()), self.val(b.as_deref())),
                None => (
                    "<span class=muted>…</span>".into(),
                    "<span class=muted>…</span>".into(),
                ),
            };
            let mut level = esc(&s.level_name);
            if let Some(u) = s.tf_u {
                let _ = write!(level, " <span class=muted>(tf: u={u:.2e})</span>");
            } else if s.tf_inferred {
                level.push_str(" <span class=muted>(tf)</span>");
            }
            let (adds, b) = if s.counted {
                (
                    signed(s.weight),
                    bar(
                        c.0,
                        c.1,
                        if s.weight >= 0.0 {
                            "#55a868"
                        } else {
                            "#c44e52"
                        },
                    ),
                )
            } else {
                (
                    format!(
                        "<span class=muted title=\"the rule that found the pair covers this field; counted, it would add {}\">not counted</span>",
                        signed(s.level_weight)
                    ),
                    bar(c.0, c.0, "#999"),
                )
            };
            let _ = write!(
                self.html,
                "<tr><td>{}</td><td class=v>{l}</td><td class=v>{r}</td><td>{level}</td><td class=n>{adds}</td><td>{b}</td></tr>",
                esc(&s.field)
            );
        }
        let _ = write!(
            self.html,
            "<tr><th>total</th><th colspan=3>probability {:.6}</th><th class=n>{}</th><th>{}</th></tr></table></div>",
            wf.probability,
            signed(wf.total),
            bar(0.0, wf.total, "#4c72b0")
        );
    }

    fn truth(&mut self, t: &TruthCurves, path: Option<&Path>) {
        let _ = write!(
            self.html,
            "<section id=truth><h2>Against the truth</h2><p class=note>Truth file <code>{}</code>. The curves classify the scored candidate pairs by match weight alone (before clustering): precision among pairs at or above the threshold, recall against all true pairs among the run's records (true pairs never blocked together count as missed).</p>",
            esc(&path.map(|p| p.display().to_string()).unwrap_or_default())
        );
        if t.night {
            self.w("<p class=note>A delta night: the scored pairs are tonight's (those with a record sent tonight), and recall counts the true pairs with a record sent tonight among the whole index's records.</p>");
        }
        if let Some(e) = &t.eval {
            let _ = write!(
                self.html,
                "<p><b>Master index (after clustering)</b>: pairwise precision {:.4}, recall {:.4}, F1 {:.4}; B-cubed F1 {:.4}; {} over-merged clusters, {} split entities{}.</p>",
                e.pairwise.precision,
                e.pairwise.recall,
                e.pairwise.f1,
                e.bcubed.f1,
                int(e.over_merged_clusters),
                int(e.split_entities),
                e.pairs_completeness.map_or(String::new(), |c| format!(
                    "; blocking found {:.2}% of true pairs",
                    100.0 * c
                ))
            );
        }
        for (k, (pts, total)) in &t.curves {
            let _ = write!(self.html, "<h3>{}: {} true pairs</h3>", esc(k), int(*total));
            self.w(&prf_chart(pts));
        }
        self.w("</section>");
    }
}

// ---------------------------------------------------------------------------------------
// Charts: inline SVG.

/// Horizontal bars, one group per row, one bar per series.
fn hbars(
    rows: &[(String, Vec<f64>)],
    series: &[(&str, &str)],
    fmt: impl Fn(f64) -> String,
) -> String {
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9);
    let (lw, bw, bh) = (170.0, 300.0, 14.0);
    let gh = bh * series.len() as f64 + 8.0;
    let legend = if series.len() > 1 { 20.0 } else { 0.0 };
    let h = legend + gh * rows.len() as f64 + 4.0;
    let mut s = format!(
        "<svg width=\"{}\" height=\"{h}\" viewBox=\"0 0 {} {h}\" role=img>",
        lw + bw + 90.0,
        lw + bw + 90.0
    );
    if series.len() > 1 {
        for (i, (name, color)) in series.iter().enumerate() {
            let x = lw + i as f64 * 130.0;
            let _ = write!(
                s,
                "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"13\" font-size=\"12\">{}</text>",
                x + 14.0,
                esc(name)
            );
        }
    }
    for (r, (label, vals)) in rows.iter().enumerate() {
        let y0 = legend + r as f64 * gh;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            lw - 8.0,
            y0 + gh / 2.0 + 2.0,
            esc(label)
        );
        for (i, v) in vals.iter().enumerate() {
            let color = series.get(i).map_or("#4c72b0", |x| x.1);
            let y = y0 + 4.0 + i as f64 * bh;
            let w = (v / max * bw).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                s,
                "<rect x=\"{lw}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#444\">{}</text>",
                bh - 2.0,
                lw + w + 4.0,
                y + bh - 4.0,
                esc(&fmt(*v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Vertical bars with labels under them; `log`: log10 scale.
fn vbars(bins: &[(String, f64)], color: &str, log: bool, xlabel: &str) -> String {
    let scale = |v: f64| if log { (1.0 + v).log10() } else { v };
    let max = bins
        .iter()
        .map(|b| scale(b.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    let (w, h, top, bottom) = (520.0, 170.0, 16.0, 34.0);
    let bw = (w - 20.0) / bins.len().max(1) as f64;
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{}\" role=img>",
        h + top + bottom
    );
    for (i, (label, v)) in bins.iter().enumerate() {
        let bh = scale(*v) / max * h;
        let x = 10.0 + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#444\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x + 2.0,
            top + h - bh,
            (bw - 4.0).max(1.0),
            esc(label),
            int(*v as u64),
            x + bw / 2.0,
            top + h - bh - 3.0,
            int(*v as u64),
            x + bw / 2.0,
            top + h + 14.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"10\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6478\">{}</text></svg>",
        w - 10.0,
        top + h,
        top + h,
        w / 2.0,
        top + h + 30.0,
        esc(xlabel)
    );
    s
}

/// Diverging horizontal bars around zero (the model's level weights).
fn diverging(rows: &[(String, f64)]) -> String {
    let max = rows.iter().map(|r| r.1.abs()).fold(0.0, f64::max).max(1e-9);
    let (lw, half, bh) = (200.0, 140.0, 16.0);
    let zero = lw + half + 52.0;
    let h = rows.len() as f64 * bh + 24.0;
    let width = zero + half + 50.0;
    let mut s = format!("<svg width=\"{width}\" height=\"{h}\" role=img>");
    let x = |v: f64| zero + v / max * half;
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 18.0 + i as f64 * bh;
        let (x0, x1) = (x(0.0_f64.min(*v)), x(0.0_f64.max(*v)));
        let color = if *v >= 0.0 { "#55a868" } else { "#c44e52" };
        let tx = if *v >= 0.0 { x1 + 4.0 } else { x0 - 4.0 };
        let anchor = if *v >= 0.0 { "start" } else { "end" };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#444\">{}</text>",
            lw,
            y + bh - 5.0,
            esc(label),
            y + 2.0,
            (x1 - x0).max(0.5),
            bh - 4.0,
            y + bh - 5.0,
            signed(*v)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{zero}\" x2=\"{zero}\" y1=\"14\" y2=\"{}\" stroke=\"#333\"/><text x=\"{zero}\" y=\"10\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6478\">log2(m/u)</text></svg>",
        h - 4.0
    );
    s
}

/// Histogram of match weights, log scale, review and match thresholds marked.
fn histogram(weights: &Weights, review: f64, matched: f64) -> String {
    let (w, h, left, top, bottom) = (1060.0, 200.0, 50.0, 20.0, 36.0);
    if weights.count == 0 {
        return "<p class=note>No candidate pairs.</p>".into();
    }
    let lo = weights.min.min(review).floor();
    let hi = weights.max.max(matched).ceil();
    // At most 100 bins, each a whole number of units.
    let step = ((hi - lo) / 100.0).ceil().max(1.0);
    let nb = ((hi - lo) / step).ceil().max(1.0) as usize;
    let hi = lo + nb as f64 * step;
    let mut counts = vec![0u64; nb];
    for (x, n) in weights.units() {
        let b = (((x - lo) / step).max(0.0) as usize).min(nb - 1);
        counts[b] += n;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let ly = |c: f64| (1.0 + c).log10() / (1.0 + max).log10() * h;
    let px = |v: f64| left + (v - lo) / (hi - lo).max(1e-9) * (w - left - 10.0);
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{}\" role=img>",
        h + top + bottom
    );
    // Y ticks at powers of ten.
    let mut t = 1.0;
    while t <= max {
        let y = top + h - ly(t);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceef2\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6478\">{}</text>",
            w - 10.0,
            left - 4.0,
            y + 3.0,
            int(t as u64)
        );
        t *= 10.0;
    }
    for (b, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x0 = lo + b as f64 * step;
        let mid = x0 + step / 2.0;
        let color = if mid >= matched {
            "#55a868"
        } else if mid >= review {
            "#dd8452"
        } else {
            "#8c8c8c"
        };
        let bh = ly(c as f64);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{:.1} to {:.1}: {}</title></rect>",
            px(x0) + 0.5,
            top + h - bh,
            (px(x0 + step) - px(x0) - 1.0).max(0.5),
            x0,
            x0 + step,
            int(c)
        );
    }
    // X ticks.
    x_ticks(&mut s, (lo, hi), &px, top + h + 14.0);
    for (v, label, color, dy) in [
        (review, "review", "#dd8452", 10.0),
        (matched, "match", "#1e7a34", 0.0),
    ] {
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{label} {v:.2}</text>",
            px(v),
            px(v),
            top + h,
            px(v) + 4.0,
            top + 8.0 + dy
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6478\">match weight (log2 odds); pairs per bin, log scale</text></svg>",
        w - 10.0,
        top + h,
        top + h,
        (left + w) / 2.0,
        top + h + 30.0
    );
    s
}

/// One waterfall row's bar: from running total `a` to `b` on the scale `lo..hi`.
fn wf_bar(a: f64, b: f64, lo: f64, hi: f64, threshold: f64, color: &str) -> String {
    let w = 240.0;
    let px = |v: f64| (v - lo) / (hi - lo).max(1e-9) * (w - 2.0) + 1.0;
    let (x0, x1) = (px(a.min(b)), px(a.max(b)));
    format!(
        "<svg width=\"{w}\" height=\"14\"><line x1=\"{z:.1}\" x2=\"{z:.1}\" y1=\"0\" y2=\"14\" stroke=\"#bbb\"/>\
         <rect x=\"{x0:.1}\" y=\"2\" width=\"{:.1}\" height=\"10\" fill=\"{color}\"/>\
         <line x1=\"{t:.1}\" x2=\"{t:.1}\" y1=\"0\" y2=\"14\" stroke=\"#1e7a34\" stroke-dasharray=\"2 2\"/></svg>",
        (x1 - x0).max(1.5),
        z = px(0.0),
        t = px(threshold)
    )
}

/// Precision, recall and F1 against the match-weight threshold.
fn prf_chart(pts: &[PrfPoint]) -> String {
    let (w, h, left, top, bottom) = (760.0, 220.0, 44.0, 24.0, 36.0);
    let (lo, hi) = (
        pts.first().map_or(0.0, |p| p.0),
        pts.last().map_or(1.0, |p| p.0),
    );
    let px = |v: f64| left + (v - lo) / (hi - lo).max(1e-9) * (w - left - 120.0);
    let py = |v: f64| top + (1.0 - v) * h;
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{}\" role=img>",
        h + top + bottom
    );
    for v in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceef2\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6478\">{v}</text>",
            px(hi),
            left - 4.0,
            py(v) + 3.0,
            y = py(v)
        );
    }
    let series = [
        ("precision", "#4c72b0", 1),
        ("recall", "#dd8452", 2),
        ("F1", "#55a868", 3),
    ];
    for (i, (name, color, k)) in series.iter().enumerate() {
        let d: Vec<String> = pts
            .iter()
            .map(|p| {
                let v = match k {
                    1 => p.1,
                    2 => p.2,
                    _ => p.3,
                };
                format!("{:.1},{:.1}", px(p.0), py(v))
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/><rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{name}</text>",
            d.join(" "),
            w - 100.0,
            top + 10.0 + i as f64 * 18.0,
            w - 84.0,
            top + 15.0 + i as f64 * 18.0
        );
    }
    x_ticks(&mut s, (lo, hi), &px, top + h + 14.0);
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6478\">match-weight threshold</text></svg>",
        (left + px(hi)) / 2.0,
        top + h + 30.0
    );
    s
}

/// Labels along an x axis from `lo` to `hi` (match weights), every 2, 5 or 10 units.
fn x_ticks(s: &mut String, (lo, hi): (f64, f64), px: &dyn Fn(f64) -> f64, y: f64) {
    let span = hi - lo;
    let tick = if span > 60.0 {
        10.0
    } else if span > 20.0 {
        5.0
    } else {
        2.0
    };
    let mut x = (lo / tick).ceil() * tick;
    while x <= hi {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{y}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6478\">{x}</text>",
            px(x)
        );
        x += tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(signed(-1.5), "−1.50");
    }

    #[test]
    fn record_ids_that_look_like_identifiers_are_masked() {
        let p = Page {
            html: String::new(),
            show_pii: false,
            night: false,
        };
        assert_eq!(p.rid("MZ00000001"), "MZ00000001");
        assert_eq!(p.rid("11010519491231002X"), "110105********002X");
        assert_eq!(p.val(Some("13812345678")), "138****5678");
    }

    /// A delta night's index figures: from the night's records in memory
    /// ([`RunFacts::add_changes`]) and read back from the `master_index_changes.parquet` the
    /// run writes of them, the same.
    #[test]
    fn the_changes_in_memory_and_their_file_give_the_same_index() {
        use crate::config::{Compression, EntityKind};
        let dir = std::env::temp_dir().join(format!("yiku-html-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Tonight's table: a:1 new (joins P1 with a:2, unchanged, whose cluster grew), a:3
        // sent again (P2), b:1 untouched (P3, a block mate), b:2 sent again and moved into P1
        // (from P4); b:9 deleted (it was P5, alone).
        let rows = [
            ("a", "1", "P1"),
            ("a", "2", "P1"),
            ("a", "3", "P2"),
            ("b", "1", "P3"),
            ("b", "2", "P1"),
        ];
        let table = crate::standardise::StdTable {
            kind: EntityKind::Person,
            sources: vec!["a".into(), "b".into()],
            source: rows.iter().map(|r| u16::from(r.0 == "b")).collect(),
            record_id: rows.iter().map(|r| Some(r.1)).collect(),
            columns: Default::default(),
            raw: Default::default(),
            stats: Default::default(),
        };
        let master_id: StringArray = rows.iter().map(|r| Some(r.2)).collect();
        let cluster_size = [3, 3, 1, 1, 3];
        let focus = [true, false, true, false, true];
        let old_id = [
            None,
            Some("P1".to_string()),
            Some("P2".to_string()),
            Some("P3".to_string()),
            Some("P4".to_string()),
        ];
        let old_size = [0, 1, 1, 1, 1];
        let removed = [("b".to_string(), "9".to_string(), "P5".to_string())];
        let changes = crate::output::Changes {
            table: &table,
            focus: &focus,
            master_id: &master_id,
            cluster_size: &cluster_size,
            old_id: &old_id,
            old_size: &old_size,
            removed: &removed,
        };
        let out = crate::output::OutputDir::create(&dir.join("night"), Compression::default())
            .expect("output folder");
        let mut files = crate::output::RunFiles::create(&out, &[], "R000002", true).expect("files");
        assert_eq!(
            files.index.write_master_changes(&changes).expect("written"),
            5
        );
        files.close().expect("closed");
        let read = read_changes(out.dir())
            .expect("readable")
            .expect("a delta night's changes");
        let from_file = index_of_changes(&borrowed(&read["person"]));
        let mut facts = RunFacts::default();
        facts
            .add_changes(&changes, &BTreeMap::new())
            .expect("added");
        let in_memory = &facts.index["person"];
        assert_eq!(in_memory, &from_file);
        // a:1, a:2 (its cluster grew), b:2 in P1; a:3 in P2; b:1 untouched; b:9 removed.
        assert_eq!(from_file.changes, Some([1, 2, 1, 1]));
        assert_eq!(from_file.sources, ["a", "b"]);
        assert_eq!(from_file.records, [3, 1]);
        assert_eq!(from_file.clusters, 2);
        assert_eq!(from_file.in_k, [0, 1, 1]);
        assert_eq!(from_file.largest.len(), 1);
        assert_eq!(from_file.largest[0].0, "P1");
        assert_eq!(from_file.largest[0].1, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn term_frequencies_from_counts_are_shares_of_the_whole_index() {
        let col = StringArray::from(vec![Some("王伟"), None, Some("欧阳翠花"), Some("王伟")]);
        let mut counts = Counts {
            total: 1000,
            ..Default::default()
        };
        counts.of.insert(value_hash("王伟"), 30);
        counts.of.insert(value_hash("欧阳翠花"), 1);
        let tf = tf_of_counts(&col, &counts);
        assert_eq!(tf.u_of(Some("王伟")), Some(30.0 / 1000.0));
        assert_eq!(tf.u_of(Some("欧阳翠花")), Some(1.0 / 1000.0));
        assert_eq!(tf.u_of(Some("李四")), None);
    }

    #[test]
    fn weights_summed_up_count_as_every_weight_would() {
        let all = [-12.3, -0.5, 0.0, 0.49, 3.999, 4.0, 7.25, 7.25, 15.0, 130.5];
        let mut w = Weights {
            lines: (4.0, 0.0),
            ..Weights::default()
        };
        for x in all {
            w.add(x);
        }
        assert_eq!((w.count, w.min, w.max), (10, -12.3, 130.5));
        // At or above 4; then 0 up to 4.
        assert_eq!((w.matched, w.review), (5, 3));
        let mut per_unit: BTreeMap<i64, u64> = BTreeMap::new();
        for x in all {
            *per_unit.entry(x.floor() as i64).or_default() += 1;
        }
        let units: Vec<(f64, u64)> = w.units().collect();
        let expected: Vec<(f64, u64)> = per_unit.iter().map(|(&u, &n)| (u as f64, n)).collect();
        assert_eq!(units, expected);
        // 143 units wide: bins of two units, every pair counted once.
        let s = histogram(&w, 0.0, 4.0);
        assert!(s.contains("<title>-13.0 to -11.0: 1</title>"), "{s}");
        assert!(s.contains("<title>7.0 to 9.0: 2</title>"), "{s}");
        assert!(s.contains("<title>129.0 to 131.0: 1</title>"), "{s}");
    }

    #[test]
    fn histogram_handles_a_single_value() {
        let mut w = Weights::default();
        w.add(3.0);
        w.add(3.0);
        let s = histogram(&w, -3.0, 0.0);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }
}
