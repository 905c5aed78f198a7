//! Enterprise names reduced to a comparable core: legal form dropped (有限公司 / 有限责任公司 /
//! 股份有限公司), brackets unified, and the region taken out wherever it stands (leading
//! `北京市海淀区`, bracketed `(北京)`), so that the variants of one body share a core. A branch
//! (`分公司`) keeps its branch part: it is a different entity from its parent.

use super::name::simplify;

/// Provinces and province-level cities, short forms.
const PROVINCES: [&str; 34] = [
    "北京",
    "天津",
    "上海",
    "重庆",
    "河北",
    "山西",
    "辽宁",
    "吉林",
    "黑龙江",
    "江苏",
    "浙江",
    "安徽",
    "福建",
    "江西",
    "山东",
    "河南",
    "湖北",
    "湖南",
    "广东",
    "海南",
    "四川",
    "贵州",
    "云南",
    "陕西",
    "甘肃",
    "青海",
    "台湾",
    "内蒙古",
    "广西",
    "西藏",
    "宁夏",
    "新疆",
    "香港",
    "澳门",
];

/// Prefecture-level cities that appear without their 市 suffix in names.
const CITIES: [&str; 60] = [
    "广州",
    "深圳",
    "杭州",
    "南京",
    "苏州",
    "成都",
    "武汉",
    "西安",
    "长沙",
    "郑州",
    "济南",
    "青岛",
    "沈阳",
    "大连",
    "哈尔滨",
    "长春",
    "石家庄",
    "太原",
    "合肥",
    "福州",
    "厦门",
    "南昌",
    "南宁",
    "昆明",
    "贵阳",
    "兰州",
    "西宁",
    "银川",
    "乌鲁木齐",
    "呼和浩特",
    "拉萨",
    "海口",
    "宁波",
    "温州",
    "无锡",
    "常州",
    "佛山",
    "东莞",
    "珠海",
    "烟台",
    "潍坊",
    "唐山",
    "保定",
    "洛阳",
    "徐州",
    "南通",
    "绍兴",
    "嘉兴",
    "金华",
    "台州",
    "泉州",
    "漳州",
    "惠州",
    "中山",
    "江门",
    "汕头",
    "扬州",
    "镇江",
    "芜湖",
    "桂林",
];

const REGION_SUFFIXES: [&str; 8] = [
    "特别行政区",
    "自治区",
    "自治州",
    "省",
    "市",
    "区",
    "县",
    "旗",
];

const LEGAL_FORMS: [&str; 7] = [
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "集团公司",
    "股份公司",
    "合伙企业",
    "公司",
];

/// A standardised enterprise name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnterpriseName {
    /// Folded, simplified, ASCII brackets, no spaces.
    pub name: String,
    /// Trade name + industry (+ branch part), without region and legal form.
    pub core: String,
    /// The most specific region named (a city rather than its province), short form.
    pub region: Option<String>,
}

/// Matches a region at the start of `s`: returns (short name, bytes consumed).
fn region_prefix(s: &str) -> Option<(String, usize)> {
    let known = PROVINCES
        .iter()
        .chain(CITIES.iter())
        .filter(|r| s.starts_with(**r))
        .max_by_key(|r| r.len());
    if let Some(r) = known {
        let mut used = r.len();
        if let Some(suf) = REGION_SUFFIXES.iter().find(|x| s[used..].starts_with(**x)) {
            used += suf.len();
        }
        return Some((r.to_string(), used));
    }
    // Unknown county or district: 2-4 Han characters and a suffix (海淀区, 余杭区, 长兴县).
    let chars: Vec<(usize, char)> = s.char_indices().take(6).collect();
    for n in (2..=4).rev() {
        if chars.len() <= n {
            continue;
        }
        let end = chars[n].0;
        let rest = &s[end..];
        for suf in ["区", "县"] {
            if rest.starts_with(suf) && !rest[suf.len()..].is_empty() {
                return Some((s[..end].to_string(), end + suf.len()));
            }
        }
    }
    None
}

/// Standardises a folded (NFKC) enterprise name.
pub fn standardise(folded: &str) -> Option<EnterpriseName> {
    let name: String = simplify(folded)
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '【' | '〔' | '[' | '{' => '(',
            '】' | '〕' | ']' | '}' => ')',
            c => c,
        })
        .collect();
    if name.is_empty() {
        return None;
    }
    let mut regions: Vec<String> = Vec::new();
    // Bracketed parts: a region is taken out, anything else stays as plain text.
    let mut body = String::with_capacity(name.len());
    let mut rest = name.as_str();
    while let Some(open) = rest.find('(') {
        body.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(')') else {
            rest = after;
            break;
        };
        let inner = &after[..close];
        match region_prefix(inner) {
            Some((r, used)) if used == inner.len() => regions.push(r),
            _ => body.push_str(inner),
        }
        rest = &after[close + 1..];
    }
    body.push_str(rest);
    // Leading regions: up to three levels (浙江省杭州市西湖区).
    let mut core = body.as_str();
    let mut lead = Vec::new();
    for _ in 0..3 {
        match region_prefix(core) {
            Some((r, used)) if used < core.len() => {
                lead.push(r);
                core = &core[used..];
            }
            _ => break,
        }
    }
    regions.splice(0..0, lead);
    let (main, branch) = match core.rfind("分公司") {
        Some(p) if p > 0 => {
            let before = &core[..p];
            // The branch's own name follows the parent's legal form.
            let cut = LEGAL_FORMS
                .iter()
                .filter_map(|f| before.rfind(f).map(|i| (i, i + f.len())))
                .max_by_key(|&(i, j)| (j, std::cmp::Reverse(i)));
            match cut {
                Some((i, j)) => (&core[..i], Some(format!("{}分公司", &before[j..]))),
                None => (before, Some("分公司".to_string())),
            }
        }
        _ => (core, None),
    };
    let mut main = main.to_string();
    for f in LEGAL_FORMS {
        if let Some(stripped) = main.strip_suffix(f) {
            main = stripped.to_string();
            break;
        }
    }
    let mut core = main;
    if let Some(b) = branch {
        core.push('|');
        core.push_str(&b);
    }
    let region = match regions.as_slice() {
        [first, second, ..] if PROVINCES.contains(&first.as_str()) => Some(second.clone()),
        [first, ..] => Some(first.clone()),
        [] => None,
    };
    Some(EnterpriseName { name, core, region })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standardise::text::fold;

    fn core(s: &str) -> (String, Option<String>) {
        let e = standardise(&fold(s)).expect("a name");
        (e.core, e.region)
    }

    #[test]
    fn variants_share_a_core() {
        let a = core("杭州市西湖区恒信科技有限公司");
        assert_eq!(a.0, "恒信科技");
        for v in [
            "恒信科技（杭州）有限公司",
            "恒信科技(杭州)有限责任公司",
            "浙江省杭州市恒信科技有限公司",
            "杭州恒信科技有限公司",
        ] {
            assert_eq!(core(v).0, a.0, "{v}");
        }
        assert_eq!(core("恒信科技(杭州)有限公司").1.as_deref(), Some("杭州"));
        assert_eq!(
            core("浙江省杭州市恒信科技有限公司").1.as_deref(),
            Some("杭州")
        );
    }

    #[test]
    fn a_branch_is_not_its_parent() {
        let (c, _) = core("杭州恒信科技有限公司北京分公司");
        assert_eq!(c, "恒信科技|北京分公司");
        assert_ne!(c, core("杭州恒信科技有限公司").0);
    }
}
