//! Term frequencies: how common each value of a column is, so that agreeing on a rare name
//! (欧阳翠花) weighs more than agreeing on a common one (王伟).

use std::collections::HashMap;

use arrow_array::StringArray;

/// Relative frequency of every value of a column among its non-null values.
#[derive(Debug, Clone, Default)]
pub struct TermFrequencies {
    freq: HashMap<String, f64, foldhash::fast::FixedState>,
}

impl TermFrequencies {
    pub fn of(col: &StringArray) -> Self {
        let mut counts: HashMap<&str, u64, foldhash::fast::FixedState> = HashMap::default();
        let mut total = 0u64;
        for v in col.iter().flatten() {
            *counts.entry(v).or_default() += 1;
            total += 1;
        }
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
