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
    if b.len() > 64 {
        return jaro_long(a, b);
    }
    let window = (b.len() / 2).saturating_sub(1);
    // Matched positions as bit sets: no allocation for strings up to 64 characters.
    let (mut a_used, mut b_used) = (0u64, 0u64);
    let mut m = 0usize;
    for (i, &ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for (j, &cb) in b.iter().enumerate().take(hi).skip(lo) {
            if b_used & (1 << j) == 0 && cb == ca {
                b_used |= 1 << j;
                a_used |= 1 << i;
                m += 1;
                break;
            }
        }
    }
    if m == 0 {
        return 0.0;
    }
    let (mut t, mut j) = (0usize, 0usize);
    for (i, &ca) in a.iter().enumerate() {
        if a_used & (1 << i) != 0 {
            while b_used & (1 << j) == 0 {
                j += 1;
            }
            if b[j] != ca {
                t += 1;
            }
            j += 1;
        }
    }
    let m = m as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - (t / 2) as f64) / m) / 3.0
}

/// Jaro for strings longer than 64 characters.
fn jaro_long(a: &[char], b: &[char]) -> f64 {
    let window = (b.len() / 2).saturating_sub(1);
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
    let t = a_match.iter().zip(b_match).filter(|(x, y)| x != y).count() / 2;
    let m = m as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - t as f64) / m) / 3.0
}

/// Levenshtein distance of two char slices.
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    edit_distance(a, b, false)
}

/// Damerau distance (optimal string alignment: adjacent transpositions count one).
pub fn damerau(a: &[char], b: &[char]) -> usize {
    edit_distance(a, b, true)
}

/// Edit distance with three rolling rows, on the stack for strings up to 63 characters.
fn edit_distance(a: &[char], b: &[char], transpose: bool) -> usize {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return n.max(m);
    }
    const MAX: usize = 64;
    let (mut s0, mut s1, mut s2) = ([0usize; MAX], [0usize; MAX], [0usize; MAX]);
    let (mut h0, mut h1, mut h2);
    let (pp, p, c): (&mut [usize], &mut [usize], &mut [usize]) = if m < MAX {
        (&mut s0[..=m], &mut s1[..=m], &mut s2[..=m])
    } else {
        h0 = vec![0; m + 1];
        h1 = vec![0; m + 1];
        h2 = vec![0; m + 1];
        (&mut h0[..], &mut h1[..], &mut h2[..])
    };
    let (mut pp, mut p, mut c) = (pp, p, c);
    for (j, v) in p.iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=n {
        c[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (p[j] + 1).min(c[j - 1] + 1).min(p[j - 1] + cost);
            if transpose && i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(pp[j - 2] + 1);
            }
            c[j] = v;
        }
        std::mem::swap(&mut pp, &mut p);
        std::mem::swap(&mut p, &mut c);
    }
    p[m]
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
        let a: Vec<char> = "ab".repeat(40).chars().collect();
        let b: Vec<char> = "ba".repeat(40).chars().collect();
        let (x, y) = (&a[..60], &b[..60]);
        assert!((jaro(x, y) - jaro_long(x, y)).abs() < 1e-12);
        assert!((jaro(&a, &b) - jaro_long(&a, &b)).abs() < 1e-12);
    }
}
