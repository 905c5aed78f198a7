//! County-level divisions (GB/T 2260 codes with their names) and addresses built on them.

use std::fmt::Write as _;

use super::rng::Rng;

pub(crate) struct Region {
    pub code: u32,
    pub province: &'static str,
    /// `""` for the four municipalities, whose province is also the city.
    pub city: &'static str,
    pub county: &'static str,
}

const fn r(code: u32, province: &'static str, city: &'static str, county: &'static str) -> Region {
    Region {
        code,
        province,
        city,
        county,
    }
}

/// Real county-level codes across provinces. Several county names recur in different cities
/// (和平区, 鼓楼区, 城关区, 新城区) on purpose.
pub(crate) static REGIONS: [Region; 64] = [
    r(110101, "北京市", "", "东城区"),
    r(110102, "北京市", "", "西城区"),
    r(110105, "北京市", "", "朝阳区"),
    r(110106, "北京市", "", "丰台区"),
    r(110108, "北京市", "", "海淀区"),
    r(110114, "北京市", "", "昌平区"),
    r(120101, "天津市", "", "和平区"),
    r(120104, "天津市", "", "南开区"),
    r(130102, "河北省", "石家庄市", "长安区"),
    r(130181, "河北省", "石家庄市", "辛集市"),
    r(130202, "河北省", "唐山市", "路南区"),
    r(130602, "河北省", "保定市", "竞秀区"),
    r(140105, "山西省", "太原市", "小店区"),
    r(150102, "内蒙古自治区", "呼和浩特市", "新城区"),
    r(210102, "辽宁省", "沈阳市", "和平区"),
    r(210202, "辽宁省", "大连市", "中山区"),
    r(220102, "吉林省", "长春市", "南关区"),
    r(230102, "黑龙江省", "哈尔滨市", "道里区"),
    r(310101, "上海市", "", "黄浦区"),
    r(310104, "上海市", "", "徐汇区"),
    r(310105, "上海市", "", "长宁区"),
    r(310115, "上海市", "", "浦东新区"),
    r(320102, "江苏省", "南京市", "玄武区"),
    r(320205, "江苏省", "无锡市", "锡山区"),
    r(320506, "江苏省", "苏州市", "吴中区"),
    r(320581, "江苏省", "苏州市", "常熟市"),
    r(330102, "浙江省", "杭州市", "上城区"),
    r(330106, "浙江省", "杭州市", "西湖区"),
    r(330203, "浙江省", "宁波市", "海曙区"),
    r(330302, "浙江省", "温州市", "鹿城区"),
    r(330522, "浙江省", "湖州市", "长兴县"),
    r(330782, "浙江省", "金华市", "义乌市"),
    r(340102, "安徽省", "合肥市", "瑶海区"),
    r(340104, "安徽省", "合肥市", "蜀山区"),
    r(341122, "安徽省", "滁州市", "来安县"),
    r(350102, "福建省", "福州市", "鼓楼区"),
    r(350203, "福建省", "厦门市", "思明区"),
    r(350582, "福建省", "泉州市", "晋江市"),
    r(360102, "江西省", "南昌市", "东湖区"),
    r(370102, "山东省", "济南市", "历下区"),
    r(370202, "山东省", "青岛市", "市南区"),
    r(370602, "山东省", "烟台市", "芝罘区"),
    r(370781, "山东省", "潍坊市", "青州市"),
    r(410102, "河南省", "郑州市", "中原区"),
    r(410105, "河南省", "郑州市", "金水区"),
    r(410302, "河南省", "洛阳市", "老城区"),
    r(411081, "河南省", "许昌市", "禹州市"),
    r(420102, "湖北省", "武汉市", "江岸区"),
    r(420106, "湖北省", "武汉市", "武昌区"),
    r(430102, "湖南省", "长沙市", "芙蓉区"),
    r(430181, "湖南省", "长沙市", "浏阳市"),
    r(440106, "广东省", "广州市", "天河区"),
    r(440304, "广东省", "深圳市", "福田区"),
    r(440305, "广东省", "深圳市", "南山区"),
    r(450102, "广西壮族自治区", "南宁市", "兴宁区"),
    r(460105, "海南省", "海口市", "秀英区"),
    r(500103, "重庆市", "", "渝中区"),
    r(510104, "四川省", "成都市", "锦江区"),
    r(510107, "四川省", "成都市", "武侯区"),
    r(520102, "贵州省", "贵阳市", "南明区"),
    r(530102, "云南省", "昆明市", "五华区"),
    r(610113, "陕西省", "西安市", "雁塔区"),
    r(620102, "甘肃省", "兰州市", "城关区"),
    r(650102, "新疆维吾尔自治区", "乌鲁木齐市", "天山区"),
];

/// Population share per region: big cities hold more people.
pub(crate) fn sample_region(rng: &mut Rng) -> u8 {
    // Municipalities and provincial capitals twice as likely: draw twice, keep the first hit.
    let a = rng.below(REGIONS.len());
    let big = |i: usize| REGIONS[i].city.is_empty() || REGIONS[i].code % 100 < 10;
    if big(a) || rng.chance(0.5) {
        a as u8
    } else {
        rng.below(REGIONS.len()) as u8
    }
}

impl Region {
    /// `北京` for `北京市`, `浙江` for `浙江省`, `广西` for `广西壮族自治区`.
    pub(crate) fn province_short(&self) -> &'static str {
        const AUTONOMOUS: [(&str, &str); 5] = [
            ("内蒙古自治区", "内蒙古"),
            ("广西壮族自治区", "广西"),
            ("西藏自治区", "西藏"),
            ("宁夏回族自治区", "宁夏"),
            ("新疆维吾尔自治区", "新疆"),
        ];
        if let Some((_, s)) = AUTONOMOUS.iter().find(|(f, _)| *f == self.province) {
            return s;
        }
        self.province.trim_end_matches(['省', '市'])
    }

    /// The city in its short form (`杭州`), or the municipality (`北京`).
    pub(crate) fn city_short(&self) -> &'static str {
        if self.city.is_empty() {
            self.province_short()
        } else {
            self.city.trim_end_matches('市')
        }
    }

    /// `杭州市西湖区`, or `北京市海淀区` for a municipality.
    pub(crate) fn city_county(&self) -> String {
        let city = if self.city.is_empty() {
            self.province
        } else {
            self.city
        };
        format!("{city}{}", self.county)
    }
}

const ROADS: [&str; 40] = [
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "文化路",
    "和平路",
    "新华路",
    "长江路",
    "黄河路",
    "学院路",
    "胜利路",
    "朝阳路",
    "东风路",
    "青年路",
    "光明路",
    "友谊路",
    "幸福路",
    "建国路",
    "南京路",
    "北京路",
    "文三路",
    "天目山路",
    "延安路",
    "复兴路",
    "五一路",
    "滨江路",
    "公园路",
    "民主路",
    "红旗路",
    "工业路",
    "花园街",
    "府前街",
    "中心大道",
    "世纪大道",
    "金桥路",
    "丰收路",
    "育才路",
    "健康路",
    "站前路",
    "江滨路",
];

const ESTATES: [&str; 24] = [
    "阳光花园",
    "幸福里",
    "锦绣家园",
    "翠苑",
    "金色家园",
    "碧水湾",
    "华府",
    "绿城小区",
    "紫荆苑",
    "新村",
    "东方名苑",
    "怡景园",
    "滨江花园",
    "书香苑",
    "丽景湾",
    "铁路新村",
    "世纪花园",
    "枫林苑",
    "和谐家园",
    "万家小区",
    "科技大厦",
    "国际大厦",
    "创业园",
    "商务中心",
];

/// An address as components, rendered on demand (persons and enterprises alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub region: u8,
    road: u8,
    number: u16,
    estate: Option<u8>,
    /// 0 = no building / unit.
    building: u8,
    unit: u8,
    room: u16,
}

impl Address {
    pub(crate) fn sample(rng: &mut Rng, region: u8, business: bool) -> Self {
        let estate = if business {
            Some(20 + rng.below(4) as u8)
        } else if rng.chance(0.7) {
            Some(rng.below(20) as u8)
        } else {
            None
        };
        let building = if business || rng.chance(0.15) {
            0
        } else {
            rng.range(1, 30) as u8
        };
        let unit = if building == 0 {
            0
        } else {
            rng.range(1, 6) as u8
        };
        let room = (rng.range(1, 28) * 100 + rng.range(1, 8)) as u16;
        Address {
            region,
            road: rng.below(ROADS.len()) as u8,
            number: rng.range(1, 999) as u16,
            estate,
            building,
            unit,
            room,
        }
    }

    pub(crate) fn region(&self) -> &'static Region {
        &REGIONS[usize::from(self.region)]
    }

    /// The address as the household register writes it.
    pub(crate) fn render(&self) -> String {
        self.render_with(&AddressStyle::default())
    }

    pub(crate) fn render_with(&self, style: &AddressStyle) -> String {
        let reg = self.region();
        let mut s = String::with_capacity(96);
        if !style.drop_province || reg.city.is_empty() {
            s.push_str(if style.short_levels {
                reg.province_short()
            } else {
                reg.province
            });
        }
        if !reg.city.is_empty() {
            s.push_str(if style.short_levels {
                reg.city.trim_end_matches('市')
            } else {
                reg.city
            });
        }
        s.push_str(reg.county);
        s.push_str(ROADS[usize::from(self.road)]);
        if style.chinese_numerals {
            s.push_str(&chinese_number(u32::from(self.number)));
        } else {
            let _ = write!(s, "{}", self.number);
        }
        s.push('号');
        if let Some(e) = self.estate {
            s.push_str(ESTATES[usize::from(e)]);
        }
        if self.building == 0 {
            let _ = write!(s, "{}室", self.room);
        } else if style.dashed_units {
            let _ = write!(s, "{}-{}-{}", self.building, self.unit, self.room);
        } else {
            let b = if style.building_hao { "号楼" } else { "栋" };
            let room = if style.drop_room_suffix { "" } else { "室" };
            let _ = write!(
                s,
                "{}{b}{}单元{}{room}",
                self.building, self.unit, self.room
            );
        }
        s
    }
}

/// How an address deviates from the register's way of writing it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AddressStyle {
    /// `杭州市西湖区...` instead of `浙江省杭州市西湖区...`.
    pub drop_province: bool,
    /// `北京` / `浙江杭州` instead of `北京市` / `浙江省杭州市`.
    pub short_levels: bool,
    /// `一百二十八号` instead of `128号`.
    pub chinese_numerals: bool,
    /// `3-2-501` instead of `3栋2单元501室`.
    pub dashed_units: bool,
    pub building_hao: bool,
    pub drop_room_suffix: bool,
}

impl AddressStyle {
    /// At least one deviation, chosen at random.
    pub(crate) fn sample_variant(rng: &mut Rng) -> Self {
        loop {
            let s = AddressStyle {
                drop_province: rng.chance(0.35),
                short_levels: rng.chance(0.35),
                chinese_numerals: rng.chance(0.2),
                dashed_units: rng.chance(0.3),
                building_hao: rng.chance(0.2),
                drop_room_suffix: rng.chance(0.2),
            };
            if s.drop_province
                || s.short_levels
                || s.chinese_numerals
                || s.dashed_units
                || s.building_hao
                || s.drop_room_suffix
            {
                return s;
            }
        }
    }
}

/// Chinese numerals for `1..=9999` as written in addresses: `128` -> `一百二十八`.
pub(crate) fn chinese_number(n: u32) -> String {
    const DIGITS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
    const UNITS: [&str; 4] = ["千", "百", "十", ""];
    if n == 0 {
        return "零".to_string();
    }
    let digits = [n / 1000 % 10, n / 100 % 10, n / 10 % 10, n % 10];
    let first = digits.iter().position(|&d| d != 0).unwrap_or(3);
    let mut s = String::new();
    let mut pending_zero = false;
    for (i, &d) in digits.iter().enumerate().skip(first) {
        if d == 0 {
            pending_zero = true;
            continue;
        }
        if pending_zero {
            s.push('零');
            pending_zero = false;
        }
        // 十五, not 一十五, when the number starts at the tens.
        if !(i == 2 && d == 1 && i == first) {
            s.push(DIGITS[d as usize]);
        }
        s.push_str(UNITS[i]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::rng::Stream;
    use super::*;

    #[test]
    fn codes_are_unique_six_digit() {
        let mut codes: Vec<u32> = REGIONS.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), REGIONS.len());
        assert!(codes.iter().all(|c| (110000..=659999).contains(c)));
    }

    #[test]
    fn numerals() {
        assert_eq!(chinese_number(3), "三");
        assert_eq!(chinese_number(15), "十五");
        assert_eq!(chinese_number(128), "一百二十八");
        assert_eq!(chinese_number(205), "二百零五");
        assert_eq!(chinese_number(1010), "一千零一十");
    }

    #[test]
    fn address_variants() {
        let mut rng = Rng::new(1, Stream::Person, 0, 0);
        let mut a = Address::sample(&mut rng, 27, false);
        a.estate = Some(0);
        a.building = 3;
        a.unit = 2;
        a.room = 501;
        a.number = 3;
        let clean = a.render();
        assert!(clean.starts_with("浙江省杭州市西湖区"), "{clean}");
        assert!(clean.ends_with("3号阳光花园3栋2单元501室"), "{clean}");
        let v = a.render_with(&AddressStyle {
            short_levels: true,
            chinese_numerals: true,
            dashed_units: true,
            ..AddressStyle::default()
        });
        assert!(v.starts_with("浙江杭州西湖区"), "{v}");
        assert!(v.ends_with("三号阳光花园3-2-501"), "{v}");
        let bj = Address { region: 4, ..a };
        assert!(bj.render().starts_with("北京市海淀区"));
        let short = bj.render_with(&AddressStyle {
            short_levels: true,
            ..Default::default()
        });
        assert!(short.starts_with("北京海淀区"), "{short}");
    }
}
