//! The true population: persons and enterprises with clean attributes, including hard
//! negatives (twins, namesakes, parent and child of the same name, same trade name elsewhere).
//!
//! Entity `i` is a pure function of `(seed, i)` and, for odd `i`, of the independent base of
//! `i - 1` (its relation partner): relations never chain, so generation is embarrassingly
//! parallel. Two deterministic sequential passes then make ID numbers and enterprise names
//! unique.

use std::sync::LazyLock;

use rayon::prelude::*;

use super::names;
use super::regions::{Address, REGIONS, sample_region};
use super::rng::{Rng, Stream};
use crate::standardise::ident::{id_check_char, org_check_char, uscc_check_char};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    fn sample(rng: &mut Rng, from: u32, to: u32) -> Self {
        let year = rng.range(from, to);
        let month = rng.range(1, 12);
        let day = rng.range(1, days_in_month(year, month));
        Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        }
    }

    fn with_year(self, year: u16) -> Self {
        let max = days_in_month(u32::from(year), u32::from(self.month)) as u8;
        Date {
            year,
            day: self.day.min(max),
            ..self
        }
    }

    pub(crate) fn ymd(self) -> u32 {
        u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day)
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// How an entity relates to its partner (entity `i - 1`): the hard negatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    None,
    /// Same surname, birth date and address; different given name and ID.
    Twin,
    /// Same full name and birth date, unrelated otherwise.
    Namesake,
    /// Same full name and address, a generation apart.
    ParentChild,
    /// Same address (spouse or sibling); often the same phone.
    Family,
    /// Enterprise with the partner's trade name, industry and form in another city.
    SameTradeName,
    /// Enterprise that is a branch (分公司) of its partner.
    Branch,
}

impl Relation {
    pub(crate) const ALL: [Relation; 6] = [
        Relation::Twin,
        Relation::Namesake,
        Relation::ParentChild,
        Relation::Family,
        Relation::SameTradeName,
        Relation::Branch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Relation::None => "none",
            Relation::Twin => "twin",
            Relation::Namesake => "namesake",
            Relation::ParentChild => "parent_child_same_name",
            Relation::Family => "family_shared_address",
            Relation::SameTradeName => "same_trade_name",
            Relation::Branch => "branch",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub surname: u16,
    pub given: String,
    pub male: bool,
    pub birth: Date,
    /// Index into `REGIONS` of the household registration at issue (the ID's first 6 digits).
    pub region: u8,
    /// Sequence `1..=999`, odd for men.
    seq: u16,
    pub id: [u8; 18],
    pub address: Address,
    /// Where the person lives now, for departments that know of a move.
    pub moved: Address,
    pub phone: u64,
    pub new_phone: u64,
    pub employer: Option<u32>,
    pub relation: Relation,
}

impl Person {
    pub(crate) fn surname(&self) -> &'static str {
        names::surname(self.surname)
    }

    #[cfg(test)]
    pub(crate) fn full_name(&self) -> String {
        format!("{}{}", self.surname(), self.given)
    }

    #[cfg(test)]
    pub(crate) fn id_str(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or_default()
    }
}

fn sample_phone(rng: &mut Rng) -> u64 {
    const PREFIXES: [u64; 24] = [
        130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159,
        166, 177, 180, 186, 189, 199,
    ];
    *rng.pick(&PREFIXES) * 100_000_000 + rng.below(100_000_000) as u64
}

/// Birth years 1930-2020, weighted towards the working-age middle.
fn sample_birth(rng: &mut Rng) -> Date {
    let (lo, hi) = *rng.pick(&[
        (1930, 1959),
        (1950, 1999),
        (1960, 2009),
        (1960, 1999),
        (1980, 2020),
    ]);
    Date::sample(rng, lo, hi)
}

/// The independent draw of person `i`, before any relation.
fn base_person(seed: u64, i: usize) -> Person {
    let mut rng = Rng::new(seed, Stream::Person, i as u64, 0);
    let male = rng.chance(0.51);
    let birth = sample_birth(&mut rng);
    let surname = names::sample_surname(&mut rng);
    let given = names::sample_given(&mut rng, male, u32::from(birth.year));
    let region = sample_region(&mut rng);
    let address = Address::sample(&mut rng, region, false);
    let seq = seq_for(male, rng.below(500));
    let phone = sample_phone(&mut rng);
    let mut moved_rng = Rng::new(seed, Stream::Moved, i as u64, 0);
    let moved_region = if moved_rng.chance(0.5) {
        region
    } else {
        sample_region(&mut moved_rng)
    };
    let moved = Address::sample(&mut moved_rng, moved_region, false);
    let new_phone = sample_phone(&mut Rng::new(seed, Stream::NewPhone, i as u64, 0));
    Person {
        surname,
        given,
        male,
        birth,
        region,
        seq,
        id: [b'0'; 18],
        address,
        moved,
        phone,
        new_phone,
        employer: None,
        relation: Relation::None,
    }
}

/// Sequence number `k` of this gender: odd for men (`1..=999`), even for women (`2..=998`).
fn seq_for(male: bool, k: usize) -> u16 {
    if male {
        2 * (k % 500) as u16 + 1
    } else {
        2 * (k % 499) as u16 + 2
    }
}

fn person(seed: u64, i: usize, hard_negative_rate: f64, enterprises: usize) -> Person {
    let mut p = base_person(seed, i);
    let mut rng = Rng::new(seed, Stream::Relation, i as u64, 0);
    let roll = rng.f64();
    let h = hard_negative_rate;
    if i % 2 == 1 {
        let partner = base_person(seed, i - 1);
        if roll < h {
            p.relation = Relation::Twin;
            p.surname = partner.surname;
            p.birth = partner.birth;
            p.region = partner.region;
            p.address = partner.address;
            p.moved = partner.moved;
            for _ in 0..8 {
                if p.given != partner.given {
                    break;
                }
                p.given = names::sample_given(&mut rng, p.male, u32::from(p.birth.year));
            }
        } else if roll < 2.0 * h {
            p.relation = Relation::Namesake;
            p.surname = partner.surname;
            p.given = partner.given.clone();
            p.male = partner.male;
            p.birth = partner.birth;
        } else if roll < 2.7 * h {
            p.relation = Relation::ParentChild;
            p.surname = partner.surname;
            p.given = partner.given.clone();
            p.male = partner.male;
            p.region = partner.region;
            p.address = partner.address;
            let gap = rng.range(22, 38) as u16;
            let year = if partner.birth.year + gap <= 2020 {
                partner.birth.year + gap
            } else {
                (partner.birth.year - gap).max(1930)
            };
            p.birth = p.birth.with_year(year);
        } else if roll < 2.7 * h + 0.12 {
            p.relation = Relation::Family;
            p.region = partner.region;
            p.address = partner.address;
            if rng.chance(0.5) {
                p.surname = partner.surname;
            }
            if rng.chance(0.5) {
                p.phone = partner.phone;
            }
        }
    }
    p.seq = seq_for(p.male, rng.below(500));
    let year = p.birth.year;
    if enterprises > 0 && (1955..=2002).contains(&year) && rng.chance(0.7) {
        p.employer = Some(rng.below(enterprises) as u32);
    }
    p
}

/// All persons, with unique valid 18-digit IDs.
pub(crate) fn persons(
    seed: u64,
    n: usize,
    hard_negative_rate: f64,
    enterprises: usize,
) -> Vec<Person> {
    let mut people: Vec<Person> = (0..n)
        .into_par_iter()
        .map(|i| person(seed, i, hard_negative_rate, enterprises))
        .collect();
    make_ids_unique(&mut people);
    people.par_iter_mut().for_each(|p| p.id = build_id(p));
    people
}

/// Reassigns sequence numbers (keeping parity) where two persons share region, birth date and
/// sequence. Deterministic: decided in (region, birth, seq, index) order.
fn make_ids_unique(people: &mut [Person]) {
    let mut keys: Vec<(u32, u32, u16, u32)> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                REGIONS[usize::from(p.region)].code,
                p.birth.ymd(),
                p.seq,
                i as u32,
            )
        })
        .collect();
    keys.par_sort_unstable();
    let mut used = [0u64; 16];
    let mut group = (u32::MAX, u32::MAX);
    for &(code, ymd, seq, i) in &keys {
        if (code, ymd) != group {
            group = (code, ymd);
            used = [0; 16];
        }
        let is_used = |s: u16, used: &[u64; 16]| used[usize::from(s / 64)] >> (s % 64) & 1 == 1;
        let mut s = seq;
        for _ in 0..500 {
            if !is_used(s, &used) {
                break;
            }
            s = if s + 2 <= 999 {
                s + 2
            } else if s % 2 == 1 {
                1
            } else {
                2
            };
        }
        used[usize::from(s / 64)] |= 1 << (s % 64);
        people[i as usize].seq = s;
    }
}

fn build_id(p: &Person) -> [u8; 18] {
    let body = format!(
        "{:06}{:08}{:03}",
        REGIONS[usize::from(p.region)].code,
        p.birth.ymd(),
        p.seq
    );
    let mut id = [b'0'; 18];
    id[..17].copy_from_slice(&body.as_bytes()[..17]);
    id[17] = id_check_char(&id[..17]).unwrap_or(b'0');
    id
}

/// Where an enterprise's registered name puts its region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// `杭州市西湖区恒信科技有限公司`
    County,
    /// `杭州恒信科技有限公司`
    City,
    /// `恒信科技（杭州）有限公司`
    Bracket,
    /// `恒信科技有限公司` (only as a variant)
    None,
}

pub(crate) const INDUSTRIES: [&str; 25] = [
    "科技",
    "信息技术",
    "贸易",
    "商贸",
    "建筑工程",
    "餐饮管理",
    "物流",
    "电子",
    "机械设备",
    "食品",
    "服装",
    "文化传媒",
    "房地产开发",
    "医药",
    "化工",
    "环保科技",
    "教育咨询",
    "装饰工程",
    "农业开发",
    "汽车服务",
    "网络科技",
    "投资管理",
    "物业管理",
    "印刷",
    "家具",
];
pub(crate) const FORMS: [&str; 3] = ["有限公司", "有限责任公司", "股份有限公司"];
const TRADE_CHARS: &str = "恒信华通鑫源宏达金鹏瑞丰盛世天成博远永泰嘉禾正元新锐汇隆兴旺富德安康宁顺昌荣辉光明星海山川东方中联创智云峰润泽佳美利达诚和益晟骏腾飞祥众合豪";

#[derive(Clone, Debug)]
pub(crate) struct Enterprise {
    pub region: u8,
    pub prefix: Prefix,
    pub trade: String,
    pub industry: u8,
    pub form: u8,
    /// Parent enterprise of a branch (its name is the parent's plus `XX分公司`).
    pub branch_of: Option<u32>,
    pub founded: u16,
    pub uscc: [u8; 18],
    /// Legacy 15-digit registration number (注册号), for enterprises founded before 2015.
    pub reg_number: Option<[u8; 15]>,
    pub legal_rep: Option<u32>,
    pub address: Address,
    pub phone: u64,
    pub relation: Relation,
}

impl Enterprise {
    pub(crate) fn uscc_str(&self) -> &str {
        std::str::from_utf8(&self.uscc).unwrap_or_default()
    }

    pub(crate) fn org_code(&self) -> &str {
        self.uscc_str().get(8..17).unwrap_or_default()
    }

    pub(crate) fn reg_str(&self) -> Option<&str> {
        self.reg_number
            .as_ref()
            .and_then(|r| std::str::from_utf8(r).ok())
    }
}

static TRADE_POOL: LazyLock<Vec<char>> = LazyLock::new(|| TRADE_CHARS.chars().collect());

fn sample_trade(rng: &mut Rng) -> String {
    let pool: &[char] = &TRADE_POOL;
    let a = *rng.pick(pool);
    let mut b = *rng.pick(pool);
    while b == a {
        b = *rng.pick(pool);
    }
    [a, b].iter().collect()
}

fn base_enterprise(seed: u64, j: usize) -> Enterprise {
    let mut rng = Rng::new(seed, Stream::Enterprise, j as u64, 0);
    let region = sample_region(&mut rng);
    let prefix = *rng.pick(&[
        Prefix::County,
        Prefix::County,
        Prefix::City,
        Prefix::Bracket,
    ]);
    let form = match rng.below(100) {
        0..60 => 0,
        60..85 => 1,
        _ => 2,
    };
    Enterprise {
        region,
        prefix,
        trade: sample_trade(&mut rng),
        industry: rng.below(INDUSTRIES.len()) as u8,
        form,
        branch_of: None,
        founded: rng.range(1990, 2023) as u16,
        uscc: [b'0'; 18],
        reg_number: None,
        legal_rep: None,
        address: Address::sample(&mut rng, region, true),
        phone: sample_phone(&mut rng),
        relation: Relation::None,
    }
}

/// A region in another city than `region`.
fn other_city(rng: &mut Rng, region: u8) -> u8 {
    let city = REGIONS[usize::from(region)].city_short();
    loop {
        let r = rng.below(REGIONS.len()) as u8;
        if REGIONS[usize::from(r)].city_short() != city {
            return r;
        }
    }
}

fn enterprise(seed: u64, j: usize, h: f64, persons: &[Person]) -> Enterprise {
    let mut e = base_enterprise(seed, j);
    let mut rng = Rng::new(seed, Stream::Relation, j as u64, 1);
    let roll = rng.f64();
    if j % 2 == 1 {
        let partner = base_enterprise(seed, j - 1);
        if roll < h * 1.5 {
            e.relation = Relation::SameTradeName;
            e.trade = partner.trade;
            e.industry = partner.industry;
            e.form = partner.form;
            e.prefix = partner.prefix;
            e.region = other_city(&mut rng, partner.region);
            e.address = Address::sample(&mut rng, e.region, true);
        } else if roll < h * 3.0 {
            e.relation = Relation::Branch;
            e.branch_of = Some(j as u32 - 1);
            e.region = other_city(&mut rng, partner.region);
            e.address = Address::sample(&mut rng, e.region, true);
            e.founded = e.founded.max(partner.founded);
        }
    }
    e.uscc = build_uscc(seed, j, e.region);
    if e.founded < 2015 {
        e.reg_number = Some(build_reg_number(seed, j, e.region));
    }
    // Legal representative: an adult of the population.
    let mut rep = Rng::new(seed, Stream::LegalRep, j as u64, 0);
    for _ in 0..16 {
        if persons.is_empty() {
            break;
        }
        let k = rep.below(persons.len());
        e.legal_rep = Some(k as u32);
        if persons[k].birth.year <= 2000 {
            break;
        }
    }
    e
}

/// Unique organisation codes: even indices get 8 digits, odd ones `MA` plus 6 characters of
/// the USCC alphabet, both by a bijection of the index (so codes never collide).
fn org_body(seed: u64, j: usize) -> [u8; 8] {
    const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let k = (j / 2) as u64;
    let salt = seed % 1_000_000;
    let mut body = [b'0'; 8];
    if j.is_multiple_of(2) {
        let v = (k * 48_271 + salt) % 100_000_000;
        body.copy_from_slice(format!("{v:08}").as_bytes());
    } else {
        const SPACE: u64 = 31u64.pow(6);
        let mut v = (k * 7_919 + salt) % SPACE;
        body[0] = b'M';
        body[1] = b'A';
        for slot in body[2..].iter_mut().rev() {
            *slot = ALPHABET[(v % 31) as usize];
            v /= 31;
        }
    }
    body
}

fn build_uscc(seed: u64, j: usize, region: u8) -> [u8; 18] {
    let mut u = [b'0'; 18];
    u[0] = b'9';
    u[1] = b'1';
    u[2..8].copy_from_slice(format!("{:06}", REGIONS[usize::from(region)].code).as_bytes());
    let body = org_body(seed, j);
    u[8..16].copy_from_slice(&body);
    u[16] = org_check_char(&body).unwrap_or(b'0');
    u[17] = uscc_check_char(&u[..17]).unwrap_or(b'0');
    u
}

/// 15-digit registration number: division code, 8-digit serial, ISO 7064 MOD 11,10 check.
fn build_reg_number(seed: u64, j: usize, region: u8) -> [u8; 15] {
    let serial = (j as u64 * 6_151 + seed % 10_000_000) % 100_000_000;
    let body = format!("{:06}{serial:08}", REGIONS[usize::from(region)].code);
    let mut r = [b'0'; 15];
    r[..14].copy_from_slice(body.as_bytes());
    let mut p = 10u32;
    for &b in &r[..14] {
        let s = (p + u32::from(b - b'0')) % 10;
        p = (if s == 0 { 10 } else { s }) * 2 % 11;
    }
    r[14] = b'0' + ((11 - p) % 10) as u8;
    r
}

/// The registered name; `Prefix::None` and half-width brackets only arise as variants.
pub(crate) fn enterprise_name(all: &[Enterprise], j: usize, style: &NameStyle) -> String {
    let e = &all[j];
    if let Some(parent) = e.branch_of {
        let base = enterprise_name(all, parent as usize, style);
        return format!(
            "{base}{}分公司",
            REGIONS[usize::from(e.region)].city_short()
        );
    }
    let reg = &REGIONS[usize::from(e.region)];
    let prefix = style.prefix.unwrap_or(e.prefix);
    let mut form = FORMS[usize::from(e.form)];
    if style.swap_form {
        form = match e.form {
            0 => FORMS[1],
            1 => FORMS[0],
            _ => form,
        };
    }
    let (open, close) = if style.half_width_brackets {
        ("(", ")")
    } else {
        ("（", "）")
    };
    let industry = INDUSTRIES[usize::from(e.industry)];
    match prefix {
        Prefix::County => format!("{}{}{industry}{form}", reg.city_county(), e.trade),
        Prefix::City => format!("{}{}{industry}{form}", reg.city_short(), e.trade),
        Prefix::Bracket => {
            format!(
                "{}{industry}{open}{}{close}{form}",
                e.trade,
                reg.city_short()
            )
        }
        Prefix::None => format!("{}{industry}{form}", e.trade),
    }
}

/// A deviation from the registered way of writing an enterprise name.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NameStyle {
    pub prefix: Option<Prefix>,
    pub swap_form: bool,
    pub half_width_brackets: bool,
}

/// All enterprises, with unique registered names (except branches, derived from parents).
pub(crate) fn enterprises(seed: u64, n: usize, h: f64, persons: &[Person]) -> Vec<Enterprise> {
    let mut all: Vec<Enterprise> = (0..n)
        .into_par_iter()
        .map(|j| enterprise(seed, j, h, persons))
        .collect();
    // Registration authorities refuse a second identical name: lengthen later duplicates.
    for round in 0..8u64 {
        let mut named: Vec<(String, usize)> = (0..n)
            .into_par_iter()
            .filter(|&j| all[j].branch_of.is_none())
            .map(|j| (enterprise_name(&all, j, &NameStyle::default()), j))
            .collect();
        named.par_sort_unstable();
        let dups: Vec<usize> = named
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| w[1].1)
            .collect();
        if dups.is_empty() {
            break;
        }
        for j in dups {
            let mut rng = Rng::new(seed, Stream::Dedup, j as u64, round);
            all[j].trade.push(*rng.pick(&TRADE_POOL));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standardise::ident::{id_is_valid, org_code_is_valid, uscc_is_valid};

    #[test]
    fn ids_valid_unique_and_consistent() {
        let people = persons(11, 20_000, 0.05, 100);
        let mut ids: Vec<&str> = people.iter().map(Person::id_str).collect();
        for p in &people {
            let id = p.id_str();
            assert!(id_is_valid(id), "{id}");
            assert_eq!(&id[6..14], format!("{:08}", p.birth.ymd()));
            assert_eq!((id.as_bytes()[16] - b'0') % 2 == 1, p.male, "{id}");
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), people.len());
    }

    #[test]
    fn relations_keep_their_promises() {
        let people = persons(5, 20_000, 0.05, 0);
        let mut seen = [0usize; 4];
        for (i, p) in people.iter().enumerate() {
            let q = if i > 0 { &people[i - 1] } else { continue };
            match p.relation {
                Relation::Twin => {
                    seen[0] += 1;
                    assert_eq!(
                        (p.surname, p.birth, p.address),
                        (q.surname, q.birth, q.address)
                    );
                    assert_ne!(p.id, q.id);
                }
                Relation::Namesake => {
                    seen[1] += 1;
                    assert_eq!((p.full_name(), p.birth), (q.full_name(), q.birth));
                }
                Relation::ParentChild => {
                    seen[2] += 1;
                    assert_eq!((p.full_name(), p.address), (q.full_name(), q.address));
                    assert_ne!(p.birth.year, q.birth.year);
                }
                Relation::Family => {
                    seen[3] += 1;
                    assert_eq!(p.address, q.address);
                }
                _ => {}
            }
        }
        assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
    }

    #[test]
    fn usccs_and_org_codes_valid_and_unique() {
        let people = persons(3, 1_000, 0.03, 0);
        let firms = enterprises(3, 20_000, 0.04, &people);
        let mut codes: Vec<&str> = firms.iter().map(Enterprise::uscc_str).collect();
        for e in &firms {
            assert!(uscc_is_valid(e.uscc_str()), "{}", e.uscc_str());
            assert!(org_code_is_valid(e.org_code()), "{}", e.org_code());
            assert!(e.uscc_str().starts_with("91"));
            assert_eq!(e.reg_number.is_some(), e.founded < 2015);
            assert!(e.legal_rep.is_some());
        }
        let mut orgs: Vec<&str> = firms.iter().map(Enterprise::org_code).collect();
        codes.sort_unstable();
        codes.dedup();
        orgs.sort_unstable();
        orgs.dedup();
        assert_eq!(codes.len(), firms.len());
        assert_eq!(orgs.len(), firms.len());
        let mut names: Vec<String> = (0..firms.len())
            .map(|j| enterprise_name(&firms, j, &NameStyle::default()))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), firms.len());
    }

    #[test]
    fn reg_number_check_digit() {
        for j in 0..500 {
            let r = build_reg_number(1, j, (j % 64) as u8);
            let mut p = 10;
            for &b in &r[..14] {
                let s = (p + u32::from(b - b'0')) % 10;
                p = (if s == 0 { 10 } else { s }) * 2 % 11;
            }
            assert_eq!((p + u32::from(r[14] - b'0')) % 10, 1);
        }
    }

    #[test]
    fn names_look_right() {
        let people = persons(3, 100, 0.03, 0);
        let firms = enterprises(3, 2_000, 0.04, &people);
        for j in 0..firms.len() {
            let n = enterprise_name(&firms, j, &NameStyle::default());
            assert!(n.contains("公司"), "{n}");
            if firms[j].branch_of.is_some() {
                assert!(n.ends_with("分公司"), "{n}");
            }
        }
    }
}
