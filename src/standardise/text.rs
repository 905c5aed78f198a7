//! Text folding shared by every field: NFKC (full-width letters, digits and punctuation to
//! their ordinary forms), trimming, whitespace collapsing, and placeholder values that mean
//! "unknown".

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// NFKC, trimmed, runs of whitespace collapsed to one space. Text that is already folded
/// (the usual case) is borrowed, not copied.
pub fn fold(s: &str) -> Cow<'_, str> {
    if is_folded(s) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(fold_owned(s))
}

/// Whether `s` is made only of [`nfkc_stable`] characters and no whitespace, read byte by
/// byte: every record's every value passes here, and decoding each character cost more than
/// the rest of folding. `false` for anything unusual, which [`fold_owned`] then handles.
fn is_folded(s: &str) -> bool {
    let b = s.as_bytes();
    let byte = |i: usize| u32::from(b.get(i).copied().unwrap_or(0));
    let mut i = 0;
    while let Some(&x) = b.get(i) {
        if x < 0x80 {
            // ASCII whitespace: space, tab, line feed, vertical tab, form feed, return.
            if x == b' ' || (0x09..=0x0d).contains(&x) {
                return false;
            }
            i += 1;
        } else if (0xE3..=0xE9).contains(&x) {
            // Three bytes, U+3000 to U+9FFF: the CJK ideographs are the stable ones here.
            let c = (u32::from(x) & 0x0F) << 12 | (byte(i + 1) & 0x3F) << 6 | (byte(i + 2) & 0x3F);
            if !((0x4E00..=0x9FFF).contains(&c) || (0x3400..=0x4DBF).contains(&c)) {
                return false;
            }
            i += 3;
        } else if x == 0xC2 && byte(i + 1) == 0xB7 {
            // '·', the middle dot of transliterated names.
            i += 2;
        } else {
            return false;
        }
    }
    true
}

fn fold_owned(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_whitespace() || c == '\u{3000}' {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    };
    if s.chars().all(nfkc_stable) {
        s.chars().for_each(|c| push(c, &mut out));
    } else {
        s.nfkc().for_each(|c| push(c, &mut out));
    }
    out
}

/// Characters that NFKC leaves as they are and that make up most records: ASCII and the CJK
/// unified ideographs. Text made only of them skips normalisation.
fn nfkc_stable(c: char) -> bool {
    c.is_ascii()
        || ('\u{4E00}'..='\u{9FFF}').contains(&c)
        || ('\u{3400}'..='\u{4DBF}').contains(&c)
        || c == '·'
}

/// Values that departments write for "unknown": they become null.
pub fn is_placeholder(s: &str) -> bool {
    const WORDS: [&str; 16] = [
        "不详",
        "无",
        "未知",
        "空",
        "暂无",
        "null",
        "none",
        "n/a",
        "na",
        "nil",
        "-",
        "--",
        "/",
        "?",
        "不祥",
        "无此人",
    ];
    let t = s.trim();
    if t.is_empty() {
        return true;
    }
    // The longest word is 9 bytes.
    if t.len() <= 9 && WORDS.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        return true;
    }
    // 000000, 0000-00-00 and the like: only zeros and separators.
    t.chars()
        .all(|c| c == '0' || c == '-' || c == '/' || c == ' ')
}

/// Folds and drops placeholders: the common first step of every standardiser.
pub fn clean(s: Option<&str>) -> Option<Cow<'_, str>> {
    let f = fold(s?);
    (!is_placeholder(&f)).then_some(f)
}

/// Folded, lower-case, for free text compared as is.
pub fn text(s: Option<&str>) -> Option<String> {
    clean(s).map(|v| v.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_is_folded() {
        assert_eq!(fold("  １２３ＡＢ（北京）  "), "123AB(北京)");
        assert_eq!(fold("a \u{3000} b"), "a b");
    }

    #[test]
    fn the_byte_check_agrees_with_the_character_check() {
        let slow = |s: &str| s.chars().all(|c| nfkc_stable(c) && !c.is_whitespace());
        let samples = [
            "",
            "王伟",
            "张·三",
            "abc",
            "a b",
            "a\tb",
            "北京\u{3000}朝阳",
            "１２３",
            "㐀䶿",
            "一鿿",
            "〇",
            "ｱ",
            "é",
            "😀",
            "\u{2000}",
            "\u{a0}",
            "\u{85}",
            "(北京)",
            "䷀",
            "ー",
        ];
        for s in samples {
            assert_eq!(is_folded(s), slow(s), "{s:?}");
        }
        // Every character of the Basic Multilingual Plane, alone and between ideographs.
        for c in (0u32..0x10000).filter_map(char::from_u32) {
            for s in [c.to_string(), format!("王{c}伟")] {
                assert_eq!(is_folded(&s), slow(&s), "{:04X}", c as u32);
            }
        }
    }

    #[test]
    fn placeholders_are_null() {
        for p in ["不详", "无", "000000", "NULL", "", "  ", "0000-00-00"] {
            assert_eq!(clean(Some(p)), None, "{p}");
        }
        assert_eq!(clean(Some("王伟")).as_deref(), Some("王伟"));
    }
}
