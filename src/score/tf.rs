//! Term frequencies: how common each value of a column is, so that agreeing on a rare name
//! (欧阳翠花) weighs more than agreeing on a common one (王伟).

use std::collections::HashMap;

use arrow_array::StringArray;

/// Relative frequencies of values of a column among its non-null values.
#[derive(Debug, Clone, Default)]
pub struct TermFrequencies {
    freq: HashMap<String, f64, foldhash::fast::FixedState>,
}

impl TermFrequencies {
    /// Relative frequency among the column's non-null values of each value the records at
    /// `rows` hold: what explaining a few pairs needs, without a table of every value.
    pub fn of(col: &StringArray, rows: &[usize]) -> Self {
        use arrow_array::Array;
        use rayon::prelude::*;
        let wanted: std::collections::HashSet<&str, foldhash::fast::FixedState> = rows
            .iter()
            .filter(|&&i| i < col.len() && col.is_valid(i))
            .map(|&i| col.value(i))
            .collect();
        let (counts, total) = (0..col.len())
            .into_par_iter()
            .with_min_len(16 * 1024)
            .fold(
                || {
                    (
                        HashMap::<&str, u64, foldhash::fast::FixedState>::default(),
                        0u64,
                    )
                },
                |(mut counts, total), i| {
                    if col.is_null(i) {
                        return (counts, total);
                    }
                    if let Some(v) = wanted.get(col.value(i)) {
                        *counts.entry(v).or_default() += 1;
                    }
                    (counts, total + 1)
                },
            )
            .reduce(
                || (HashMap::default(), 0),
                |(mut a, ta), (b, tb)| {
                    for (k, c) in b {
                        *a.entry(k).or_default() += c;
                    }
                    (a, ta + tb)
                },
            );
        let freq = counts
            .into_iter()
            .map(|(k, c)| (k.to_string(), c as f64 / total.max(1) as f64))
            .collect();
        TermFrequencies { freq }
    }

    /// From whole-column (value, count) rows, counted elsewhere (a Spark aggregate).
    pub fn from_counts(values: &StringArray, counts: &[i64]) -> Self {
        let total = counts.iter().sum::<i64>().max(1) as f64;
        let freq = values
            .iter()
            .zip(counts)
            .filter_map(|(v, &c)| v.map(|v| (v.to_string(), c as f64 / total)))
            .collect();
        TermFrequencies { freq }
    }

    /// The u of exact agreement on this value: its relative frequency.
    pub fn u_of(&self, value: Option<&str>) -> Option<f64> {
        self.freq.get(value?).copied()
    }
}

/// The hash [`exact_weights`] tells values apart by.
pub fn value_hash(value: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7466).hash_one(value)
}

/// How often each value (by [`value_hash`]) occurs among a column's non-null values, and
/// how many those are: over a whole index, for a table that holds only part of it (a delta
/// run's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub total: u64,
    pub of: HashMap<u64, u64, foldhash::fast::FixedState>,
}

impl Counts {
    /// The counts of a column's own values.
    pub fn of_column(col: &StringArray) -> Counts {
        use arrow_array::Array;
        let mut c = Counts::default();
        for i in 0..col.len() {
            if col.is_valid(i) {
                *c.of.entry(value_hash(col.value(i))).or_default() += 1;
                c.total += 1;
            }
        }
        c
    }
}

/// For every record of `col`, `weight(u)` of its value's relative frequency `u` among the
/// column's non-null values (the u of [`TermFrequencies`]), or 0 for a null. Values are told
/// apart by a 64-bit hash, counted once: no string is copied.
pub fn exact_weights(col: &StringArray, weight: impl Fn(f64) -> f64 + Sync) -> Vec<f64> {
    exact_weights_with(col, weight, None)
}

/// [`exact_weights`], with the frequencies taken from `counts` (over a whole index) instead
/// of the column itself when given.
pub fn exact_weights_with(
    col: &StringArray,
    weight: impl Fn(f64) -> f64 + Sync,
    counts: Option<&Counts>,
) -> Vec<f64> {
    use arrow_array::Array;
    use rayon::prelude::*;
    // Values hashed where they are needed, twice when counted here: a hash kept per record
    // would be 16 bytes a record held (~160 MB at 10M records).
    let hash = |i: usize| col.is_valid(i).then(|| value_hash(col.value(i)));
    let own;
    let (counts, total) = match counts {
        Some(c) => (&c.of, c.total),
        None => {
            const CHUNK: usize = 1 << 20;
            let mut of: HashMap<u64, u64, foldhash::fast::FixedState> = HashMap::default();
            let mut total = 0u64;
            for from in (0..col.len()).step_by(CHUNK) {
                let keys: Vec<Option<u64>> = (from..col.len().min(from + CHUNK))
                    .into_par_iter()
                    .with_min_len(4096)
                    .map(hash)
                    .collect();
                for k in keys.iter().flatten() {
                    *of.entry(*k).or_default() += 1;
                    total += 1;
                }
            }
            own = of;
            (&own, total)
        }
    };
    (0..col.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| match hash(i).and_then(|k| counts.get(&k)) {
            Some(&c) => weight(c as f64 / total.max(1) as f64),
            None => 0.0,
        })
        .collect()
}
