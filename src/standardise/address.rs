//! Addresses to comparable text: folded, no spaces, administrative suffixes 省/市 dropped,
//! Chinese numerals before a unit written as digits (`三号` -> `3号`), and
//! `3栋2单元501室` written `3-2-501`.

const UNITS: [char; 9] = ['号', '栋', '幢', '单', '楼', '层', '室', '弄', '巷'];

fn digit(c: char) -> Option<u32> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

fn is_num(c: char) -> bool {
    digit(c).is_some() || c == '十' || c == '百'
}

/// Value of a Chinese numeral such as `三`, `十二`, `二十五`, `一百零三`, `五〇一`; `None`
/// when it is not one (or too large to matter).
fn numeral_value(s: &[char]) -> Option<u32> {
    if s.iter().all(|&c| digit(c).is_some()) {
        return s
            .iter()
            .try_fold(0u32, |acc, &c| acc.checked_mul(10)?.checked_add(digit(c)?));
    }
    let (mut total, mut cur) = (0u32, 0u32);
    for &c in s {
        match c {
            '十' => {
                total = total.checked_add(cur.max(1) * 10)?;
                cur = 0;
            }
            '百' => {
                total = total.checked_add(cur.max(1) * 100)?;
                cur = 0;
            }
            _ => cur = digit(c)?,
        }
    }
    total.checked_add(cur)
}

/// Standardised address text, in one pass over the characters (spaces, 省 and 市 skipped).
pub fn standardise(folded: &str) -> Option<String> {
    let mut out = String::with_capacity(folded.len());
    standardise_into(folded, &mut out).then_some(out)
}

/// What the rules make of a character of an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Copied as it is.
    Plain,
    /// Left out: whitespace, 省, 市.
    Skip,
    /// A Chinese numeral.
    Numeral,
    /// 号, 单, 栋, 幢, 室: rewritten depending on what follows.
    Unit,
}

fn class_of(c: char) -> Class {
    if c.is_whitespace() || c == '省' || c == '市' {
        Class::Skip
    } else if is_num(c) {
        Class::Numeral
    } else if matches!(c, '号' | '单' | '栋' | '幢' | '室') {
        Class::Unit
    } else {
        Class::Plain
    }
}

/// First code point of the table of classes: U+3000 to U+9FFF (CJK punctuation to the
/// unified ideographs) are three UTF-8 bytes led by 0xE3 to 0xE9.
const TABLE_FROM: u32 = 0x3000;

/// [`class_of`] for every character from [`TABLE_FROM`] to U+9FFF, made once from it.
fn class_table() -> &'static [Class] {
    static TABLE: std::sync::OnceLock<Vec<Class>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (TABLE_FROM..=0x9FFF)
            .map(|u| char::from_u32(u).map_or(Class::Plain, class_of))
            .collect()
    })
}

/// The character at byte `at` of `s`, its length in bytes and its class: ASCII and the
/// three-byte characters of the table are decoded by hand, others by the standard library.
#[inline]
fn char_at(s: &str, table: &[Class], at: usize) -> Option<(char, usize, Class)> {
    let b = s.as_bytes();
    let lead = *b.get(at)?;
    if lead < 0x80 {
        let c = char::from(lead);
        let class = if lead.is_ascii_whitespace() || lead == 0x0b {
            Class::Skip
        } else {
            Class::Plain
        };
        return Some((c, 1, class));
    }
    if (0xE3..=0xE9).contains(&lead)
        && let (Some(&x), Some(&y)) = (b.get(at + 1), b.get(at + 2))
    {
        let u = (u32::from(lead) & 0x0F) << 12 | (u32::from(x) & 0x3F) << 6 | (u32::from(y) & 0x3F);
        if let (Some(c), Some(&class)) = (
            char::from_u32(u),
            table.get(u.wrapping_sub(TABLE_FROM) as usize),
        ) {
            return Some((c, 3, class));
        }
    }
    let c = s.get(at..)?.chars().next()?;
    Some((c, c.len_utf8(), class_of(c)))
}

/// [`standardise`], appended to `out` (empty); false when nothing is left.
pub fn standardise_into(folded: &str, out: &mut String) -> bool {
    /// Runs of numerals up to this long are read on the stack.
    const RUN: usize = 24;
    let table = class_table();
    // The next character the rules see at or after byte `at` (skipped ones passed over).
    let seen_from = |mut at: usize| -> Option<(char, usize, Class, usize)> {
        loop {
            let (c, len, class) = char_at(folded, table, at)?;
            if class != Class::Skip {
                return Some((c, len, class, at));
            }
            at += len;
        }
    };
    // Plain characters are copied a stretch at a time: `pending` is a span of `folded` read
    // but not yet copied.
    let mut pending = 0..0;
    let flush = |pending: &mut std::ops::Range<usize>, out: &mut String| {
        if let Some(text) = folded.get(pending.clone()) {
            out.push_str(text);
        }
        *pending = 0..0;
    };
    let (mut stack, mut heap) = (['\0'; RUN], Vec::new());
    let mut at = 0;
    while let Some((c, len, class)) = char_at(folded, table, at) {
        match class {
            Class::Skip => at += len,
            Class::Plain => {
                if pending.is_empty() || pending.end != at {
                    flush(&mut pending, out);
                    pending = at..at;
                }
                at += len;
                pending.end = at;
            }
            Class::Numeral => {
                flush(&mut pending, out);
                stack[0] = c;
                let mut n = 1;
                at += len;
                while let Some((d, dlen, Class::Numeral, dat)) = seen_from(at) {
                    if n < RUN {
                        stack[n] = d;
                    } else {
                        if n == RUN {
                            heap.clear();
                            heap.extend_from_slice(&stack);
                        }
                        heap.push(d);
                    }
                    n += 1;
                    at = dat + dlen;
                }
                let run = if n <= RUN { &stack[..n] } else { &heap[..] };
                match (seen_from(at), numeral_value(run)) {
                    (Some((u, ..)), Some(v)) if UNITS.contains(&u) => {
                        use std::fmt::Write;
                        let _ = write!(out, "{v}");
                    }
                    _ => out.extend(run),
                }
            }
            Class::Unit => {
                flush(&mut pending, out);
                at += len;
                let next = seen_from(at);
                // 3栋2单元501室, 3幢, 3号楼 -> 3-2-501
                match (c, next.map(|n| n.0)) {
                    ('号', Some('楼')) | ('单', Some('元')) => {
                        out.push('-');
                        if let Some((_, nlen, _, nat)) = next {
                            at = nat + nlen;
                        }
                    }
                    ('栋' | '幢', _) => out.push('-'),
                    ('室', None) => {}
                    _ => out.push(c),
                }
            }
        }
    }
    flush(&mut pending, out);
    !out.is_empty()
}

/// Bigrams of the short side counted on the stack by [`dice`]; longer texts are sorted.
const MAX: usize = 64;
/// Slots of [`dice`]'s table: at most half full.
const SLOTS: usize = 2 * MAX;

/// The slot of bigram `code` in `table` (open addressing; an entry is `(code + 1) << 16 |
/// count`, 0 when empty): the one holding it, else the empty one where it goes.
fn slot_for(table: &mut [u64; SLOTS], code: u32) -> &mut u64 {
    let key = u64::from(code) + 1;
    let mut at = (code.wrapping_mul(0x9E37_79B1) >> 25) as usize;
    loop {
        let i = at % SLOTS;
        if table[i] == 0 || table[i] >> 16 == key {
            return &mut table[i];
        }
        at += 1;
    }
}

/// Character-bigram Dice similarity of two standardised addresses: 2 × the bigrams they
/// share (as multisets) / all their bigrams.
///
/// Addresses of one person mostly differ in a few characters: the bigrams inside their common
/// prefix and inside their common suffix are shared and counted without looking them up
/// (`min(x + a, x + b) = x + min(a, b)` for every bigram's counts), and only the middles that
/// differ, with the bigrams that join them to the prefix and suffix, are matched bigram by
/// bigram. Same figure as over all bigrams (tested against the sorted lists).
pub fn dice(a: &str, b: &str) -> f64 {
    let (p, s) = shared_ends(a, b);
    let (kp, ks) = (chars_in(&a[..p]), chars_in(&a[a.len() - s..]));
    // The middles reach one character into the prefix and one into the suffix, so that the
    // bigrams joining them stay with the middle.
    let back = a[..p].chars().next_back().map_or(0, char::len_utf8);
    let on = a[a.len() - s..].chars().next().map_or(0, char::len_utf8);
    let (ma, mb) = (
        &a[p - back..a.len() - s + on],
        &b[p - back..b.len() - s + on],
    );
    let (common, ca, cb) = common_bigrams(ma, mb);
    // Characters of each text: prefix, suffix and middle, less the two the middle shares.
    let shared_chars = usize::from(kp > 0) + usize::from(ks > 0);
    let na = (kp + ks + ca).saturating_sub(shared_chars + 1);
    let nb = (kp + ks + cb).saturating_sub(shared_chars + 1);
    if na == 0 || nb == 0 {
        return if a == b { 1.0 } else { 0.0 };
    }
    let common = kp.saturating_sub(1) + ks.saturating_sub(1) + common;
    2.0 * common as f64 / (na + nb) as f64
}

/// The characters of a text (its bytes that start one), counted inline: the texts here are
/// short, and a call per count cost as much as the rest of [`dice`].
fn chars_in(s: &str) -> usize {
    s.bytes().filter(|&b| (b as i8) >= -0x40).count()
}

/// The bytes of the longest common prefix of `a` and `b`, and of their longest common suffix
/// after it (both whole characters).
fn shared_ends(a: &str, b: &str) -> (usize, usize) {
    // Common bytes end on a character boundary in both texts: the equal bytes before it are
    // whole characters of each.
    let mut p = equal_run(a.as_bytes(), b.as_bytes(), Ends::Front);
    while !a.is_char_boundary(p) {
        p -= 1;
    }
    let (ra, rb) = (&a[p..], &b[p..]);
    let mut s = equal_run(ra.as_bytes(), rb.as_bytes(), Ends::Back);
    while !ra.is_char_boundary(ra.len() - s) {
        s -= 1;
    }
    (p, s)
}

/// Which end of two texts [`equal_run`] starts from.
#[derive(Clone, Copy, PartialEq)]
enum Ends {
    Front,
    Back,
}

/// How many bytes `a` and `b` have in common from one end, compared eight at a time (a byte at
/// a time was a third of [`dice`]).
fn equal_run(a: &[u8], b: &[u8], from: Ends) -> usize {
    let n = a.len().min(b.len());
    let word = |s: &[u8], at: usize| {
        let at = match from {
            Ends::Front => at,
            Ends::Back => s.len() - at - 8,
        };
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    let mut i = 0;
    while i + 8 <= n {
        let (Some(x), Some(y)) = (word(a, i), word(b, i)) else {
            break;
        };
        let differ = x ^ y;
        if differ != 0 {
            // Little-endian: the front's first byte is the lowest, the back's last the highest.
            let same = match from {
                Ends::Front => differ.trailing_zeros(),
                Ends::Back => differ.leading_zeros(),
            };
            return i + same as usize / 8;
        }
        i += 8;
    }
    let byte = |s: &[u8], at: usize| match from {
        Ends::Front => s[at],
        Ends::Back => s[s.len() - 1 - at],
    };
    while i < n && byte(a, i) == byte(b, i) {
        i += 1;
    }
    i
}

/// The bigrams `a` and `b` share, as multisets, and the characters of each.
fn common_bigrams(a: &str, b: &str) -> (usize, usize, usize) {
    // Short middles (a character or two changed): every pair of bigrams compared, each of
    // `b`'s used once.
    const FEW: usize = 8;
    let mut codes = [0u32; MAX];
    let (mut nb, mut cb) = (0usize, 0usize);
    let mut prev = None;
    for c in b.chars() {
        let c = u32::from(c);
        cb += 1;
        if let Some(p) = prev {
            match codes.get_mut(nb) {
                Some(slot) => *slot = bigram_code(p, c),
                None => {
                    let common = common_count(&bigrams(a), &bigrams(b));
                    return (common, chars_in(a), chars_in(b));
                }
            }
            nb += 1;
        }
        prev = Some(c);
    }
    let codes = &codes[..nb];
    let (mut common, mut ca, mut prev) = (0usize, 0usize, None);
    if nb <= FEW {
        let mut used = 0u32;
        for c in a.chars() {
            let c = u32::from(c);
            ca += 1;
            if let Some(p) = prev {
                let code = bigram_code(p, c);
                if let Some(k) = (0..nb).find(|&k| used & (1 << k) == 0 && codes[k] == code) {
                    used |= 1 << k;
                    common += 1;
                }
            }
            prev = Some(c);
        }
        return (common, ca, cb);
    }
    // Longer ones: `b`'s bigrams counted in a small table on the stack and `a`'s looked up in
    // it, no sorting.
    let mut table = [0u64; SLOTS];
    for &code in codes {
        let e = slot_for(&mut table, code);
        *e = if *e == 0 {
            (u64::from(code) + 1) << 16 | 1
        } else {
            *e + 1
        };
    }
    for c in a.chars() {
        let c = u32::from(c);
        ca += 1;
        if let Some(p) = prev {
            let e = slot_for(&mut table, bigram_code(p, c));
            if *e & 0xFFFF > 0 {
                *e -= 1;
                common += 1;
            }
        }
        prev = Some(c);
    }
    (common, ca, cb)
}

fn bigram_code(p: u32, c: u32) -> u32 {
    if p < 0x1_0000 && c < 0x1_0000 {
        (p << 16) | c
    } else {
        0xFFFF_0000 | (p.wrapping_mul(0x9E37_79B1) ^ c) & 0xFFFF
    }
}

/// The character bigrams of a text as sorted codes: two characters of the Basic Multilingual
/// Plane (all common Han) packed exactly into 32 bits, others hashed into the codes above.
pub fn bigrams(s: &str) -> Vec<u32> {
    let mut out = Vec::with_capacity(s.len() / 3 + 1);
    let mut prev: Option<u32> = None;
    for c in s.chars() {
        let c = u32::from(c);
        if let Some(p) = prev {
            out.push(bigram_code(p, c));
        }
        prev = Some(c);
    }
    out.sort_unstable();
    out
}

/// Dice similarity of two sorted bigram lists (see [`bigrams`]); `equal` when the texts are.
pub fn dice_of_bigrams(ga: &[u32], gb: &[u32], equal: bool) -> f64 {
    common_ratio(ga, gb, equal)
}

/// 2 × common / total over two sorted multisets.
fn common_ratio(ga: &[u32], gb: &[u32], equal: bool) -> f64 {
    if ga.is_empty() || gb.is_empty() {
        return if equal { 1.0 } else { 0.0 };
    }
    2.0 * common_count(ga, gb) as f64 / (ga.len() + gb.len()) as f64
}

/// The values two sorted multisets share.
fn common_count(ga: &[u32], gb: &[u32]) -> usize {
    // Branch-free merge: which side advances is data, not a jump to mispredict.
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < ga.len() && j < gb.len() {
        let (x, y) = (ga[i], gb[j]);
        common += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_runs_agree_with_a_byte_at_a_time() {
        let texts = [
            "",
            "a",
            "浙江杭州西湖区文三路478号",
            "浙江杭州西湖区文三路479号",
            "浙江杭州上城区文三路478号",
            "江苏南京鼓楼区中山路1号3栋2单元501室",
            "江苏南京鼓楼区中山路1号3栋2单元502室",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqr",
            "xbcdefghijklmnopq",
        ];
        for a in texts {
            for b in texts {
                let (x, y) = (a.as_bytes(), b.as_bytes());
                let front = x.iter().zip(y).take_while(|(p, q)| p == q).count();
                let back = x
                    .iter()
                    .rev()
                    .zip(y.iter().rev())
                    .take_while(|(p, q)| p == q)
                    .count();
                assert_eq!(equal_run(x, y, Ends::Front), front, "{a} / {b}");
                assert_eq!(equal_run(x, y, Ends::Back), back, "{a} / {b}");
            }
        }
    }

    /// The straightforward form of [`standardise`] (characters collected first, then walked
    /// by index), which the one-pass form must agree with.
    fn reference(folded: &str) -> Option<String> {
        let chars: Vec<char> = folded
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '省' && *c != '市')
            .collect();
        let is_num = |c: char| digit(c).is_some() || c == '十' || c == '百';
        let mut out = String::with_capacity(folded.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if is_num(c) {
                let start = i;
                while i < chars.len() && is_num(chars[i]) {
                    i += 1;
                }
                let run = &chars[start..i];
                match (chars.get(i), numeral_value(run)) {
                    (Some(u), Some(v)) if UNITS.contains(u) => {
                        use std::fmt::Write;
                        let _ = write!(out, "{v}");
                    }
                    _ => out.extend(run),
                }
                continue;
            }
            // 3栋2单元501室, 3幢, 3号楼 -> 3-2-501
            match (c, next) {
                ('号', Some('楼')) | ('单', Some('元')) => {
                    out.push('-');
                    i += 2;
                    continue;
                }
                ('栋' | '幢', _) => out.push('-'),
                ('室', None) => {}
                _ => out.push(c),
            }
            i += 1;
        }
        (!out.is_empty()).then_some(out)
    }

    #[test]
    fn one_pass_agrees_with_the_reference() {
        let parts = [
            "北京",
            "市",
            "省",
            "朝阳区",
            "三",
            "十",
            "百",
            "零",
            "〇",
            "二十五",
            "号",
            "楼",
            "栋",
            "幢",
            "单",
            "元",
            "室",
            "弄",
            "巷",
            "层",
            " ",
            "3",
            "-",
            "a",
            "五〇一",
            "九九九九九九九九九九九九",
            "路",
            "\u{3000}",
            "\t\u{b}",
            "\u{a0}",
            "𠀀",
        ];
        // Every sequence of up to four parts, and some long ones.
        let mut texts: Vec<String> = vec![String::new()];
        for _ in 0..4 {
            let next: Vec<String> = texts
                .iter()
                .flat_map(|t| parts.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(next);
            texts.sort();
            texts.dedup();
        }
        texts.push("一".repeat(30) + "号");
        texts.push("三十".repeat(20) + "室");
        for t in &texts {
            assert_eq!(standardise(t), reference(t), "{t}");
        }
    }

    #[test]
    fn characters_are_classed_alike_by_hand_and_by_the_library() {
        let table = class_table();
        for c in (0u32..0x11_0000).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(
                char_at(&s, table, 0),
                Some((c, c.len_utf8(), class_of(c))),
                "{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn variants_agree() {
        let a = standardise("北京市朝阳区建国路三号3栋2单元501室");
        let b = standardise("北京朝阳区建国路3号3-2-501");
        assert_eq!(a, b);
        assert_eq!(a.as_deref(), Some("北京朝阳区建国路3号3-2-501"));
        assert_eq!(
            standardise("幸福路一百零三号").as_deref(),
            Some("幸福路103号")
        );
    }

    #[test]
    fn dice_by_table_equals_dice_by_sorted_lists() {
        let sorted = |a: &str, b: &str| dice_of_bigrams(&bigrams(a), &bigrams(b), a == b);
        let parts = [
            "北京",
            "朝阳",
            "区",
            "3",
            "-",
            "号",
            "北京北京",
            "a",
            "𠀀",
            "路",
            "1",
            "12",
        ];
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        for _ in 0..20_000 {
            let (la, lb) = (next() % 40, next() % 40);
            let a: String = (0..la).map(|_| parts[next() % parts.len()]).collect();
            let b: String = (0..lb).map(|_| parts[next() % parts.len()]).collect();
            assert_eq!(dice(&a, &b), sorted(&a, &b), "{a} / {b}");
            assert_eq!(dice(&a, &a), sorted(&a, &a), "{a}");
        }
        // One address and a copy with a few characters changed, added or dropped: long common
        // prefixes and suffixes, middles of every length, texts past the table's size.
        let base: Vec<&str> = (0..60).map(|_| parts[next() % parts.len()]).collect();
        for _ in 0..20_000 {
            let la = next() % base.len();
            let a: String = base[..la].concat();
            let mut b: Vec<&str> = base[..la].to_vec();
            for _ in 0..next() % 4 {
                let at = next() % (b.len() + 1);
                match next() % 3 {
                    0 => b.insert(at, parts[next() % parts.len()]),
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ if at < b.len() => b[at] = parts[next() % parts.len()],
                    _ => {}
                }
            }
            let b = b.concat();
            assert_eq!(dice(&a, &b), sorted(&a, &b), "{a} / {b}");
            assert_eq!(dice(&b, &a), sorted(&b, &a), "{b} / {a}");
        }
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("", "b"),
            ("a", "a"),
            ("ab", "ab"),
            ("ab", "ba"),
        ] {
            assert_eq!(dice(a, b), sorted(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn dice_is_symmetric_and_one_on_equal() {
        assert_eq!(dice("北京朝阳", "北京朝阳"), 1.0);
        assert_eq!(dice("北京朝阳", "上海浦东"), 0.0);
        assert_eq!(
            dice("北京朝阳区", "北京朝阳"),
            dice("北京朝阳", "北京朝阳区")
        );
    }
}
