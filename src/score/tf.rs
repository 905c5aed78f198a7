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

/// The hash [`exact_weights_in`] tells values apart by.
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
/// column's non-null values (the u of [`TermFrequencies`]), or 0 for a null; the frequencies
/// taken from `counts` (over a whole index) instead of the column itself when given, and the
/// weights made on a mapped file when `spill` is given (8 bytes a record:
/// [`crate::state::Scratch`]). Values are told apart by a 64-bit hash, counted once: no
/// string is copied.
pub fn exact_weights_in(
    col: &StringArray,
    weight: impl Fn(f64) -> f64 + Sync,
    counts: Option<&Counts>,
    spill: Option<&crate::state::Spill>,
) -> crate::error::Result<arrow_buffer::ScalarBuffer<f64>> {
    use arrow_array::Array;
    use rayon::prelude::*;
    let hash = |i: usize| col.is_valid(i).then(|| value_hash(col.value(i)));
    let Some(counts) = counts else {
        return own_exact_weights(col, weight, spill);
    };
    // Values hashed where they are needed: a hash kept per record would be 8 bytes a record
    // held (~80 MB at 10M records).
    let mut weights = crate::state::Scratch::<f64>::zeroed(col.len(), spill)?;
    weights
        .par_iter_mut()
        .enumerate()
        .with_min_len(4096)
        .for_each(|(i, w)| {
            *w = match hash(i).and_then(|k| counts.of.get(&k)) {
                Some(&c) => weight(c as f64 / counts.total.max(1) as f64),
                None => 0.0,
            }
        });
    Ok(weights.into_buffer())
}

/// [`exact_weights_in`] counted over the column itself. Each value is hashed once and numbered
/// as it is counted, its number kept in the record's own slot of the result, so that
/// `weight` runs once per distinct value and the records' weights are looked up by number.
fn own_exact_weights(
    col: &StringArray,
    weight: impl Fn(f64) -> f64 + Sync,
    spill: Option<&crate::state::Spill>,
) -> crate::error::Result<arrow_buffer::ScalarBuffer<f64>> {
    use arrow_array::Array;
    use rayon::prelude::*;
    const CHUNK: usize = 4096;
    // Each record's slot holds its value's hash, then its value's number, then its weight's
    // bits (the list is made into the weights in place at the end).
    let mut slots = crate::state::Scratch::<u64>::zeroed(col.len(), spill)?;
    fn each_slot(slots: &mut [u64], f: impl Fn(usize, &mut u64) + Sync) {
        slots
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                for (r, slot) in out.iter_mut().enumerate() {
                    f(c * CHUNK + r, slot);
                }
            })
    }
    each_slot(&mut slots, |i, slot| {
        if col.is_valid(i) {
            *slot = value_hash(col.value(i));
        }
    });
    // Numbered and counted in record order.
    let mut number: HashMap<u64, u32, foldhash::fast::FixedState> = HashMap::default();
    let mut count: Vec<u64> = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        if col.is_null(i) {
            continue;
        }
        let next = count.len() as u32;
        let k = *number.entry(*slot).or_insert(next);
        if k == next {
            count.push(0);
        }
        count[k as usize] += 1;
        *slot = u64::from(k);
    }
    drop(number);
    let total = count.iter().sum::<u64>().max(1) as f64;
    let by_number: Vec<f64> = count.iter().map(|&c| weight(c as f64 / total)).collect();
    each_slot(&mut slots, |i, slot| {
        let w = match col.is_valid(i) {
            true => by_number.get(*slot as usize).copied().unwrap_or(0.0),
            false => 0.0,
        };
        *slot = w.to_bits();
    });
    // The weights' bits, read as weights (the same buffer: no copy).
    let len = slots.len();
    Ok(arrow_buffer::ScalarBuffer::new(
        slots.into_buffer().into_inner(),
        0,
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_weights_agree_with_counting_each_value() {
        let values = [
            Some("王伟"),
            None,
            Some("李娜"),
            Some("王伟"),
            Some("欧阳翠花"),
            None,
            Some("王伟"),
            Some("李娜"),
        ];
        let col: StringArray = values.iter().copied().collect();
        let weight = |u: f64| -u.log2();
        let own = exact_weights_in(&col, weight, None, None).expect("weights");
        let present = values.iter().flatten().count() as f64;
        let expected: Vec<f64> = values
            .iter()
            .map(|v| match v {
                Some(v) => {
                    weight(values.iter().filter(|w| **w == Some(*v)).count() as f64 / present)
                }
                None => 0.0,
            })
            .collect();
        assert_eq!(own.to_vec(), expected);
        // Counted elsewhere (by value hash): the same weights.
        let counted =
            exact_weights_in(&col, weight, Some(&Counts::of_column(&col)), None).expect("weights");
        assert_eq!(counted.to_vec(), expected);
        assert!(own[4] > own[2] && own[2] > own[0] && own[0] > 0.0);
    }
}
