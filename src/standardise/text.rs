//! Text folding shared by every field: NFKC (full-width letters, digits and punctuation to
//! their ordinary forms), trimming, whitespace collapsing, and placeholder values that mean
//! "unknown".

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// NFKC, trimmed, runs of whitespace collapsed to one space. Text that is already folded
/// (the usual case) is borrowed, not copied.
pub fn fold(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| nfkc_stable(c) && !c.is_whitespace()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(fold_owned(s))
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
    fn placeholders_are_null() {
        for p in ["不详", "无", "000000", "NULL", "", "  ", "0000-00-00"] {
            assert_eq!(clean(Some(p)), None, "{p}");
        }
        assert_eq!(clean(Some("王伟")).as_deref(), Some("王伟"));
    }
}
