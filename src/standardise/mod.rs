//! Stage 2: standardise. Consumes: a [`RawTable`] per kind. Produces: a [`StdTable`] with one
//! standardised text column per field plus derived columns (`name_pinyin`, `id_number_valid`,
//! `name_core`, ...), raw values kept beside them, and counts of what was fixed or found
//! invalid. Cost: one parallel pass per field, O(records).
//!
//! Every standardised value is text (or null), so blocking and comparison treat all columns
//! alike; the field's [`FieldType`] decides how it was made.

pub mod address;
pub mod date;
pub mod ident;
pub mod name;
pub mod org;
pub mod phone;
pub mod text;

use std::collections::BTreeMap;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, BooleanArray, StringArray};
use rayon::prelude::*;

use crate::config::{EntityKind, FieldType, KindPlan, derived_columns};
use crate::load::RawTable;

/// Standardised records of one kind, in the load stage's order.
#[derive(Debug, Clone)]
pub struct StdTable {
    pub kind: EntityKind,
    pub sources: Vec<String>,
    /// Each record's source (an index of `sources`): shared, not copied, with the state file
    /// written from the table, and mapped from it once the table is.
    pub source: arrow_buffer::ScalarBuffer<u16>,
    pub record_id: StringArray,
    /// Standardised and derived columns by name.
    pub columns: BTreeMap<String, StringArray>,
    /// Raw values per field, as loaded.
    pub raw: BTreeMap<String, StringArray>,
    /// What standardisation fixed or rejected, by counter name.
    pub stats: BTreeMap<String, u64>,
}

impl StdTable {
    /// Person records for tests: (source, record id, name) rows in the order given.
    #[cfg(test)]
    pub(crate) fn of_names(rows: &[(&str, &str, &str)]) -> StdTable {
        let mut sources: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        sources.sort();
        sources.dedup();
        StdTable {
            kind: EntityKind::Person,
            source: rows
                .iter()
                .map(|r| sources.iter().position(|s| s == r.0).unwrap_or(0) as u16)
                .collect(),
            sources,
            record_id: rows.iter().map(|r| Some(r.1)).collect(),
            columns: [("name".to_string(), rows.iter().map(|r| Some(r.2)).collect())]
                .into_iter()
                .collect(),
            raw: Default::default(),
            stats: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// A column by name; `None` if the job has no such column.
    pub fn column(&self, name: &str) -> Option<&StringArray> {
        self.columns.get(name)
    }

    /// Value of a column at a row, `None` when null or absent.
    pub fn value<'a>(&'a self, col: &'a StringArray, row: usize) -> Option<&'a str> {
        (!col.is_null(row)).then(|| col.value(row))
    }

    /// Row of a record, by binary search: rows are sorted by (source, record id) and
    /// `sources` by name.
    pub fn find(&self, source: &str, record_id: &str) -> Option<u32> {
        let s = self
            .sources
            .binary_search_by(|x| x.as_str().cmp(source))
            .ok()? as u16;
        let key = |i: usize| (self.source[i], self.record_id.value(i));
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(mid) < (s, record_id) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.len() && key(lo) == (s, record_id)).then_some(lo as u32)
    }
}

/// What standardising fixed or rejected, counted per chunk of rows and summed: a plain array,
/// so threads never share a counter.
#[derive(Clone, Copy, Default)]
struct Counters([u64; COUNTERS.len()]);

/// The counters, in the order of [`COUNTERS`].
#[derive(Clone, Copy)]
enum Counter {
    IdValid,
    IdInvalid,
    IdUpgradedFrom15,
    IdLowercaseX,
    UsccValid,
    UsccInvalid,
    LegacyRegNumber,
    OrgCodeInvalid,
    DateUnparsed,
    PhoneUnusable,
    NamePinyinSpelling,
    BirthDateDisagreesWithId,
}

impl Counters {
    fn inc(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }
    fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }
    fn merge(mut self, other: Counters) -> Counters {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }
}

/// Counter names as they appear in the run summary, in the order of [`Counter`].
const COUNTERS: [&str; 12] = [
    "id_valid",
    "id_invalid",
    "id_upgraded_from_15",
    "id_lowercase_x",
    "uscc_valid",
    "uscc_invalid",
    "legacy_reg_number",
    "org_code_invalid",
    "date_unparsed",
    "phone_unusable",
    "name_pinyin_spelling",
    "birth_date_disagrees_with_id",
];

/// Standardises one kind's records. Of the raw columns, only those of the fields in
/// `keep_raw` stay in the table (to be shown as written); the others are dropped as soon as
/// their field is done, as a memory-limited run peaks here.
pub fn standardise(
    raw: RawTable,
    plan: &KindPlan,
    keep_raw: &[String],
) -> crate::error::Result<StdTable> {
    standardise_with(raw, plan, keep_raw, Columns::Heap)
}

/// Where each column goes once made (see [`crate::state::Columns`]): [`standardise`] keeps
/// it in the heap; a memory-limited run writes it to disk as it is made and gets the same
/// values back mapped from there, so that the heap holds a wave of rows of one field's
/// columns at a time instead of the whole table.
pub use crate::state::Columns;

/// Rows standardised at a time, one field at a time: their pieces are handed on before the
/// next wave's are made (at 10M records a field's columns whole were up to ~0.5 GB).
const WAVE: usize = 64 * CHUNK;

/// Rows per task of [`map_rows`].
const CHUNK: usize = 16384;

/// [`standardise`], every column put where `to` says as it is made.
pub fn standardise_with(
    raw: RawTable,
    plan: &KindPlan,
    keep_raw: &[String],
    to: Columns,
) -> crate::error::Result<StdTable> {
    standardise_in_waves(raw, plan, keep_raw, to, WAVE)
}

/// [`standardise_with`], `wave` rows at a time.
fn standardise_in_waves(
    raw: RawTable,
    plan: &KindPlan,
    keep_raw: &[String],
    to: Columns,
    wave: usize,
) -> crate::error::Result<StdTable> {
    let wave = wave.max(1);
    let n = raw.len();
    let RawTable {
        kind,
        sources,
        source,
        record_id,
        fields,
        columns: raw_columns,
    } = raw;
    let mut kept_raw = BTreeMap::new();
    // Fields one after another, rows in parallel: a memory-limited run peaks here, and
    // fields side by side (~0.05 s faster at 2M records) held several fields' pieces at once,
    // which took a 10M-record run past a 5 GB cap.
    let mut counters = Counters::default();
    let mut columns = BTreeMap::new();
    for (field, arr) in fields.into_iter().zip(raw_columns) {
        let ty = plan.fields.get(&field).copied().unwrap_or(FieldType::Text);
        let names: Vec<String> = std::iter::once(field.clone())
            .chain(derived_columns(&field, ty))
            .collect();
        let mut made = (0..names.len())
            .map(|_| to.parts())
            .collect::<crate::error::Result<Vec<_>>>()?;
        for from in (0..n).step_by(wave) {
            // Each output column's bytes sized as the raw values' (or 16 a row, if more).
            let raw_bytes = |rows: std::ops::Range<usize>| {
                let o = arr.value_offsets();
                match (o.get(rows.start), o.get(rows.end)) {
                    (Some(&a), Some(&b)) => (b - a) as usize,
                    _ => 0,
                }
            };
            let rows = from..(from + wave).min(n);
            let (outs, counted) = map_rows(rows, names.len(), raw_bytes, |i, out, c| {
                let v = (!arr.is_null(i)).then(|| arr.value(i));
                standardise_value(ty, v, out, c);
            });
            counters = counters.merge(counted);
            // A field's columns side by side: each is a write of its own.
            made.par_iter_mut()
                .zip(outs)
                .try_for_each(|(column, pieces)| {
                    pieces.into_iter().try_for_each(|p| column.push(p))
                })?;
        }
        let kept: Vec<StringArray> = made
            .into_par_iter()
            .map(crate::state::Parts::finish)
            .collect::<crate::error::Result<_>>()?;
        columns.extend(names.into_iter().zip(kept));
        if keep_raw.contains(&field) {
            kept_raw.insert(field, to.keep(&[arr])?);
        }
    }
    derive_kind_columns(kind, &mut columns, &mut counters, (to, wave))?;
    let stats = COUNTERS
        .iter()
        .zip(counters.0)
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Ok(StdTable {
        kind,
        sources,
        source,
        record_id,
        columns,
        raw: kept_raw,
        stats,
    })
}

/// One row's output values: `k` text slots whose buffers are reused from row to row (most
/// values are written into them, not allocated), each set or null.
pub(crate) struct Outs {
    text: Vec<String>,
    set: Vec<bool>,
    /// Working space a standardiser may use between values.
    scratch: String,
}

impl Outs {
    fn new(k: usize) -> Outs {
        Outs {
            text: vec![String::new(); k],
            set: vec![false; k],
            scratch: String::new(),
        }
    }

    /// A person name's three slots (name, pinyin key, surname pinyin) written in place; falls
    /// back to [`name::standardise`] for names with no Han character.
    fn put_person_name(&mut self, f: &str, c: &mut Counters) {
        if let [n, key, surname, ..] = self.text.as_mut_slice()
            && let Some((has_key, has_surname)) =
                name::standardise_han_into(f, n, key, surname, &mut self.scratch)
        {
            self.set[0] = true;
            self.set[1] = has_key;
            self.set[2] = has_surname;
            return;
        }
        if let Some(p) = name::standardise(f) {
            if p.name.is_ascii() && p.pinyin.is_some() {
                c.inc(Counter::NamePinyinSpelling);
            }
            self.put_string(0, p.name);
            self.put_opt(1, p.pinyin);
            self.put_opt(2, p.surname);
        }
    }

    /// Slot `k` set to `v`.
    fn put(&mut self, k: usize, v: &str) {
        self.buf(k).push_str(v);
    }

    /// Slot `k` set to `v`, where the value was made as a string anyway.
    fn put_string(&mut self, k: usize, v: String) {
        self.text[k] = v;
        self.set[k] = true;
    }

    /// Slot `k` set to `v` if there is one.
    fn put_opt(&mut self, k: usize, v: Option<String>) {
        if let Some(v) = v {
            self.put_string(k, v);
        }
    }

    /// Slot `k`, set and emptied, to write into.
    fn buf(&mut self, k: usize) -> &mut String {
        self.set[k] = true;
        let b = &mut self.text[k];
        b.clear();
        b
    }

    fn get(&self, k: usize) -> Option<&str> {
        self.set[k].then(|| self.text[k].as_str())
    }

    /// Slot `k` back to null.
    fn unset(&mut self, k: usize) {
        self.set[k] = false;
    }
}

/// Runs `f` on every row in parallel chunks; `f` fills `k` output slots per row and counts
/// what it fixed or rejected. Returns each output column as its chunks' pieces, in row order:
/// joining them is the caller's [`Keep`] (a spilled run writes them to disk one after another,
/// so that the joined column is never a second copy in the heap). `bytes` of a chunk's rows
/// sizes each piece's values up front (at least 16 a row): grown as they came, long values
/// (addresses) were copied over and again.
fn map_rows<F>(
    range: std::ops::Range<usize>,
    k: usize,
    bytes: impl Fn(std::ops::Range<usize>) -> usize + Sync,
    f: F,
) -> (Vec<Vec<StringArray>>, Counters)
where
    F: Fn(usize, &mut Outs, &mut Counters) + Sync,
{
    let chunks: Vec<(Vec<StringArray>, Counters)> = (0..range.len().div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let rows = range.start + c * CHUNK..(range.start + (c + 1) * CHUNK).min(range.end);
            let size = bytes(rows.clone()).max(rows.len() * 16);
            let mut bs: Vec<StringBuilder> = (0..k)
                .map(|_| StringBuilder::with_capacity(rows.len(), size))
                .collect();
            let mut out = Outs::new(k);
            let mut counters = Counters::default();
            for i in rows {
                out.set.iter_mut().for_each(|s| *s = false);
                f(i, &mut out, &mut counters);
                for (j, b) in bs.iter_mut().enumerate() {
                    b.append_option(out.get(j));
                }
            }
            (bs.iter_mut().map(StringBuilder::finish).collect(), counters)
        })
        .collect();
    let mut counters = Counters::default();
    let mut columns: Vec<Vec<StringArray>> =
        (0..k).map(|_| Vec::with_capacity(chunks.len())).collect();
    for (pieces, counted) in chunks {
        counters = counters.merge(counted);
        for (column, piece) in columns.iter_mut().zip(pieces) {
            column.push(piece);
        }
    }
    (columns, counters)
}

/// Fills `out[0]` with the standardised value and `out[1..]` with the derived columns in the
/// order of [`derived_columns`].
fn standardise_value(ty: FieldType, v: Option<&str>, out: &mut Outs, c: &mut Counters) {
    let Some(f) = text::clean(v) else {
        return;
    };
    match ty {
        FieldType::Text => out.put_string(0, f.to_lowercase()),
        FieldType::Exact => out.put(0, &f),
        FieldType::PersonName => out.put_person_name(&f, c),
        FieldType::IdNumber => {
            let mut id = std::mem::take(out.buf(0));
            id.extend(f.chars().filter(char::is_ascii_alphanumeric));
            if id.ends_with('x') {
                c.inc(Counter::IdLowercaseX);
            }
            id.make_ascii_uppercase();
            if id.len() == 15
                && let Some(up) = ident::upgrade_id15(&id)
            {
                c.inc(Counter::IdUpgradedFrom15);
                id = up;
            }
            if ident::id_is_valid(&id) {
                c.inc(Counter::IdValid);
                if let Some(d) = ident::id_birth(&id) {
                    date::iso_into(d / 10000, d / 100 % 100, d % 100, out.buf(2));
                }
                if let Some(g) = ident::id_gender(&id) {
                    out.put(3, g);
                }
                out.put(4, &id[..6]);
                out.put(1, &id);
            } else {
                c.inc(Counter::IdInvalid);
            }
            out.put_string(0, id);
        }
        FieldType::Date => {
            if !date::standardise_into(&f, out.buf(0)) {
                out.unset(0);
                c.inc(Counter::DateUnparsed);
            }
        }
        FieldType::Gender => {
            let g = |w: &[&str]| w.iter().any(|x| f.eq_ignore_ascii_case(x));
            if g(&["男", "m", "male", "1", "男性"]) {
                out.put(0, "M");
            } else if g(&["女", "f", "female", "2", "女性"]) {
                out.put(0, "F");
            }
        }
        FieldType::Phone => {
            if !phone::standardise_into(&f, out.buf(0)) {
                out.unset(0);
                c.inc(Counter::PhoneUnusable);
            }
        }
        FieldType::Address => {
            if !address::standardise_into(&f, out.buf(0)) {
                out.unset(0);
            }
        }
        FieldType::EnterpriseName => {
            if let Some(e) = org::standardise(&f) {
                out.put_string(0, e.name);
                if !e.core.is_empty() {
                    out.put_string(1, e.core);
                }
                out.put_opt(2, e.region);
            }
        }
        FieldType::Uscc => {
            let mut code = std::mem::take(out.buf(0));
            code.extend(f.chars().filter(char::is_ascii_alphanumeric));
            code.make_ascii_uppercase();
            if code.len() == 18 && ident::uscc_is_valid(&code) {
                c.inc(Counter::UsccValid);
                out.put(1, &code);
                if let Some(o) = ident::uscc_org_code(&code) {
                    out.put(2, o);
                }
                out.put(4, &code[2..8]);
            } else if code.len() == 15 && code.bytes().all(|b| b.is_ascii_digit()) {
                c.inc(Counter::LegacyRegNumber);
                out.put(3, &code);
            } else if code.len() == 9 && ident::org_code_is_valid(&code) {
                out.put(2, &code);
            } else {
                c.inc(Counter::UsccInvalid);
            }
            out.put_string(0, code);
        }
        FieldType::OrgCode => {
            let code = out.buf(0);
            code.extend(f.chars().filter(char::is_ascii_alphanumeric));
            code.make_ascii_uppercase();
            if !ident::org_code_is_valid(code) {
                c.inc(Counter::OrgCodeInvalid);
                out.unset(0);
            }
        }
    }
}

/// Kind-level derivations across fields: a person's birth date and gender fall back to those
/// in a valid ID (and disagreements are counted); an enterprise's organisation code and
/// registration number fall back to those inside its USCC column. A column filled in is put
/// where `to` says, `wave` rows at a time.
fn derive_kind_columns(
    kind: EntityKind,
    columns: &mut BTreeMap<String, StringArray>,
    c: &mut Counters,
    (to, wave): (Columns, usize),
) -> crate::error::Result<()> {
    let pairs: &[(&str, &str)] = match kind {
        EntityKind::Person => &[
            ("birth_date", "id_number_birth"),
            ("gender", "id_number_gender"),
        ],
        EntityKind::Enterprise => &[
            ("org_code", "uscc_org_code"),
            ("reg_number", "uscc_reg_number"),
        ],
        EntityKind::Generic => &[],
    };
    for (target, from) in pairs {
        let (Some(t), Some(f)) = (columns.get(*target), columns.get(*from)) else {
            continue;
        };
        if *target == "birth_date" {
            let disagree = (0..t.len())
                .into_par_iter()
                .with_min_len(16 * 1024)
                .filter(|&i| t.is_valid(i) && f.is_valid(i) && t.value(i) != f.value(i))
                .count();
            c.add(Counter::BirthDateDisagreesWithId, disagree as u64);
        }
        if t.null_count() == 0 {
            continue;
        }
        // Where the target is null, the value from the identifier; a wave of rows at a time.
        let mut merged = to.parts()?;
        for at in (0..t.len()).step_by(wave) {
            let len = wave.min(t.len() - at);
            let (t, f) = (t.slice(at, len), f.slice(at, len));
            let valid = match t.nulls() {
                Some(n) => BooleanArray::new(n.inner().clone(), None),
                None => BooleanArray::new(arrow_buffer::BooleanBuffer::new_set(len), None),
            };
            let part = arrow_select::zip::zip(&valid, &t, &f)
                .ok()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| crate::error::Error::Data {
                    stage: "standardise",
                    message: format!("`{target}` could not be filled in from `{from}`"),
                })?;
            merged.push(part)?;
        }
        columns.insert(target.to_string(), merged.finish()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_written_to_disk_give_the_table_made_whole() {
        use crate::config::presets::preset;
        let Some(plan) = preset(EntityKind::Person) else {
            panic!("person preset");
        };
        let n = 40usize;
        let text = |f: &dyn Fn(usize) -> Option<String>| -> StringArray { (0..n).map(f).collect() };
        let fields = [
            "name",
            "id_number",
            "birth_date",
            "gender",
            "address",
            "phone",
        ];
        let raw = RawTable {
            kind: EntityKind::Person,
            sources: vec!["a".into(), "b".into()],
            source: (0..n).map(|i| (i % 2) as u16).collect(),
            record_id: text(&|i| Some(format!("r{i}"))),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            columns: vec![
                text(&|i| (i % 9 != 0).then(|| ["张三", "李 四", "王小明"][i % 3].to_string())),
                // Some with a valid ID only (birth date and gender from it), some 15 digits.
                text(&|i| match i % 4 {
                    0 => Some("11010519491231002X".into()),
                    1 => Some("110105491231002".into()),
                    2 => None,
                    _ => Some(format!("4401{i:02}")),
                }),
                text(&|i| (i % 3 == 0).then(|| format!("1990年{}月{}日", 1 + i % 12, 1 + i % 28))),
                text(&|i| (i % 5 == 0).then(|| ["男", "女"][i % 2].to_string())),
                text(&|i| Some(format!("北京市海淀区中关村大街{i}号"))),
                text(&|_| None),
            ],
        };
        let whole = standardise(raw.clone(), &plan, &["address".to_string()]);
        let dir = std::env::temp_dir().join(format!("yiku-waves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let spill = crate::state::Spill::new(&dir, "t");
        let to = Columns::Disk(&spill);
        for wave in [1, 7, n, 1000] {
            let waves =
                standardise_in_waves(raw.clone(), &plan, &["address".to_string()], to, wave);
            let (Ok(a), Ok(b)) = (&whole, &waves) else {
                panic!("standardised");
            };
            assert_eq!(a.columns, b.columns, "waves of {wave}");
            assert_eq!(a.raw, b.raw, "waves of {wave}");
            assert_eq!(a.stats, b.stats, "waves of {wave}");
        }
        let Ok(a) = &whole else {
            panic!("standardised")
        };
        // The ID filled in birth dates and genders where the records had none.
        let filled = |c: &str| a.column(c).map_or(0, |c| c.len() - c.null_count());
        assert!(filled("birth_date") > n / 3 && filled("gender") > n / 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
