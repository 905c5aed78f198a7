//! String similarity on Unicode code points (never bytes): Jaro-Winkler, Levenshtein and
//! optimal-string-alignment Damerau distance. Short strings are decoded into a stack buffer,
//! so the hot path does not allocate.

/// Chars of a string, on the stack when short.
pub struct Chars {
    buf: [char; 48],
    len: usize,
    heap: Vec<char>,
}

impl Chars {
    pub fn new(s: &str) -> Self {
        let mut c = Chars {
            buf: ['\0'; 48],
            len: 0,
            heap: Vec::new(),
        };
        for ch in s.chars() {
            if c.len < 48 {
                c.buf[c.len] = ch;
                c.len += 1;
            } else {
                if c.heap.is_empty() {
                    c.heap.extend_from_slice(&c.buf);
                }
                c.heap.push(ch);
            }
        }
        c
    }

    pub fn as_slice(&self) -> &[char] {
        if self.heap.is_empty() {
            &self.buf[..self.len]
        } else {
            &self.heap
        }
    }
}

/// Jaro-Winkler similarity (prefix scale 0.1, prefix up to 4) of two char slices.
pub fn jaro_winkler(a: &[char], b: &[char]) -> f64 {
    let j = jaro(a, b);
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    j + prefix as f64 * 0.1 * (1.0 - j)
}

/// Jaro similarity of two char slices.
pub fn jaro(a: &[char], b: &[char]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let window = (b.len() / 2).saturating_sub(1);
    // Match flags of the longer string as a bit set (strings here are short).
    let mut b_used = vec![false; b.len()];
    let mut a_match: Vec<char> = Vec::with_capacity(a.len());
    for (i, &ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_used[j] && b[j] == ca {
                b_used[j] = true;
                a_match.push(ca);
                break;
            }
        }
    }
    let m = a_match.len();
    if m == 0 {
        return 0.0;
    }
    let b_match = b.iter().zip(&b_used).filter(|(_, u)| **u).map(|(c, _)| c);
    let transpositions = a_match.iter().zip(b_match).filter(|(x, y)| x != y).count() / 2;
    let m = m as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0
}

/// Levenshtein distance of two char slices.
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    if a.is_empty() || b.is_empty() {
        return a.len().max(b.len());
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Damerau distance (optimal string alignment: adjacent transpositions count one).
pub fn damerau(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return n.max(m);
    }
    let w = m + 1;
    let mut d = vec![0usize; (n + 1) * w];
    for i in 0..=n {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(m + 1) {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[n * w + m]
}

/// True when two strings are within one edit (substitution, insertion, deletion or adjacent
/// transposition) of each other; linear time.
pub fn within_one_edit(a: &[char], b: &[char]) -> bool {
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match b.len() - a.len() {
        0 => {
            let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).take(3).collect();
            match diff.as_slice() {
                [] | [_] => true,
                [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
                _ => false,
            }
        }
        1 => {
            let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            a[p..] == b[p + 1..]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn unicode_code_points_not_bytes() {
        assert_eq!(levenshtein(&c("张伟"), &c("张玮")), 1);
        assert_eq!(damerau(&c("欧阳翠花"), &c("欧阳花翠")), 1);
        assert!(within_one_edit(&c("张伟"), &c("张玮")));
        assert!(within_one_edit(&c("张小伟"), &c("张伟")));
        assert!(!within_one_edit(&c("张小伟"), &c("李小明")));
    }

    #[test]
    fn jaro_winkler_known_values() {
        let v = jaro_winkler(&c("MARTHA"), &c("MARHTA"));
        assert!((v - 0.9611).abs() < 1e-3, "{v}");
        let v = jaro_winkler(&c("DIXON"), &c("DICKSONX"));
        assert!((v - 0.8133).abs() < 1e-3, "{v}");
        assert_eq!(jaro_winkler(&c("abc"), &c("abc")), 1.0);
    }

    #[test]
    fn symmetric() {
        for (a, b) in [("王伟", "汪伟"), ("smith", "smyth"), ("北京市", "北京")] {
            let (a, b) = (c(a), c(b));
            assert_eq!(jaro_winkler(&a, &b), jaro_winkler(&b, &a));
            assert_eq!(damerau(&a, &b), damerau(&b, &a));
            assert_eq!(levenshtein(&a, &b), levenshtein(&b, &a));
        }
    }

    #[test]
    fn long_strings_use_the_heap() {
        let s: String = "长".repeat(60);
        assert_eq!(Chars::new(&s).as_slice().len(), 60);
    }
}
