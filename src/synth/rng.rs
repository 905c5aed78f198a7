//! A small seeded PRNG (SplitMix64). Every entity and record gets its own stream keyed by
//! `(seed, purpose, index)`, so output never depends on thread scheduling.

/// Purposes: one stream per kind of decision, so adding draws to one does not shift another.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Stream {
    Person = 1,
    Relation = 2,
    Moved = 3,
    NewPhone = 4,
    Enterprise = 5,
    LegalRep = 6,
    Select = 7,
    Record = 8,
    Order = 9,
    Dedup = 10,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of `(seed, stream, a, b)`, used as a seed or a sort key.
pub(crate) fn key(seed: u64, stream: Stream, a: u64, b: u64) -> u64 {
    let h = mix(seed ^ mix(stream as u64 ^ GOLDEN));
    let h = mix(h ^ a.wrapping_mul(GOLDEN));
    mix(h ^ b.wrapping_add(GOLDEN).rotate_left(17))
}

#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: Stream, a: u64, b: u64) -> Self {
        Rng(key(seed, stream, a, b))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below 2^-32 for our `n`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as usize) as u32
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A table of items with integer weights, sampled by binary search on cumulative weights.
pub(crate) struct Weighted<T: 'static> {
    items: &'static [(T, u32)],
    cumulative: Vec<u64>,
}

impl<T> Weighted<T> {
    pub(crate) fn new(items: &'static [(T, u32)]) -> Self {
        let cumulative = items
            .iter()
            .scan(0u64, |acc, (_, w)| {
                *acc += u64::from(*w);
                Some(*acc)
            })
            .collect();
        Weighted { items, cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> &'static T {
        &self.items[self.sample_index(rng)].0
    }

    /// Index of a sampled item (`items` MUST be non-empty).
    pub(crate) fn sample_index(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let x = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.items.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::new(7, Stream::Person, 1, 0).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut r1 = Rng::new(7, Stream::Person, 1, 0);
        let mut r2 = Rng::new(7, Stream::Person, 2, 0);
        let mut r3 = Rng::new(7, Stream::Relation, 1, 0);
        let x = r1.next_u64();
        assert_ne!(x, r2.next_u64());
        assert_ne!(x, r3.next_u64());
    }

    #[test]
    fn below_and_chance_are_roughly_uniform() {
        let mut r = Rng::new(1, Stream::Record, 0, 0);
        let mut hist = [0usize; 10];
        let mut hits = 0;
        for _ in 0..100_000 {
            hist[r.below(10)] += 1;
            hits += usize::from(r.chance(0.25));
        }
        assert!(
            hist.iter().all(|&h| (9_000..11_000).contains(&h)),
            "{hist:?}"
        );
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }

    #[test]
    fn weighted_follows_weights() {
        static ITEMS: [(char, u32); 3] = [('a', 1), ('b', 0), ('c', 3)];
        let w = Weighted::new(&ITEMS);
        let mut r = Rng::new(3, Stream::Person, 0, 0);
        let mut n = [0usize; 3];
        for _ in 0..40_000 {
            let c = *w.sample(&mut r);
            n[(c as u8 - b'a') as usize] += 1;
        }
        assert_eq!(n[1], 0);
        assert!((9_000..11_000).contains(&n[0]), "{n:?}");
    }
}
