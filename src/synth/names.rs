//! Person name pools (surname frequencies like China's, weighted given names) and the
//! character tables that name noise draws on: homophones, similar shapes, traditional forms.

use std::sync::LazyLock;

use super::rng::{Rng, Weighted};
use crate::standardise::name::{char_pinyin, surname_pinyin};

/// Surnames with relative weights (the tail stands for the many rarer surnames): the top ten
/// cover about 41 % of people, as in China.
static SURNAMES: [(&str, u32); 173] = [
    ("王", 710),
    ("李", 700),
    ("张", 680),
    ("刘", 540),
    ("陈", 460),
    ("杨", 310),
    ("黄", 240),
    ("赵", 230),
    ("吴", 200),
    ("周", 190),
    ("徐", 195),
    ("孙", 195),
    ("马", 169),
    ("朱", 169),
    ("胡", 156),
    ("郭", 156),
    ("何", 156),
    ("林", 143),
    ("高", 143),
    ("罗", 143),
    ("郑", 130),
    ("梁", 130),
    ("谢", 104),
    ("宋", 104),
    ("唐", 104),
    ("许", 91),
    ("韩", 91),
    ("邓", 91),
    ("冯", 91),
    ("曹", 91),
    ("彭", 78),
    ("曾", 78),
    ("肖", 78),
    ("田", 78),
    ("董", 78),
    ("潘", 65),
    ("袁", 65),
    ("蔡", 65),
    ("蒋", 65),
    ("余", 65),
    ("于", 65),
    ("杜", 65),
    ("叶", 65),
    ("程", 65),
    ("魏", 52),
    ("苏", 52),
    ("吕", 52),
    ("丁", 52),
    ("任", 52),
    ("卢", 52),
    ("姚", 52),
    ("沈", 52),
    ("钟", 52),
    ("姜", 52),
    ("崔", 52),
    ("谭", 39),
    ("陆", 39),
    ("范", 39),
    ("汪", 39),
    ("廖", 39),
    ("石", 39),
    ("金", 39),
    ("韦", 39),
    ("贾", 39),
    ("夏", 39),
    ("付", 39),
    ("方", 39),
    ("邹", 39),
    ("熊", 26),
    ("白", 26),
    ("孟", 26),
    ("秦", 26),
    ("邱", 26),
    ("侯", 26),
    ("江", 26),
    ("尹", 26),
    ("薛", 26),
    ("闫", 26),
    ("段", 26),
    ("雷", 26),
    ("龙", 26),
    ("黎", 26),
    ("史", 26),
    ("陶", 26),
    ("贺", 26),
    ("毛", 26),
    ("郝", 26),
    ("顾", 26),
    ("龚", 26),
    ("邵", 26),
    ("万", 26),
    ("覃", 26),
    ("武", 26),
    ("钱", 26),
    ("戴", 26),
    ("严", 26),
    ("莫", 13),
    ("孔", 13),
    ("向", 13),
    ("常", 13),
    ("汤", 13),
    ("康", 13),
    ("易", 13),
    ("乔", 13),
    ("赖", 13),
    ("文", 13),
    ("施", 13),
    ("洪", 13),
    ("辛", 13),
    ("柯", 13),
    ("庄", 13),
    ("章", 13),
    ("单", 10),
    ("解", 8),
    ("仇", 6),
    ("区", 4),
    ("查", 6),
    ("朴", 6),
    ("盖", 5),
    ("牛", 13),
    ("葛", 13),
    ("岳", 13),
    ("齐", 13),
    ("梅", 10),
    ("聂", 13),
    ("凌", 10),
    ("殷", 10),
    ("饶", 10),
    ("阎", 6),
    ("左", 10),
    ("季", 10),
    ("翟", 8),
    ("祝", 10),
    ("纪", 10),
    ("包", 10),
    ("管", 6),
    ("华", 6),
    ("宁", 6),
    ("詹", 6),
    ("关", 10),
    ("伍", 10),
    ("蓝", 6),
    ("路", 6),
    ("毕", 6),
    ("安", 6),
    ("卜", 4),
    ("申", 6),
    ("温", 10),
    ("柳", 6),
    ("骆", 6),
    ("戚", 4),
    ("邢", 6),
    ("滕", 4),
    ("倪", 6),
    ("鲁", 6),
    ("甘", 6),
    ("晏", 4),
    ("柴", 4),
    ("童", 6),
    ("欧阳", 6),
    ("司马", 3),
    ("诸葛", 1),
    ("上官", 3),
    ("尉迟", 1),
    ("万俟", 1),
    ("东方", 1),
    ("慕容", 1),
    ("皇甫", 1),
    ("令狐", 1),
    ("夏侯", 1),
    ("欧", 6),
    ("傅", 13),
    ("萧", 6),
];

/// Era a given name belongs to: used to make 建国 old and 子轩 young.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Any,
    Old,
    Young,
}

/// Common whole given names with weights: these make 王伟 / 李娜 / 张伟 shared by many.
static MALE_GIVEN: [((&str, Era), u32); 36] = [
    (("伟", Era::Any), 300),
    (("强", Era::Any), 120),
    (("磊", Era::Any), 120),
    (("军", Era::Any), 110),
    (("勇", Era::Any), 110),
    (("杰", Era::Any), 100),
    (("涛", Era::Any), 90),
    (("斌", Era::Any), 80),
    (("超", Era::Any), 80),
    (("明", Era::Any), 80),
    (("刚", Era::Any), 70),
    (("平", Era::Any), 70),
    (("辉", Era::Any), 70),
    (("鹏", Era::Any), 60),
    (("华", Era::Any), 60),
    (("飞", Era::Any), 60),
    (("鑫", Era::Any), 50),
    (("波", Era::Any), 50),
    (("宇", Era::Any), 50),
    (("浩", Era::Any), 50),
    (("建华", Era::Old), 60),
    (("建国", Era::Old), 60),
    (("建军", Era::Old), 50),
    (("国强", Era::Old), 40),
    (("志强", Era::Any), 50),
    (("俊杰", Era::Any), 40),
    (("文博", Era::Young), 30),
    (("子轩", Era::Young), 50),
    (("浩然", Era::Young), 40),
    (("宇轩", Era::Young), 40),
    (("梓轩", Era::Young), 30),
    (("志明", Era::Any), 30),
    (("海涛", Era::Any), 30),
    (("晓东", Era::Any), 30),
    (("永强", Era::Old), 30),
    (("德华", Era::Old), 20),
];

static FEMALE_GIVEN: [((&str, Era), u32); 36] = [
    (("芳", Era::Any), 200),
    (("娜", Era::Any), 200),
    (("敏", Era::Any), 150),
    (("静", Era::Any), 150),
    (("丽", Era::Any), 120),
    (("艳", Era::Any), 100),
    (("娟", Era::Any), 90),
    (("霞", Era::Any), 80),
    (("婷", Era::Any), 80),
    (("雪", Era::Any), 60),
    (("倩", Era::Any), 60),
    (("颖", Era::Any), 50),
    (("琳", Era::Any), 50),
    (("丹", Era::Any), 50),
    (("萍", Era::Any), 50),
    (("红", Era::Any), 60),
    (("玲", Era::Any), 50),
    (("燕", Era::Any), 60),
    (("慧", Era::Any), 40),
    (("秀英", Era::Old), 120),
    (("桂英", Era::Old), 80),
    (("玉兰", Era::Old), 60),
    (("秀兰", Era::Old), 60),
    (("玉梅", Era::Old), 40),
    (("桂兰", Era::Old), 40),
    (("海燕", Era::Any), 40),
    (("欣怡", Era::Young), 50),
    (("梓涵", Era::Young), 50),
    (("诗涵", Era::Young), 40),
    (("子涵", Era::Young), 40),
    (("雨涵", Era::Young), 40),
    (("晓燕", Era::Any), 30),
    (("丽娟", Era::Any), 30),
    (("雅琪", Era::Young), 30),
    (("思雨", Era::Young), 30),
    (("美玲", Era::Any), 20),
];

/// Characters for freely composed given names.
const MALE_CHARS: &str = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩俊峰建国志文海林东亮龙成晨博凯轩泽阳鸿毅伦江春雷新德振庆永兵彬帆锋";
const FEMALE_CHARS: &str = "芳娜敏静丽艳娟霞秀英婷雪倩颖琳欣怡涵梅丹萍红玲燕慧莉琴兰佳晶月彤璐瑶晓蕾薇洁云凤桂华玉珍梦悦雅思诗茜";

/// Simplified -> traditional for the characters of the pools that have a distinct form.
/// Surname-only simplifications that stay unchanged as surnames (于 余 范 姜 岳) are left out.
const TRADITIONAL: &[(char, char)] = &[
    ('伟', '偉'),
    ('强', '強'),
    ('军', '軍'),
    ('杰', '傑'),
    ('涛', '濤'),
    ('辉', '輝'),
    ('鹏', '鵬'),
    ('华', '華'),
    ('飞', '飛'),
    ('国', '國'),
    ('东', '東'),
    ('龙', '龍'),
    ('凯', '凱'),
    ('轩', '軒'),
    ('泽', '澤'),
    ('阳', '陽'),
    ('鸿', '鴻'),
    ('伦', '倫'),
    ('庆', '慶'),
    ('锋', '鋒'),
    ('静', '靜'),
    ('丽', '麗'),
    ('艳', '艷'),
    ('颖', '穎'),
    ('红', '紅'),
    ('兰', '蘭'),
    ('瑶', '瑤'),
    ('晓', '曉'),
    ('洁', '潔'),
    ('云', '雲'),
    ('凤', '鳳'),
    ('梦', '夢'),
    ('诗', '詩'),
    ('张', '張'),
    ('刘', '劉'),
    ('陈', '陳'),
    ('杨', '楊'),
    ('赵', '趙'),
    ('吴', '吳'),
    ('孙', '孫'),
    ('马', '馬'),
    ('罗', '羅'),
    ('郑', '鄭'),
    ('谢', '謝'),
    ('许', '許'),
    ('韩', '韓'),
    ('邓', '鄧'),
    ('冯', '馮'),
    ('蒋', '蔣'),
    ('叶', '葉'),
    ('苏', '蘇'),
    ('吕', '呂'),
    ('卢', '盧'),
    ('钟', '鍾'),
    ('谭', '譚'),
    ('陆', '陸'),
    ('韦', '韋'),
    ('贾', '賈'),
    ('邹', '鄒'),
    ('闫', '閆'),
    ('贺', '賀'),
    ('顾', '顧'),
    ('龚', '龔'),
    ('万', '萬'),
    ('钱', '錢'),
    ('严', '嚴'),
    ('汤', '湯'),
    ('乔', '喬'),
    ('赖', '賴'),
    ('庄', '莊'),
    ('欧', '歐'),
    ('单', '單'),
    ('区', '區'),
    ('盖', '蓋'),
    ('齐', '齊'),
    ('聂', '聶'),
    ('饶', '饒'),
    ('阎', '閻'),
    ('纪', '紀'),
    ('宁', '寧'),
    ('关', '關'),
    ('蓝', '藍'),
    ('毕', '畢'),
    ('温', '溫'),
    ('骆', '駱'),
    ('鲁', '魯'),
    ('诸', '諸'),
    ('迟', '遲'),
    ('萧', '蕭'),
    ('丰', '豐'),
];

/// Homophone pairs (same toneless pinyin): common confusions when a name is entered by ear.
const HOMOPHONES: &[(char, char)] = &[
    ('张', '章'),
    ('王', '汪'),
    ('伟', '炜'),
    ('伟', '玮'),
    ('丽', '莉'),
    ('丽', '俐'),
    ('静', '靖'),
    ('静', '婧'),
    ('敏', '珉'),
    ('军', '均'),
    ('杰', '洁'),
    ('杰', '捷'),
    ('涛', '滔'),
    ('斌', '彬'),
    ('明', '铭'),
    ('刚', '钢'),
    ('平', '萍'),
    ('辉', '晖'),
    ('鹏', '朋'),
    ('华', '桦'),
    ('飞', '菲'),
    ('鑫', '欣'),
    ('鑫', '新'),
    ('宇', '雨'),
    ('宇', '玉'),
    ('浩', '皓'),
    ('峰', '锋'),
    ('峰', '丰'),
    ('建', '健'),
    ('志', '智'),
    ('文', '雯'),
    ('林', '琳'),
    ('东', '冬'),
    ('龙', '隆'),
    ('成', '程'),
    ('晨', '辰'),
    ('凯', '恺'),
    ('轩', '萱'),
    ('阳', '杨'),
    ('鸿', '宏'),
    ('毅', '艺'),
    ('雷', '蕾'),
    ('新', '馨'),
    ('永', '勇'),
    ('兵', '冰'),
    ('帆', '凡'),
    ('芳', '方'),
    ('艳', '燕'),
    ('娟', '鹃'),
    ('英', '莹'),
    ('婷', '亭'),
    ('倩', '茜'),
    ('颖', '影'),
    ('怡', '宜'),
    ('涵', '晗'),
    ('梅', '玫'),
    ('红', '虹'),
    ('玲', '铃'),
    ('慧', '惠'),
    ('琴', '勤'),
    ('兰', '岚'),
    ('佳', '嘉'),
    ('晶', '菁'),
    ('彤', '桐'),
    ('璐', '露'),
    ('瑶', '遥'),
    ('晓', '筱'),
    ('薇', '微'),
    ('云', '芸'),
    ('桂', '贵'),
    ('珍', '真'),
    ('悦', '月'),
    ('雅', '亚'),
    ('思', '斯'),
    ('诗', '师'),
    ('刘', '柳'),
    ('陈', '晨'),
    ('周', '舟'),
    ('徐', '许'),
    ('何', '和'),
    ('郑', '正'),
    ('韩', '寒'),
    ('冯', '封'),
    ('肖', '萧'),
    ('袁', '元'),
    ('杜', '度'),
    ('叶', '业'),
    ('魏', '卫'),
    ('姚', '尧'),
    ('钟', '忠'),
    ('姜', '江'),
    ('陆', '路'),
    ('付', '傅'),
    ('秦', '琴'),
    ('邱', '秋'),
    ('侯', '候'),
    ('娜', '那'),
    ('霞', '侠'),
    ('秀', '绣'),
    ('丹', '单'),
    ('雪', '薛'),
    ('梦', '孟'),
];

/// Similar-shape pairs: confusions when a name is copied from a handwritten form.
const SHAPES: &[(char, char)] = &[
    ('己', '已'),
    ('已', '巳'),
    ('未', '末'),
    ('王', '玉'),
    ('土', '士'),
    ('人', '入'),
    ('大', '太'),
    ('日', '曰'),
    ('晴', '睛'),
    ('侯', '候'),
    ('微', '徽'),
    ('戊', '戌'),
    ('杨', '扬'),
    ('田', '由'),
    ('申', '甲'),
    ('白', '自'),
    ('丁', '于'),
    ('方', '万'),
    ('冯', '马'),
    ('陈', '阵'),
    ('李', '季'),
    ('宋', '宗'),
    ('石', '右'),
    ('明', '朋'),
    ('晶', '品'),
    ('雪', '雷'),
    ('娟', '涓'),
    ('婷', '停'),
    ('林', '材'),
    ('辉', '挥'),
    ('鹏', '鸥'),
    ('彬', '杉'),
    ('倩', '情'),
    ('玲', '怜'),
    ('琳', '淋'),
    ('波', '被'),
];

static SURNAME_TABLE: LazyLock<Weighted<&str>> = LazyLock::new(|| Weighted::new(&SURNAMES));
static MALE_POOL: LazyLock<Vec<char>> = LazyLock::new(|| MALE_CHARS.chars().collect());
static FEMALE_POOL: LazyLock<Vec<char>> = LazyLock::new(|| FEMALE_CHARS.chars().collect());

/// Both directions of a pair table, sorted by the first character for binary search.
fn both_ways(table: &[(char, char)]) -> Vec<(char, char)> {
    let mut v: Vec<(char, char)> = table.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
    v.sort_unstable();
    v.dedup();
    v
}

static HOMOPHONE_INDEX: LazyLock<Vec<(char, char)>> = LazyLock::new(|| both_ways(HOMOPHONES));
static SHAPE_INDEX: LazyLock<Vec<(char, char)>> = LazyLock::new(|| both_ways(SHAPES));
static TRADITIONAL_INDEX: LazyLock<Vec<(char, char)>> = LazyLock::new(|| {
    let mut v = TRADITIONAL.to_vec();
    v.sort_unstable();
    v
});
static MALE_TABLE: LazyLock<Weighted<(&str, Era)>> = LazyLock::new(|| Weighted::new(&MALE_GIVEN));
static FEMALE_TABLE: LazyLock<Weighted<(&str, Era)>> =
    LazyLock::new(|| Weighted::new(&FEMALE_GIVEN));

/// Index of a surname in the table (persons store a `u16`).
pub(crate) fn sample_surname(rng: &mut Rng) -> u16 {
    SURNAME_TABLE.sample_index(rng) as u16
}

pub(crate) fn surname(idx: u16) -> &'static str {
    SURNAMES[usize::from(idx)].0
}

/// A given name of one or two characters for someone of this gender born in `year`.
pub(crate) fn sample_given(rng: &mut Rng, male: bool, year: u32) -> String {
    if rng.chance(0.55) {
        let table = if male { &*MALE_TABLE } else { &*FEMALE_TABLE };
        for _ in 0..4 {
            let (name, era) = *table.sample(rng);
            let fits = match era {
                Era::Any => true,
                Era::Old => year < 1975,
                Era::Young => year >= 1995,
            };
            if fits {
                return name.to_string();
            }
        }
    }
    let pool: &[char] = if male { &MALE_POOL } else { &FEMALE_POOL };
    let n = if rng.chance(0.3) { 1 } else { 2 };
    (0..n).map(|_| *rng.pick(pool)).collect()
}

/// Which table a character substitution draws on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Confusion {
    Homophone,
    Shape,
}

fn confusion_index(kind: Confusion) -> &'static [(char, char)] {
    match kind {
        Confusion::Homophone => &HOMOPHONE_INDEX,
        Confusion::Shape => &SHAPE_INDEX,
    }
}

/// The partners of `c` in a sorted both-ways index.
fn partners(index: &[(char, char)], c: char) -> &[(char, char)] {
    let lo = index.partition_point(|&(a, _)| a < c);
    let hi = index.partition_point(|&(a, _)| a <= c);
    &index[lo..hi]
}

/// True when some character of `chars` has a partner in the table.
pub(crate) fn can_confuse(chars: &[char], kind: Confusion) -> bool {
    let index = confusion_index(kind);
    chars.iter().any(|&c| !partners(index, c).is_empty())
}

/// Replaces one character that has a partner in the table; returns false if none has.
pub(crate) fn confuse(chars: &mut [char], kind: Confusion, rng: &mut Rng) -> bool {
    let index = confusion_index(kind);
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| !partners(index, chars[i]).is_empty())
        .collect();
    if positions.is_empty() {
        return false;
    }
    let i = *rng.pick(&positions);
    chars[i] = rng.pick(partners(index, chars[i])).1;
    true
}

/// Traditional form of a simplified character (itself when it has none in the table).
pub(crate) fn traditional(c: char) -> char {
    let index: &[(char, char)] = &TRADITIONAL_INDEX;
    index
        .binary_search_by_key(&c, |&(s, _)| s)
        .map_or(c, |i| index[i].1)
}

fn capitalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
    out
}

/// The name in pinyin, in one of the styles departmental systems use:
/// `ZHANG Wei`, `Wei Zhang`, `zhangwei`, `Zhang Wei`. `None` if a character has no pinyin.
pub(crate) fn pinyin_name(surname: &str, given: &str, style: usize) -> Option<String> {
    let sur = surname_pinyin(surname)?;
    let giv: String = given
        .chars()
        .map(char_pinyin)
        .collect::<Option<Vec<_>>>()?
        .concat();
    Some(match style % 4 {
        0 => format!("{} {}", sur.to_uppercase(), capitalise(&giv)),
        1 => format!("{} {}", capitalise(&giv), capitalise(&sur)),
        2 => format!("{sur}{giv}"),
        _ => format!("{} {}", capitalise(&sur), capitalise(&giv)),
    })
}

#[cfg(test)]
pub(crate) fn all_pool_chars() -> Vec<char> {
    let mut v: Vec<char> = SURNAMES.iter().flat_map(|(s, _)| s.chars()).collect();
    v.extend(MALE_GIVEN.iter().flat_map(|((s, _), _)| s.chars()));
    v.extend(FEMALE_GIVEN.iter().flat_map(|((s, _), _)| s.chars()));
    v.extend(MALE_CHARS.chars().chain(FEMALE_CHARS.chars()));
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::super::rng::Stream;
    use super::*;
    use ferrous_opencc::{OpenCC, config::BuiltinConfig};

    #[test]
    fn top_ten_surnames_cover_about_forty_percent() {
        let total: u32 = SURNAMES.iter().map(|(_, w)| w).sum();
        let top: u32 = SURNAMES[..10].iter().map(|(_, w)| w).sum();
        let share = f64::from(top) / f64::from(total);
        assert!((0.38..0.46).contains(&share), "{share}");
        assert!(SURNAMES.len() >= 150);
        let mut names: Vec<&str> = SURNAMES.iter().map(|(s, _)| *s).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SURNAMES.len(), "duplicate surname");
    }

    #[test]
    fn traditional_table_round_trips_through_opencc() {
        let cc = OpenCC::from_config(BuiltinConfig::T2s).unwrap();
        for &(s, t) in TRADITIONAL {
            assert_eq!(cc.convert(&t.to_string()), s.to_string(), "{s} -> {t}");
        }
    }

    #[test]
    fn every_pool_character_has_pinyin() {
        for c in all_pool_chars() {
            assert!(char_pinyin(c).is_some(), "{c}");
        }
        for (s, _) in SURNAMES {
            assert!(surname_pinyin(s).is_some(), "{s}");
        }
    }

    #[test]
    fn homophones_share_pinyin() {
        for &(a, b) in HOMOPHONES {
            assert_eq!(char_pinyin(a), char_pinyin(b), "{a} {b}");
        }
        assert!(HOMOPHONES.len() >= 60);
    }

    #[test]
    fn pinyin_styles() {
        assert_eq!(pinyin_name("张", "伟", 0).as_deref(), Some("ZHANG Wei"));
        assert_eq!(pinyin_name("张", "伟", 1).as_deref(), Some("Wei Zhang"));
        assert_eq!(pinyin_name("张", "伟", 2).as_deref(), Some("zhangwei"));
        assert_eq!(
            pinyin_name("曾", "秀英", 3).as_deref(),
            Some("Zeng Xiuying")
        );
    }

    #[test]
    fn common_names_are_common() {
        let mut rng = Rng::new(1, Stream::Person, 0, 0);
        let n = 20_000;
        let wei = (0..n)
            .filter(|_| sample_given(&mut rng, true, 1980) == "伟")
            .count();
        assert!(wei > n / 40, "{wei}");
    }
}
