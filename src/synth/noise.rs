//! Field noise: each kind of error is a Bernoulli draw with a per-department rate, counted
//! (opportunities and hits) so tests can compare measured with configured rates.
//!
//! An *opportunity* is a draw actually made: a kind is only drawn where it can apply (a
//! legacy 15-digit ID only for someone born before 2000, a lower-case `x` only for an ID
//! ending in `X`, a day/month swap only when the day is at most 12 and differs from the month).
//! So `applied / opportunities` estimates the configured rate.

use std::fmt::Write as _;

use super::names::{self, Confusion};
use super::population::{Date, Enterprise, NameStyle, Prefix, enterprise_name};
use super::regions::{Address, AddressStyle};
use super::rng::Rng;

macro_rules! noise_kinds {
    ($($kind:ident => $name:literal,)*) => {
        /// Every kind of noise the generator applies.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum NoiseKind { $($kind,)* }

        impl NoiseKind {
            pub const ALL: &'static [NoiseKind] = &[$(NoiseKind::$kind,)*];

            /// Stable snake_case name (used in reports and overrides).
            pub fn name(self) -> &'static str {
                match self { $(NoiseKind::$kind => $name,)* }
            }
        }
    };
}

noise_kinds! {
    DuplicateRecord => "duplicate_record",
    NameMissing => "name_missing",
    NamePlaceholder => "name_placeholder",
    NamePinyin => "name_pinyin",
    NameTraditional => "name_traditional",
    NameHomophone => "name_homophone",
    NameShape => "name_similar_shape",
    NameDropChar => "name_drop_char",
    NameSwapChars => "name_swap_chars",
    IdMissing => "id_missing",
    IdPlaceholder => "id_placeholder",
    IdLegacy15 => "id_legacy15",
    IdTypo => "id_typo",
    IdTranspose => "id_transpose",
    IdLowerX => "id_lower_x",
    IdFullWidth => "id_full_width",
    GenderMissing => "gender_missing",
    GenderFlip => "gender_flip",
    DateMissing => "date_missing",
    DatePlaceholder => "date_placeholder",
    DateSwapDayMonth => "date_swap_day_month",
    DateOtherFormat => "date_other_format",
    PhoneMissing => "phone_missing",
    PhonePlaceholder => "phone_placeholder",
    PhoneChanged => "phone_changed",
    PhoneFormatted => "phone_formatted",
    AddressMissing => "address_missing",
    AddressPlaceholder => "address_placeholder",
    AddressMoved => "address_moved",
    AddressVariant => "address_variant",
    EmployerMissing => "employer_missing",
    EmployerVariant => "employer_name_variant",
    EntNameVariant => "enterprise_name_variant",
    UsccMissing => "uscc_missing",
    UsccLegacy => "uscc_legacy",
    UsccTypo => "uscc_typo",
    UsccLowerCase => "uscc_lower_case",
    OrgCodeMissing => "org_code_missing",
    OrgCodeNoHyphen => "org_code_no_hyphen",
    RegNumberMissing => "reg_number_missing",
}

pub(crate) const KINDS: usize = NoiseKind::ALL.len();

/// Effective probability per kind for one department.
pub type Rates = [f64; KINDS];

/// Opportunities and hits per kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    pub opportunities: [u64; KINDS],
    pub applied: [u64; KINDS],
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            opportunities: [0; KINDS],
            applied: [0; KINDS],
        }
    }
}

impl Counts {
    pub(crate) fn add(mut self, other: &Counts) -> Counts {
        for k in 0..KINDS {
            self.opportunities[k] += other.opportunities[k];
            self.applied[k] += other.applied[k];
        }
        self
    }

    pub(crate) fn record(&mut self, kind: NoiseKind, hit: bool) {
        self.opportunities[kind as usize] += 1;
        self.applied[kind as usize] += u64::from(hit);
    }
}

/// The state of one record's noise: its own random stream, the rates, the counters.
pub(crate) struct Ctx<'a> {
    pub rng: Rng,
    rates: &'a Rates,
    pub counts: &'a mut Counts,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(rng: Rng, rates: &'a Rates, counts: &'a mut Counts) -> Self {
        Ctx { rng, rates, counts }
    }

    /// One draw of `kind`, counted.
    pub(crate) fn roll(&mut self, kind: NoiseKind) -> bool {
        let hit = self.rng.chance(self.rates[kind as usize]);
        self.counts.record(kind, hit);
        hit
    }

    fn placeholder(&mut self, pool: &[&str]) -> Option<String> {
        Some((*self.rng.pick(pool)).to_string())
    }
}

const NAME_PLACEHOLDERS: [&str; 4] = ["不详", "无", "NULL", "未知"];
const ID_PLACEHOLDERS: [&str; 5] = ["不详", "无", "000000", "NULL", "000000000000000000"];
const DATE_PLACEHOLDERS: [&str; 4] = ["不详", "NULL", "1900-01-01", "0000-00-00"];
const PHONE_PLACEHOLDERS: [&str; 5] = ["无", "00000000000", "NULL", "不详", "000000"];
const ADDRESS_PLACEHOLDERS: [&str; 3] = ["不详", "无", "NULL"];

/// Full-width forms of ASCII letters and digits (`１１０１`, `Ｘ`).
pub(crate) fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// A person's name: missing, placeholder, pinyin, or character errors then traditional forms.
pub(crate) fn person_name(ctx: &mut Ctx, surname: &str, given: &str) -> Option<String> {
    if ctx.roll(NoiseKind::NameMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::NamePlaceholder) {
        return ctx.placeholder(&NAME_PLACEHOLDERS);
    }
    if ctx.roll(NoiseKind::NamePinyin) {
        let style = ctx.rng.below(4);
        return names::pinyin_name(surname, given, style)
            .or_else(|| Some(format!("{surname}{given}")));
    }
    // Names are at most a few characters: a fixed buffer avoids an allocation per record.
    let mut buf = ['\0'; 8];
    let mut len = 0;
    for c in surname.chars().chain(given.chars()).take(buf.len()) {
        buf[len] = c;
        len += 1;
    }
    let chars = &mut buf[..len];
    let sur_len = surname.chars().count().min(len);
    for (kind, confusion) in [
        (NoiseKind::NameHomophone, Confusion::Homophone),
        (NoiseKind::NameShape, Confusion::Shape),
    ] {
        if names::can_confuse(chars, confusion) && ctx.roll(kind) {
            names::confuse(chars, confusion, &mut ctx.rng);
        }
    }
    let given_len = len - sur_len;
    if len >= 3 && given_len >= 2 && ctx.roll(NoiseKind::NameDropChar) {
        let i = sur_len + ctx.rng.below(given_len);
        chars.copy_within(i + 1.., i);
        len -= 1;
    } else if given_len == 2 && ctx.roll(NoiseKind::NameSwapChars) {
        chars.swap(sur_len, sur_len + 1);
    }
    let traditional = ctx.roll(NoiseKind::NameTraditional);
    Some(
        buf[..len]
            .iter()
            .map(|&c| {
                if traditional {
                    names::traditional(c)
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// An 18-digit ID: missing, placeholder, legacy 15 digits, typo, transposition, lower-case x,
/// full-width.
pub(crate) fn id_number(ctx: &mut Ctx, id: &[u8; 18], birth_year: u16) -> Option<String> {
    if ctx.roll(NoiseKind::IdMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::IdPlaceholder) {
        return ctx.placeholder(&ID_PLACEHOLDERS);
    }
    let mut b: Vec<u8> = id.to_vec();
    if birth_year < 2000 && ctx.roll(NoiseKind::IdLegacy15) {
        b = [&id[..6], &id[8..17]].concat();
    } else {
        if ctx.roll(NoiseKind::IdTypo) {
            let i = ctx.rng.below(17);
            let d = b[i] - b'0';
            b[i] = b'0' + (d + 1 + ctx.rng.below(9) as u8) % 10;
        }
        let pairs: Vec<usize> = (0..16).filter(|&i| b[i] != b[i + 1]).collect();
        if !pairs.is_empty() && ctx.roll(NoiseKind::IdTranspose) {
            let i = *ctx.rng.pick(&pairs);
            b.swap(i, i + 1);
        }
        if b[17] == b'X' && ctx.roll(NoiseKind::IdLowerX) {
            b[17] = b'x';
        }
    }
    let s = String::from_utf8(b).ok()?;
    Some(if ctx.roll(NoiseKind::IdFullWidth) {
        full_width(&s)
    } else {
        s
    })
}

/// How a department writes gender.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GenderStyle {
    /// 男 / 女
    Chinese,
    /// GB/T 2261.1: 1 = male, 2 = female
    Code,
}

pub(crate) fn gender(ctx: &mut Ctx, male: bool, style: GenderStyle) -> Option<String> {
    if ctx.roll(NoiseKind::GenderMissing) {
        return None;
    }
    let male = male ^ ctx.roll(NoiseKind::GenderFlip);
    Some(
        match (style, male) {
            (GenderStyle::Chinese, true) => "男",
            (GenderStyle::Chinese, false) => "女",
            (GenderStyle::Code, true) => "1",
            (GenderStyle::Code, false) => "2",
        }
        .to_string(),
    )
}

/// How a department writes dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DateStyle {
    /// `1990-01-02`
    Iso,
    /// `1990/1/2`
    Slash,
    /// `19900102`
    Compact,
    /// `1990年1月2日`
    Chinese,
}

const DATE_STYLES: [DateStyle; 4] = [
    DateStyle::Iso,
    DateStyle::Slash,
    DateStyle::Compact,
    DateStyle::Chinese,
];

pub(crate) fn format_date(y: u16, m: u8, d: u8, style: DateStyle) -> String {
    match style {
        DateStyle::Iso => format!("{y:04}-{m:02}-{d:02}"),
        DateStyle::Slash => format!("{y}/{m}/{d}"),
        DateStyle::Compact => format!("{y:04}{m:02}{d:02}"),
        DateStyle::Chinese => format!("{y}年{m}月{d}日"),
    }
}

pub(crate) fn date(ctx: &mut Ctx, date: Date, style: DateStyle) -> Option<String> {
    if ctx.roll(NoiseKind::DateMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::DatePlaceholder) {
        return ctx.placeholder(&DATE_PLACEHOLDERS);
    }
    let (mut m, mut d) = (date.month, date.day);
    if d <= 12 && d != m && ctx.roll(NoiseKind::DateSwapDayMonth) {
        (m, d) = (d, m);
    }
    let mut style = style;
    if ctx.roll(NoiseKind::DateOtherFormat) {
        let others: Vec<DateStyle> = DATE_STYLES.into_iter().filter(|&s| s != style).collect();
        style = *ctx.rng.pick(&others);
    }
    Some(format_date(date.year, m, d, style))
}

pub(crate) fn phone(ctx: &mut Ctx, phone: u64, new_phone: u64) -> Option<String> {
    if ctx.roll(NoiseKind::PhoneMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::PhonePlaceholder) {
        return ctx.placeholder(&PHONE_PLACEHOLDERS);
    }
    let n = if ctx.roll(NoiseKind::PhoneChanged) {
        new_phone
    } else {
        phone
    };
    let s = n.to_string();
    if !ctx.roll(NoiseKind::PhoneFormatted) {
        return Some(s);
    }
    let (a, b, c) = (&s[..3], &s[3..7], &s[7..]);
    Some(match ctx.rng.below(6) {
        0 => format!("+86 {a} {b} {c}"),
        1 => format!("+86-{s}"),
        2 => format!("86 {s}"),
        3 => format!("{a}-{b}-{c}"),
        4 => format!("{a} {b} {c}"),
        _ => format!("+86{s}"),
    })
}

pub(crate) fn address(ctx: &mut Ctx, addr: &Address, moved: &Address) -> Option<String> {
    if ctx.roll(NoiseKind::AddressMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::AddressPlaceholder) {
        return ctx.placeholder(&ADDRESS_PLACEHOLDERS);
    }
    let a = if ctx.roll(NoiseKind::AddressMoved) {
        moved
    } else {
        addr
    };
    if ctx.roll(NoiseKind::AddressVariant) {
        let style = AddressStyle::sample_variant(&mut ctx.rng);
        Some(a.render_with(&style))
    } else {
        Some(a.render())
    }
}

/// A different but equivalent way to write an enterprise's name.
fn name_variant(rng: &mut Rng, e: &Enterprise) -> NameStyle {
    let mut options: Vec<NameStyle> = vec![NameStyle {
        prefix: Some(Prefix::None),
        ..NameStyle::default()
    }];
    if e.form < 2 {
        options.push(NameStyle {
            swap_form: true,
            ..NameStyle::default()
        });
    }
    match e.prefix {
        Prefix::Bracket => {
            options.push(NameStyle {
                half_width_brackets: true,
                ..NameStyle::default()
            });
            options.push(NameStyle {
                prefix: Some(Prefix::City),
                ..NameStyle::default()
            });
        }
        prefix => {
            let half = rng.chance(0.5);
            options.push(NameStyle {
                prefix: Some(Prefix::Bracket),
                half_width_brackets: half,
                ..NameStyle::default()
            });
            if prefix == Prefix::County {
                options.push(NameStyle {
                    prefix: Some(Prefix::City),
                    ..NameStyle::default()
                });
            }
        }
    }
    *rng.pick(&options)
}

/// An enterprise's name (`EntNameVariant`), or an employer's (`Employer*`).
pub(crate) fn enterprise_name_field(
    ctx: &mut Ctx,
    all: &[Enterprise],
    j: usize,
    employer: bool,
) -> Option<String> {
    if employer && ctx.roll(NoiseKind::EmployerMissing) {
        return None;
    }
    let kind = if employer {
        NoiseKind::EmployerVariant
    } else {
        NoiseKind::EntNameVariant
    };
    // A branch's variant applies to its parent's part of the name.
    let base = all[j].branch_of.map_or(j, |p| p as usize);
    let style = if ctx.roll(kind) {
        name_variant(&mut ctx.rng, &all[base])
    } else {
        NameStyle::default()
    };
    Some(enterprise_name(all, j, &style))
}

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A USCC: missing, one-character typo (invalid check), lower case.
pub(crate) fn uscc(ctx: &mut Ctx, code: &str) -> Option<String> {
    if ctx.roll(NoiseKind::UsccMissing) {
        return None;
    }
    let mut b = code.as_bytes().to_vec();
    if ctx.roll(NoiseKind::UsccTypo) {
        let i = ctx.rng.below(17);
        let pos = USCC_ALPHABET.iter().position(|&c| c == b[i]).unwrap_or(0);
        b[i] = USCC_ALPHABET[(pos + 1 + ctx.rng.below(30)) % 31];
    }
    let s = String::from_utf8(b).ok()?;
    if s.bytes().any(|c| c.is_ascii_uppercase()) && ctx.roll(NoiseKind::UsccLowerCase) {
        Some(s.to_ascii_lowercase())
    } else {
        Some(s)
    }
}

/// An organisation code, written `XXXXXXXX-X` unless `OrgCodeNoHyphen`.
pub(crate) fn org_code(ctx: &mut Ctx, code: &str) -> Option<String> {
    if ctx.roll(NoiseKind::OrgCodeMissing) {
        return None;
    }
    if ctx.roll(NoiseKind::OrgCodeNoHyphen) {
        return Some(code.to_string());
    }
    let mut s = String::with_capacity(10);
    let _ = write!(s, "{}-{}", code.get(..8)?, code.get(8..)?);
    Some(s)
}

pub(crate) fn reg_number(ctx: &mut Ctx, reg: Option<&str>) -> Option<String> {
    let reg = reg?;
    (!ctx.roll(NoiseKind::RegNumberMissing)).then(|| reg.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::rng::Stream;
    use super::*;
    use crate::standardise::ident::{id_is_valid, uscc_is_valid};

    fn rates(kind: NoiseKind) -> Rates {
        let mut r = [0.0; KINDS];
        r[kind as usize] = 1.0;
        r
    }

    #[test]
    fn kinds_have_unique_names() {
        let mut names: Vec<&str> = NoiseKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS);
    }

    #[test]
    fn id_errors_break_the_check() {
        let id = *b"11010519491231002X";
        let mut counts = Counts::default();
        for kind in [NoiseKind::IdTypo, NoiseKind::IdTranspose] {
            let r = rates(kind);
            for i in 0..200 {
                let mut ctx = Ctx::new(Rng::new(1, Stream::Record, 0, i), &r, &mut counts);
                let s = id_number(&mut ctx, &id, 1949).unwrap();
                assert_eq!(s.len(), 18);
                assert!(!id_is_valid(&s), "{kind:?} {s}");
            }
        }
        let r = rates(NoiseKind::IdLegacy15);
        let mut ctx = Ctx::new(Rng::new(1, Stream::Record, 0, 0), &r, &mut counts);
        assert_eq!(
            id_number(&mut ctx, &id, 1949).as_deref(),
            Some("110105491231002")
        );
        let r = rates(NoiseKind::IdFullWidth);
        let mut ctx = Ctx::new(Rng::new(1, Stream::Record, 0, 0), &r, &mut counts);
        assert_eq!(
            id_number(&mut ctx, &id, 1949).as_deref(),
            Some("１１０１０５１９４９１２３１００２Ｘ")
        );
    }

    #[test]
    fn uscc_typo_breaks_the_check() {
        let r = rates(NoiseKind::UsccTypo);
        let mut counts = Counts::default();
        for i in 0..200 {
            let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, i), &r, &mut counts);
            let s = uscc(&mut ctx, "91350100M000100Y43").unwrap();
            assert!(!uscc_is_valid(&s), "{s}");
        }
    }

    #[test]
    fn dates_and_phones() {
        assert_eq!(format_date(1990, 1, 2, DateStyle::Iso), "1990-01-02");
        assert_eq!(format_date(1990, 1, 2, DateStyle::Slash), "1990/1/2");
        assert_eq!(format_date(1990, 1, 2, DateStyle::Compact), "19900102");
        assert_eq!(format_date(1990, 1, 2, DateStyle::Chinese), "1990年1月2日");
        let r = rates(NoiseKind::DateSwapDayMonth);
        let mut counts = Counts::default();
        let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, 0), &r, &mut counts);
        let d = Date {
            year: 1990,
            month: 1,
            day: 2,
        };
        assert_eq!(
            date(&mut ctx, d, DateStyle::Iso).as_deref(),
            Some("1990-02-01")
        );
        let r = rates(NoiseKind::PhoneFormatted);
        let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, 0), &r, &mut counts);
        let p = phone(&mut ctx, 13812345678, 0).unwrap();
        assert_eq!(
            p.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .trim_start_matches("86"),
            "13812345678"
        );
    }

    #[test]
    fn name_noise_kinds() {
        let mut counts = Counts::default();
        let r = rates(NoiseKind::NameTraditional);
        let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, 0), &r, &mut counts);
        assert_eq!(person_name(&mut ctx, "张", "伟").as_deref(), Some("張偉"));
        let r = rates(NoiseKind::NameHomophone);
        let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, 0), &r, &mut counts);
        let n = person_name(&mut ctx, "张", "伟").unwrap();
        assert!(["章伟", "张炜", "张玮"].contains(&n.as_str()), "{n}");
        let r = rates(NoiseKind::NameSwapChars);
        let mut ctx = Ctx::new(Rng::new(2, Stream::Record, 0, 0), &r, &mut counts);
        assert_eq!(
            person_name(&mut ctx, "王", "秀英").as_deref(),
            Some("王英秀")
        );
        assert_eq!(counts.applied[NoiseKind::NameTraditional as usize], 1);
    }
}
