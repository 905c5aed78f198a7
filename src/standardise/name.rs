//! Person names: NFKC, middle-dot variants unified, traditional characters simplified, names
//! written in pinyin recognised, and a pinyin key that homophones (张/章, 伟/炜) share.
//!
//! The pinyin key is the surname's pinyin and the given name's pinyin, sorted and joined by
//! a space: `张伟`, `章炜`, `ZHANG Wei`, `Wei Zhang` and `zhangwei` all give `wei zhang`.

use std::sync::OnceLock;

use pinyin::ToPinyin;

/// Compound surnames: the first two characters of a name that are one surname.
const COMPOUND_SURNAMES: [&str; 24] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延", "万俟", "澹台", "公冶",
];

/// Surname readings that differ from the character's first reading.
const SURNAME_READINGS: [(&str, &str); 21] = [
    ("曾", "zeng"),
    ("单", "shan"),
    ("解", "xie"),
    ("仇", "qiu"),
    ("区", "ou"),
    ("查", "zha"),
    ("朴", "piao"),
    ("盖", "ge"),
    ("尉迟", "yuchi"),
    ("万俟", "moqi"),
    ("乐", "yue"),
    ("缪", "miao"),
    ("翟", "zhai"),
    ("覃", "qin"),
    ("种", "chong"),
    ("秘", "bi"),
    ("员", "yun"),
    ("召", "shao"),
    ("繁", "po"),
    ("长孙", "zhangsun"),
    ("重", "chong"),
];

/// Plain lower-case pinyin of a character (its first reading), `None` for non-Han.
pub fn char_pinyin(c: char) -> Option<&'static str> {
    c.to_pinyin().map(|p| p.plain())
}

/// Pinyin of a surname, using the surname readings where they differ.
pub fn surname_pinyin(surname: &str) -> Option<String> {
    if let Some((_, r)) = SURNAME_READINGS.iter().find(|(s, _)| *s == surname) {
        return Some((*r).to_string());
    }
    surname.chars().map(char_pinyin).collect::<Option<String>>()
}

/// Single-character traditional -> simplified pairs, sorted: OpenCC's T2S conversion of every
/// character of the CJK block that converts to one other character. Generated, and checked
/// against OpenCC, by the test `t2s_table_matches_opencc` (`YIKU_REGENERATE=1` rewrites it).
static T2S: &[(char, char)] = T2S_PAIRS;
const T2S_PAIRS: &[(char, char)] = include!("t2s_table.in");

/// The CJK block, U+4E00 to U+9FFF, where [`T2S`]'s characters are.
const CJK: std::ops::RangeInclusive<u32> = 0x4E00..=0x9FFF;

/// One bit per character of [`CJK`]: whether [`T2S`] has it. Most characters of a name are
/// already simplified, and this answers for them without a search (made at compile time).
static HAS_T2S: [u64; 328] = {
    let mut bits = [0u64; 328];
    let mut k = 0;
    while k < T2S_PAIRS.len() {
        let c = T2S_PAIRS[k].0 as u32;
        if c >= *CJK.start() && c <= *CJK.end() {
            let at = c - *CJK.start();
            bits[(at / 64) as usize] |= 1 << (at % 64);
        }
        k += 1;
    }
    bits
};

fn to_simplified(c: char) -> char {
    let code = u32::from(c);
    if code < *CJK.start() {
        return c;
    }
    if CJK.contains(&code) {
        let at = code - *CJK.start();
        let word = HAS_T2S.get((at / 64) as usize).copied().unwrap_or(0);
        if word & (1 << (at % 64)) == 0 {
            return c;
        }
    }
    T2S.binary_search_by_key(&c, |&(t, _)| t)
        .map_or(c, |i| T2S[i].1)
}

/// Traditional characters of a text replaced by simplified ones.
pub fn simplify(s: &str) -> String {
    s.chars().map(to_simplified).collect()
}

fn is_han(c: char) -> bool {
    ('\u{3400}'..='\u{9FFF}').contains(&c) || ('\u{20000}'..='\u{2FFFF}').contains(&c)
}

/// A standardised person name and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName {
    /// Han names: simplified, no spaces, one middle dot `·`. Pinyin names: lower-case words.
    pub name: String,
    /// Sorted `surname given` pinyin key shared by homophones and pinyin spellings.
    pub pinyin: Option<String>,
    /// Surname pinyin.
    pub surname: Option<String>,
}

/// Standardises a folded (NFKC) person name.
pub fn standardise(folded: &str) -> Option<PersonName> {
    let dots = |c: char| matches!(c, '·' | '•' | '・' | '‧' | '⋅' | '∙' | '.' | '。' | '･');
    if folded.chars().any(is_han) {
        let mut name = String::with_capacity(folded.len());
        for c in folded.chars().filter(|c| !c.is_whitespace()) {
            name.push(if dots(c) { '·' } else { to_simplified(c) });
        }
        let (pinyin, surname) = han_key(&name);
        return Some(PersonName {
            name,
            pinyin,
            surname,
        });
    }
    let words: Vec<&str> = folded
        .split(|c: char| c.is_whitespace() || c == ',' || c == '-' || dots(c))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty()
        || !words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
    {
        // Neither Han nor pinyin: keep the folded text as it is.
        let name = folded.to_lowercase();
        return (!name.is_empty()).then_some(PersonName {
            name,
            pinyin: None,
            surname: None,
        });
    }
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let (surname, given) = split_latin(&words, &lower);
    Some(PersonName {
        name: lower.join(" "),
        pinyin: Some(sorted_key(&surname, &given)),
        surname: Some(surname),
    })
}

fn sorted_key(surname: &str, given: &str) -> String {
    if given.is_empty() {
        return surname.to_string();
    }
    if surname <= given {
        format!("{surname} {given}")
    } else {
        format!("{given} {surname}")
    }
}

/// [`standardise`] of a Han name written into reused buffers instead of new strings: the name
/// into `name`, the pinyin key into `key`, the surname pinyin into `surname` (`given` is
/// scratch space). Returns whether the key and the surname were set; `None` (buffers left
/// in any state) when the name has no Han character, which [`standardise`] then handles.
pub(crate) fn standardise_han_into(
    folded: &str,
    name: &mut String,
    key: &mut String,
    surname: &mut String,
    given: &mut String,
) -> Option<(bool, bool)> {
    let dots = |c: char| matches!(c, '·' | '•' | '・' | '‧' | '⋅' | '∙' | '.' | '。' | '･');
    if !folded.chars().any(is_han) {
        return None;
    }
    name.clear();
    for c in folded.chars().filter(|c| !c.is_whitespace()) {
        name.push(if dots(c) { '·' } else { to_simplified(c) });
    }
    key.clear();
    surname.clear();
    if name.contains('·') {
        // Minority names: the parts in order, as one key.
        for c in name.chars().filter(|&c| c != '·') {
            match char_pinyin(c) {
                Some(p) => key.push_str(p),
                None => return Some((false, false)),
            }
        }
        return Some((true, false));
    }
    let split = surname_split(name);
    match SURNAME_READINGS.iter().find(|(s, _)| *s == &name[..split]) {
        Some((_, r)) => surname.push_str(r),
        None => {
            for c in name[..split].chars() {
                match char_pinyin(c) {
                    Some(p) => surname.push_str(p),
                    None => return Some((false, false)),
                }
            }
        }
    }
    given.clear();
    for c in name[split..].chars() {
        match char_pinyin(c) {
            Some(p) => given.push_str(p),
            None => return Some((false, true)),
        }
    }
    // As `sorted_key`.
    let (a, b) = if given.is_empty() || *surname <= *given {
        (surname.as_str(), given.as_str())
    } else {
        (given.as_str(), surname.as_str())
    };
    key.push_str(a);
    if !b.is_empty() {
        key.push(' ');
        key.push_str(b);
    }
    Some((true, true))
}

/// Where a Han name's surname ends: after the first character, or the first two when they
/// are a compound surname and something follows.
fn surname_split(name: &str) -> usize {
    let mut ends = name.char_indices().map(|(i, c)| i + c.len_utf8());
    let (first, second, more) = (ends.next(), ends.next(), ends.next().is_some());
    match (first, second) {
        (Some(_), Some(two)) if more && COMPOUND_SURNAMES.iter().any(|c| name.starts_with(c)) => {
            two
        }
        (Some(one), _) => one,
        (None, _) => 0,
    }
}

/// Key of a Han name: surname (compound surnames and surname readings respected) + given.
fn han_key(name: &str) -> (Option<String>, Option<String>) {
    if name.contains('·') {
        // Minority names: the parts in order, as one key.
        let key: Option<String> = name
            .chars()
            .filter(|&c| c != '·')
            .map(char_pinyin)
            .collect();
        return (key, None);
    }
    let split = surname_split(name);
    let Some(sp) = surname_pinyin(&name[..split]) else {
        return (None, None);
    };
    let mut given = String::with_capacity(4 * (name.len() - split));
    for c in name[split..].chars() {
        match char_pinyin(c) {
            Some(p) => given.push_str(p),
            None => return (None, Some(sp)),
        }
    }
    (Some(sorted_key(&sp, &given)), Some(sp))
}

/// Pinyin surnames, for telling which word of a Latin name is the surname.
fn is_surname_pinyin(w: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        crate::standardise::name::COMMON_SURNAMES
            .iter()
            .chain(COMPOUND_SURNAMES.iter())
            .filter_map(|s| surname_pinyin(s))
            .collect()
    })
    .contains(w)
}

/// Splits a pinyin name into (surname, given). An all-capitals word is the surname
/// (`ZHANG Wei`); otherwise the first word if it is a surname, else the last (`Wei Zhang`); a
/// single word is split after its longest surname prefix (`zhangwei`).
fn split_latin(words: &[&str], lower: &[String]) -> (String, String) {
    if lower.len() == 1 {
        let w = &lower[0];
        for cut in (1..w.len()).rev() {
            if w.is_char_boundary(cut) && is_surname_pinyin(&w[..cut]) {
                return (w[..cut].to_string(), w[cut..].to_string());
            }
        }
        return (w.clone(), String::new());
    }
    let caps: Vec<usize> = (0..words.len())
        .filter(|&i| words[i].len() > 1 && words[i].chars().all(|c| c.is_ascii_uppercase()))
        .collect();
    let s = if caps.len() == 1 {
        caps[0]
    } else if is_surname_pinyin(&lower[0]) {
        0
    } else {
        lower.len() - 1
    };
    let given: String = (0..lower.len())
        .filter(|&i| i != s)
        .map(|i| lower[i].as_str())
        .collect();
    (lower[s].clone(), given)
}

/// The most common surnames (by population share), used to recognise pinyin surnames.
pub const COMMON_SURNAMES: [&str; 100] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏",
    "韦", "付", "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛", "闫", "段", "雷", "侯",
    "龙", "史", "陶", "黎", "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "覃", "武", "戴",
    "莫", "孔", "向", "汤",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitset_answers_as_the_search_does() {
        let searched = |c: char| {
            T2S.binary_search_by_key(&c, |&(t, _)| t)
                .map_or(c, |i| T2S[i].1)
        };
        for code in 0x3000..=0xA000u32 {
            if let Some(c) = char::from_u32(code) {
                assert_eq!(to_simplified(c), searched(c), "U+{code:04X}");
            }
        }
        assert_eq!(to_simplified('國'), '国');
        assert_eq!(to_simplified('国'), '国');
    }

    fn key(s: &str) -> Option<String> {
        standardise(&crate::standardise::text::fold(s)).and_then(|n| n.pinyin)
    }

    #[test]
    fn homophones_and_pinyin_spellings_share_a_key() {
        let k = key("张伟");
        assert_eq!(k.as_deref(), Some("wei zhang"));
        for v in [
            "章伟",
            "张炜",
            "ZHANG Wei",
            "Wei Zhang",
            "zhangwei",
            "張偉",
            "ZHANG WEI",
        ] {
            assert_eq!(key(v), k, "{v}");
        }
    }

    #[test]
    fn traditional_is_simplified_and_dots_unified() {
        assert_eq!(standardise("張偉").map(|n| n.name).as_deref(), Some("张伟"));
        let a = standardise("阿卜杜拉•买买提").map(|n| n.name);
        assert_eq!(a.as_deref(), Some("阿卜杜拉·买买提"));
    }

    /// The single-character pairs OpenCC's T2S gives over the CJK block.
    fn opencc_pairs() -> Vec<(char, char)> {
        let cc = ferrous_opencc::OpenCC::from_config(ferrous_opencc::config::BuiltinConfig::T2s)
            .expect("OpenCC T2S");
        let block: Vec<char> = (0x4E00u32..=0x9FFF).filter_map(char::from_u32).collect();
        let text: String = block.iter().flat_map(|&c| [c, '\n']).collect();
        let out = cc.convert(&text);
        block
            .iter()
            .zip(out.split('\n'))
            .filter_map(|(&t, s)| {
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) if c != t => Some((t, c)),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn t2s_table_matches_opencc() {
        let want = opencc_pairs();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/standardise/t2s_table.in");
        if std::env::var_os("YIKU_REGENERATE").is_some() {
            let body: String = want
                .iter()
                .map(|(t, s)| format!("('{t}','{s}'),"))
                .collect::<Vec<_>>()
                .chunks(8)
                .map(|c| c.join("") + "\n")
                .collect();
            std::fs::write(
                path,
                format!(
                    "// Generated by the test t2s_table_matches_opencc; do not edit.\n&[\n{body}]\n"
                ),
            )
            .expect("write table");
        }
        assert_eq!(
            T2S,
            want.as_slice(),
            "regenerate with YIKU_REGENERATE=1 cargo test t2s_table"
        );
    }

    #[test]
    fn han_names_written_in_place_equal_the_allocating_form() {
        let mut names: Vec<String> = [
            "张伟",
            "張偉",
            "欧阳翠花",
            "欧阳",
            "曾小明",
            "单",
            "长孙无忌",
            "尉迟恭",
            "阿卜杜拉•买买提",
            "阿卜杜拉·买买提·艾则孜",
            "王 小 明",
            "李A",
            "李㐀",
            "赵1",
            "张",
            "a张",
            "·张",
            "诸葛亮",
            "司马",
            "司马光明",
            "王𠀀",
            "黃曉明",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for s in COMMON_SURNAMES.iter().chain(COMPOUND_SURNAMES.iter()) {
            for g in ["", "伟", "秀英", "偉", "·买买提", "x"] {
                names.push(format!("{s}{g}"));
            }
        }
        let (mut n, mut k, mut sn, mut scratch) = Default::default();
        for name in &names {
            let want = standardise(name).expect("a name");
            let (has_key, has_surname) =
                standardise_han_into(name, &mut n, &mut k, &mut sn, &mut scratch)
                    .expect("a Han name");
            assert_eq!(n, want.name, "{name}");
            assert_eq!(has_key.then(|| k.clone()), want.pinyin, "{name}");
            assert_eq!(has_surname.then(|| sn.clone()), want.surname, "{name}");
        }
        assert_eq!(
            standardise_han_into("Wei Zhang", &mut n, &mut k, &mut sn, &mut scratch),
            None
        );
    }

    #[test]
    fn surname_readings_and_compound_surnames() {
        assert_eq!(key("曾小明").as_deref(), Some("xiaoming zeng"));
        assert_eq!(key("欧阳翠花").as_deref(), Some("cuihua ouyang"));
        assert_eq!(surname_pinyin("单").as_deref(), Some("shan"));
    }
}
